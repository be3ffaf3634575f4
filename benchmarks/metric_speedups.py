"""Each transferability metric and similarity measure against a straightforward implementation
of its published algorithm, on the same inputs, values compared (issue #23, item 1).

    python benchmarks/metric_speedups.py [--sizes large,wide] [--repeat 2] [--only logme,parc]

Sizes: ``large`` N=5000, D=2048, C=10 and ``wide`` N=50,000, D=768, C=10 (synthetic
ReLU-like features with weak class structure, the second representation for the similarity
measures a noisy linear map of the first). The references below are written here, in
numpy/scipy float64, the way the published algorithms and the authors' code state them —
per-class and per-sample loops where the paper loops, the N×N Gram form where the paper uses
it, covariance whitening as google/svcca does. Each row prints medtl's time, the reference's
time (best of ``--repeat`` runs for both, one run for a reference over 2 s), the ratio
(goal ≥ 5×) and the relative difference of the values (goal ≤ 1e-8). A
reference that cannot run at a size (the N×N Gram form of CKA at N=50,000 needs 20 GB) is
recorded as skipped with the reason. JSON record: benchmarks/out/metric_speedups.json.

Where a row falls short of the goal, its ``floor`` says whether any exact implementation
could meet it: the time of the one operation every exact method shares with the reference
(:func:`floors`: the D×D second moment XᵀX by BLAS ``dsyrk`` for the metrics built on
the feature covariance, one read of the N×K probabilities for LEEP, each row's argmax for
NCE), and ``ceiling`` = reference time / floor time, the largest ratio any implementation
can reach on this machine. A ceiling below 5 means the goal is out of reach for that row,
not merely unmet.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import save_record, timed
from scipy import stats

import medtl.similarity as S
import medtl.transfer as TR

SIZES = {"large": (5000, 2048, 10), "wide": (50_000, 768, 10)}
GOAL_RATIO, GOAL_RTOL = 5.0, 1e-8


def inputs(n: int, d: int, c: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    low = rng.normal(size=(c, 64)) @ rng.normal(size=(64, d)) / 60  # weak class structure in a subspace
    x = np.maximum(low[y] + rng.normal(size=(n, d)), 0)
    logits = x[:, :1000] @ rng.normal(size=(min(d, 1000), 1000)) / np.sqrt(d) if d >= 1000 else \
        x @ rng.normal(size=(d, 1000)) / np.sqrt(d)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    second = x @ rng.normal(size=(d, d // 2)) / np.sqrt(d) + 0.5 * rng.normal(size=(n, d // 2))
    return {"x": x, "y": y, "probs": probs, "second": second}


# --- straightforward references --------------------------------------------------------------
def leep_reference(probs, y):
    """Nguyen et al. 2020, Eq. 1-3 with the paper's sums as loops over samples."""
    n, k = probs.shape
    c = int(y.max()) + 1
    joint = np.zeros((k, c))
    for i in range(n):
        joint[:, y[i]] += probs[i] / n
    cond = joint / joint.sum(1, keepdims=True)  # P(y | z)
    return float(np.mean([np.log(probs[i] @ cond[:, y[i]]) for i in range(n)]))


def logme_reference(x, y, tol=1e-3, max_iter=11):
    """You et al. 2021 (official fixed-point code): SVD of FᵀF once, then per class the
    α/β fixed point with the mean m and the residual formed in sample space."""
    n, d = x.shape
    v, s, _ = np.linalg.svd(x.T @ x)
    evidences = []
    for k in range(int(y.max()) + 1):
        t_k = (y == k).astype(np.float64)
        proj = v.T @ (x.T @ t_k)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            lam = alpha / beta
            gamma = (s / (s + lam)).sum()
            m = v @ (proj / (s + lam))
            m2 = m @ m
            res2 = ((t_k - x @ m) ** 2).sum()
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
                        - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
            if abs(alpha / beta - lam) / lam <= tol:
                break
        evidences.append(evidence)
    return float(np.mean(evidences))


def hscore_reference(x, y):
    """Bao et al. 2019 (the authors' code): covariances with np.cov, class means by loop,
    tr(pinv(cov f) · cov g)."""
    g = np.zeros_like(x)
    for k in np.unique(y):
        g[y == k] = x[y == k].mean(0)
    return float(np.trace(np.linalg.pinv(np.cov(x, rowvar=False, bias=True), rcond=1e-15)
                          @ np.cov(g, rowvar=False, bias=True)))


