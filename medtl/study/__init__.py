"""The studies' protocols as functions, so that experiment notebooks stay thin: data for a
study from any dataset family, the dataset-transferability pipeline (pre-train, score,
fine-tune, ground truth), model-pair representation comparisons, the feature-reuse
RI/WT/ST protocol and truncated transfer sweeps."""

from ._data import RANDOM, data_kind, epoch_lines, fit_progress, set_threads, split, target_fold
from .feature_reuse import feature_reuse
from .representations import compare_models
from .transferability import (
    finetune_sources,
    ground_truth,
    load_sources,
    pretrain_sources,
    score_sources,
    source_name,
)
from .truncation import truncation_sweep

__all__ = [
    "RANDOM", "compare_models", "epoch_lines", "fit_progress", "data_kind", "feature_reuse", "finetune_sources", "ground_truth", "load_sources",
    "pretrain_sources", "score_sources", "set_threads", "source_name", "split", "target_fold", "truncation_sweep",
]
