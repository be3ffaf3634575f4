"""Transferability estimators beyond the dataset-transferability study's seven: leave-one-out
k-NN accuracy, NCE, TransRate, GBC and the regularised H-score — pure functions on arrays
(float64 inside), one registry row each, same conventions as :mod:`.metrics`."""

from __future__ import annotations

import functools

import numpy as np

from .._linalg import cholesky
from .metrics import check_features, check_probs, class_mean_rows, class_means, gram, pinv_quadratic
from .registry import register_metric


# --- k-NN ----------------------------------------------------------------------------------
def knn_loo(features, labels, k: int = 5, distance: str = "cosine", chunk: int = 1024) -> float:
    """Leave-one-out k-NN accuracy of the target labels in the source's feature space
    (Sorkhei et al. 2025 found this plain score competitive with 23 metrics):

        kNN = (1/N) Σ_i 1[ŷ_i = y_i],  ŷ_i = argmax_c |{j ∈ N_k(i) : y_j = c}|,

    N_k(i) the k nearest other samples (j ≠ i) by ``distance`` — ``"cosine"`` (1 − cosine
    similarity) or ``"l2"`` (Euclidean); among equally distant candidates the lower index is
    taken. A vote tie goes to the tied class whose nearest member in N_k(i) is closest.
    Rows are processed ``chunk`` at a time: O(chunk·N) memory.

    Shapes: features ``N×D``, labels ``N``.
    """
    if distance not in ("cosine", "l2"):
        raise ValueError(f"distance must be 'cosine' or 'l2', got {distance!r}")
    x, y, c = check_features(features, labels)
    n = len(x)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, N−1] = [1, {n - 1}], got {k!r}")
    if distance == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{int((norms == 0).sum())} feature vectors are all zero: cosine distance is undefined "
                             "for them (use distance='l2')")
        x = x / norms
    sq = (x * x).sum(1)
    correct = 0
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        if distance == "cosine":
            dist = 1.0 - x[rows] @ x.T
        else:
            dist = np.sqrt(np.maximum(sq[rows, None] + sq[None, :] - 2 * x[rows] @ x.T, 0.0))
        dist[np.arange(len(rows)), rows] = np.inf
        order = _k_nearest(dist, k)
        votes = np.zeros((len(rows), c))
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), y[order].ravel()), 1.0)
        # tie-break: among the top-voted classes, the one appearing first in distance order
        first = np.full((len(rows), c), k, dtype=np.int64)
        for r in range(k - 1, -1, -1):
            first[np.arange(len(rows)), y[order[:, r]]] = r
        top = votes == votes.max(1, keepdims=True)
        pred = np.where(top, first, k + 1).argmin(1)
        correct += int((pred == y[rows]).sum())
    return correct / n


def _k_nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """The column indices of each row's ``k`` smallest entries of ``dist`` (``R×N``), in
    increasing distance with equal distances by lower index — ``np.argsort(dist,
    kind="stable")[:, :k]`` — from a partial selection (O(N) per row) instead of a full sort:
    every entry up to the row's k-th smallest value is a candidate (more than k only with
    ties at the boundary), and only the candidates are sorted by (row, distance, index)."""
    kth = np.partition(dist, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(dist <= kth[:, None])
    order = np.lexsort((cols, dist[rows, cols], rows))
    starts = np.searchsorted(rows[order], np.arange(len(dist)))
    return cols[order][starts[:, None] + np.arange(k)]


register_metric("knn_cosine", kind="features", label="k-NN (cos)", citation="Sorkhei et al. 2025",
                description="leave-one-out 5-NN accuracy of the target labels with cosine distance")(
    functools.partial(knn_loo, distance="cosine"))
register_metric("knn_l2", kind="features", label="k-NN (L2)", citation="Sorkhei et al. 2025",
                description="leave-one-out 5-NN accuracy of the target labels with Euclidean distance")(
    functools.partial(knn_loo, distance="l2"))


# --- NCE -----------------------------------------------------------------------------------
@register_metric(kind="probs", label="NCE", citation="Tran et al., ICCV 2019",
                 description="negative conditional entropy of the target labels given the source head's predicted class")
def nce(probs, labels) -> float:
    """NCE (Tran, Nguyen & Hassner, ICCV 2019): with z_i = argmax_k probs[i, k] the source
    head's hard prediction (dummy source labels),

        NCE = −H(Y | Z) = Σ_{y,z} P̂(y, z) log P̂(y | z),   P̂ the empirical joint over N images,

    so NCE ≤ 0, and 0 when the source label determines the target label.

    Shapes: probs ``N×K``, labels ``N``.
    """
    p, y, c = check_probs(probs, labels)
    z = p.argmax(1)
    joint = np.zeros((c, p.shape[1]))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / np.where(pz > 0, pz, 1.0))[nz])).sum())