def hscore_reg_reference(x, y):
    """Ibrahim et al. 2023: the Ledoit–Wolf-shrunk covariance (sklearn's α), class means by
    loop, tr(np.linalg.solve(shrunk cov, (1 − α) cov of the class means))."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    x = x - x.mean(0)
    alpha = float(ledoit_wolf_shrinkage(x, assume_centered=True))
    cov = x.T @ x / len(x)
    reg = (1 - alpha) * cov + alpha * np.trace(cov) / len(cov) * np.eye(len(cov))
    g = np.zeros_like(x)
    for k in np.unique(y):
        g[y == k] = x[y == k].mean(0)
    return float(np.trace(np.linalg.solve(reg, (1 - alpha) * g.T @ g / len(x))))


def parc_reference(x, y, dim=32, seed=1919):
    """Bolya et al. 2021 (the authors' code): PCA to 32 dimensions (z-scored, as medtl's
    definition), 1 − np.corrcoef of the features and of the one-hot labels, Spearman of the
    upper triangles with scipy."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = PCA(n_components=dim, svd_solver="randomized", random_state=seed, iterated_power=1).fit_transform(x)
    z = StandardScaler().fit_transform(z)
    onehot = np.eye(int(y.max()) + 1)[y]
    rdm_f, rdm_y = 1 - np.corrcoef(z), 1 - np.corrcoef(onehot)
    rdm_y = np.where(np.isclose(rdm_y, 0), 0.0, rdm_y.max())  # the exact values medtl uses (ties kept)
    iu = np.triu_indices(len(x), 1)
    return float(100 * stats.spearmanr(rdm_f[iu], rdm_y[iu]).statistic)


def transrate_reference(x, y, eps=1e-4):
    """Huang et al. 2022 (the official code's form): centred features, ½ log det of the
    D×D matrix I + ZᵀZ/(nε) by np.linalg.slogdet for all rows and for each class."""
    def rate(z):
        return 0.5 * np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))[1]

    z = x - x.mean(0)
    return float(rate(z) - np.mean([rate(z[y == k]) for k in np.unique(y)]))


def sfda_reference(x, y):
    """Shao et al. 2022 (the official SFDA.py): per-class covariances by loop, λ = exp(−5·ρ̂)
    by 3 power iterations, the generalised eigenproblem S_b v = λ S_w v by scipy and
    coef = M V Vᵀ; second softmax, ConfMix towards the other classes' mean, refit."""
    from scipy.linalg import eigh

    c, n, d = int(y.max()) + 1, len(x), x.shape[1]
    priors = np.bincount(y, minlength=c) / n

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def fda(z, lam):
        means = np.stack([z[y == k].mean(0) for k in range(c)])
        sw = sum(priors[k] * np.cov(z[y == k], rowvar=False, bias=True) for k in range(c))
        if lam is None:
            v = u = sw.sum(1)
            for _ in range(3):
                u = sw @ v / np.linalg.norm(sw @ v)
                v = sw @ u / np.linalg.norm(sw @ u)
            lam = max(float(np.exp(-5 * (v @ sw @ u))), 1e-10)
        st = np.cov(z, rowvar=False, bias=True)
        st = (1 - lam) * st + lam * np.trace(st) / d * np.eye(d)
        sw = (1 - lam) * sw + lam * np.trace(sw) / d * np.eye(d)
        evals, evecs = eigh(st - sw, sw)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        return softmax(z @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(priors)), lam

    p, lam = fda(x, None)
    p = softmax(p)
    means = np.stack([x[y == k].mean(0) for k in range(c)])
    w = p[np.arange(n), y][:, None]
    p2, _ = fda(w * x + (1 - w) * ((means.sum(0, keepdims=True) - means) / (c - 1))[y], lam)
    return float(p2[np.arange(n), y].mean())


def nce_reference(probs, y):
    """Tran et al. 2019: dummy source labels z = argmax, the joint counted sample by sample,
    −H(Y|Z) as the sum over (y, z) cells."""
    z = probs.argmax(1)
    counts: dict = {}
    for yi, zi in zip(y.tolist(), z.tolist()):
        counts[(yi, zi)] = counts.get((yi, zi), 0) + 1
    n = len(y)
    pz: dict = {}
    for (_, zi), m in counts.items():
        pz[zi] = pz.get(zi, 0) + m / n
    return float(sum(m / n * np.log(m / n / pz[zi]) for (_, zi), m in counts.items()))


