"""Transferability metrics as pure functions on arrays (float64 inside).

Inputs: ``features`` ``N×D`` (penultimate activations of a source model on the target's
training images), ``labels`` ``N`` integers in ``0..C-1``, ``probs`` ``N×K`` rows summing
to 1 (a source head's class probabilities). Every metric returns a float, higher =
predicted better transfer. ``variant="study"`` reproduces the dataset-transferability
study's deviations (Juodelyte et al., arXiv 2412.20172; spec §3) where it has any.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._linalg import cholesky, conditioned_cholesky, gram, sorted_parallel
from ..data.splits import projection_key
from .registry import register_metric

VARIANTS = ("official", "study")


# --- validation ----------------------------------------------------------------------------
def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__} ({err})") from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    return arr


def check_labels(labels, n: int | None = None, min_per_class: int = 1) -> tuple[np.ndarray, int]:
    """Validate integer class labels ``0..C-1`` (every class present, at least 2 classes);
    returns ``(labels int64, C)``."""
    y = _as_array(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"labels has {len(y)} entries but the features/probabilities have {n} rows")
    if y.size == 0:
        raise ValueError("labels is empty")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("labels must be integers 0..C-1")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"labels must be integers 0..C-1, found {y.min()}")
    c = int(y.max()) + 1
    counts = np.bincount(y, minlength=c)
    if c < 2:
        raise ValueError("labels hold a single class; transferability needs at least 2 classes")
    absent = np.flatnonzero(counts == 0)
    if absent.size:
        raise ValueError(f"labels must be 0..C-1 with every class present; classes {absent.tolist()} have no sample "
                         "(re-index the labels)")
    if counts.min() < min_per_class:
        raise ValueError(f"every class needs at least {min_per_class} samples; class {int(counts.argmin())} has "
                         f"{int(counts.min())}")
    return y, c


def _finite_and_varying(x: np.ndarray) -> bool:
    """Raise a ``ValueError`` where the ``N×D`` array ``x`` holds NaN or ±inf; return whether
    any column takes two values. Two passes over ``x`` (the column maxima and minima: NaN
    propagates through both, ±inf shows in one) and no ``N×D`` temporary."""
    if x.size == 0:
        return False
    hi, lo = x.max(0), x.min(0)
    if not (np.isfinite(hi).all() and np.isfinite(lo).all()):
        raise ValueError(f"features contain NaN or inf ({int((~np.isfinite(x)).any(1).sum())} of {len(x)} rows)")
    return bool((hi != lo).any())


def check_features(features, labels, min_n_per_class: bool = True,
                   copy: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate ``features`` ``N×D`` (finite, not constant) against ``labels``; N must exceed
    C. Returns ``(features float64, labels int64, C)``: the features are a copy the caller
    may write into, or with ``copy=False`` the input itself where it is already a float64
    array (for callers that only read it: no N×D copy)."""
    x = _as_array(features, "features")
    if x.ndim != 2:
        raise ValueError(f"features must be N×D, got shape {x.shape}")
    varies = _finite_and_varying(x)
    y, c = check_labels(labels, len(x))
    if min_n_per_class and len(x) <= c:
        raise ValueError(f"N={len(x)} samples must exceed the number of classes C={c}")
    if not varies:
        raise ValueError("features are constant (every image gives the same feature vector): no metric can rank "
                         "them; is the model's penultimate layer dead or the input blank?")
    return (x.astype(np.float64) if copy else np.asarray(x, dtype=np.float64)), y, c


def check_probs(probs, labels, atol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, int]:
    p = np.asarray(_as_array(probs, "probs"), dtype=np.float64)  # no copy of float64 input (never written)
    if p.ndim != 2:
        raise ValueError(f"probs must be N×K, got shape {p.shape}")
    sums = p.sum(1)  # one pass: a NaN or ±inf entry makes its row's sum non-finite
    if not np.all(np.isfinite(sums)) and not np.all(np.isfinite(p)):
        raise ValueError("probs contain NaN or inf")
    if p.size and p.min() < 0 or not np.allclose(sums, 1.0, atol=atol):
        worst = float(np.abs(sums - 1).max())
        raise ValueError(f"probs rows must be non-negative and sum to 1 (worst row is off by {worst:.3g}); "
                         "pass softmax probabilities, not logits")
    y, c = check_labels(labels, len(p))
    if len(p) <= c:
        raise ValueError(f"N={len(p)} samples must exceed the number of classes C={c}")
    return p, y, c


