"""Datasets by name, as in-memory [0, 1] image tensors; seeded stratified subsets; contrastive views."""
from .sets import (DATASETS, DatasetInfo, ImageSet, check_classes, dataset_info, load_dataset, resolve_data_root,
                   stratified_subset, view_info)
from .batches import epoch_batches

__all__ = ["DATASETS", "DatasetInfo", "ImageSet", "dataset_info", "load_dataset", "resolve_data_root",
           "stratified_subset", "epoch_batches", "check_classes", "view_info"]
