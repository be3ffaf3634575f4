"""Representation similarity measures on activations (float64, torch).

X is ``N×D1`` and Y is ``N×D2``, rows = the same N inputs. Each measure returns a float
(or the stated array); higher = more similar.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .._linalg import conditioned_cholesky, gram
from .._registry import Registry

Array = torch.Tensor | np.ndarray


def _t(x: Array, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{name} must be a numeric N×D array, got dtype {arr.dtype}")
        x = torch.as_tensor(arr)
    t = x.detach().to(torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be N×D (rows = inputs), got shape {tuple(t.shape)}; "
                         "pool or flatten conv activations first (see as_datapoints)")
    if t.numel():  # one pass and no N×D temporary: NaN propagates through min and max, ±inf shows in one
        lo, hi = torch.aminmax(t)
        if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
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


def _check_not_constant(x: torch.Tensor, name: str) -> None:
    if not bool((x != x[:1]).any()):
        raise ValueError(f"{name} is constant (every input gives the same activations): similarity to it is "
                         "undefined; is the layer dead or the input blank?")


def warn_few_samples(n: int, d: int, what: str) -> None:
    """CCA-type measures are biased upward when N is not much larger than D (independent
    data gives mean CCA ≈ D/N); warn below N = 10·D."""
    if n < 10 * d:
        warnings.warn(f"{what} on N={n} datapoints in D={d} dimensions: with N < 10·D canonical correlations are "
                      f"inflated (independent data reads ≈ {min(1.0, d / n):.2f}); use at least {10 * d} datapoints "
                      "(spatial positions as datapoints, fewer channels, or svcca's reduction)", stacklevel=3)


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
    dist = sq[:, None] + sq[None, :] - 2 * dot
    # numpy's median (the mean of the two middle values), as the reference; torch's is the lower one
    sigma2 = (threshold**2) * float(np.median(dist.cpu().numpy()))
    if sigma2 <= 0:
        raise ValueError("RBF bandwidth is 0 (more than half the pairwise distances are 0)")
    return torch.exp(-dist.clamp_min(0) / (2 * sigma2))


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
    _check_not_constant(x, "X")
    _check_not_constant(y, "Y")
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
def _live_columns(x: torch.Tensor, name: str) -> torch.Tensor:
    """The centred columns of ``x`` that are not constant: dead units are dropped with a
    warning; an all-constant input raises."""
    x = x - x.mean(0)
    scale = torch.maximum(x.amax(0), -x.amin(0))  # max |x| per column, no N×D temporary
    dead = scale <= scale.max() * 1e-12 if bool(scale.max() > 0) else torch.ones_like(scale, dtype=torch.bool)
    if bool(dead.all()):
        raise ValueError(f"{name} is constant (every datapoint gives the same activations): CCA is undefined")
    if bool(dead.any()):
        warnings.warn(f"{name}: dropping {int(dead.sum())} of {len(dead)} constant (dead) units before CCA",
                      stacklevel=4)
        x = x[:, ~dead]
    return x


def _basis(x: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis ``N×r`` of the (centred, live) columns of ``x``, the rank r
    revealed by the singular values (those below ``rtol`` · the largest are zero), so
    duplicated or linearly dependent channels do not invent correlations. Columns are scaled
    to unit norm first (the column space is unchanged), so a unit on a tiny scale is not
    taken for a dependent one: CCA is invariant to each unit's scale."""
    u, s, _ = torch.linalg.svd(x / x.norm(dim=0), full_matrices=False)
    return u[:, s > s[0] * rtol]


