import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import medtl.data as D


def test_suite_is_deterministic_and_balanced():
    for name in D.SYNTHETIC:
        a, b = D.synthetic(name, "val"), D.synthetic(name, "val")
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert a.images.dtype == torch.uint8 and a.images.shape == (100, D.SYNTHETIC[name]["n_channels"], 28, 28)
        assert a.class_counts().tolist() == [25, 25, 25, 25]
        assert not torch.equal(a.images, D.synthetic(name, "val", seed=1).images)
        assert not torch.equal(a.images[:10], D.synthetic(name, "test").images[:10])


def test_sizes_and_errors():
    assert D.synthetic("shape-a", "train", size=64, n=8).images.shape == (8, 1, 64, 64)
    with pytest.raises(ValueError, match="unknown synthetic dataset 'shape-c'; valid names: texture-a"):
        D.synthetic("shape-c")
    with pytest.raises(ValueError, match="unknown split"):
        D.synthetic("shape-a", "dev")


def test_related_sets_share_the_class_factor():
    assert D.related("texture-b") == ["texture-a"]
    assert D.related("shape-a") == ["shape-b"]
    assert D.related("intensity") == []
    info = D.synthetic_info().set_index("name")
    assert info.loc["texture-a", "related"] == "texture-b"


def _probe_accuracy(train, test, features):
    clf = LogisticRegression(max_iter=2000).fit(features(train), train.labels.numpy())
    return clf.score(features(test), test.labels.numpy())


def _orientation_energy(ds):
    """Power of the image spectrum in 8 orientation sectors: sees texture, not shape."""
    x = ds.images.float().mean(1)
    x = x - x.mean((1, 2), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(x).abs() ** 2, dim=(-2, -1))
    n = x.shape[-1]
    fy, fx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    angle = torch.remainder(torch.atan2(fy.float(), fx.float()), torch.pi)
    sector = (angle / torch.pi * 8).long().clamp(max=7)
    radius = (fx**2 + fy**2).float().sqrt()
    feats = [(power * ((sector == s) & (radius > 1))).sum((1, 2)) for s in range(8)]
    f = torch.stack(feats, 1)
    return (f / f.sum(1, keepdim=True)).numpy()


def test_class_factor_is_learnable_and_nuisance_is_not():
    """The orientation spectrum separates both texture datasets (related; texture-b less
    cleanly, by design) but carries no
    class information for the shape and intensity datasets (unrelated)."""
    acc = {name: _probe_accuracy(D.synthetic(name, "train"), D.synthetic(name, "test"), _orientation_energy)
           for name in D.SYNTHETIC}
    assert acc["texture-a"] > 0.9
    # texture-b is the hard target: texture-a's orientations, but faint under noise and a
    # strong shape nuisance (well above chance 0.25, clearly below texture-a; 0.865 vs 1.0)
    assert 0.6 < acc["texture-b"] < acc["texture-a"] - 0.1
    assert acc["intensity"] < 0.4  # chance is 0.25
    mean = lambda ds: ds.images.float().mean((1, 2, 3), keepdim=False).numpy()[:, None]  # noqa: E731
    assert _probe_accuracy(D.synthetic("intensity"), D.synthetic("intensity", "test"), mean) > 0.9
    assert _probe_accuracy(D.synthetic("texture-a"), D.synthetic("texture-a", "test"), mean) < 0.4
    np.testing.assert_array_less(0.25 - 0.15, list(acc.values()))
