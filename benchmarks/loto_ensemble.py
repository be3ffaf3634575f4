"""The leave-one-target-out ensemble of transferability metrics on the published tables,
next to the best single metric the dataset-transferability study published.

    python benchmarks/loto_ensemble.py [--n-boot 2000]

For each scenario (A: source datasets, B: architectures) the candidates are the study's
metrics (with its scenario-B sign choices) and the static baselines; the ensemble is the
rank average of the subset of at most ``max_size`` candidates that has the best mean τ_w on
the other targets, judged on the held-out target. Reported: its mean τ_w over the held-out
targets with a bootstrap CI over targets, for max_size 1, 2 (the default) and 3, beside
LP×FU's 0.523 (A) and LEEP's 0.280 (B). Whatever it is, it is printed: picking the best
max_size from this output would be tuning on the held-out targets.
"""

from __future__ import annotations

import argparse
import warnings

from _common import save_record

import medtl.transfer as TR
from medtl import analysis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    records = []
    for scenario, (ref, published) in analysis.PUBLISHED_BEST.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, auc = analysis.load_results("transferability", "published", scenario=scenario)
        table = {**scores, **TR.static_scores(list(auc.index), scenario, list(auc.columns))}
        print(f"\nscenario {scenario}: published best {ref} {published:.3f}")
        for size in (1, 2, 3):
            out = TR.loto_ensemble(table, auc, max_size=size, n_boot=args.n_boot)
            mean = out.set_index("target").loc["MEAN"]
            chosen = out.chosen[out.target != "MEAN"].value_counts().head(2).to_dict()
            print(f"  LOTO ensemble, max_size {size}: mean tau_w {mean.tau_w:.3f} [{mean.low:.3f}, {mean.high:.3f}]"
                  f"  (most chosen: {chosen})")
            records.append({"scenario": scenario, "max_size": size, "tau_w": round(float(mean.tau_w), 4),
                            "low": round(float(mean.low), 4), "high": round(float(mean.high), 4),
                            "published_best": ref, "published_tau_w": published, "chosen": chosen})
    save_record("loto_ensemble", results=records)


if __name__ == "__main__":
    main()
