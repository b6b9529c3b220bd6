"""Benchmark loaders and the shared query record."""

from pseudo.data.paths import find_data_root
from pseudo.data.records import Prediction, Query
from pseudo.data.registry import DATASETS, DatasetSpec, get_dataset, load_dataset, register_dataset

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Prediction",
    "Query",
    "find_data_root",
    "get_dataset",
    "load_dataset",
    "register_dataset",
]