# --- TransRate -----------------------------------------------------------------------------
def coding_rate(z: np.ndarray, eps: float = 1e-4) -> float:
    """R(Z, ε) = ½ log det(I_D + ZᵀZ / (n ε)) for Z ``n×D`` (the TransRate code's form).

    Computed in the smaller of the two spaces — det(I_D + ZᵀZ/a) = det(I_n + ZZᵀ/a)
    (Sylvester's determinant identity), so a class of n < D rows costs an n×n Gram — and
    through a Cholesky factor (:func:`_rate_of_gram`)."""
    n, d = z.shape
    return _rate_of_gram(gram(z.T) if n < d else gram(z), n, eps)  # ZZᵀ (n×n) or ZᵀZ (D×D)


def _rate_of_gram(g: np.ndarray, n: int, eps: float) -> float:
    """½ log det(I + G/(n ε)) of a Gram matrix G (ZᵀZ or ZZᵀ; a float64 array of the
    caller's, overwritten): the matrix is I plus a PSD one (eigenvalues ≥ 1), so
    log det = 2 Σ log diag L of its Cholesky factor L."""
    m = g
    m /= n * eps
    m[np.diag_indices_from(m)] += 1.0
    factor = cholesky(m)
    if factor is None:  # non-finite features: slogdet says what it can
        return 0.5 * float(np.linalg.slogdet(m)[1])
    return float(np.log(np.diagonal(factor)).sum())  # ½ · 2 Σ log diag L


@register_metric(kind="features", label="TransRate", citation="Huang et al., ICML 2022",
                 description="coding rate of the features minus its mean over the classes (mutual information proxy)")
