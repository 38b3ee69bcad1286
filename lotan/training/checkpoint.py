"""Checkpoints: a training run's whole state in one file, written atomically, so that a killed
run resumes where it stopped and ends with the weights an uninterrupted run ends with.

A checkpoint holds, for every model of the run, its parameters, its optimizer state, its
history, the epoch waiting for its accuracies, and its early-stopping state; plus the epoch,
the torch RNG state, and two fingerprints: of the settings that decide the result (the model's
architecture, optimizer, seed, early stopping) and of the graph. Resuming with other settings
or another graph is an error. What does not change the result may change between runs: the
number of epochs (train longer), the engine, the partitions, the Spark cluster.

The checkpoint written at the end also holds each model's final weights (``final``: with
early stopping, those of the best epoch); a finished run resumed with more epochs continues as
if it had never stopped. Files are ``epoch-<NNNNNN>.pt`` in the checkpoint directory, written
to a temporary name, flushed to disk and renamed, so a reader sees a whole checkpoint or none;
the newest :data:`KEEP` are kept. They are read with ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists and dicts only — no pickled code runs when one is loaded.

Training is deterministic given these (dropout masks are drawn from the seed, the epoch and
the vertex; gradients are summed in a fixed order), which is what makes a resumed run equal
an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lotan.errors import LotanError

if TYPE_CHECKING:
    from lotan.training.trainer import Trainer

__all__ = ["FORMAT", "KEEP", "CheckpointError", "Checkpointer", "fingerprint", "load_latest"]

#: Version of the checkpoint layout; a file with another version is refused.
FORMAT = 1
#: Checkpoints kept in the directory (older ones are deleted after a newer one is written).
KEEP = 2

_NAME = re.compile(r"^epoch-(\d{6,})\.pt$")


class CheckpointError(LotanError):
    """A checkpoint that cannot be used: missing, unreadable, or of another run."""


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-able description."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    out = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def load_latest(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest checkpoint in ``directory`` (None when it has none)."""
    files = _files(Path(directory))
    if not files:
        return None
    path = files[-1][1]
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"could not read checkpoint {path}: {exc}; it was not written by this version of "
            "Lotan, or was changed; delete it to fall back to the previous checkpoint"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a Lotan checkpoint of format {FORMAT} "
            f"(found format {state.get('format') if isinstance(state, dict) else None!r})"
        )
    state["path"] = str(path)
    return state


class Checkpointer:
    """Writes and restores the checkpoints of one training run.

    ``every``: write after every ``every``-th epoch (and always at the end); ``resume``:
    continue from the newest checkpoint in ``directory`` if there is one. Without
    ``resume``, a directory that already holds checkpoints is an error — a second run must
    not mix its checkpoints with the first's.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every: int,
        resume: bool,
        config_hash: str,
        graph_hash: str,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LotanError(f"checkpoint_every must be a positive integer, found {every!r}")
        self.directory = Path(directory)
        self.every = every
        self.config_hash = config_hash
        self.graph_hash = graph_hash
        self.state = load_latest(self.directory) if resume else None
        if not resume and _files(self.directory):
            newest = _files(self.directory)[-1][1]
            raise CheckpointError(
                f"checkpoint_dir {str(self.directory)!r} already holds checkpoints (newest: "
                f"{newest.name}); resume from them (resume=True, `lotan fit --resume`) or "
                "use an empty directory"
            )
        if self.state is not None:
            self._check(self.state)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LotanError(f"cannot create checkpoint_dir {str(directory)!r}: {exc}") from exc

    def _check(self, state: dict[str, Any]) -> None:
        where = state["path"]
        if state["config_hash"] != self.config_hash:
            raise CheckpointError(
                f"{where} was written by a run with other settings (model, optimizer, seed or "
                "early stopping differ); resume with the settings it was written with, or "
                "start a new run in an empty checkpoint_dir"
            )
        if state["graph_hash"] != self.graph_hash:
            raise CheckpointError(
                f"{where} was written while training on another graph; resume on the same "
                "graph, or start a new run in an empty checkpoint_dir"
            )

    @property
    def resumed_epoch(self) -> int:
        """The epoch the run resumes after (0: starts from scratch)."""
        return int(self.state["epoch"]) if self.state is not None else 0

    def restore(self, trainers: Sequence[Trainer]) -> None:
        """Put the checkpoint's state into ``trainers`` (same models, same order)."""
        assert self.state is not None
        saved = self.state["trainers"]
        if len(saved) != len(trainers):
            raise CheckpointError(
                f"{self.state['path']} holds {len(saved)} models, this run trains "
                f"{len(trainers)}; resume with the same models"
            )
        for t, s in zip(trainers, saved, strict=True):
            t.load_state(s)
        torch.set_rng_state(self.state["rng"])

    def due(self, epoch: int, epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == epochs

    def save(
        self,
        epoch: int,
        trainers: Sequence[Trainer] | Sequence[dict[str, Any]],
        *,
        complete: bool = False,
    ) -> Path:
        """Write the checkpoint of ``epoch`` (of ``trainers``, or their states) atomically;
        keep the newest :data:`KEEP`. ``complete``: the run has ended; each state also has
        ``final``, the model's final weights."""
        state = {
            "format": FORMAT,
            "epoch": epoch,
            "complete": complete,
            "config_hash": self.config_hash,
            "graph_hash": self.graph_hash,
            "rng": torch.get_rng_state(),
            "trainers": [t if isinstance(t, dict) else t.state() for t in trainers],
        }
        path = self.directory / f"epoch-{epoch:06d}.pt"
        tmp = self.directory / f".{path.name}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.directory)
        finally:
            if tmp.exists():
                tmp.unlink()
        for _, old in _files(self.directory)[:-KEEP]:
            old.unlink(missing_ok=True)
        return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
