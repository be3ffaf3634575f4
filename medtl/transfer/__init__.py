"""Transferability: metrics (pure functions), FU and LP×FU, scoring sources on a target,
and the statistics that judge metrics against fine-tuned ground truth."""

from .evaluation import (
    correlate,
    critical_difference,
    flip,
    friedman,
    nemenyi,
    q_alpha,
    ranks,
    self_source_bias,
    tau_table,
)
from .fu import fu, lp_fu, triplet_margin_loss
from .metrics import (
    check_features,
    check_labels,
    check_probs,
    gmm_posteriors,
    hscore,
    leep,
    logme,
    lp,
    minmax,
    ncti,
    ncti_components,
    nleep,
    nleep_from_posteriors,
    parc,
    sfda,
)
from .score import METRICS, score, source_probs

__all__ = [
    "METRICS", "check_features", "check_labels", "check_probs", "correlate", "critical_difference", "flip", "friedman", "fu",
    "gmm_posteriors", "hscore", "leep", "logme", "lp", "lp_fu", "minmax", "ncti", "ncti_components", "nemenyi",
    "nleep", "nleep_from_posteriors", "parc", "q_alpha", "ranks", "self_source_bias", "score", "sfda", "source_probs", "tau_table",
    "triplet_margin_loss",
]