def gbc_reference(x, y, dim=64):
    """Pándy et al. 2022: PCA to 64 dimensions, per-class diagonal Gaussians, the
    Bhattacharyya coefficient of every ordered class pair in a double loop."""
    xc = x - x.mean(0)
    z = xc @ np.linalg.svd(xc, full_matrices=False)[2][:dim].T
    classes = np.unique(y)
    mu = {k: z[y == k].mean(0) for k in classes}
    var = {k: z[y == k].var(0) + 1e-9 for k in classes}
    total = 0.0
    for i in classes:
        for j in classes:
            if i != j:
                s = (var[i] + var[j]) / 2
                db = 0.125 * ((mu[i] - mu[j]) ** 2 / s).sum() + 0.5 * (
                    np.log(s).sum() - 0.5 * (np.log(var[i]).sum() + np.log(var[j]).sum()))
                total += np.exp(-db)
    return float(-total)


def knn_reference(x, y, k=5):
    """Leave-one-out k-NN accuracy with cosine distance, one query at a time: distances to
    every other sample, a stable sort, the majority vote (a tie to the tied class met
    first in distance order)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    correct = 0
    for i in range(len(x)):
        dist = 1.0 - xn @ xn[i]
        dist[i] = np.inf
        near = y[np.argsort(dist, kind="stable")[:k]]
        votes = np.bincount(near, minlength=int(y.max()) + 1)
        top = set(np.flatnonzero(votes == votes.max()).tolist())
        correct += int(next(c for c in near if c in top) == y[i])
    return correct / len(x)


def cka_reference(a, b):
    """Kornblith et al. 2019 (their colab): linear Gram matrices, centred with H, HSIC."""
    n = len(a)
    h = np.eye(n) - 1 / n
    k, l_ = h @ (a @ a.T) @ h, h @ (b @ b.T) @ h
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def cca_reference(a, b, epsilon=0.0):
    """google/svcca's cca_core: the joint covariance, Σxx^{-1/2} and Σyy^{-1/2} by eigh,
    singular values of the whitened cross-covariance; the mean canonical correlation."""
    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        keep = w > w.max() * 1e-12
        return (v[:, keep] / np.sqrt(w[keep])) @ v[:, keep].T

    cov = np.cov(np.concatenate([a, b], 1), rowvar=False)
    d1 = a.shape[1]
    sxx, sxy, syy = cov[:d1, :d1], cov[:d1, d1:], cov[d1:, d1:]
    rho = np.linalg.svd(inv_sqrt(sxx + epsilon * np.eye(d1)) @ sxy @ inv_sqrt(syy + epsilon * np.eye(len(syy))),
                        compute_uv=False)
    return float(np.clip(rho, 0, 1)[:min(a.shape[1], b.shape[1])].mean())


def floors(data: dict) -> dict:
    """name → (what every exact implementation must compute, a call that computes only that).

    The second-moment metrics cannot avoid XᵀX (``N·D²``; numpy's ``x.T @ x`` is one
    ``dsyrk``, the fastest float64 route here): H-score and its regularised form invert
    the covariance, LogME needs the spectrum of FᵀF, TransRate its log-determinant, SFDA
    the within-class scatter of the features and of the mixed features (a second N·D²
    product: the mixing weights differ per sample), mean CCA all three blocks XᵀX, YᵀY and XᵀY. LEEP
    reads every probability once; NCE needs every row's argmax."""
    x, probs, second = data["x"], data["probs"], data["second"]
    gram = ("XᵀX (dsyrk)", lambda: x.T @ x)
    return {
        "leep": ("one read of the N×K probabilities", lambda: probs.max()),
        "nce": ("the argmax of every row of the probabilities", lambda: probs.argmax(1)),
        "logme": gram, "hscore": gram, "hscore_reg": gram, "transrate": gram,
        "sfda": ("XᵀX of the features and of the ConfMix-mixed ones (2 dsyrk)", lambda: (x.T @ x, x.T @ x)),
        "mean cca": ("XᵀX, YᵀY and XᵀY", lambda: (x.T @ x, second.T @ second, x.T @ second)),
    }


