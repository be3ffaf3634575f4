"""Domain distance between two image sets: the Fréchet distance of their features (FID when
the features are Inception-v3's pool3), the feature-reuse study's x-axis (spec §C.4, §C.6:
the gain from transfer grows as the FID to ImageNet shrinks)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import ImageSet


def _as_float64(x, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of N samples × D features, got shape {a.shape}")
    if len(a) < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance, got {len(a)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(a)).sum())} non-finite value(s)")
    return a


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_gaussian(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein) distance² between N(μ₁, Σ₁) and N(μ₂, Σ₂):

        d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁ Σ₂)^{1/2},

    with Tr (Σ₁Σ₂)^{1/2} = Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}) (a symmetric PSD form, so no complex
    square roots and no ``sqrtm`` round-off as in the reference FID code). Float64.

    Args:
        mu1, mu2: means, shape ``D``.
        sigma1, sigma2: covariances, ``D×D`` symmetric positive semi-definite.

    Reference: Dowson & Landau 1982; Heusel et al., "GANs trained by a two time-scale update
    rule converge to a local Nash equilibrium", NeurIPS 2017 (FID)."""
    mu1, mu2 = np.asarray(mu1, np.float64).reshape(-1), np.asarray(mu2, np.float64).reshape(-1)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = len(mu1)
    if len(mu2) != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes disagree: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}")
    r = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross, 0.0))


def frechet_distance(x, y) -> float:
    """Fréchet distance² between Gaussians fitted to two feature sets (the FID when ``x``
    and ``y`` are Inception-v3 pool3 features of two image sets).

    With centred features X̃ (N₁×D), Ỹ (N₂×D), Σ_X = X̃ᵀX̃/(N₁−1), Σ_Y = ỸᵀỸ/(N₂−1):

        d² = ‖μ_X − μ_Y‖² + Tr Σ_X + Tr Σ_Y − 2 ‖X̃ Ỹᵀ‖_* / √((N₁−1)(N₂−1)),

    because the non-zero eigenvalues of Σ_X Σ_Y are the squared singular values of
    X̃Ỹᵀ/√((N₁−1)(N₂−1)). A side with N > D is first reduced to its D×D triangular factor
    (QR: X̃ᵀX̃ = RᵀR), so the SVD is at most min(N₁, D) × min(N₂, D), and no square root of
    a round-off eigenvalue enters (exact for rank-deficient covariances, N < D). Float64.

    Args:
        x: ``N₁×D`` features; y: ``N₂×D`` features (N₁ ≠ N₂ allowed, D equal).

    Returns:
        d² ≥ 0, in squared feature units (FID values such as the study's ≈141–202 are d²).
        0 for identical sets; symmetric; unchanged by sample order, a common translation or a
        common rotation; scales with s² under scaling by s. With few samples per dimension the
        estimate is biased upwards (Chong & Forsyth, CVPR 2020): compare distances computed
        from equal N."""
    a, b = _as_float64(x, "x"), _as_float64(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}")
    d = a.shape[1]
    mu1, mu2 = a.mean(0), b.mean(0)
    fa, fb = ((z - z.mean(0)) / np.sqrt(len(z) - 1) for z in (a, b))
    fa, fb = (np.linalg.qr(f, mode="r") if len(f) > d else f for f in (fa, fb))
    cross = np.linalg.svd(fa @ fb.T, compute_uv=False).sum()
    return float(max(((mu1 - mu2) ** 2).sum() + (fa ** 2).sum() + (fb ** 2).sum() - 2 * cross, 0.0))


def dataset_fid(model: nn.Module, a: ImageSet, b: ImageSet, layer: str = "penultimate",
                image_size: int | None = None, batch_size: int = 128, progress: bool = False) -> float:
    """Fréchet distance between two image sets in ``model``'s ``layer`` features (global
    average pooled, :func:`medtl.features.extract`), :func:`frechet_distance` of the two.

    The FID proper is Inception-v3 (ImageNet weights) pool3 = its ``"penultimate"`` 2048-d
    features of images resized to 299 px (``image_size=299``); the feature-reuse study's
    FID protocol (images, resizing) is unverified (spec §C.8), so any model and size are
    accepted and the value is only comparable between sets measured the same way."""
    from ..features import extract

    settings = {"image_size": image_size} if image_size else {}
    feats = [extract(model, data, [layer], batch_size=batch_size, progress=progress, **settings)[layer]
             for data in (a, b)]
    return frechet_distance(*(f.reshape(len(f), -1).to(torch.float64) for f in feats))