def transrate(features, labels, eps: float = 1e-4) -> float:
    """TransRate (Huang et al., ICML 2022), as its official code computes it: with Z the
    centred features,

        TrR = R(Z, ε) − (1/C) Σ_c R(Z_c, ε),   R(Z, ε) = ½ log det(I + ZᵀZ / (n ε)),

    Z_c the rows of class c (n its row count). The paper writes the rate with d/(n ε²) and
    weights the classes by n_c/n; the code (and so the published numbers) use the form
    above, with ε = 1e-4.

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels, copy=False)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    order = np.argsort(y, kind="stable")
    z = x[order]  # each class a contiguous block (a copy), centred in place
    z -= x.mean(0)
    ends = np.searchsorted(y[order], np.arange(c + 1))
    blocks = [z[ends[k]:ends[k + 1]] for k in range(c)]
    d = z.shape[1]
    class_grams = [gram(b.T) if len(b) < d else gram(b) for b in blocks]
    if len(z) >= d and all(len(b) >= d for b in blocks):
        whole = sum(class_grams)  # ZᵀZ = Σ_c Z_cᵀZ_c: the classes' D×D Grams give the whole one
    else:
        whole = gram(z.T) if len(z) < d else gram(z)
    rates = [_rate_of_gram(g, len(b), eps) for g, b in zip(class_grams, blocks)]
    return _rate_of_gram(whole, len(z), eps) - float(np.mean(rates))


# --- GBC -----------------------------------------------------------------------------------
def _pca_scores(xc: np.ndarray, dim: int) -> np.ndarray:
    """The centred ``xc`` (``N×D``) projected on its top ``dim`` principal axes (each
    axis's sign is arbitrary). For N > D the axes are the top eigenvectors of the D×D Gram
    (LAPACK ``syevr`` computes only those: no N×D SVD); otherwise the thin SVD's."""
    from scipy.linalg import eigh

    n, d = xc.shape
    k = min(dim, n, d)
    if n > d:
        _, v = eigh(gram(xc), subset_by_index=[d - k, d - 1], driver="evr", check_finite=False)
        return xc @ v[:, ::-1]
    return xc @ np.linalg.svd(xc, full_matrices=False)[2][:k].T


@register_metric(kind="features", needs_seed=False, label="GBC", citation="Pándy et al., CVPR 2022",
                 description="minus the summed Bhattacharyya coefficients between per-class diagonal Gaussians")
def gbc(features, labels, dim: int | None = 64) -> float:
    """GBC (Pándy et al., CVPR 2022): fit a Gaussian with diagonal covariance to each
    class's features (PCA-reduced to ``dim`` dimensions when D > ``dim``; population
    variances), then

        GBC = − Σ_{i ≠ j} BC(i, j),   BC = exp(−D_B),
        D_B = ⅛ (μ_i − μ_j)ᵀ Σ⁻¹ (μ_i − μ_j) + ½ ln( det Σ / √(det Σ_i det Σ_j) ),  Σ = (Σ_i + Σ_j)/2,

    over ordered class pairs; 0 is perfectly separated classes. A class needs 2 samples;
    variances get +1e-9 so a constant feature does not divide by zero.

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels)
    counts = np.bincount(y, minlength=c)
    if counts.min() < 2:
        raise ValueError(f"GBC needs at least 2 samples per class; class {int(counts.argmin())} has {int(counts.min())}")
    if dim is not None and x.shape[1] > dim:
        x = _pca_scores(x - x.mean(0), dim)
    mu = class_means(x, y, c)
    var = np.stack([x[y == k].var(0) for k in range(c)]) + 1e-9
    total = 0.0
    for i in range(c):
        s = (var[i] + var) / 2  # C×D: Σ for the pairs (i, j)
        db = (0.125 * ((mu[i] - mu) ** 2 / s).sum(1)
              + 0.5 * (np.log(s).sum(1) - 0.5 * (np.log(var[i]).sum() + np.log(var).sum(1))))
        bc = np.exp(-db)
        total += bc.sum() - bc[i]
    return float(-total)


# --- regularised H-score -------------------------------------------------------------------
def ledoit_wolf_alpha(x: np.ndarray, cov: np.ndarray) -> float:
    """The Ledoit–Wolf optimal shrinkage α of centred ``x`` (``N×D``) towards μI, given its
    population covariance ``cov`` = xᵀx/N — sklearn's ``ledoit_wolf_shrinkage(x,
    assume_centered=True)``, whose D×D product of the squared features is Σ_i ‖x_i‖⁴:

        μ = tr(S)/D,  δ = (‖S‖²_F − 2μ·tr(S) + Dμ²)/D,
        β = min(δ, (Σ_i ‖x_i‖⁴/N − ‖S‖²_F) / (D·N)),  α = β/δ (0 when β = 0).

    Shapes: ``x`` ``N×D`` (column-centred), ``cov`` ``D×D``."""
    n, d = x.shape
    if d == 1:
        return 0.0
    trace = float(np.trace(cov))
    mu = trace / d
    frob2 = float((cov * cov).sum())
    fourth = float((np.einsum("ij,ij->i", x, x) ** 2).sum())  # Σ_i ‖x_i‖⁴, no N×D temporary
    beta = (fourth / n - frob2) / (d * n)
    delta = (frob2 - 2 * mu * trace + d * mu ** 2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


@register_metric(kind="features", label="H-score (reg.)", citation="Ibrahim, Ponomareva & Mazumder, ICLR 2023",
                 description="H-score with a Ledoit–Wolf-shrunk feature covariance")
def hscore_reg(features, labels) -> float:
    """Regularised H-score (Ibrahim et al., "Newer is not always better", ICLR 2023): the
    H-score with the feature covariance shrunk by the Ledoit–Wolf optimal α,

        H_α = tr( ((1 − α) Σ_f + α σ I)⁻¹ (1 − α) Σ_z ),   σ = tr(Σ_f)/D,

    Σ_f the (centred, population) feature covariance, Σ_z the covariance of each sample's
    class mean, α = sklearn's ``ledoit_wolf_shrinkage`` of the centred features
    (:func:`ledoit_wolf_alpha`, from the covariance already formed).

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels, copy=False)
    x = x - x.mean(0)
    cov = gram(x) / len(x)
    alpha = ledoit_wolf_alpha(x, cov)
    d = len(cov)
    reg = (1 - alpha) * cov + alpha * np.trace(cov) / d * np.eye(d)
    # Σ_z = BᵀB, rows b_k = √(n_k/N)·μ_k (x centred): tr(reg⁻¹ (1 − α) BᵀB) = (1 − α) Σ_k b_k reg⁻¹ b_kᵀ
    return (1 - alpha) * pinv_quadratic(reg, class_mean_rows(x, y, c))
