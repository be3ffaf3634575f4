"""The studies' protocols as functions, so that experiment notebooks stay thin: data for a
study from any dataset family, the dataset-transferability pipeline (pre-train, score,
fine-tune, ground truth), the hidden-representations protocol (14 model pairs, study
CCA), the feature-reuse RI/WT/ST/hybrid protocol and truncated transfer sweeps."""

from ._data import RANDOM, data_kind, epoch_lines, fit_progress, set_threads, split, target_fold
from .architectures import (
    SIGN_PRESETS,
    apply_signs,
    evaluate_architectures,
    finetune_architectures,
    score_architectures,
)
from .benchmark import (
    BENCHMARK_FIT,
    SCRATCH,
    SCRATCH_KIND,
    SEGMENT_FIT,
    benchmark,
    check_inits,
    classify_trials,
    compare_trials,
    init_kinds,
    init_weights,
    seg_splits,
    segment_trials,
    significance,
)
from .faithfulness import (
    PROTOCOL,
    STUDIES,
    ProtocolElement,
    protocol_markdown,
    protocol_table,
    register_element,
)
from .feature_reuse import STUDY_C_FIT, feature_reuse, init_label
from .feature_reuse import target_metric as feature_reuse_target_metric
from .representations import (
    compare_models,
    compare_pairs,
    first_filters,
    ft_key,
    model_pairs,
    representation_study,
    study_augment,
    study_folds,
)
from .transferability import (
    finetune_sources,
    ground_truth,
    load_sources,
    pretrain_sources,
    score_sources,
    source_name,
)
from .truncation import (
    BOUNDARIES,
    LWFT_SETTINGS,
    TTL_RECIPE,
    cut_search,
    lwft_sweep,
    svcca_per_layer,
    truncation_study,
    truncation_sweep,
)

__all__ = [
    "PROTOCOL", "STUDIES", "ProtocolElement", "protocol_markdown", "protocol_table", "register_element",
    "BENCHMARK_FIT", "SCRATCH", "SCRATCH_KIND", "init_kinds", "SEGMENT_FIT", "check_inits", "classify_trials", "compare_trials", "init_weights",
    "segment_trials", "significance", "benchmark", "seg_splits",
    "SIGN_PRESETS", "apply_signs", "evaluate_architectures", "finetune_architectures", "score_architectures",
    "RANDOM", "STUDY_C_FIT", "compare_models", "compare_pairs", "first_filters", "ft_key", "init_label",
    "model_pairs", "representation_study", "study_augment", "study_folds", "epoch_lines", "fit_progress", "data_kind", "feature_reuse", "feature_reuse_target_metric", "finetune_sources", "ground_truth", "load_sources",
    "pretrain_sources", "score_sources", "set_threads", "source_name", "split", "target_fold", "truncation_sweep",
    "BOUNDARIES", "LWFT_SETTINGS", "TTL_RECIPE", "cut_search", "lwft_sweep", "svcca_per_layer", "truncation_study",
]
