import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import medtl.data as D
from medtl.data import augment as A


def _set(n=37, c=1, size=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return D.ImageSet(torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g),
                      torch.arange(n) % classes, "multi-class", [str(i) for i in range(classes)], name="toy")


def test_epoch_covers_every_image_once_and_is_seeded():
    ds = _set()
    L = D.loader(ds, batch_size=8, shuffle=True, seed=3, normalize=None)
    assert len(L) == 5
    first = torch.cat([y for _, y in L])
    second = torch.cat([y for _, y in L])
    assert sorted(first.tolist()) == sorted(ds.labels.tolist())
    assert not torch.equal(L.order(0), L.order(1))
    L2 = D.loader(ds, batch_size=8, shuffle=True, seed=3, normalize=None)
    assert torch.equal(first, torch.cat([y for _, y in L2]))
    L2.set_epoch(1)
    assert torch.equal(second, torch.cat([y for _, y in L2]))
    assert len(D.loader(ds, batch_size=8, drop_last=True)) == 4


def test_plain_batches_are_exact_conversions():
    ds = _set(c=1)
    x, y = next(iter(D.loader(ds, batch_size=37, channels=3, normalize="medmnist")))
    want = (ds.images.float() / 255 - 0.5) / 0.5
    assert x.shape == (37, 3, 12, 12) and x.dtype == torch.float32
    assert torch.allclose(x, want.expand(-1, 3, -1, -1), atol=1e-6) and torch.equal(y, ds.labels)
    x, _ = next(iter(D.loader(_set(c=3), batch_size=37, normalize="imagenet")))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(x, (_set(c=3).images.float() / 255 - mean) / std, atol=1e-5)


def test_resize_uses_interpolate():
    ds = _set(size=12)
    x, _ = next(iter(D.loader(ds, batch_size=37, image_size=30, normalize=None)))
    want = F.interpolate(ds.images.float() / 255, size=(30, 30), mode="bilinear", align_corners=False)
    assert torch.allclose(x, want, atol=1e-6)
    x, _ = next(iter(D.loader(ds, batch_size=37, image_size=24, normalize=None, resize_mode="nearest")))
    assert torch.equal(x, ds.images.float().div(255).repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_sample_weights_draw_with_replacement():
    ds = _set(n=30)
    w = (ds.labels == 0).double()
    ys = torch.cat([y for _, y in D.loader(ds, batch_size=7, sample_weights=w)])
    assert len(ys) == 30 and set(ys.tolist()) == {0}
    with pytest.raises(ValueError, match="30 non-negative numbers"):
        D.loader(ds, sample_weights=np.ones(3))


def test_loader_errors():
    ds = _set()
    with pytest.raises(ValueError, match="unknown normalisation 'imagnet'"):
        D.loader(ds, normalize="imagnet")
    with pytest.raises(ValueError, match="unknown augmentation recipe 'strong'"):
        D.loader(ds, augment="strong")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        D.loader(ds, batch_size=0)
    with pytest.raises(ValueError, match="RGB; channels=1"):
        D.loader(_set(c=3), channels=1)


# --- augmentation against torchvision's own (PIL-free) functional ops --------------------
def test_rotation_matches_torchvision():
    x = torch.rand(4, 3, 20, 20, dtype=torch.float64)
    angles = torch.tensor([0.0, 5.0, -30.0, 90.0])
    got = A.rotate(x, angles)
    for i, a in enumerate(angles.tolist()):
        want = TF.rotate(x[i], a, interpolation=T.InterpolationMode.BILINEAR)
        assert torch.allclose(got[i], want, atol=1e-6), a


def test_resized_crop_matches_torchvision_when_enlarging():
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [2.0, 3.0, 10.0, 11.0], [5.0, 0.0, 9.0, 12.0]])
    got = A.resized_crop(x, boxes, (24, 24))
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        want = TF.resized_crop(x[i], y1, x1, y2 - y1, x2 - x1, [24, 24], antialias=True)
        # torchvision clamps samples to the crop's edge pixels; roi_align reads the real
        # neighbours outside the crop, so only the outermost (≤ 3 at 6x) output pixels differ
        assert torch.allclose(got[i][..., 3:-3, 3:-3], want[..., 3:-3, 3:-3], atol=1e-6)
        if i == 0:
            assert torch.allclose(got[i], want, atol=1e-6)


