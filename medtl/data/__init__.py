"""Datasets as in-memory :class:`ImageSet` objects.

MedMNIST 2D files (``load``, verified against ``medmnist.INFO``), the dataset-transferability
study's fold subsets (``folds``), seeded ``subset``s, the leave-target-out union
(``leave_target_out``), user images (``from_folder``, ``from_list``, ``from_csv``), the
synthetic suite (``synthetic``) and fast tensor batches (``loader``).
"""

from .augment import RECIPES, Augment
from .catalog import (
    FLAGS,
    SIZES,
    SPLITS,
    available,
    check_flag,
    info_table,
    label_names,
    load,
    n_classes,
    resolve_root,
    status,
    task,
)
from .catalog import download_file as download
from .catalog import verify_file as verify
from .files import decode_images, from_csv, from_folder, from_list
from .imageset import BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL, TASKS, ImageSet, concat
from .loader import NORMALIZE, Loader, loader
from .splits import Fold, fold_indices, folds, subset
from .synthetic import SYNTHETIC, related, synthetic, synthetic_info, synthetic_suite
from .union import leave_target_out, union_layout

__all__ = [
    "BINARY", "FLAGS", "MULTI_CLASS", "MULTI_LABEL", "NORMALIZE", "ORDINAL", "RECIPES", "SIZES",
    "SPLITS", "SYNTHETIC", "TASKS", "Augment", "Fold", "ImageSet", "Loader", "available",
    "check_flag", "concat", "decode_images", "download", "fold_indices", "folds", "from_csv",
    "from_folder", "from_list", "info_table", "label_names", "leave_target_out", "load",
    "loader", "n_classes", "related", "resolve_root", "status", "subset", "synthetic",
    "synthetic_info", "synthetic_suite", "task", "union_layout", "verify",
]
