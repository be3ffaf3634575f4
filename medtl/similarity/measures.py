"""Representation similarity measures on activations (float64, torch).

X is ``N×D1`` and Y is ``N×D2``, rows = the same N inputs. Each measure returns a float
(or the stated array); higher = more similar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def _t(x: Array, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach().to(torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be N×D (rows = inputs), got shape {tuple(t.shape)}; "
                         "pool or flatten conv activations first (see as_datapoints)")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf activations")
    return t


def _pair(x: Array, y: Array, min_n: int = 2, what: str = "this measure") -> tuple[torch.Tensor, torch.Tensor]:
    x = _t(x, "X")
    y = _t(y, "Y").to(x.device)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (inputs), got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < min_n:
        raise ValueError(f"{what} needs at least {min_n} samples, got {x.shape[0]}")
    return x, y


# --- Gram matrices and HSIC ----------------------------------------------------------------
def gram_linear(x: Array) -> torch.Tensor:
    """K = X Xᵀ (``N×N``)."""
    x = _t(x, "X")
    return x @ x.T


def gram_rbf(x: Array, threshold: float = 1.0) -> torch.Tensor:
    """K_ij = exp(−‖x_i − x_j‖² / (2σ²)), σ = threshold · √median(‖x_i − x_j‖²) (Kornblith
    et al. 2019's reference)."""
    x = _t(x, "X")
    dot = x @ x.T
    sq = dot.diag()
    dist = (sq[:, None] + sq[None, :] - 2 * dot).clamp_min(0)
    sigma2 = (threshold**2) * dist.median()
    if sigma2 <= 0:
        raise ValueError("RBF bandwidth is 0 (more than half the pairwise distances are 0)")
    return torch.exp(-dist / (2 * sigma2))


def center_gram(gram: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Centre a Gram matrix: H K H (biased), or the unbiased centring of Song et al. (2012)
    used for debiased HSIC (diagonal zeroed; needs N ≥ 4)."""
    g = gram.clone()
    n = g.shape[0]
    if unbiased:
        if n < 4:
            raise ValueError(f"debiased HSIC/CKA needs at least 4 samples, got {n}")
        g.fill_diagonal_(0)
        means = g.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        g = g - means[:, None] - means[None, :]
        g.fill_diagonal_(0)
    else:
        g = g - g.mean(0, keepdim=True)
        g = g - g.mean(1, keepdim=True)
    return g


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Song et al.'s (2012) unbiased HSIC estimator:

        HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)),

    K̃, L̃ the Gram matrices with zeroed diagonals (``N×N``, N ≥ 4)."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 samples, got {n}")
    k = k.clone().fill_diagonal_(0)
    l = l.clone().fill_diagonal_(0)  # noqa: E741
    kl = k @ l
    return (kl.trace() + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * kl.sum()) / (n * (n - 3))


# --- CKA -----------------------------------------------------------------------------------
def cka(x: Array, y: Array, kernel: str = "linear", debiased: bool = False, threshold: float = 1.0) -> float:
    """Centered kernel alignment (Kornblith et al., ICML 2019):

        CKA = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L)),

    K, L the Gram matrices of X and Y under ``kernel`` (``"linear"`` or ``"rbf"`` with
    σ = threshold · √median squared distance); ``debiased=True`` uses the unbiased HSIC
    estimator (Song et al. 2012; needs N ≥ 4). Linear CKA is computed in feature space,

        CKA_lin = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)   (X, Y column-centred),

    O(N·D²) time and O(D²) memory, so large N is fine (for D > 2N the N×N Gram form is used).

    Shapes: X ``N×D1``, Y ``N×D2``. Returns a float in [0, 1] (debiased may dip below 0).
    """
    x, y = _pair(x, y, 4 if debiased else 2, "debiased HSIC/CKA" if debiased else "CKA")
    if kernel == "linear" and max(x.shape[1], y.shape[1]) > 2 * x.shape[0]:
        return cka_gram(x @ x.T, y @ y.T, debiased)  # wide activations: N×N Grams are smaller
    if kernel == "linear":
        x = x - x.mean(0)
        y = y - y.mean(0)
        if not debiased:
            num = (y.T @ x).pow(2).sum()
            den = (x.T @ x).norm() * (y.T @ y).norm()
            return float(num / den) if den > 0 else float("nan")
        n = x.shape[0]
        xty = (x.T @ y).pow(2).sum()
        xtx, yty = (x.T @ x).pow(2).sum(), (y.T @ y).pow(2).sum()
        sx, sy = x.pow(2).sum(1), y.pow(2).sum(1)
        nx, ny = sx.sum(), sy.sum()

        def helper(xty_, sx_, sy_, nx_, ny_):
            return (xty_ - n / (n - 2) * (sx_ @ sy_) + nx_ * ny_ / ((n - 1) * (n - 2)))

        num = helper(xty, sx, sy, nx, ny)
        den = torch.sqrt(helper(xtx, sx, sx, nx, nx) * helper(yty, sy, sy, ny, ny))
        return float(num / den)
    if kernel == "rbf":
        k, l = gram_rbf(x, threshold), gram_rbf(y, threshold)  # noqa: E741
        return cka_gram(k, l, debiased)
    raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")


def cka_gram(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> float:  # noqa: E741
    """CKA from Gram matrices (``N×N`` each): ⟨K̃c, L̃c⟩_F / (‖K̃c‖_F ‖L̃c‖_F) with (unbiased)
    centring."""
    kc, lc = center_gram(k, debiased), center_gram(l, debiased)
    return float((kc * lc).sum() / (kc.norm() * lc.norm()))


def minibatch_cka(x: Array | Iterable, y: Array | None = None, batch_size: int = 256, average: str = "hsic") -> float:
    """Minibatch CKA (Nguyen, Raghu & Kornblith, ICLR 2021): accumulate the unbiased HSIC₁
    of linear Grams over consecutive batches of the rows,

        CKA_mb = mean_b HSIC₁(K_b, L_b) / √(mean_b HSIC₁(K_b, K_b) · mean_b HSIC₁(L_b, L_b)),

    so memory depends on the batch size only. ``x`` may also be an iterable of
    ``(X_b, Y_b)`` batches (streaming from a model). ``average="cka"`` instead averages the
    per-batch debiased CKA values (the feature-reuse study's batch-averaged CKA).
    Batches with fewer than 4 rows are skipped (they cannot form the estimator).

    Shapes: X ``N×D1``, Y ``N×D2`` (or batches ``B×D1``, ``B×D2``).
    """
    if average not in ("hsic", "cka"):
        raise ValueError(f"average must be 'hsic' or 'cka', got {average!r}")
    if y is not None:
        xt, yt = _pair(x, y, 4, "minibatch CKA")
        if batch_size < 4:
            raise ValueError(f"batch_size must be at least 4 for minibatch CKA, got {batch_size}")
        batches = ((xt[i:i + batch_size], yt[i:i + batch_size]) for i in range(0, len(xt), batch_size))
    else:
        batches = iter(x)
    kl = kk = ll = 0.0
    values, used = [], 0
    for xb, yb in batches:
        xb, yb = _pair(xb, yb, 1)
        if len(xb) < 4:
            continue
        k, l = xb @ xb.T, yb @ yb.T  # noqa: E741
        if average == "cka":
            values.append(cka_gram(k, l, debiased=True))
        else:
            kl += float(hsic_unbiased(k, l))
            kk += float(hsic_unbiased(k, k))
            ll += float(hsic_unbiased(l, l))
        used += 1
    if used == 0:
        raise ValueError("minibatch CKA needs at least one batch of 4 or more samples")
    if average == "cka":
        return float(np.mean(values))
    return kl / math.sqrt(kk * ll)


# --- CCA family ----------------------------------------------------------------------------
def cca(x: Array, y: Array, epsilon: float = 0.0, method: str = "qr") -> torch.Tensor:
    """Canonical correlations between the column spaces of X and Y (Hotelling 1936),

        ρ = σ(Σxx^{-1/2} Σxy Σyy^{-1/2}),

    descending, ``min(D1, D2)`` of them. ``method="qr"``: singular values of Q_xᵀQ_y from
    thin QR factorisations of the centred data; ``"svd"``: the whitened cross-covariance
    with ``epsilon``·I added to Σxx and Σyy (regularised CCA). Without regularisation CCA
    needs N > D1 and N > D2 (else every correlation is trivially 1).

    Shapes: X ``N×D1``, Y ``N×D2``. Returns a 1-D float64 tensor.
    """
    x, y = _pair(x, y, 2)
    n = x.shape[0]
    if epsilon <= 0 and (n <= x.shape[1] or n <= y.shape[1]):
        raise ValueError(f"CCA needs more samples than dimensions (N={n}, D1={x.shape[1]}, D2={y.shape[1]}); "
                         "reduce the dimension (svcca), subsample channels, or pass epsilon > 0")
    x = x - x.mean(0)
    y = y - y.mean(0)
    if method == "qr" and epsilon <= 0:
        qx, _ = torch.linalg.qr(x)
        qy, _ = torch.linalg.qr(y)
        rho = torch.linalg.svdvals(qx.T @ qy)
    elif method in ("svd", "qr"):
        sxx = x.T @ x / (n - 1) + epsilon * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        syy = y.T @ y / (n - 1) + epsilon * torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
        sxy = x.T @ y / (n - 1)
        rho = torch.linalg.svdvals(_inv_sqrt(sxx) @ sxy @ _inv_sqrt(syy))
    else:
        raise ValueError(f"method must be 'qr' or 'svd', got {method!r}")
    return rho.clamp(0, 1)


def _inv_sqrt(s: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse square root of a symmetric PSD matrix (eigenvalues below 1e-12 of
    the largest are treated as 0)."""
    w, v = torch.linalg.eigh(s)
    keep = w > w.max() * 1e-12
    return (v[:, keep] / w[keep].sqrt()) @ v[:, keep].T


def mean_cca(x: Array, y: Array, epsilon: float = 0.0) -> float:
    """Mean canonical correlation (the hidden-representations study's summary)."""
    return float(cca(x, y, epsilon).mean())


def svd_reduce(x: Array, keep: float = 0.99) -> torch.Tensor:
    """Project centred X onto its top singular directions: those explaining ``keep`` of
    the variance (``keep < 1``) or the first ``int(keep)`` (``keep ≥ 1``)."""
    x = _t(x, "X")
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if keep < 1:
        frac = torch.cumsum(s**2, 0) / (s**2).sum()
        k = int(torch.searchsorted(frac, torch.tensor(keep, dtype=frac.dtype)).item()) + 1
    else:
        k = int(keep)
    k = max(1, min(k, len(s)))
    return u[:, :k] * s[:k]


def svcca(x: Array, y: Array, keep: float = 0.99, return_rho: bool = False):
    """SVCCA (Raghu et al., NeurIPS 2017): SVD-reduce X and Y to ``keep`` (variance fraction
    if < 1, else number of directions), then CCA; returns the mean canonical correlation
    (or the correlations with ``return_rho``).

    Shapes: X ``N×D1``, Y ``N×D2``."""
    rho = cca(svd_reduce(x, keep), svd_reduce(y, keep))
    return rho if return_rho else float(rho.mean())


def pwcca(x: Array, y: Array, epsilon: float = 0.0) -> float:
    """Projection-weighted CCA (Morcos et al., NeurIPS 2018): the canonical correlations
    weighted by how much of X each canonical variate accounts for,

        PWCCA = Σ_i α_i ρ_i,  α_i ∝ Σ_j |⟨h_i, x_j⟩|,

    h_i the i-th canonical variate of X (``N``-vector), x_j the centred columns of X.

    Shapes: X ``N×D1``, Y ``N×D2`` (D1 ≤ D2 gives one weight per correlation)."""
    x, y = _pair(x, y, 2)
    n = x.shape[0]
    if epsilon <= 0 and (n <= x.shape[1] or n <= y.shape[1]):
        raise ValueError(f"PWCCA needs more samples than dimensions (N={n}, D1={x.shape[1]}, D2={y.shape[1]})")
    x = x - x.mean(0)
    y = y - y.mean(0)
    qx, _ = torch.linalg.qr(x)
    qy, _ = torch.linalg.qr(y)
    u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    h = qx @ u  # canonical variates of X, N×k
    alpha = (h.T @ x).abs().sum(1)
    alpha = alpha / alpha.sum()
    return float((alpha * rho.clamp(0, 1)).sum())


def cca_study(x: Array, y: Array, epsilon: float = 1e-12) -> torch.Tensor:
    """Canonical correlations exactly as google/svcca's ``get_cca_similarity`` (the
    hidden-representations study): covariance blocks scaled by their max |entry|, neurons
    with scaled variance < ε dropped, ε·I added, pseudo-inverse square roots.

    Shapes: X ``N×D1``, Y ``N×D2`` (rows = datapoints)."""
    x, y = _pair(x, y, 2)
    d1 = x.shape[1]
    cov = torch.cov(torch.cat([x, y], 1).T)
    sxx, sxy, syy = cov[:d1, :d1], cov[:d1, d1:], cov[d1:, d1:]
    xmax, ymax = sxx.abs().max(), syy.abs().max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / torch.sqrt(xmax * ymax)
    kx, ky = sxx.diag() >= epsilon, syy.diag() >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]
    sxx = sxx + epsilon * torch.eye(len(sxx), dtype=sxx.dtype)
    syy = syy + epsilon * torch.eye(len(syy), dtype=syy.dtype)
    return torch.linalg.svdvals(_inv_sqrt(sxx) @ sxy @ _inv_sqrt(syy))