def test_full_box_same_size_is_identity():
    x = torch.rand(2, 3, 10, 10)
    assert torch.allclose(A.resized_crop(x, torch.tensor([[0.0, 0, 10, 10]] * 2), (10, 10)), x, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(8, 64), w=st.integers(8, 64), seed=st.integers(0, 10_000),
       lo=st.floats(0.05, 0.9), ratio_hi=st.floats(1.0, 2.0))
def test_crop_boxes_obey_scale_ratio_and_bounds(h, w, seed, lo, ratio_hi):
    g = torch.Generator().manual_seed(seed)
    ratio = (1 / ratio_hi, ratio_hi)
    boxes = A.sample_crop_boxes(g, 50, h, w, (lo, 1.0), ratio)
    x1, y1, x2, y2 = boxes.unbind(1)
    assert bool((x1 >= 0).all() and (y1 >= 0).all() and (x2 <= w).all() and (y2 <= h).all())
    assert bool(((x2 - x1) >= 1).all() and ((y2 - y1) >= 1).all())
    area = (x2 - x1) * (y2 - y1) / (h * w)
    bw, bh = x2 - x1, y2 - y1
    # torchvision's fallback after 10 failed tries: the central crop, one side full
    fallback = (x1 == (w - bw) // 2) & (y1 == (h - bh) // 2) & ((bw == w) | (bh == h))
    # rounding of w, h can move the area a little outside the sampled range
    slack = 2 * (1 / h + 1 / w) + 4 / (h * w)
    assert bool(((area >= lo - slack) | fallback).all())


def test_crop_box_statistics_match_torchvision():
    g = torch.Generator().manual_seed(0)
    ours = A.sample_crop_boxes(g, 4000, 28, 28, (0.08, 1.0), (3 / 4, 4 / 3))
    ours_area = ((ours[:, 2] - ours[:, 0]) * (ours[:, 3] - ours[:, 1]) / 784).numpy()
    torch.manual_seed(0)
    img = torch.zeros(1, 28, 28)
    tv = np.array([h * w / 784 for _, _, h, w in (T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
                                                   for _ in range(4000))])
    assert abs(ours_area.mean() - tv.mean()) < 0.02
    assert abs(np.median(ours_area) - np.median(tv)) < 0.03


def test_study_recipe_flips_and_is_deterministic():
    ds = _set(n=64, c=3, size=28)
    make = lambda: D.loader(ds, batch_size=32, augment="study", seed=5, normalize=None)  # noqa: E731
    a = torch.cat([x for x, _ in make()])
    b = torch.cat([x for x, _ in make()])
    assert torch.equal(a, b) and a.shape == (64, 3, 28, 28)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    flip = D.Augment(hflip=1.0)
    g = torch.Generator().manual_seed(0)
    x = ds.images.float() / 255
    assert torch.equal(flip(x, (28, 28), g), x.flip(-1))


def test_colour_ops_follow_torchvision():
    x = torch.rand(6, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    out = D.Augment(sharpness=(2.0, 1.0), autocontrast=1.0)(x, (16, 16), g)
    assert torch.allclose(out, TF.autocontrast(TF.adjust_sharpness(x, 2.0)), atol=1e-6)


def test_rotation_keeps_mass_near_centre():
    x = torch.zeros(1, 1, 21, 21)
    x[..., 8:13, 8:13] = 1
    r = A.rotate(x, torch.tensor([45.0]))
    assert math.isclose(float(r.sum()), 25.0, rel_tol=0.05)


# --- the studies' training augmentation rows ---------------------------------------------------
def test_study_augmentation_rows_state_each_studys_values():
    """S004 params.json (§C.3), S002 ImageDataGenerator (§B.1), S001 utils/*.py (§A.4.2)."""
    reuse = D.RECIPES["feature-reuse"]
    assert reuse.crop_scale == (0.8, 1.2) and reuse.crop_ratio == (3 / 4, 4 / 3)
    assert (reuse.vflip, reuse.hflip, reuse.jitter, reuse.jitter_p, reuse.grayscale) == \
        (0.5, 0.5, (0.2, 0.2, 0.1, 0.1), 0.2, 0.2)
    hidden = D.RECIPES["hidden-representations"]
    assert (hidden.style, hidden.rotate, hidden.shift, hidden.shear, hidden.zoom, hidden.hflip, hidden.vflip) == \
        ("keras", 10.0, 0.1, 0.1, 0.1, 0.5, 0.0)
    assert D.RECIPES["hidden-representations-chest"] == hidden.with_(hflip=0.0)  # no flip on chest X-rays
    ttl = D.RECIPES["truncated-transfer"]
    assert (ttl.crop_scale, ttl.crop_ratio, ttl.hflip, ttl.rotate, ttl.jitter) == ((0.08, 1.0), (3 / 4, 4 / 3), 0.5, 0.0,
                                                                                  None)


def test_crop_scale_above_one_is_refused_and_redrawn_as_torchvision():
    """RandomResizedCrop(scale=(0.8, 1.2)): an area above the image's never fits, so the draw
    is repeated (up to 10 times) — area fractions lie in [0.8, 1] with torchvision's mean."""
    g = torch.Generator().manual_seed(0)
    ours = A.sample_crop_boxes(g, 4000, 28, 28, (0.8, 1.2), (3 / 4, 4 / 3))
    area = ((ours[:, 2] - ours[:, 0]) * (ours[:, 3] - ours[:, 1]) / 784).numpy()
    torch.manual_seed(0)
    img = torch.zeros(1, 28, 28)
    tv = np.array([h * w / 784 for _, _, h, w in (T.RandomResizedCrop.get_params(img, (0.8, 1.2), (3 / 4, 4 / 3))
                                                   for _ in range(4000))])
    assert area.max() <= 1 and tv.max() <= 1
    assert abs(area.mean() - tv.mean()) < 0.01 and abs((area == 1).mean() - (tv == 1).mean()) < 0.03


def test_warp_equals_scipy_affine_transform_as_keras_calls_it():
    """Keras' fill_mode="nearest" resampling is scipy.ndimage.affine_transform(order=1,
    mode="nearest") per channel: the batched warp equals it on a non-square image with
    large rotations, shifts, shears and zooms."""
    from scipy import ndimage

    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 2, 13, 17, generator=g, dtype=torch.float64)
    mats = A.keras_matrices(g, 4, (13, 17), rotate=40.0, shift=0.3, shear=15.0, zoom=0.4)
    ours = A.warp(x, mats)
    for i in range(4):
        m = mats[i].numpy()
        for c in range(2):
            ref = ndimage.affine_transform(x[i, c].numpy(), m[:2, :2], m[:2, 2], order=1, mode="nearest")
            np.testing.assert_allclose(ours[i, c].numpy(), ref, atol=1e-10)


def test_keras_matrices_draw_each_parameter_in_its_range():
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([6.0, 8.0, 1.0], dtype=torch.float64)  # ((H-1)/2, (W-1)/2) of 13×17
    shift = A.keras_matrices(g, 500, (13, 17), rotate=0.0, shift=0.1, shear=0.0, zoom=0.0)
    assert torch.equal(shift[:, :2, :2], torch.eye(2, dtype=torch.float64).expand(500, 2, 2))
    t = shift[:, :2, 2]
    assert t[:, 0].abs().max() <= 1.3 and t[:, 1].abs().max() <= 1.7 and t[:, 0].abs().max() > 1.2  # ±10 % of H, W
    zoom = A.keras_matrices(g, 500, (13, 17), rotate=0.0, shift=0.0, shear=0.0, zoom=0.1)
    d = torch.diagonal(zoom[:, :2, :2], dim1=1, dim2=2)
    assert ((d >= 0.9) & (d <= 1.1)).all() and (d[:, 0] != d[:, 1]).all()  # the axes zoom independently
    torch.testing.assert_close(zoom @ centre, centre.expand(500, 3))  # about the centre
    rot = A.keras_matrices(g, 500, (13, 17), rotate=10.0, shift=0.0, shear=0.0, zoom=0.0)
    angle = torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))
    assert angle.abs().max() <= 10 and angle.abs().max() > 9.5 and angle.min() < -9.5
    torch.testing.assert_close(rot[:, :2, :2] @ rot[:, :2, :2].transpose(1, 2), torch.eye(2, dtype=torch.float64)
                               .expand(500, 2, 2))