def canonical_rows(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """A permutation of the rows of ``x`` (``N×D``) fixed by their values: sorted by
    :func:`medtl.data.splits.projection_key`, ties (identical rows) by ``y``. Seeded fits that visit samples
    in order (k-means++ seeding, NCA's start, seeded subsets) run on ``x[perm]``, so their
    result does not depend on the order the samples came in: any permutation of the input
    gives the same sequence of rows."""
    key = projection_key(x)
    return np.lexsort((key,) if y is None else (y, key))


def _variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def one_hot(y: np.ndarray, c: int) -> np.ndarray:
    """``N×C`` float indicator rows of class indices ``y`` in ``0..C-1``."""
    return np.eye(c)[y]


def class_means(x: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """``C×D``: row k the mean of class k's rows of ``x`` (``N×D``; labels ``0..C-1``)."""
    return np.stack([x[y == k].mean(0) for k in range(c)])


def class_mean_rows(x: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """``B`` (``C×D``) with rows b_k = √(n_k/N)·μ_k, μ_k the mean of class k's rows of ``x``:
    BᵀB = (1/N) Σ_i μ_{y_i} μ_{y_i}ᵀ, the covariance of each sample's class mean when ``x``
    is column-centred (rank ≤ C, so H-scores need C quadratic forms, not a D×D product)."""
    counts = np.bincount(y, minlength=c)
    return class_means(x, y, c) * np.sqrt(counts / len(x))[:, None]


def pinv_quadratic(a: np.ndarray, b: np.ndarray, rcond: float = 1e-15) -> float:
    """Σ_k b_k A⁺ b_kᵀ = tr(A⁺ BᵀB) for a symmetric PSD ``A`` (``D×D``) and ``B`` (``K×D``),
    A⁺ the pseudo-inverse of ``numpy.linalg.pinv(A, rcond, hermitian=True)`` (eigenvalues
    below ``rcond`` · the largest dropped).

    Zero rows/columns of A (dead features; zero diagonal of a PSD matrix) are dropped, which
    is exact for A⁺. The rest is scaled to unit diagonal (b·A⁻¹·bᵀ is invariant to that), and
    if the scaled matrix is well-conditioned (LAPACK's reciprocal condition estimate
    ``dpocon`` above 1e-7) the form is solved through its Cholesky factor (D³/3 flops; A⁺ =
    A⁻¹ there, relative error ≲ cond·ε ≈ 2e-9 — features on very different scales lose no
    accuracy, where an eigendecomposition of A loses digits to the scale spread). Otherwise
    (N ≤ D, collinear features) through the eigendecomposition, exactly as ``pinv`` does."""
    from scipy.linalg import cho_solve, eigh

    a = np.asarray(a, dtype=np.float64)
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    live = np.diag(a) > 0
    if not live.any():
        return 0.0
    chol = conditioned_cholesky(a if live.all() else a[np.ix_(live, live)])
    if chol is not None:
        u, s = chol
        b_eq = (b if live.all() else b[:, live]) * s
        return float((b_eq.T * cho_solve((u, False), b_eq.T, check_finite=False)).sum())
    w, v = eigh(a, check_finite=False)
    keep = np.abs(w) > rcond * np.abs(w).max()
    p = v[:, keep].T @ b.T
    return float(((p ** 2).sum(1) / w[keep]).sum())


# --- LEEP ----------------------------------------------------------------------------------
def expected_empirical_prediction(p: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """LEEP's core: with θ_i = p[i] over K pseudo source classes z, the joint
    P̂(y, z) = (1/N) Σ_{i: y_i=y} θ_i(z), the conditional P̂(y|z) = P̂(y, z) / Σ_y' P̂(y', z)
    (0 where that is 0), and each image's expected empirical prediction of its own label,
    Σ_z P̂(y_i|z) θ_i(z) (``N``)."""
    joint = one_hot(y, c).T @ p / len(p)  # C×K
    marginal = joint.sum(0, keepdims=True)
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    return (p @ cond.T)[np.arange(len(p)), y]  # one BLAS pass over p, not an N×K gather


@register_metric(kind="probs", label="LEEP", citation="Nguyen et al., ICML 2020",
                 description="log expected empirical prediction of the target labels from the source head's class probabilities")
def leep(probs, labels) -> float:
    """LEEP (Nguyen et al., ICML 2020).

    With θ_i = probs[i] over the K source classes z (:func:`expected_empirical_prediction`),

        LEEP = (1/N) Σ_i log Σ_z P̂(y_i|z) θ_i(z)   (≤ 0).

    Args:
        probs: ``N×K`` source-head probabilities (rows sum to 1).
        labels: ``N`` target labels ``0..C-1``.
    """
    p, y, c = check_probs(probs, labels)
    return float(np.mean(np.log(expected_empirical_prediction(p, y, c))))


# --- N-LEEP --------------------------------------------------------------------------------
def nleep_from_posteriors(posteriors, labels, log: bool = True) -> float:
    """N-LEEP given mixture posteriors p(z|x_i) (``N×K``): LEEP's expected empirical
    prediction with the mixture components as pseudo source classes.
    ``log=False`` returns the study's (1/N) Σ_i p(y_i|x_i) instead of the mean log."""
    p, y, c = check_probs(posteriors, labels)
    eep = expected_empirical_prediction(p, y, c)
    return float(np.mean(np.log(eep)) if log else np.mean(eep))


def gmm_posteriors(features, n_components: int, variance: float = 0.8, seed: int | None = 0,
                   pca_seed: int = 42) -> np.ndarray:
    """PCA keeping ``variance`` of the variance, then a full-covariance Gaussian mixture with
    ``n_components`` components (k-means init, seeded); returns p(z|x) ``N×K``. The fit runs
    on the rows in :func:`canonical_rows` order (k-means++ seeding picks samples by index),
    so the posteriors do not depend on the input's row order."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    x = _as_array(features, "features").astype(np.float64)
    perm = canonical_rows(x)
    x = x[perm]
    z = PCA(n_components=variance, random_state=pca_seed, svd_solver="full").fit_transform(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", category=ConvergenceWarning)
        gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed).fit(z)
    post = np.empty((len(z), n_components))
    post[perm] = gmm.predict_proba(z)
    return post


@register_metric(kind="features", needs_seed=True, variants=VARIANTS, label="N-LEEP", citation="Li et al., CVPR 2021",
                 description="LEEP with a Gaussian mixture on PCA-reduced features in place of the source head")
def nleep(features, labels, component_ratio: int = 5, variance: float = 0.8, seed: int | None = 0,
          variant: str = "official") -> float:
    """N-LEEP (Li et al., CVPR 2021): PCA to ``variance`` (80 %) of the variance, a Gaussian
    mixture of K = ``component_ratio``·C components, then LEEP with p(z|x) in place of the
    source head:

        N-LEEP = (1/N) Σ_i log Σ_z P̂(y_i|z) p(z|x_i).

    ``seed`` fixes the mixture (the study left it unseeded). ``variant="study"`` drops the
    log, as the study's code did: (1/N) Σ_i p(y_i|x_i).

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels)
    post = gmm_posteriors(x, component_ratio * c, variance, seed)
    return nleep_from_posteriors(post, y, log=_variant(variant) == "official")


# --- LogME ---------------------------------------------------------------------------------
def logme_evidence(sigma: np.ndarray, x2: np.ndarray, res_x2: float, n: int, d: int, max_iter: int = 11,
                   tol: float = 1e-3) -> tuple[float, float, float, int]:
    """Fixed-point maximisation of one target column's evidence (You et al., ICML 2021;
    the official code's evaluation point). Returns (evidence / N, α, β, iterations)."""
    alpha, beta = 1.0, 1.0
    evidence = -np.inf
    for it in range(1, max_iter + 1):  # noqa: B007 (it is returned)
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
        if abs(alpha / beta - t) / t <= tol:
            break
    return float(evidence), float(alpha), float(beta), it


def check_targets(features, targets) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``features`` ``N×D`` (finite, not constant) and real-valued regression
    ``targets`` (``N`` or ``N×K``: multi-hot labels, ordinal grades, any real value);
    returns ``(features float64, targets float64 N×K)``, the features not copied where they
    are float64 already (LogME only reads them)."""
    x = _as_array(features, "features")
    if x.ndim != 2:
        raise ValueError(f"features must be N×D, got shape {x.shape}")
    varies = _finite_and_varying(x)
    t = _as_array(targets, "labels").astype(np.float64)
    t = t[:, None] if t.ndim == 1 else t
    if t.ndim != 2 or len(t) != len(x):
        raise ValueError(f"regression targets must be N or N×K with N={len(x)} rows, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("regression targets contain NaN or inf (unknown labels must be dropped or imputed first)")
    if len(x) < 2 or not varies:
        raise ValueError("features are constant or fewer than 2 samples: LogME's evidence is undefined")
    return np.asarray(x, dtype=np.float64), t


@register_metric(kind="features", label="LogME", citation="You et al., ICML 2021", labels=("single", "multilabel"),
                 description="maximised log evidence of Bayesian linear regression from features to labels")
def logme(features, labels, max_iter: int = 11, mode: str = "auto") -> float:
    """LogME (You et al., ICML 2021), the fixed-point version: for each target column k,
    the maximised log marginal evidence of Bayesian linear regression of y_k on the features,

        L(α, β) = D/2 log α + N/2 log β − ½ log|αI + βFᵀF| − β/2 ‖y − Fm‖² − α/2 ‖m‖² − N/2 log 2π,

    divided by N, averaged over the columns. α, β follow the fixed-point updates, at most
    ``max_iter`` (11, as the official code) iterations.

    Modes: ``"classification"`` — labels are class indices ``N`` and the columns are the
    indicators 1[y = c]; ``"regression"`` — labels are real targets ``N`` (an ordinal grade
    as a number) or ``N×K`` (multi-hot multi-label targets, one regression per label), as
    the official code's regression mode; ``"auto"`` — regression for 2-D labels, else
    classification. Regression on one-hot labels equals classification.

    Shapes: features ``N×D``, labels ``N`` or ``N×K``.
    """
    if mode not in ("auto", "classification", "regression"):
        raise ValueError(f"mode must be 'auto', 'classification' or 'regression', got {mode!r}")
    lab = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    regression = mode == "regression" or (mode == "auto" and lab.ndim == 2 and lab.shape[1] > 1)
    if regression:
        f, targets = check_targets(features, lab)
    else:
        f, y, c = check_features(features, lab, copy=False)  # read, never written
        targets = one_hot(y, c)
    n, d = f.shape
    if n > d:  # FᵀF = V Σ Vᵀ; the projections uᵀy = Σ^{-1/2} Vᵀ(Fᵀy) never form U (N×D)
        sigma, v = np.linalg.eigh(gram(f))
        keep = sigma > 1e-10
        sigma, v = sigma[keep], v[:, keep]
        x = (v.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        keep = s > 1e-10
        u, sigma = u[:, keep], s[keep] ** 2
        x = u.T @ targets  # k×K
    evidences = []
    for k in range(targets.shape[1]):
        x2 = x[:, k] ** 2
        res_x2 = float(targets[:, k] @ targets[:, k] - x2.sum())
        evidences.append(logme_evidence(sigma, x2, res_x2, n, d, max_iter)[0])
    return float(np.mean(evidences))


# --- PARC ----------------------------------------------------------------------------------
@register_metric(kind="features", label="PARC", citation="Bolya et al., NeurIPS 2021",
                 description="Spearman correlation of the feature and label dissimilarity matrices (× 100)")
def parc(features, labels, dim: int = 32, max_samples: int = 15000, seed: int = 1919) -> float:
    """PARC (Bolya et al., NeurIPS 2021): the Spearman correlation between the feature and
    label representational dissimilarity matrices,

        PARC = 100 · ρ_S(triu(1 − corr(F̂)), triu(1 − corr(Ŷ))),

    with F̂ the features PCA-reduced to ``dim`` (32) dimensions and z-scored, Ŷ the one-hot
    labels (so 1 − corr(Ŷ) is 0 within a class and C/(C−1) across, computed exactly),
    corr the N×N Pearson correlation between samples, triu the strict upper triangle. Above
    ``max_samples`` a seeded subset is used (features and labels with the same indices; the
    study's code mixed them up), drawn from the rows in :func:`canonical_rows` order so that
    it does not depend on the input's order.

    Shapes: features ``N×D``, labels ``N``.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, y, c = check_features(features, labels)
    if len(x) > max_samples:
        perm = canonical_rows(x, y)
        x, y = x[perm], y[perm]
        idx = np.random.default_rng(seed).choice(len(x), max_samples, replace=False)
        x, y = x[idx], y[idx]
    k = min(dim, len(x), x.shape[1])
    z = PCA(n_components=k, svd_solver="randomized", random_state=seed, iterated_power=1).fit_transform(x)
    z = StandardScaler().fit_transform(z)
    rdm_f, across = _upper_triangle_rdms(z, y)
    return 100 * spearman_two_level(rdm_f, across)


def _upper_triangle_rdms(z: np.ndarray, y: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The strict upper triangles, row by row, of the feature RDM 1 − corr(z) (N×N Pearson
    correlation between rows) and of ``y_i ≠ y_j`` (1 − corr of one-hot rows is exactly
    two-valued: 0 within a class, C/(C−1) across), without forming either N×N matrix:
    ``block`` rows of the covariance at a time, scaled and clipped in the steps of
    ``np.corrcoef`` (its diagonal from the same products), so that the values equal
    ``(1 − np.corrcoef(z))[np.triu_indices(N, 1)]``, exact ties between duplicated samples
    included; a row with zero variance gives NaN as corrcoef does."""
    n = len(z)
    zc = z - z.mean(axis=1, keepdims=True)

    def cov_rows(i0):
        return np.dot(zc[i0:i0 + block], zc.T) * np.true_divide(1, z.shape[1] - 1)

    starts = range(0, n, block)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.concatenate([cov_rows(i0)[:, i0:i0 + block].diagonal() for i0 in starts]))
        values, high = np.empty(n * (n - 1) // 2), np.empty(n * (n - 1) // 2, dtype=bool)
        pos = 0
        for i0 in starts:
            corr = cov_rows(i0)
            corr /= std[i0:i0 + block, None]
            corr /= std[None, :]
            np.clip(corr, -1, 1, out=corr)
            for r, row in enumerate(corr):
                i, k = i0 + r, n - i0 - r - 1
                np.subtract(1.0, row[i + 1:], out=values[pos:pos + k])
                np.not_equal(y[i + 1:], y[i], out=high[pos:pos + k])
                pos += k
    return values, high


def spearman_two_level(values: np.ndarray, high: np.ndarray) -> float:
    """Spearman's ρ between ``values`` and a variable that takes two values, the larger
    where ``high`` is True — equal to ``scipy.stats.spearmanr`` (average ranks for ties),
    from one sort (on several cores for large M, :func:`medtl._linalg.sorted_parallel`)
    instead of two rankings. The second variable's average ranks are an
    increasing affine function of ``high``, so ρ is the Pearson correlation of the ranks r
    of ``values`` with the indicator b (the point-biserial form of Mann–Whitney's U):

        ρ = ((M + 1)·M₀ − 2·R₀) / (2M) / √(var r · p₀ p₁),
        var r = (M² − 1)/12 − Σ_ties (t³ − t)/(12M),

    with M values, M₀ of them low (R₀ their rank sum, exact in integers), p₀ = M₀/M,
    p₁ = 1 − p₀. NaN (as scipy) when either variable is constant.

    Shapes: ``values`` ``M``, ``high`` ``M`` booleans.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    high = np.asarray(high, dtype=bool).ravel()
    if values.shape != high.shape:
        raise ValueError(f"values and high must have the same length, got {values.shape} and {high.shape}")
    m, m0 = len(values), int(np.count_nonzero(~high))
    ordered = sorted_parallel(values)
    low = sorted_parallel(values[~high])
    # average rank of each low value: (#below + #below-or-equal + 1) / 2, summed as integers
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # np.searchsorted releases the GIL: both sides at once
        twice_r0 = sum(pool.map(lambda side: int(np.searchsorted(ordered, low, side).sum()), ("left", "right"))) + m0
    var_r = (m * m - 1) / 12 - _tie_sum(ordered) / (12 * m)
    p0 = m0 / m
    if m0 in (0, m) or var_r <= 0:
        return float("nan")
    return float(((m + 1) * m0 - twice_r0) / (2 * m) / np.sqrt(var_r * p0 * (1 - p0)))


def _tie_sum(ordered: np.ndarray) -> float:
    """Σ (t³ − t) over the runs of t ≥ 2 equal values of a sorted array (NaN never equal),
    from the positions where a value equals its predecessor (few, usually none)."""
    pos = np.flatnonzero(ordered[1:] == ordered[:-1])
    if pos.size == 0:
        return 0.0
    last = np.flatnonzero(np.r_[np.diff(pos) != 1, True])  # the last position of each run
    t = np.diff(np.r_[-1, last]).astype(np.float64) + 1  # a run of k equal neighbours is k + 1 values
    return float((t**3 - t).sum())


# --- H-score -------------------------------------------------------------------------------
@register_metric(kind="features", label="H-score", citation="Bao et al., ICIP 2019",
                 description="class-mean variance relative to the feature covariance, tr(cov(f)⁻¹ cov(E[f|y]))")
def hscore(features, labels, shrinkage: float | None = None) -> float:
    """H-score (Bao et al., ICIP 2019):

        H = tr(cov(f)⁻¹ · cov(E[f | y])),

    cov(f) the feature covariance (pseudo-inverse; optionally Ledoit–Wolf-style shrinkage
    towards (tr/D)·I by ``shrinkage`` in [0, 1], Ibrahim et al. 2022) and E[f|y] each
    sample's class mean.

    Without shrinkage H is degenerate when the centred features have rank N − 1 (generic
    when N ≤ D): every source then scores exactly C − 1, so a warning says so and points to
    ``hscore_reg``.

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels, copy=False)
    x = x - x.mean(0)
    cov = gram(x) / len(x)
    if shrinkage is None and len(x) <= x.shape[1]:
        warnings.warn(f"H-score on N={len(x)} samples of D={x.shape[1]} features (N <= D) is C - 1 = {c - 1} for "
                      "any features that span the samples: it cannot rank sources; use hscore_reg (shrinkage) or "
                      "more samples", RuntimeWarning, stacklevel=2)
    if shrinkage is not None:
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    return pinv_quadratic(cov, class_mean_rows(x, y, c))  # tr(cov⁺ BᵀB) = Σ_k b_k cov⁺ b_kᵀ


# --- LP ------------------------------------------------------------------------------------
@register_metric(kind="features", label="LP", citation="Juodelyte et al., arXiv 2412.20172",
                 description="feature quality: 5-NN accuracy of the features after a 50-d NCA projection")
def lp(features, labels, n_components: int = 50, k: int = 5, seed: int = 42, max_iter: int = 50) -> float:
    """LP, the forward half of LP×FU (Juodelyte et al., arXiv 2412.20172; spec §2.1):
    Neighbourhood Components Analysis to ``n_components`` (50) dimensions fitted on all N
    samples, then a k-NN classifier (k = 5, uniform, Euclidean) fitted and queried on the
    same embedded samples (resubstitution):

        LP = (1/N) Σ_i |{j ∈ N_k(z_i) : y_j = y_i}| / k,   z = A x,

    so LP ∈ [1/k, 1] and is a multiple of 1/(kN).

    Shapes: features ``N×D``, labels ``N``.
    """
    from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis

    x, y, c = check_features(features, labels)
    if len(x) < k:
        raise ValueError(f"LP needs at least k={k} samples, got {len(x)}")
    perm = canonical_rows(x, y)  # NCA's optimiser sums in sample order: a fixed order, a fixed result
    x, y = x[perm], y[perm]
    d = min(n_components, x.shape[1], len(x))
    nca = NeighborhoodComponentsAnalysis(n_components=d, random_state=seed, max_iter=max_iter, tol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = nca.fit_transform(x, y)
    knn = KNeighborsClassifier(n_neighbors=k).fit(z, y)
    proba = knn.predict_proba(z)
    return float(proba[np.arange(len(y)), np.searchsorted(knn.classes_, y)].mean())


# --- SFDA ----------------------------------------------------------------------------------
def _power_top_eig(a: np.ndarray, iterations: int = 3) -> float:
    x = a.sum(1)
    y = x
    for _ in range(iterations):
        y = a @ x
        y = y / np.linalg.norm(y)
        x = a @ y
        x = x / np.linalg.norm(x)
    return float(x @ a @ y)


def _fda_proba(x: np.ndarray, y: np.ndarray, c: int, lam: float | None) -> tuple[np.ndarray, float, np.ndarray]:
    """Class probabilities of the shrinkage FDA, its λ and the class means (``C×D``). The
    official code solves S_b v = λ S_w v (``scipy.linalg.eigh(S_b, S_w)``, S_b = S_t − S_w,
    both shrunk) and keeps every eigenvector: coef = M V Vᵀ with Vᵀ S_w V = I, i.e.
    V Vᵀ = S_w⁻¹. So coef = M S_w⁻¹, taken here by one Cholesky solve (S_w is positive
    definite after shrinkage) instead of a generalised eigendecomposition ~10× its cost;
    equal to rounding (tested against the eigh form). Where S_w is not numerically positive
    definite a ``LinAlgError`` says so."""
    from scipy.linalg import cho_solve

    n, d = x.shape
    priors = np.bincount(y, minlength=c) / n
    means = class_means(x, y, c)
    dev = means[y]
    np.subtract(x, dev, out=dev)  # every sample's deviation from its class mean (one N×D buffer)
    sw = gram(dev)  # n·Σ_k p_k·cov_k, one dsyrk
    sw /= n
    del dev
    if lam is None:
        lam = max(float(np.exp(-5 * _power_top_eig(sw))), 1e-10)
    shift = lam * np.trace(sw) / d
    sw *= 1 - lam  # (1 − λ) S_w + λ (tr S_w / D) I, in place
    sw[np.diag_indices_from(sw)] += shift
    factor = cholesky(sw, overwrite=True)
    if factor is None:
        raise np.linalg.LinAlgError(f"SFDA: the shrunk within-class scatter (λ = {lam:.3g}) is not positive definite; "
                                    "are the features finite and on a sane scale?")
    coef = cho_solve((factor, True), means.T, check_finite=False).T
    intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    return _softmax(x @ coef.T + intercept), lam, means


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@register_metric(kind="features", label="SFDA", citation="Shao et al., ECCV 2022",
                 description="self-challenging Fisher discriminant: true-class probability after mixing samples")
def sfda(features, labels) -> float:
    """SFDA, self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022), as the
    official code computes it: fit a shrinkage FDA (λ = exp(−5·ρ̂), ρ̂ the top eigenvalue of
    the within-class scatter by 3 power iterations), take its class probabilities P, soften
    them with a second softmax (P' = softmax(P), the official code's step), mix every sample
    towards the other classes' mean (ConfMix: x_i ← P'_i(y_i)·x_i + (1 − P'_i(y_i))·μ̄_{−y_i}),
    refit FDA with the same λ and return the mean true-class probability

        SFDA = (1/N) Σ_i P₂,i(y_i)  ∈ (0, 1].

    At N ≤ D the training samples are linearly separable for generic features, both FDA fits
    give every sample probability 1 of its class, and SFDA is 1 for every source: a warning
    says so.

    Shapes: features ``N×D``, labels ``N``.
    """
    x, y, c = check_features(features, labels, copy=False)  # read, never written
    if len(x) <= x.shape[1]:
        warnings.warn(f"SFDA on N={len(x)} samples of D={x.shape[1]} features (N <= D) is 1 for any features whose "
                      "classes a linear map can separate (generic when N <= D): it cannot rank sources; use more "
                      "samples than feature dimensions", RuntimeWarning, stacklevel=2)
    p, lam, means = _fda_proba(x, y, c, None)
    p = _softmax(p)
    others = (means.sum(0, keepdims=True) - means) / (c - 1)  # mean of the other classes' means
    w = p[np.arange(len(y)), y][:, None]
    mixed, pull = x * w, others[y]  # w·x + (1 − w)·μ̄, in two N×D buffers
    pull *= 1 - w
    mixed += pull
    del pull
    p2 = _fda_proba(mixed, y, c, lam)[0]
    return float(p2[np.arange(len(y)), y].mean())


# --- NCTI ----------------------------------------------------------------------------------
def ncti_components(features, labels, dim: int = 64, seed: int = 42) -> dict[str, float]:
    """The three neural-collapse terms of NCTI (Wang et al., CVPR 2023) for one source:

    * ``seli`` — nuclear norm ‖H‖_* of the column-centred LDA projection H of the
      PCA-64 features (within-class variability collapse);
    * ``ncc`` — (1/N) Σ_i P_i(y_i), the LDA nearest-class-centre probability of the true class;
    * ``vc`` — log Σ_c ‖P[y = c]‖_*, the per-class nuclear norms of the probabilities.

    LDA shrinkage λ = max(exp(−Σ_{j≤32} ev_j), 1e-10) (ev the PCA eigenvalues; SVD solver
    without shrinkage at the floor). Shapes: features ``N×D``, labels ``N``.
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y, c = check_features(features, labels)
    k = min(dim, len(x), x.shape[1])
    pca = PCA(n_components=k, random_state=seed)
    z = pca.fit_transform(x)
    lam = max(float(np.exp(-pca.explained_variance_[:32].sum())), 1e-10)
    lda = (LinearDiscriminantAnalysis(solver="svd") if lam == 1e-10
           else LinearDiscriminantAnalysis(solver="eigen", shrinkage=lam))
    h = lda.fit_transform(z, y)
    h = h - h.mean(0)
    seli = float(np.linalg.norm(h, ord="nuc"))
    p = lda.predict_proba(z)
    ncc = float(p[np.arange(len(y)), y].mean())
    vc = float(np.log(sum(np.linalg.norm(p[y == k], ord="nuc") for k in range(c))))
    return {"seli": seli, "ncc": ncc, "vc": vc}


def minmax(values: dict[str, float] | np.ndarray):
    """Min–max normalise to [0, 1] (NaN-aware; a constant vector gives 0). Values that agree
    to a relative 1e-9 count as constant: their differences are floating-point noise (NCTI's
    VC term is often equal across sources to the last bit), and stretching noise to [0, 1]
    would let the order of the target's samples flip a score by a whole unit."""
    if isinstance(values, dict):
        keys = list(values)
        arr = minmax(np.array([values[k] for k in keys], dtype=np.float64))
        return dict(zip(keys, arr.tolist()))
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    return np.zeros_like(v) if indistinct(v) else (v - lo) / (hi - lo)


def indistinct(values, rtol: float = 1e-9) -> bool:
    """Whether ``values`` (NaN ignored) are all equal up to floating-point noise:
    max − min ≤ ``rtol``·max(|max|, |min|). A metric whose scores of every candidate agree this
    closely cannot order them (H-score at N ≤ D is C − 1 for every source, to ~1e-15), and
    ordering by the noise would let the order of the target's samples decide."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return True
    lo, hi = float(v.min()), float(v.max())
    return hi - lo <= rtol * max(abs(hi), abs(lo))


@register_metric(kind="zoo", variants=VARIANTS, label="NCTI", citation="Wang et al., CVPR 2023",
                 description="neural-collapse score across the candidate sources (within-class collapse, NCC fit, variability)")
def ncti(features_by_source, labels, dim: int = 64, seed: int = 42, variant: str = "official") -> dict[str, float]:
    """NCTI (Wang et al., CVPR 2023), a zoo-level score: the three components of
    :func:`ncti_components` for every source, min–max normalised across the sources, then

        NCTI = S̃_seli + S̃_ncc − S̃_vc   (official code),

    ``variant="study"`` adds the VC term (the dataset-transferability study's code).

    Args:
        features_by_source: ``{source: N×D features}`` of the candidate sources on the same
            target images (at least 2 sources).
        labels: ``N`` target labels.

    Returns:
        ``{source: score}``.
    """
    sign = -1.0 if _variant(variant) == "official" else 1.0
    if len(features_by_source) < 2:
        raise ValueError("NCTI normalises across sources: give features of at least 2 sources")
    comps = {s: ncti_components(f, labels, dim, seed) for s, f in features_by_source.items()}
    norm = {k: minmax({s: comps[s][k] for s in comps}) for k in ("seli", "ncc", "vc")}
    return {s: norm["seli"][s] + norm["ncc"][s] + sign * norm["vc"][s] for s in comps}