def pairs(data: dict, n: int) -> dict:
    """name → (medtl call, reference call or a reason it is skipped)."""
    x, y, probs, second = data["x"], data["y"], data["probs"], data["second"]
    gram_gb = 3 * n * n * 8 / 1e9
    return {
        "leep": (lambda: TR.leep(probs, y), lambda: leep_reference(probs, y)),
        "logme": (lambda: TR.logme(x, y), lambda: logme_reference(x, y)),
        "hscore": (lambda: TR.hscore(x, y), lambda: hscore_reference(x, y)),
        "hscore_reg": (lambda: TR.hscore_reg(x, y), lambda: hscore_reg_reference(x, y)),
        "parc": (lambda: TR.parc(x, y), (lambda: parc_reference(x, y)) if n <= 15_000 else
                 "medtl subsamples 15,000 rows above that size; the reference would score other rows"),
        "sfda": (lambda: TR.sfda(x, y), lambda: sfda_reference(x, y)),
        "transrate": (lambda: TR.transrate(x, y), lambda: transrate_reference(x, y)),
        "nce": (lambda: TR.nce(probs, y), lambda: nce_reference(probs, y)),
        "gbc": (lambda: TR.gbc(x, y), lambda: gbc_reference(x, y)),
        "knn (cosine)": (lambda: TR.knn_loo(x, y), (lambda: knn_reference(x, y)) if n <= 15_000 else
                         "one query at a time over 50,000 samples takes hours"),
        "cka (linear)": (lambda: S.cka(x, second), (lambda: cka_reference(x, second)) if gram_gb < 12 else
                         f"the N×N Gram form needs {gram_gb:.0f} GB"),
        "mean cca": (lambda: S.mean_cca(x, second), lambda: cca_reference(x, second)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="large", help="comma-separated: large (N=5000, D=2048), wide (N=50k, D=768)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best counts")
    parser.add_argument("--only", default="", help="comma-separated row names")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    rows = []
    print(f"{'size':>6} {'metric':<14}{'medtl s':>9}{'ref s':>9}{'ratio':>8}{'rel diff':>10}  goal met")
    for size in args.sizes.split(","):
        n, d, c = SIZES[size]
        data = inputs(n, d, c)
        bounds = floors(data)
        for name, (ours, ref) in pairs(data, n).items():
            if only and name not in only:
                continue
            t_ours, v_ours = timed(ours, args.repeat)
            row = {"size": size, "n": n, "d": d, "c": c, "metric": name, "medtl_s": round(t_ours, 4), "value": v_ours}
            if isinstance(ref, str):
                row.update(reference_s=None, ratio=None, rel_diff=None, met=None, skipped=ref)
                print(f"{size:>6} {name:<14}{t_ours:>9.2f}{'—':>9}{'—':>8}{'—':>10}  reference skipped: {ref}")
            else:
                t_ref, v_ref = timed(ref, 1)  # the reference is slow: one run, best of --repeat under 2 s
                if t_ref < 2.0 and args.repeat > 1:
                    t_ref = min(t_ref, timed(ref, args.repeat - 1)[0])
                rel = abs(v_ours - v_ref) / max(abs(v_ref), 1e-300)
                met = bool(t_ref / t_ours >= GOAL_RATIO and rel <= GOAL_RTOL)
                row.update(reference_s=round(t_ref, 4), ratio=round(t_ref / t_ours, 2), rel_diff=float(rel), met=met)
                bound = ""
                if not met and name in bounds:
                    what, op = bounds[name]
                    t_floor = timed(op, args.repeat)[0]
                    row.update(floor=what, floor_s=round(t_floor, 4), ceiling=round(t_ref / t_floor, 2))
                    bound = f"  (floor {what}: {t_floor:.3f} s, ceiling {t_ref / t_floor:.1f}x)"
                print(f"{size:>6} {name:<14}{t_ours:>9.2f}{t_ref:>9.2f}{t_ref / t_ours:>7.1f}x{rel:>10.1e}  {met}{bound}")
            rows.append(row)
    save_record("metric_speedups", results=rows, goal_ratio=GOAL_RATIO, goal_rtol=GOAL_RTOL,
                threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