def _cca_cholesky(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Canonical correlations of centred, live CPU columns through the covariances:
    ρ = σ(U_x⁻ᵀ S_x Σxy S_y U_y⁻¹) with U_x, S_x from :func:`conditioned_cholesky` of Σxx
    (likewise Y), which equals σ(Σxx^{-1/2} Σxy Σyy^{-1/2}) because U⁻ᵀS whitens. About
    D²(N + D) flops instead of an N×D SVD of each side; ``None`` (use the SVD bases) when
    either covariance is too ill-conditioned for the Gram form to keep 1e-9 accuracy. The
    singular values come from scipy's LAPACK ``gesdd`` on the tall orientation of the
    whitened matrix (260 ms at 1024×2048 here, against 365 ms for ``torch.linalg.svdvals``)."""
    from scipy.linalg import solve_triangular, svdvals

    if x.device.type != "cpu":
        return None
    xn, yn = x.numpy(), y.numpy()
    fx = conditioned_cholesky(gram(xn))
    fy = conditioned_cholesky(gram(yn)) if fx is not None else None
    if fy is None:
        return None
    (ux, sx), (uy, sy) = fx, fy
    m = solve_triangular(ux, (xn.T @ yn) * sx[:, None] * sy[None, :], trans="T", check_finite=False)
    m = solve_triangular(uy, m.T, trans="T", check_finite=False)
    return torch.from_numpy(svdvals(m if m.shape[0] >= m.shape[1] else m.T, check_finite=False))


def cca(x: Array, y: Array, epsilon: float = 0.0, method: str = "svd") -> torch.Tensor:
    """Canonical correlations between the column spaces of X and Y (Hotelling 1936),

        ρ = σ(Σxx^{-1/2} Σxy Σyy^{-1/2}),

    descending, ``min(rank X, rank Y)`` of them. ``method="svd"`` (default): dead units
    dropped with a warning; where both covariances are well-conditioned (equilibrated
    Cholesky, LAPACK condition estimate; CPU) the whitened cross-covariance's singular
    values through the Cholesky factors, otherwise singular values of U_xᵀU_y, U an
    orthonormal basis of the centred data from a rank-revealing SVD (dependent channels
    counted once) — the two agree to ~1e-12 where both apply; ``"qr"``: the same
    from thin QR factorisations (fast, but a rank-deficient input invents correlations);
    with ``epsilon`` > 0, the whitened cross-covariance with εI added to Σxx and Σyy
    (regularised CCA). Without regularisation CCA needs N > D1 and N > D2 (else every
    correlation is trivially 1); with N < 10·D a warning says the values are inflated.

    Shapes: X ``N×D1``, Y ``N×D2``. Returns a 1-D float64 tensor.
    """
    if method not in ("svd", "qr"):
        raise ValueError(f"method must be 'svd' or 'qr', got {method!r}")
    x, y = _pair(x, y, 2)
    n = x.shape[0]
    if epsilon <= 0 and (n <= x.shape[1] or n <= y.shape[1]):
        raise ValueError(f"CCA needs more samples than dimensions (N={n}, D1={x.shape[1]}, D2={y.shape[1]}); "
                         "reduce the dimension (svcca), subsample channels, or pass epsilon > 0")
    warn_few_samples(n, max(x.shape[1], y.shape[1]), "CCA")
    if epsilon > 0:
        _check_not_constant(x, "X")
        _check_not_constant(y, "Y")
        x, y = x - x.mean(0), y - y.mean(0)
        sxx = x.T @ x / (n - 1) + epsilon * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        syy = y.T @ y / (n - 1) + epsilon * torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
        rho = torch.linalg.svdvals(_inv_sqrt(sxx) @ (x.T @ y / (n - 1)) @ _inv_sqrt(syy))
    elif method == "qr":
        _check_not_constant(x, "X")
        _check_not_constant(y, "Y")
        rho = torch.linalg.svdvals(torch.linalg.qr(x - x.mean(0))[0].T @ torch.linalg.qr(y - y.mean(0))[0])
    else:
        x, y = _live_columns(x, "X"), _live_columns(y, "Y")
        rho = _cca_cholesky(x, y)
        if rho is None:
            rho = torch.linalg.svdvals(_basis(x).T @ _basis(y))
    return rho.clamp(0, 1)


def _inv_sqrt(s: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse square root of a symmetric PSD matrix (eigenvalues below 1e-12 of
    the largest are treated as 0)."""
    w, v = torch.linalg.eigh(s)
    keep = w > w.max() * 1e-12
    return (v[:, keep] / w[keep].sqrt()) @ v[:, keep].T


def mean_cca(x: Array, y: Array, epsilon: float = 0.0) -> float:
    """Mean canonical correlation (1/r) Σ ρ_i of :func:`cca` (the hidden-representations
    study's summary, on rows as given; see :func:`cca_google` for its exact routine)."""
    return float(cca(x, y, epsilon).mean())


def svd_reduce(x: Array, keep: float = 0.99) -> torch.Tensor:
    """Project centred X onto its top singular directions: those explaining ``keep`` of
    the variance (``keep < 1``) or the first ``int(keep)`` (``keep ≥ 1``)."""
    x = _t(x, "X")
    _check_not_constant(x, "X")
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if keep <= 0:
        raise ValueError(f"keep must be a variance fraction in (0, 1) or a number of directions >= 1, got {keep}")
    if keep < 1:
        frac = torch.cumsum(s**2, 0) / (s**2).sum()
        k = int(torch.searchsorted(frac, torch.tensor(keep, dtype=frac.dtype)).item()) + 1
    else:
        k = int(keep)
    k = max(1, min(k, int((s > s[0] * 1e-10).sum())))
    return u[:, :k] * s[:k]


def svcca(x: Array, y: Array, keep: float = 0.99, return_rho: bool = False):
    """SVCCA (Raghu et al., NeurIPS 2017): SVD-reduce X and Y to ``keep`` (variance fraction
    if < 1, else number of directions), then CCA; returns the mean canonical correlation
    (or the correlations with ``return_rho``). Constant inputs raise.

    Shapes: X ``N×D1``, Y ``N×D2``."""
    rho = cca(svd_reduce(x, keep), svd_reduce(y, keep))
    return rho if return_rho else float(rho.mean())


def svcca_core(x: Array, y: Array, epsilon: float = 0.0) -> dict:
    """google/svcca's ``get_cca_similarity`` (Raghu et al.'s reference code), step by step
    on rows X ``N×D1``, Y ``N×D2`` (its acts are the transposes): Σ = cov([Xᵀ; Yᵀ]) (N−1
    normalisation); Σxx, Σyy divided by their largest |entry|, Σxy by √(both); neurons with
    scaled variance < ε dropped; εI added; A_x = (Σxx⁺)^{1/2}, A_y likewise (pseudo-inverse,
    then the eigen square root); ``U S Vᵀ = svd(A_x Σxy A_y)`` (full matrices). Returns
    ``{"rho": S, "coef_x": Uᵀ, "coef_y": Vᵀ, "x_idx", "y_idx", "mean_x", "mean_y"}``."""
    x, y = _pair(x, y, 2)
    _check_not_constant(x, "X")
    _check_not_constant(y, "Y")
    d1 = x.shape[1]
    cov = torch.cov(torch.cat([x, y], 1).T)
    sxx, sxy, syy = cov[:d1, :d1], cov[:d1, d1:], cov[d1:, d1:]
    xmax, ymax = sxx.abs().max(), syy.abs().max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / torch.sqrt(xmax * ymax)
    kx, ky = sxx.diag().abs() >= epsilon, syy.diag().abs() >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]
    sxx = sxx + epsilon * torch.eye(len(sxx), dtype=sxx.dtype)
    syy = syy + epsilon * torch.eye(len(syy), dtype=syy.dtype)

    def sqrt_pinv(m):
        w, v = torch.linalg.eigh(torch.linalg.pinv(m, hermitian=True))
        return (v * w.clamp_min(0).sqrt()) @ v.T

    u, rho, vh = torch.linalg.svd(sqrt_pinv(sxx) @ sxy @ sqrt_pinv(syy), full_matrices=True)
    return {"rho": rho.abs(), "coef_x": u.T, "coef_y": vh, "x_idx": kx, "y_idx": ky,
            "mean_x": x.mean(0), "mean_y": y.mean(0), "x": x, "y": y}


