"""Representation similarity: CKA (linear/RBF, debiased, minibatch, the feature-reuse
study's batch-averaged form), CCA/SVCCA/PWCCA and the hidden-representations study's CCA
protocol,
permutation baselines, prediction similarity, filter similarity, per-layer weight
distances, k-NN probes, layer importance and layer-by-layer comparisons under any measure
of the :data:`MEASURES` table; the Fréchet distance (FID) between image sets."""

from .domain import dataset_fid, frechet_distance, frechet_gaussian
from .measures import (
    MEASURES,
    Measure,
    as_datapoints,
    cca,
    cca_google,
    center_gram,
    cka,
    cka_gram,
    compare,
    get_measure,
    gram_linear,
    gram_rbf,
    hsic_unbiased,
    mean_cca,
    measures,
    minibatch_cka,
    permutation_test,
    pwcca,
    register_measure,
    svcca,
    svcca_core,
    svd_reduce,
)
from .predictions import hard_predictions, prediction_similarity
from .probes import (
    cka_matrix,
    gain_ratios,
    knn_eval,
    knn_scores,
    layer_importance,
    layerwise,
    layerwise_cka,
    layerwise_knn,
)
from .protocols import (
    STUDY_CCA,
    STUDY_CKA_BATCH,
    cca_plan,
    cca_study,
    cka_study,
    cka_study_matrix,
    layerwise_cca_study,
    summarise_repeats,
)
from .weights import filter_grid, filter_similarity, l2_distance

__all__ = [
    "MEASURES", "Measure", "STUDY_CCA", "STUDY_CKA_BATCH", "as_datapoints", "cca", "cca_google", "cca_plan",
    "cca_study", "cka_study", "cka_study_matrix", "layerwise_cca_study", "summarise_repeats", "center_gram", "cka", "cka_gram", "cka_matrix",
    "compare", "dataset_fid", "filter_grid", "frechet_distance", "frechet_gaussian", "filter_similarity", "gain_ratios", "get_measure", "gram_linear", "gram_rbf",
    "hard_predictions", "hsic_unbiased", "knn_eval", "knn_scores", "l2_distance", "layer_importance", "layerwise",
    "layerwise_cka", "layerwise_knn", "mean_cca", "measures", "minibatch_cka", "permutation_test",
    "prediction_similarity", "pwcca", "register_measure", "svcca", "svcca_core", "svd_reduce",
]