def test_keras_style_shifts_content_and_repeats_edges():
    """A shift-only Keras transform moves a bright square and fills the uncovered border
    with the edge pixels (fill_mode "nearest"), never with zeros."""
    x = torch.zeros(1, 1, 20, 20)
    x[..., 8:12, 8:12] = 1
    x[..., :, 0] = 0.5  # the left column: what a leftward shift repeats
    aug = D.Augment(style="keras", shift=0.25)
    g = torch.Generator().manual_seed(4)
    out = aug(x, (20, 20), g)
    g = torch.Generator().manual_seed(4)
    t = A.keras_matrices(g, 1, (20, 20), 0.0, 0.25, 0.0, 0.0)[0, :2, 2]
    ys, xs = (out[0, 0] > 0.99).nonzero(as_tuple=True)
    assert abs(float(ys.float().mean()) - (9.5 - float(t[0]))) < 0.6  # output p reads input p + t
    assert abs(float(xs.float().mean()) - (9.5 - float(t[1]))) < 0.6
    assert float(t[1]) < -4  # seed 4 moves the content 4.4 px right: the left border repeats the 0.5 column
    assert torch.allclose(out[0, 0, :, :4], torch.full((20, 4), 0.5))


def test_jitter_and_grayscale_follow_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, 8, 8, generator=g)
    bright = D.Augment(jitter=(0.2, 0.0, 0.0, 0.0))(x, (8, 8), torch.Generator().manual_seed(1))
    ratio = (bright / x)[bright < 0.999].reshape(-1)
    per_image = [(bright[i] / x[i])[bright[i] < 0.999] for i in range(400)]
    assert all(float(r.max() - r.min()) < 1e-5 for r in per_image)  # one brightness factor per image
    assert 0.8 - 1e-6 <= float(ratio.min()) < 0.81 and 1.19 < float(ratio.max()) <= 1.2 + 1e-6
    gray = D.Augment(grayscale=1.0)(x, (8, 8), torch.Generator().manual_seed(1))
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x, num_output_channels=3))
    grey = x[:, :1]
    assert torch.equal(D.Augment(jitter=(0.0, 0.0, 0.1, 0.1), grayscale=1.0)(grey, (8, 8), g), grey)  # no colour to change
    some = D.Augment(jitter=(0.2, 0.2, 0.1, 0.1), jitter_p=0.2)(x, (8, 8), torch.Generator().manual_seed(2))
    changed = (some != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.2) < 0.06  # RandomApply(p=0.2)