def cca_google(x: Array, y: Array, epsilon: float = 1e-12) -> torch.Tensor:
    """Canonical correlations exactly as google/svcca's ``get_cca_similarity`` (the
    hidden-representations study's per-repeat routine, ε = 1e-12): see :func:`svcca_core`.
    The study's whole protocol (spatial datapoints, 64 channels, 5 repeats) is
    :func:`medtl.similarity.cca_study`.

    Shapes: X ``N×D1``, Y ``N×D2`` (rows = datapoints)."""
    return svcca_core(x, y, epsilon)["rho"]


def pwcca(x: Array, y: Array, epsilon: float = 0.0, variant: str = "svcca") -> float:
    """Projection-weighted CCA (Morcos et al., NeurIPS 2018), Σ_i α_i ρ_i with α ∝ how much
    of a layer each canonical direction accounts for. Two definitions:

    * ``variant="svcca"`` (default): google/svcca's ``compute_pwcca``, the code behind every
      published PWCCA number. With :func:`svcca_core`'s U (the un-whitened coefficients) on
      the side with fewer kept neurons (X on ties), directions H = U (X − μ)ᵀ + μ (the mean
      added back), P the Q of a thin QR of Hᵀ, and α_i ∝ Σ_j |(Pᵀ X_rawᵀ)_ij| on the
      un-centred activations. (The reference indexes X with Y's mask on the Y side — an
      IndexError for unequal widths; medtl uses Y there.)
    * ``variant="paper"``: the paper's formula on whitened canonical variates h_i of X
      (N-vectors), α_i ∝ Σ_j |⟨h_i, x_j⟩| over the centred columns x_j of X.

    Shapes: X ``N×D1``, Y ``N×D2``."""
    if variant not in ("svcca", "paper"):
        raise ValueError(f"variant must be 'svcca' or 'paper', got {variant!r}")
    xt, yt = _pair(x, y, 2)
    n = xt.shape[0]
    if epsilon <= 0 and (n <= xt.shape[1] or n <= yt.shape[1]):
        raise ValueError(f"PWCCA needs more samples than dimensions (N={n}, D1={xt.shape[1]}, D2={yt.shape[1]})")
    warn_few_samples(n, max(xt.shape[1], yt.shape[1]), "PWCCA")
    if variant == "svcca":
        core = svcca_core(xt, yt, epsilon)
        side = "x" if int(core["x_idx"].sum()) <= int(core["y_idx"].sum()) else "y"
        acts = core[side][:, core[f"{side}_idx"]]
        mean = core[f"mean_{side}"][core[f"{side}_idx"]]
        dirns = core[f"coef_{side}"] @ (acts - mean).T + mean[:, None]
        q, _ = torch.linalg.qr(dirns.T)
        weights = (q.T @ acts).abs().sum(1)
        weights = weights / weights.sum()
        rho = core["rho"]
        return float((weights[: len(rho)] * rho).sum())
    bx, by = _basis(_live_columns(xt, "X")), _basis(_live_columns(yt, "Y"))
    u, rho, _ = torch.linalg.svd(bx.T @ by, full_matrices=False)
    h = bx @ u  # canonical variates of X, N×k
    alpha = (h.T @ (xt - xt.mean(0))).abs().sum(1)
    alpha = alpha / alpha.sum()
    return float((alpha * rho.clamp(0, 1)).sum())


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
def permutation_test(measure: Callable[[torch.Tensor, torch.Tensor], float] | str, x: Array, y: Array,
                     n_permutations: int = 100, seed: int = 0) -> dict[str, float]:
    """A permutation null for any measure: Y's rows are shuffled (breaking the pairing with
    X) ``n_permutations`` times. Returns the observed value, the null mean and std, the
    calibrated value (observed − null mean) and the one-sided p-value
    (1 + #{null ≥ observed}) / (1 + n_permutations)."""
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 2:
        raise ValueError(f"n_permutations must be an integer >= 2 (the null needs a spread), got {n_permutations!r}")
    if not callable(measure):
        measure = get_measure(measure).fn
    x, y = _pair(x, y, 2)
    observed = float(measure(x, y))
    g = torch.Generator().manual_seed(seed)
    null = np.array([float(measure(x, y[torch.randperm(len(y), generator=g)])) for _ in range(n_permutations)])
    return {"value": observed, "null_mean": float(null.mean()), "null_std": float(null.std(ddof=1)),
            "calibrated": observed - float(null.mean()),
            "p_value": float((1 + (null >= observed).sum()) / (1 + n_permutations))}


