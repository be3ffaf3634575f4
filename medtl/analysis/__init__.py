"""Analyses of published or own results: the studies' tables and medtl's runs in one shape
(:func:`load_results`), metric evaluation, and the figures of the analysis notebooks and
``medtl report``."""

from .benchmark import (
    BENCHMARK_GROUPS,
    BENCHMARK_PUBLISHED,
    benchmark_figures,
    benchmark_groups,
    domain_table,
)
from .figures import (
    ABLATION,
    CAPTIONS,
    PUBLISHED_BEST,
    PUBLISHED_FRIEDMAN_P,
    PUBLISHED_LABEL,
    THREE_METHODS,
    caption,
    caveats,
    correlation_by_layer,
    evaluate_metrics,
    evaluation_realism,
    feature_reuse_figures,
    finetuning_figures,
    finetuning_overview,
    finetuning_summary,
    realism_summary,
    released_ranks_check,
    representation_figures,
    round_table,
    select_min_val_loss,
    selected_runs,
    tidy_scores,
    transferability_figures,
    truncation_figures,
)
from .sources import (
    RANK_TABLES,
    SCENARIO_B_FLIPS,
    STUDIES,
    STUDY_METHODS,
    fetch_published,
    load_ranking,
    load_results,
    medtl_finetuning,
    medtl_scenarios,
    medtl_tables,
    medtl_transferability,
    provenance,
    published_file,
    published_finetuning,
    published_representations,
    published_transferability,
    rank_results,
    record_ranking,
)

__all__ = [
    "BENCHMARK_GROUPS", "BENCHMARK_PUBLISHED", "benchmark_figures", "benchmark_groups", "domain_table",
    "PUBLISHED_BEST", "PUBLISHED_LABEL", "evaluation_realism", "realism_summary",
    "RANK_TABLES", "load_ranking", "rank_results", "record_ranking",
    "ABLATION", "THREE_METHODS", "CAPTIONS", "SCENARIO_B_FLIPS", "caption", "caveats", "selected_runs", "STUDIES", "STUDY_METHODS", "correlation_by_layer", "evaluate_metrics", "released_ranks_check", "PUBLISHED_FRIEDMAN_P",
    "feature_reuse_figures", "fetch_published", "finetuning_figures", "finetuning_overview", "finetuning_summary", "load_results", "medtl_finetuning",
    "medtl_scenarios", "medtl_tables", "medtl_transferability", "provenance", "published_file", "published_finetuning",
    "published_representations", "published_transferability", "representation_figures", "round_table",
    "select_min_val_loss", "tidy_scores", "transferability_figures", "truncation_figures",
]
