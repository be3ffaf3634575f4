"""Transferability: metrics (pure functions, one registry row each), FU and LP×FU, scoring
sources on a target, and the statistics that judge metrics against fine-tuned ground truth."""

from . import estimators as _estimators  # noqa: F401  (registers its metrics)
from .ensemble import loto_ensemble, rank_average
from .estimators import coding_rate, gbc, hscore_reg, knn_loo, ledoit_wolf_alpha, nce, transrate
from .evaluation import (
    correlate,
    critical_difference,
    flip,
    friedman,
    kendall_w,
    nemenyi,
    noise_ceiling,
    paired_permutation,
    pairs,
    q_alpha,
    ranks,
    self_source_bias,
    subsample_interval,
    tau_ci,
    tau_table,
    tau_w,
)
from .fu import fu, lp_fu, triplet_margin_loss
from .metrics import (
    canonical_rows,
    check_features,
    check_labels,
    check_probs,
    check_targets,
    class_mean_rows,
    expected_empirical_prediction,
    gmm_posteriors,
    gram,
    hscore,
    indistinct,
    leep,
    logme,
    lp,
    minmax,
    ncti,
    ncti_components,
    nleep,
    nleep_from_posteriors,
    parc,
    pinv_quadratic,
    sfda,
)
from .rank import (
    ALL_CANDIDATES,
    RANK_WORDING,
    Ranking,
    load_candidates,
    rank,
)
from .registry import (
    KINDS,
    METRIC_TABLE,
    METRICS,
    Metric,
    metric,
    metric_names,
    metrics,
    register_metric,
)
from .score import SOURCE_GRAMMAR, load_candidate, score, source_probs, training_datasets
from .static import (
    PRETRAIN_SIZES,
    STUDY_ARCHS,
    SourceFacts,
    always_imagenet,
    arch_facts,
    imagenet_top1,
    model_size,
    published_facts,
    source_facts,
    source_size,
    static_scores,
)

__all__ = [
    "ALL_CANDIDATES", "RANK_WORDING", "SOURCE_GRAMMAR", "Ranking", "kendall_w", "subsample_interval", "load_candidate", "load_candidates", "rank",
    "loto_ensemble", "noise_ceiling", "paired_permutation", "rank_average",
    "PRETRAIN_SIZES", "STUDY_ARCHS", "SourceFacts", "always_imagenet", "arch_facts", "imagenet_top1", "model_size",
    "published_facts", "source_facts", "source_size", "static_scores",
    "KINDS", "METRICS", "METRIC_TABLE", "Metric", "canonical_rows", "check_features", "check_targets", "coding_rate", "gbc", "hscore_reg", "knn_loo", "nce", "transrate", "check_labels", "check_probs", "correlate",
    "critical_difference", "expected_empirical_prediction", "flip", "friedman", "fu", "gmm_posteriors", "hscore",
    "leep", "logme", "lp", "lp_fu", "metric", "metric_names", "metrics", "indistinct", "minmax", "gram", "pinv_quadratic", "class_mean_rows", "ledoit_wolf_alpha", "ncti", "ncti_components",
    "nemenyi", "nleep", "nleep_from_posteriors", "pairs", "parc", "q_alpha", "ranks", "register_metric",
    "self_source_bias", "score", "sfda", "source_probs", "tau_ci", "tau_table", "tau_w", "training_datasets", "triplet_margin_loss",
]
