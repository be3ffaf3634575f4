"""Training and evaluation: ``fit`` (one loop: parameter groups, schedules, warm-up, early
stopping, best-checkpoint restore, linear-probe-then-fine-tune, frozen layers kept frozen,
bf16/channels_last on CUDA, fingerprinted crash-safe resume), ``evaluate``, and the studies'
recipes: ``pretrain`` (single source and leave-target-out union), ``lr_grid`` (the
feature-reuse lr finder), ``grid_search`` with presets and seeds, and ``select`` (the
dataset-transferability study's min-val-loss rule)."""

from ..evaluate import LOSSES, loss_fn, scores
from ..features import predict
from ..runtime import batch_settings, config_id
from ._evaluation import (
    MONITORS,
    balanced_class_weights,
    check_compatible,
    evaluate,
    head_loss,
    n_outputs,
)
from ._loop import FitResult, fit
from ._optim import SCHEDULES, make_optimizer, make_schedule, param_groups, warmup
from ._recipes import (
    FINDER_METRICS,
    GRID_PRESETS,
    SELECTION_RULES,
    STUDY_BATCH_SIZES,
    STUDY_GRID,
    grid_preset,
    grid_search,
    inverse_frequency_weights,
    lr_grid,
    pretrain,
    select,
)

__all__ = [
    "FINDER_METRICS", "GRID_PRESETS", "LOSSES", "MONITORS", "SCHEDULES", "STUDY_BATCH_SIZES", "STUDY_GRID",
    "FitResult", "balanced_class_weights", "batch_settings", "check_compatible", "config_id", "evaluate", "fit",
    "grid_preset", "grid_search", "head_loss", "inverse_frequency_weights", "loss_fn", "lr_grid",
    "make_optimizer", "make_schedule", "n_outputs", "param_groups", "predict", "pretrain", "scores", "select",
    "warmup", "SELECTION_RULES",
]
