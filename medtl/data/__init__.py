"""Datasets as in-memory :class:`ImageSet` objects.

MedMNIST 2D files (``load``, verified against ``medmnist.INFO``), the dataset-transferability
study's fold subsets (``folds``), seeded ``subset``s, the leave-target-out union
(``leave_target_out``), user images (``from_folder``, ``from_list``, ``from_csv``), the
synthetic suite (``synthetic``), fast tensor batches (``loader``) — and one entry point for
all of them, ``get(name, split, size)``, backed by the :data:`FAMILIES` registry.
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
from .families import (
    FAMILIES,
    USER_SPLIT,
    Family,
    families_table,
    family_of,
    get,
    register_family,
    related,
    split_whole,
    target_splits,
)
from .families import available as is_available
from .files import (
    CHEXPERT_EVAL,
    CHEXPERT_LABELS,
    UNCERTAIN_POLICIES,
    chexpert_labels,
    decode_images,
    from_chexpert,
    from_csv,
    from_folder,
    from_list,
)
from .imageset import BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL, TASKS, ImageSet, concat
from .loader import NORMALIZE, Loader, loader
from .segset import (
    MASK_PATTERNS,
    SEGMENTATION,
    SYNTHETIC_SEG,
    SegSet,
    from_seg_folder,
    synthetic_seg,
)
from .splits import (
    CVFold,
    Fold,
    anno_subset,
    content_order,
    cv_folds,
    fold_indices,
    folds,
    stratified_order,
    subset,
)
from .synthetic import SYNTHETIC, synthetic, synthetic_info, synthetic_suite
from .union import leave_target_out, union_layout

__all__ = [
    "CHEXPERT_EVAL", "CHEXPERT_LABELS", "UNCERTAIN_POLICIES", "anno_subset", "chexpert_labels", "from_chexpert",
    "MASK_PATTERNS", "SEGMENTATION", "SYNTHETIC_SEG", "SegSet", "from_seg_folder", "synthetic_seg",
    "BINARY", "FAMILIES", "FLAGS", "MULTI_CLASS", "MULTI_LABEL", "NORMALIZE", "ORDINAL", "RECIPES", "SIZES",
    "SPLITS", "SYNTHETIC", "TASKS", "USER_SPLIT", "Augment", "CVFold", "Family", "Fold", "ImageSet", "Loader", "available", "check_flag", "concat", "cv_folds", "decode_images", "download", "families_table", "family_of",
    "fold_indices", "folds", "from_csv", "from_folder", "from_list", "get", "info_table", "is_available",
    "label_names", "leave_target_out", "load", "loader", "n_classes", "register_family", "related",
    "resolve_root", "split_whole", "status", "subset", "synthetic", "synthetic_info", "synthetic_suite",
    "target_splits", "task", "union_layout", "verify", "content_order", "stratified_order",
]