def test_augment_refuses_mixed_styles_and_bad_probabilities():
    with pytest.raises(ValueError, match="style='keras'"):
        D.Augment(zoom=0.1)
    with pytest.raises(ValueError, match="no random resized crop"):
        D.Augment(style="keras", crop_scale=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"Augment.grayscale is a probability"):
        D.Augment(grayscale=1.5)
    with pytest.raises(ValueError, match="style must be"):
        D.Augment(style="albumentations")


@pytest.mark.parametrize("name", ["feature-reuse", "hidden-representations", "truncated-transfer"])
def test_study_rows_run_through_the_loader_deterministically(name):
    ds = _set(n=40, c=3, size=28)
    make = lambda: D.loader(ds, batch_size=16, augment=name, seed=3, normalize=None)  # noqa: E731
    a, b = torch.cat([x for x, _ in make()]), torch.cat([x for x, _ in make()])
    assert torch.equal(a, b) and a.shape == (40, 3, 28, 28) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.equal(a, torch.cat([x for x, _ in D.loader(ds, batch_size=16, seed=3, normalize=None)]))


def test_centre_crop_is_torchvisions_resize_then_center_crop():
    """The studies' evaluation transform, Resize(s / f) → CenterCrop(s): equal to
    torchvision's on the same images (up-sampling 28 → 32 px, and shrinking 64 → 32 → 28)."""
    ds = _set(n=6, c=3, size=28)
    x = torch.cat([b for b, _ in D.loader(ds, batch_size=6, normalize=None, centre_crop=224 / 256)])
    ref = TF.center_crop(TF.resize(ds.images.float() / 255, [32, 32], antialias=True), [28, 28])
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-5)
    big = _set(n=4, c=1, size=64)
    y = torch.cat([b for b, _ in D.loader(big, batch_size=4, image_size=28, normalize=None, centre_crop=0.875)])
    ref = TF.center_crop(TF.resize(big.images.float() / 255, [32, 32], antialias=True), [28, 28])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="centre_crop must be the kept fraction"):
        D.loader(ds, centre_crop=1.5)