# --- conv activations ----------------------------------------------------------------------
def as_datapoints(a: Array, b: Array | None = None, mode: str = "pool", n_channels: int | None = None,
                  max_points: int | None = None, seed: int = 0):
    """Turn conv activations ``N×C×H×W`` into rows for the measures above:

    * ``"pool"`` — global average, ``N×C``;
    * ``"flatten"`` — ``N×(C·H·W)``;
    * ``"spatial"`` — every spatial position a datapoint, ``(N·H·W)×C`` (the
      hidden-representations study's CCA), with ``n_channels`` channels drawn at random
      (the same for ``a`` and ``b``) and at most ``max_points`` datapoints (the same rows).

    Returns the converted ``a`` (and ``b`` when given)."""
    if mode not in ("pool", "flatten", "spatial"):
        raise ValueError(f"mode must be 'pool', 'flatten' or 'spatial', got {mode!r}")
    g = torch.Generator().manual_seed(seed)

    def convert(t):
        t = t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
        t = t.to(torch.float64)
        if t.ndim == 2:
            return t
        if t.ndim != 4:
            raise ValueError(f"conv activations must be N×C×H×W, got shape {tuple(t.shape)}")
        if mode == "pool":
            return t.mean((2, 3))
        if mode == "flatten":
            return t.flatten(1)
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    out = [convert(a)] + ([convert(b)] if b is not None else [])
    if mode == "spatial":
        if n_channels is not None:
            c = min(t.shape[1] for t in out)
            idx = torch.randperm(c, generator=g)[: min(n_channels, c)]
            out = [t[:, idx] for t in out]
        if max_points is not None and out[0].shape[0] > max_points:
            rows = torch.randperm(out[0].shape[0], generator=g)[:max_points]
            out = [t[rows] for t in out]
    return out[0] if b is None else tuple(out)


# --- permutation baselines -----------------------------------------------------------------
def permutation_test(measure: Callable[[torch.Tensor, torch.Tensor], float], x: Array, y: Array,
                     n_permutations: int = 100, seed: int = 0) -> dict[str, float]:
    """A permutation null for any measure: Y's rows are shuffled (breaking the pairing with
    X) ``n_permutations`` times. Returns the observed value, the null mean and std, the
    calibrated value (observed − null mean) and the one-sided p-value
    (1 + #{null ≥ observed}) / (1 + n_permutations)."""
    x, y = _pair(x, y, 2)
    observed = float(measure(x, y))
    g = torch.Generator().manual_seed(seed)
    null = np.array([float(measure(x, y[torch.randperm(len(y), generator=g)])) for _ in range(n_permutations)])
    return {"value": observed, "null_mean": float(null.mean()), "null_std": float(null.std(ddof=1)),
            "calibrated": observed - float(null.mean()),
            "p_value": float((1 + (null >= observed).sum()) / (1 + n_permutations))}