# --- the measure table ---------------------------------------------------------------------
@dataclass(frozen=True)
class Measure:
    """One representation-similarity measure (a row of :data:`MEASURES`).

    Attributes:
        name: registry key.
        fn: ``fn(X, Y) -> float`` on rows (``N×D1``, ``N×D2``), or on activations
            (``N×C×H×W`` / ``N×T×D``) when ``input == "activations"``.
        input: ``"rows"`` or ``"activations"`` (a protocol that chooses its own datapoints).
        pool: the pooling layer-wise comparisons use by default for this measure
            (``"flatten"``: un-pooled, as the feature-reuse study's CKA; ``"avg"``: CCA needs
            N > D; ``"none"`` for activation measures).
        label, citation, description: one line each.
    """

    name: str
    fn: Callable
    input: str = "rows"
    pool: str = "flatten"
    label: str = ""
    citation: str = ""
    description: str = ""


#: The registered similarity measures (name → :class:`Measure`).
MEASURES: Registry[Measure] = Registry("similarity measure")


def register_measure(name: str | None = None, *, replace: bool = False, **fields) -> Callable:
    """Decorator registering ``fn(X, Y) -> float`` as a measure (under its own name unless
    ``name``); ``fields`` are :class:`Measure` attributes."""

    def wrap(fn: Callable) -> Callable:
        key = name or fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        desc = fields.pop("description", None) or (doc[0] if doc else "")
        MEASURES.register(key, Measure(key, fn, description=desc, **fields), replace=replace)
        return fn

    return wrap


