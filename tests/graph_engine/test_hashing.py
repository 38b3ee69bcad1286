from __future__ import annotations

import numpy as np

from lotan.graph_engine.hashing import murmur3_int, owner_of, route_keys, xxhash64


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


def test_matches_spark_murmur3_and_routes_each_key_to_its_own_partition(spark) -> None:
    from pyspark.sql import functions as F

    rng = np.random.default_rng(1)
    vals = np.concatenate([np.arange(-3, 50), rng.integers(-(2**31), 2**31 - 1, 200)])
    df = spark.createDataFrame([(int(v),) for v in vals], "v int")
    got = {r["v"]: r["h"] for r in df.select("v", F.hash("v").alias("h")).collect()}
    assert murmur3_int(vals).tolist() == [got[int(v)] for v in vals]
    for parts in (1, 2, 4, 7):
        keys = route_keys(parts)
        routed = (
            spark.createDataFrame([(int(k),) for k in keys], "k int")
            .repartition(parts, "k")
            .select("k", F.spark_partition_id().alias("sp"))
            .collect()
        )
        assert sorted(r["sp"] for r in routed) == list(range(parts))
        assert all(r["sp"] == keys.tolist().index(r["k"]) for r in routed)
