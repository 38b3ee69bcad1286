from __future__ import annotations

import numpy as np

from lotan.graph_engine.hashing import owner_of, xxhash64


def test_matches_spark_xxhash64_and_pmod(spark) -> None:
    from pyspark.sql import functions as F

    rng = np.random.default_rng(0)
    ids = np.concatenate(
        [np.arange(-3, 50), rng.integers(-(2**62), 2**62, 200), [2**63 - 1, -(2**63)]]
    ).astype(np.int64)
    df = spark.createDataFrame([(int(i),) for i in ids], "id long")
    rows = df.select(
        "id", F.xxhash64("id").alias("h"), F.pmod(F.xxhash64("id"), F.lit(7)).alias("p")
    ).collect()
    by_id = {r["id"]: (r["h"], r["p"]) for r in rows}
    assert xxhash64(ids).tolist() == [by_id[int(i)][0] for i in ids]
    assert owner_of(ids, 7).tolist() == [by_id[int(i)][1] for i in ids]