def get_measure(name: str) -> Measure:
    """The measure ``name`` (a ValueError lists the valid names)."""
    return MEASURES.get(name)


def compare(x: Array, y: Array, measure: str = "cka") -> float:
    """Similarity of X and Y under a registered measure (see :func:`measures`)."""
    return float(get_measure(measure).fn(x, y))


def measures():
    """The measure table as a DataFrame: measure, label, input, default pooling, citation,
    description."""
    import pandas as pd

    return pd.DataFrame([{"measure": m.name, "label": m.label or m.name, "input": m.input, "pool": m.pool,
                          "citation": m.citation, "description": m.description} for m in MEASURES.values()])


for _name, _fn, _fields in (
    ("cka", lambda x, y: cka(x, y), dict(label="linear CKA", citation="Kornblith et al., ICML 2019",
                                         description="linear CKA (biased HSIC)")),
    ("cka_debiased", lambda x, y: cka(x, y, debiased=True),
     dict(label="debiased linear CKA", citation="Song et al. 2012; Nguyen et al., ICLR 2021",
          description="linear CKA with the unbiased HSIC estimator")),
    ("cka_rbf", lambda x, y: cka(x, y, kernel="rbf"),
     dict(label="RBF CKA", citation="Kornblith et al., ICML 2019",
          description="RBF-kernel CKA, bandwidth = √median squared distance")),
    ("minibatch_cka", lambda x, y: minibatch_cka(x, y, batch_size=256),
     dict(label="minibatch CKA", citation="Nguyen, Raghu & Kornblith, ICLR 2021",
          description="unbiased HSIC accumulated over batches of 256")),
    ("svcca", lambda x, y: svcca(x, y), dict(pool="avg", label="SVCCA", citation="Raghu et al., NeurIPS 2017",
                                             description="CCA after SVD to 99% variance (mean ρ)")),
    ("pwcca", lambda x, y: pwcca(x, y), dict(pool="avg", label="PWCCA", citation="Morcos et al., NeurIPS 2018",
                                             description="projection-weighted CCA (google/svcca's weighting)")),
    ("mean_cca", lambda x, y: mean_cca(x, y), dict(pool="avg", label="mean CCA", citation="Hotelling 1936",
                                                   description="mean canonical correlation (rank-revealing basis)")),
    ("cca_pooled", lambda x, y: float(cca_google(x, y).mean()),
     dict(pool="avg", label="mean CCA, pooled (google/svcca)", citation="Raghu et al., NeurIPS 2017",
          description="mean ρ of google/svcca's get_cca_similarity (ε = 1e-12) on pooled rows, one per image")),
):
    MEASURES.register(_name, Measure(_name, _fn, **_fields))
