"""Datasets: the Planetoid citation graphs, OGB node property prediction, synthetic graphs."""

from lotan.datasets.ogb import OGB_DATASETS, ogb
from lotan.datasets.planetoid import data_root, planetoid, read_planetoid_raw
from lotan.datasets.synthetic import sbm

__all__ = ["OGB_DATASETS", "data_root", "ogb", "planetoid", "read_planetoid_raw", "sbm"]
