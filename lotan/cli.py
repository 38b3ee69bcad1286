"""The ``lotan`` command (also ``python -m lotan``, and the ``spark-submit`` entry file).

    lotan fit      --config job.yaml [--set key=value ...] [--epochs N ...] [--plot curves.png] [-v]
    lotan explain  --config job.yaml [--set key=value ...]
    lotan predict  --config job.yaml --checkpoint DIR --output PATH [--embedding]
    lotan entry    # the file to give spark-submit

A job file's keys are described in :mod:`lotan.job`. Every setting of ``lotan.fit`` a job
takes is also a flag of its own (``--epochs 50``, ``--num-partitions 4``, ``--resume``,
``--planner '{reorder: false}'``), derived from :mod:`lotan.options`: the same as
``--set key=value``. Errors in the job or the data print one line that says what to fix, and
exit with status 2; ``-v`` shows Spark's own log and tracebacks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lotan.errors import LotanError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lotan.job import JobConfig

__all__ = ["main"]

#: The file ``spark-submit`` runs: it only calls :func:`main` (a file of its own, so that
#: the package's folder is not put first on ``sys.path``).
ENTRY = Path(__file__).resolve().parent / "entry" / "submit.py"


def _parser() -> argparse.ArgumentParser:
    from lotan.job import FIT_KEYS
    from lotan.options import BOOLEAN_KEYWORDS, keyword_doc

    p = argparse.ArgumentParser(
        prog="lotan",
        description="Full-batch GNN training: Spark for the graph, PyTorch for the layers.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def job_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", required=True, help="the job's YAML file")
        q.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a key (dotted for nested ones: model.hidden_channels=32; "
            "spark.* keys are Spark settings); repeatable",
        )
        q.add_argument(
            "--remote",
            metavar="sc://HOST:PORT",
            help="run on this Spark Connect server (the same as --set spark.remote=...; "
            "PySpark's SPARK_REMOTE works too)",
        )
        q.add_argument("-v", "--verbose", action="store_true", help="Spark's log, tracebacks")
        settings = q.add_argument_group("settings (each the same as --set KEY=VALUE)")
        for key in FIT_KEYS:
            flag = "--" + key.replace("_", "-")
            doc = keyword_doc(key)
            if key in BOOLEAN_KEYWORDS:
                settings.add_argument(
                    flag, dest=f"set_{key}", action=argparse.BooleanOptionalAction, help=doc
                )
            else:
                settings.add_argument(flag, dest=f"set_{key}", metavar="VALUE", help=doc)

    fit = sub.add_parser("fit", help="train the job's model (or grid)")
    job_args(fit)
    fit.add_argument("--plot", metavar="PNG", help="write the training curves to this file")
    explain = sub.add_parser("explain", help="print the plans and bytes moved per epoch")
    job_args(explain)
    predict = sub.add_parser("predict", help="write predictions for every vertex (Parquet)")
    job_args(predict)
    predict.add_argument("--checkpoint", required=True, help="a checkpoint_dir of `lotan fit`")
    predict.add_argument("--output", required=True, help="Parquet folder to write (must not exist)")
    predict.add_argument(
        "--embedding",
        action="store_true",
        help="write the model's output vector as `embedding` instead of prediction/probability",
    )
    sub.add_parser("entry", help="print the entry file for spark-submit")
    return p


def _session(job: JobConfig, verbose: bool) -> SparkSession | None:
    """The Spark session the job needs (its engine or Parquet input), else None. Under
    ``engine: auto`` a session is started only under ``spark-submit`` or when the job sets
    ``spark`` options, and its master then decides the engine
    (:func:`lotan.engines.choice.choose_engine`)."""
    from lotan.engines.spark.session import REMOTE_ENV, get_spark, set_log_level

    wanted = {
        "spark": True,
        "local": False,
        "auto": "PYSPARK_GATEWAY_PORT" in os.environ or REMOTE_ENV in os.environ or bool(job.spark),
    }[job.fit.engine.kind]
    if not wanted and "vertices" not in job.graph:
        return None
    # A JVM this process starts logs errors only, unless -v.
    spark = get_spark(conf=dict(job.spark), quiet=not verbose)
    set_log_level(spark, "INFO" if verbose else "ERROR")
    return spark


def _fit(job: JobConfig, args: argparse.Namespace) -> None:
    import lotan
    from lotan.options import keywords_for

    spark = _session(job, args.verbose)
    graph = job.load_graph(spark)
    print(graph, flush=True)
    fit = job.fit
    monitor = fit.training.monitor
    start = time.perf_counter()
    if job.grid is not None:
        common = keywords_for(lotan.fit_many, fit, spark=spark)
        grid = lotan.fit_many(job.trials(graph), graph, memory_budget=job.memory_budget, **common)
        print(grid.table().to_string(), flush=True)
        result = grid.best(monitor)
        print(f"best: {result.params} ({monitor})", flush=True)
    else:
        settings = keywords_for(lotan.fit, fit, spark=spark)
        result = lotan.fit(job.build_model(graph), graph, **settings)
    seconds = time.perf_counter() - start
    best_rec = result.best(monitor)
    final = result.final
    if result.resumed_from:
        print(f"resumed after epoch {result.resumed_from}", flush=True)
    print(
        f"trained {result.epochs_run} epochs in {seconds:.1f}s"
        + (" (stopped early)" if result.stopped_early else "")
        + f"; best {monitor} {getattr(best_rec, monitor):.4f} at epoch {best_rec.epoch}"
        f"; final test accuracy {final.test_acc:.4f}",
        flush=True,
    )
    devices = result.devices
    placement = fit.engine.placement
    if placement == "split" or devices["gpu_assigned"]:
        note = ""
        if devices["gpu_assigned"] > devices["on_cuda"]:
            off = devices["gpu_assigned"] - devices["on_cuda"]
            note = f" ({off} of those ran on the CPU: torch in the executors cannot use CUDA)"
        print(
            f"dense work ({placement}): {devices['dense_pieces']} task pieces, "
            f"{devices['gpu_assigned']} in tasks Spark gave a GPU, "
            f"{devices['on_cuda']} on CUDA{note}",
            flush=True,
        )
    if fit.checkpoints.directory:
        print(f"checkpoints: {fit.checkpoints.directory}", flush=True)
    if args.plot:
        result.plot(args.plot)
        print(f"training curves: {args.plot}", flush=True)


def _explain(job: JobConfig, args: argparse.Namespace) -> None:
    import lotan
    from lotan.options import keywords_for

    spark = _session(job, args.verbose)
    graph = job.load_graph(spark)
    models: Any = job.trials(graph) if job.grid is not None else job.build_model(graph)
    settings = keywords_for(lotan.explain, job.fit, spark=spark)
    lotan.explain(models, graph, memory_budget=job.memory_budget, **settings)


def _predict(job: JobConfig, args: argparse.Namespace) -> None:
    import lotan
    from lotan.options import keywords_for
    from lotan.training.checkpoint import CheckpointError, load_latest

    out = Path(args.output)
    if out.exists():
        raise LotanError(f"--output {args.output!r} exists; remove it or choose another path")
    state = load_latest(args.checkpoint)
    if state is None:
        raise CheckpointError(
            f"no checkpoint in {args.checkpoint!r}; train with checkpoint_dir set first"
        )
    if len(state["trainers"]) != 1:
        raise CheckpointError(f"{state['path']} holds {len(state['trainers'])} models, not one")
    spark = _session(job, args.verbose)
    graph = job.load_graph(spark)
    model = job.build_model(graph)
    saved = state["trainers"][0]
    try:
        model.load_state_dict(saved.get("final", saved["model"]))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{state['path']} holds another model than the job's ({first[0]} ...); use the "
            "config the checkpoint was trained with"
        ) from exc
    preds = lotan.predict(model, graph, **keywords_for(lotan.predict, job.fit, spark=spark))
    _write_predictions(preds, out, embedding=args.embedding)
    print(
        f"wrote predictions of {graph.num_vertices} vertices to {out} "
        f"(checkpoint {Path(state['path']).name})",
        flush=True,
    )


def _write_predictions(preds: Any, out: Path, *, embedding: bool) -> None:
    """Parquet at ``out``: ``id, prediction, probability`` or ``id, embedding``; written to a
    temporary folder and renamed, so that a failed run leaves no partial output."""
    cols = ["id", "logits"] if embedding else ["id", "prediction", "probability"]
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    try:
        if hasattr(preds, "sparkSession"):  # a Spark DataFrame
            frame = preds.select(*cols)
            if embedding:
                frame = frame.withColumnRenamed("logits", "embedding")
            frame.write.parquet(str(tmp))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            frame = preds[cols].rename(columns={"logits": "embedding"})
            tmp.mkdir(parents=True)
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), tmp / "part-00000.parquet"
            )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _setting_flags(args: argparse.Namespace) -> list[str]:
    """The settings given as flags (``--epochs 50``), as ``--set`` overrides."""
    from lotan.job import FIT_KEYS
    from lotan.options import BOOLEAN_KEYWORDS

    out = []
    for key in FIT_KEYS:
        value = getattr(args, f"set_{key}", None)
        if value is not None:
            out.append(f"{key}={str(value).lower() if key in BOOLEAN_KEYWORDS else value}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lotan`` command; returns the exit status (2 for a job or input error)."""
    args = _parser().parse_args(argv)
    if args.command == "entry":
        print(ENTRY)
        return 0
    from lotan.job import load_job

    try:
        overrides = list(args.overrides)
        overrides += _setting_flags(args)
        if getattr(args, "remote", None):
            overrides.append(f"spark.remote={args.remote}")
        job = load_job(args.config, overrides)
        {"fit": _fit, "explain": _explain, "predict": _predict}[args.command](job, args)
    except LotanError as exc:
        if args.verbose:
            raise
        print(f"lotan {args.command}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
