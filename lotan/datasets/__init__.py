"""Datasets: the Planetoid citation graphs and synthetic generators."""

from lotan.datasets.planetoid import data_root, planetoid, read_planetoid_raw
from lotan.datasets.synthetic import sbm

__all__ = ["data_root", "planetoid", "read_planetoid_raw", "sbm"]
