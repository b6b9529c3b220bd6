"""Benchmark loaders, feature stores, caption tracks and prediction files."""

from pseudo.data.paths import find_data_root
from pseudo.data.registry import DATASETS, DatasetSpec, get_dataset, load_dataset, register_dataset

__all__ = ["DATASETS", "DatasetSpec", "find_data_root", "get_dataset", "load_dataset", "register_dataset"]
