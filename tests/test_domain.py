"""The Fréchet distance (FID) between feature sets: a closed form on known Gaussians, the
reference FID code's sqrtm route, its invariances, and both of medtl's routes equal."""

import numpy as np
import pytest
import scipy.linalg
import torch

from medtl import data as D
from medtl import models as M
from medtl import similarity as S


def _reference_fid(x, y):
    """The reference FID code's computation (pytorch-fid / TTUR): scipy's sqrtm of Σ₁Σ₂."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_closed_form_on_diagonal_gaussians():
    """For commuting (here diagonal) covariances d² = ‖Δμ‖² + Σ(√a − √b)²."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert S.frechet_gaussian(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]  # a common rotation leaves it unchanged
    assert S.frechet_gaussian(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T) == pytest.approx(want,
                                                                                                           rel=1e-10)


@pytest.mark.parametrize("n1,n2,d", [(300, 250, 8), (20, 30, 64), (40, 40, 40), (20, 900, 16)])
def test_equals_the_reference_fid_code_on_both_routes(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    x = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
    y = rng.normal(size=(n2, d)) * 1.5 + 0.3
    want = _reference_fid(x, y)
    got = S.frechet_distance(x, y)
    assert got == pytest.approx(want, rel=1e-7)
    mu = lambda z: z.mean(0)  # noqa: E731
    full_rank = min(n1, n2) > d  # else the D×D route takes square roots of round-off eigenvalues
    assert S.frechet_gaussian(mu(x), np.cov(x, rowvar=False), mu(y), np.cov(y, rowvar=False)) == pytest.approx(
        got, rel=1e-10 if full_rank else 1e-7)  # the covariance route equals the factor route


def test_invariances_and_meaning():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 5)), rng.normal(size=(300, 5)) + [2.0, 0, 0, 0, 0]
    d = S.frechet_distance(x, y)
    assert S.frechet_distance(x, x) == pytest.approx(0, abs=1e-10)
    assert S.frechet_distance(y, x) == pytest.approx(d, rel=1e-12)
    assert S.frechet_distance(x[rng.permutation(400)], y[::-1]) == pytest.approx(d, rel=1e-12)
    q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    assert S.frechet_distance(x @ q + 7, y @ q + 7) == pytest.approx(d, rel=1e-10)
    assert S.frechet_distance(3 * x, 3 * y) == pytest.approx(9 * d, rel=1e-12)
    assert d == pytest.approx(4.0, abs=0.3)  # a mean shift of 2 in one dimension: d² ≈ 4
    same = S.frechet_distance(x, rng.normal(size=(300, 5)))  # two samples of one distribution
    assert same < 0.1 < d
    assert isinstance(S.frechet_distance(torch.as_tensor(x), torch.as_tensor(y)), float)


def test_bad_inputs_are_named():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="same feature dimension, got 3 and 4"):
        S.frechet_distance(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="y needs at least 2 samples"):
        S.frechet_distance(x, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="x must be a 2-D array"):
        S.frechet_distance(np.zeros(5), x)
    with pytest.raises(ValueError, match="x holds 1 non-finite"):
        S.frechet_distance(np.vstack([x, [[np.nan, 0, 0]]]), x)
    with pytest.raises(ValueError, match="shapes disagree"):
        S.frechet_gaussian(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_dataset_fid_orders_the_synthetic_suite():
    """A set is nearer to more of its own images than to another dataset's, in any model's
    features (a random ResNet-18's here)."""
    model = M.create("resnet18", num_classes=2, seed=0).eval()
    a1 = D.get("texture-a", split="train", size=28).subset(np.arange(0, 150))
    a2 = D.get("texture-a", split="train", size=28).subset(np.arange(150, 300))
    b = D.get("shape-b", split="train", size=28).subset(np.arange(150))
    near, far = S.dataset_fid(model, a1, a2), S.dataset_fid(model, a1, b)
    assert 0 <= near < far
    assert S.dataset_fid(model, a1, a1) == pytest.approx(0, abs=1e-6)
