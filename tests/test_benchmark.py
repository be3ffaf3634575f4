"""The benchmark study in medtl: U-Net segmentation from any weight source, Dice/IoU,
paired augmentation, the initialisation zoo and `medtl models fetch`, TenCrop, the t-test,
label-efficiency subsets and the chest X-ray label formats."""

from __future__ import annotations

import hashlib
import random
import socket
import warnings

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import stats

import medtl.data as D
import medtl.evaluate as ev
import medtl.models as M
from medtl import cli
from medtl.train import evaluate, fit


def _encoder_equal(net, state, skip=("fc.",)):
    got = net.encoder.state_dict()
    keys = [k for k in state if not k.startswith(skip)]
    assert keys and set(keys) <= set(got)
    return all(torch.equal(got[k], state[k]) for k in keys)


# --- U-Net encoders from every weight source ---------------------------------------------------
def test_unet_encoder_from_imagenet_file_in_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    file = M.imagenet_file(M.imagenet_weights("resnet18"))
    file.parent.mkdir(parents=True)
    torch.manual_seed(5)
    state = tvm.resnet18().state_dict()
    torch.save(state, file)
    net = M.unet("resnet18", weights="imagenet", seed=0)
    assert _encoder_equal(net, state)
    assert net.medtl["normalize"] == "imagenet" and net.medtl["weights"] == "imagenet:IMAGENET1K_V1"
    assert not net.medtl["encoder_report"].missing and not net.medtl["encoder_report"].unexpected
    random_net = M.unet("resnet18", seed=0)
    assert not torch.equal(random_net.encoder.conv1.weight, net.encoder.conv1.weight)


def _moco_checkpoint(arch="resnet18", seed=9, tracked=True):
    torch.manual_seed(seed)
    state = tvm.get_model(arch).state_dict()
    if not tracked:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    ckpt = {f"module.encoder_q.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    ckpt.update({"module.encoder_q.fc.0.weight": torch.randn(8, 4), "module.encoder_q.fc.2.weight": torch.randn(4, 8),
                 "module.encoder_k.conv1.weight": torch.randn(2), "module.queue": torch.randn(4, 16)})
    return {"epoch": 200, "arch": arch, "state_dict": ckpt}, state


def test_unet_encoder_from_moco_checkpoint_through_the_remap_rules(tmp_path):
    ckpt, state = _moco_checkpoint()
    path = tmp_path / "moco.pth.tar"
    torch.save(ckpt, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = M.unet("resnet18", weights=path, method="moco-v2", seed=0)
    assert _encoder_equal(net, state)
    # without the rule the anchored generic prefix still finds the backbone, and the momentum
    # encoder and queue are reported as unexpected, never silently dropped
    with pytest.warns(UserWarning, match="unexpected"):
        M.create("resnet18", weights=path)


def test_unet_encoder_from_a_medtl_classification_source(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_MODELS", str(tmp_path))
    src = M.create("resnet18", num_classes=4, in_chans=1, seed=3)
    with torch.no_grad():
        src.layer3[0].conv1.weight.add_(1.0)  # "trained"
    M.save_source(src, "cls-source", source_data="shape-a")
    net = M.unet("resnet18", weights="source:cls-source", in_chans=1, seed=0)
    state = src.state_dict()
    assert _encoder_equal(net, state)
    assert net.medtl["weights"] == "source:cls-source"
    small = M.create("resnet18", num_classes=4, stem="cifar", image_size=28)
    M.save_source(small, "cifar-source")
    with pytest.raises(ValueError, match="standard stem"):
        M.unet("resnet18", weights="source:cifar-source")


def test_the_study_encoders_have_unets():
    assert {"resnet18", "resnet50", "densenet121"} <= set(M.unet_encoders())


@pytest.mark.parametrize("encoder", M.unet_encoders())
def test_unet_encoders_build_and_keep_torchvision_key_names(encoder):
    torch.manual_seed(0)
    full = tvm.get_model(encoder).state_dict()
    head = M.spec(encoder).head.split(".")[0]
    state = {k: v for k, v in full.items() if not M.under(k, head)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unexpected, nothing missing
        net = M.unet(encoder, weights=full, seed=1, strict=True)
    assert _encoder_equal(net, state, skip=())
    assert net.medtl["encoder_report"].dropped == [k for k in full if M.under(k, head)]
    out = net.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_unet_refuses_an_architecture_without_an_smp_encoder():
    with pytest.raises(ValueError, match="no U-Net encoder"):
        M.unet("vit_b_16")
    with pytest.raises(ValueError, match="multiples of 32"):
        M.unet("resnet18", image_size=60)


@pytest.mark.slow
def test_unet_learns_the_synthetic_suite_on_cpu():
    tr = D.synthetic_seg("shape-seg", "train", 64, n=256)
    va = D.synthetic_seg("shape-seg", "val", 64, n=48)
    te = D.synthetic_seg("shape-seg", "test", 64, n=96)
    net = M.unet("resnet18", in_chans=1, seed=0)
    result = fit(net, tr, va, optimizer="adam", lr=1e-3, schedule="cosine", epochs=5, batch_size=32,
                 progress=False, seed=0)
    assert result.monitor == "val_loss" and "val_dice" in result.history
    r = evaluate(net, te)
    assert r["dice"] > 0.8 and r["dice_image"] > 0.75 and r["iou"] > 0.65
    assert r["y_score"].shape == (96, 1, 64, 64)


def test_segmentation_fit_resumes_bit_exactly(tmp_path):
    tr = D.synthetic_seg("shape-seg", "train", 32, n=24)
    va = D.synthetic_seg("shape-seg", "val", 32, n=8)
    kw = dict(optimizer="adam", lr=1e-3, batch_size=12, augment="segmentation", progress=False, seed=3)
    whole = fit(M.unet("resnet18", in_chans=1, seed=0), tr, va, epochs=2, **kw).model.state_dict()
    with pytest.raises(KeyboardInterrupt):  # a crash after epoch 1 leaves last.pt behind
        fit(M.unet("resnet18", in_chans=1, seed=0), tr, va, epochs=2, checkpoint_dir=tmp_path,
            callbacks=[_stop_after(1)], **kw)
    resumed = fit(M.unet("resnet18", in_chans=1, seed=0), tr, va, epochs=2, checkpoint_dir=tmp_path, **kw)
    assert resumed.resumed_from == 2
    got = resumed.model.state_dict()
    assert all(torch.equal(got[k], whole[k]) for k in whole)


def _stop_after(epoch):
    def cb(e, row):
        if e == epoch:
            raise KeyboardInterrupt

    return cb


def test_segmentation_monitor_and_loss_are_checked():
    tr = D.synthetic_seg("shape-seg", "train", 32, n=4)
    with pytest.raises(ValueError, match="segmentation set is monitored"):
        fit(M.unet("resnet18", in_chans=1), tr, tr, epochs=1, monitor="val_auc", progress=False)
    with pytest.raises(ValueError, match="segmentation loss"):
        fit(M.unet("resnet18", in_chans=1), tr, tr, epochs=1, loss="ce", progress=False)
    with pytest.raises(ValueError, match="segmentation set but the model is a classification model"):
        fit(M.create("resnet18", num_classes=1, in_chans=1), tr, tr, epochs=1, progress=False)
    cls = D.synthetic("shape-a", "val", 32, n=8)
    with pytest.raises(ValueError, match="classification set but the model is a segmentation model"):
        evaluate(M.unet("resnet18", in_chans=1), cls)


# --- Dice and IoU against brute force -----------------------------------------------------------
def _brute(masks, probs, thr=0.5):
    inter = pred = true = 0
    per = []
    for m, p in zip(masks, probs):
        i = s_p = s_t = 0
        for t_px, p_px in zip(m.ravel().tolist(), p.ravel().tolist()):
            hit = p_px > thr
            i += hit and t_px == 1
            s_p += hit
            s_t += t_px == 1
        per.append(1.0 if s_p + s_t == 0 else 2 * i / (s_p + s_t))
        inter, pred, true = inter + i, pred + s_p, true + s_t
    return 2 * inter / (pred + true), float(np.mean(per)), inter / (pred + true - inter)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5), st.floats(0.0, 0.6))
def test_dice_and_iou_equal_brute_force(seed, n, empty_share):
    rng = np.random.default_rng(seed)
    masks = (rng.random((n, 1, 6, 7)) < 0.4).astype(np.uint8)
    masks[: int(n * empty_share)] = 0  # images without foreground
    probs = rng.random((n, 1, 6, 7))
    probs[: int(n * empty_share) // 2] = 0.1  # … some predicted empty as well
    g, per, iou = _brute(masks, probs)
    assert ev.dice(masks, probs) == pytest.approx(g, abs=1e-12)
    assert ev.dice_per_image(masks, probs) == pytest.approx(per, abs=1e-12)
    assert ev.iou(masks, probs) == pytest.approx(iou, abs=1e-12)
    assert ev.iou(masks, probs) == pytest.approx(g / (2 - g), abs=1e-12)


def test_dice_bootstrap_and_loss():
    masks = np.zeros((6, 1, 8, 8), np.uint8)
    masks[:, :, 2:6, 2:6] = 1
    perfect = masks.astype(float)
    ci = ev.bootstrap_ci(masks, perfect, "segmentation", "dice", n_boot=20)
    assert ci["value"] == ci["low"] == ci["high"] == 1.0
    logits = torch.where(torch.as_tensor(masks, dtype=torch.bool), 20.0, -20.0)
    assert float(ev.loss_fn("segmentation", "dice")(logits, torch.as_tensor(masks))) < 1e-6
    assert float(ev.loss_fn("segmentation", "dice")(-logits, torch.as_tensor(masks))) > 0.9
    with pytest.raises(ValueError, match="0/1"):
        ev.dice(masks * 2, perfect)


# --- paired augmentation keeps image and mask aligned -------------------------------------------
def test_paired_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(8, 1, 32, 32)
    mask[:, :, 4:14, 2:10] = 1  # a bar in the top-left quadrant
    image = torch.cat([mask, 0.5 * mask, mask], 1)  # the image *is* its mask (RGB)
    geometric = D.Augment(hflip=1.0, crop_scale=(0.5, 1.0), rotate=25.0, distort=1.0)
    g = torch.Generator().manual_seed(0)
    x, m = geometric.paired(image, mask, (32, 32), g)
    assert torch.equal((x[:, :1] > 0.5).float(), m)
    assert not torch.equal(m, mask)  # it did move
    flip = D.Augment(hflip=1.0)
    x, m = flip.paired(image, mask, (32, 32), torch.Generator().manual_seed(1))
    want = torch.zeros_like(mask)
    want[:, :, 4:14, 22:30] = 1  # the known mirrored position
    assert torch.equal(m, want) and torch.equal((x[:, :1] > 0.5).float(), want)
    color = D.RECIPES["segmentation"].with_(crop_p=0.0, distort=0.0, color=1.0)
    x, m = color.paired(image, mask, (32, 32), torch.Generator().manual_seed(2))
    assert torch.equal(m, mask) and not torch.equal(x, image)


def test_segset_loader_resizes_masks_with_nearest_neighbours():
    data = D.synthetic_seg("texture-seg", "train", 64, n=4)
    x, m = next(iter(D.loader(data, batch_size=4, image_size=32, channels=3)))
    assert x.shape == (4, 3, 32, 32) and m.shape == (4, 1, 32, 32)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m, data.masks[:, :, ::2, ::2].float()) or (m != data.masks[:, :, ::2, ::2]).float().mean() < 0.05


def test_seg_folder_pairs_images_with_masks_including_drive_names(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    for i, name in enumerate(["a.png", "21_training.png"]):
        arr = np.full((20, 20, 3), 40 * (i + 1), np.uint8)
        Image.fromarray(arr).save(tmp_path / "img" / name)
        mask = np.zeros((20, 20), np.uint8)
        mask[5:15, 5:10] = 255
        target = "a.png" if i == 0 else "21_manual1.gif"
        Image.fromarray(mask).save(tmp_path / "mask" / target)
    data = D.from_seg_folder(tmp_path / "img", tmp_path / "mask", size=10, progress=False)
    assert isinstance(data, D.SegSet) and data.masks.shape == (2, 1, 10, 10)
    assert set(data.masks.unique().tolist()) == {0, 1}
    assert data.masks[0, 0, 2:7, 2:5].all() and data.masks[0, 0, :2].sum() == 0
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "img" / "lonely.png")
    with pytest.raises(ValueError, match="lonely.png"):
        D.from_seg_folder(tmp_path / "img", tmp_path / "mask", size=10, progress=False)


def test_segset_validates_masks_and_keeps_its_type_through_subsets():
    with pytest.raises(ValueError, match="0/1"):
        D.SegSet(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=torch.full((2, 1, 4, 4), 255))
    with pytest.raises(ValueError, match="matching"):
        D.SegSet(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=torch.zeros(2, 1, 5, 4))
    data = D.synthetic_seg("shape-seg", "val", 32, n=10)
    part = data.subset([3, 1])
    assert isinstance(part, D.SegSet) and torch.equal(part.masks[0], data.masks[3])
    assert D.synthetic_seg("shape-seg", "val", 32, n=10).fingerprint() == data.fingerprint()


# --- TenCrop ------------------------------------------------------------------------------------
def test_tencrop_equals_the_mean_of_ten_explicit_crops():
    data = D.synthetic("shape-b", "test", 40, n=12)
    model = M.create("resnet18", num_classes=4, seed=0).eval()
    r = evaluate(model, data, image_size=40, tencrop=32, normalize="medmnist")
    x, _ = next(iter(D.loader(data, batch_size=12, image_size=40, normalize="medmnist", channels=3)))
    views = []
    for img in (x, x.flip(-1)):
        views += [img[..., :32, :32], img[..., :32, -32:], img[..., -32:, :32], img[..., -32:, -32:],
                  img[..., 4:36, 4:36]]
    with torch.no_grad():
        want = torch.stack([torch.softmax(model(v), 1) for v in views]).mean(0).numpy()
    assert np.allclose(r["y_score"], want, atol=1e-6)
    sig = evaluate(model, data, image_size=40, tencrop=32, loss="bce")
    with torch.no_grad():
        want_sig = torch.stack([torch.sigmoid(model(v)) for v in views]).mean(0).numpy()
    assert np.allclose(sig["y_score"], want_sig, atol=1e-6)
    with pytest.raises(ValueError, match="tencrop"):
        evaluate(model, data, image_size=40, tencrop=48)


# --- trials and the t-test ----------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 1.0), min_size=2, max_size=12), st.lists(st.floats(0.5, 1.0), min_size=2, max_size=12))
def test_ttest_equals_scipy(a, b):
    for equal_var in (True, False):
        got = ev.ttest(a, b, equal_var=equal_var)
        want = stats.ttest_ind(a, b, equal_var=equal_var)
        if np.isnan(want.statistic):
            assert np.isnan(got["t"]) or np.isinf(got["t"])
            continue
        assert got["t"] == pytest.approx(want.statistic, rel=1e-9, abs=1e-9)
        assert got["p"] == pytest.approx(want.pvalue, rel=1e-7, abs=1e-12)


def test_compare_trials_marks_a_planted_difference():
    import pandas as pd

    from medtl import study

    rng = np.random.default_rng(0)
    rows = [{"arm": "classification", "target": "t", "metric": "auc", "init": init, "trial": i, "value": v}
            for init, mu in (("imagenet", 0.80), ("better", 0.85), ("same", 0.80))
            for i, v in enumerate(mu + 0.005 * rng.standard_normal(10))]
    table = study.compare_trials(pd.DataFrame(rows), "imagenet").set_index("init")
    assert table.loc["better", "p"] < 1e-4 and table.loc["better", "marker"] == "****"
    assert table.loc["same", "marker"] == "n.s." and table.loc["imagenet", "marker"] == ""
    want = stats.ttest_ind([r["value"] for r in rows if r["init"] == "better"],
                           [r["value"] for r in rows if r["init"] == "imagenet"], equal_var=False)
    assert table.loc["better", "p_welch"] == pytest.approx(want.pvalue, rel=1e-9)


def test_anno_subset_is_the_studys_seeded_shuffle():
    data = D.synthetic("shape-a", "val", 28, n=50)
    part = D.anno_subset(data, 30)
    order = list(range(50))
    random.Random(99).shuffle(order)
    assert part.meta["indices"].tolist() == order[:15]
    assert D.anno_subset(data, 30).fingerprint() == part.fingerprint()
    with pytest.raises(ValueError, match="percent"):
        D.anno_subset(data, 0)


# --- chest X-ray label formats -------------------------------------------------------------------
def _chexpert(tmp_path, rows):
    root = tmp_path / "CheXpert-v1.0-small"
    (root / "train").mkdir(parents=True)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *D.CHEXPERT_LABELS]
    lines = [",".join(header)]
    for i, cells in enumerate(rows):
        img = root / "train" / f"p{i}.jpg"
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(img)
        lines.append(",".join([f"CheXpert-v1.0-small/train/p{i}.jpg", "Male", "50", "Frontal", "AP", *cells]))
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root / "train.csv"


CELLS = [["1.0", "", "-1.0", "0.0"] + [""] * 10, ["0.0", "-1.0", "1.0", ""] + ["0"] * 10]


@pytest.mark.parametrize("policy, hard, soft", [("Ones", 1, None), ("Zeros", 0, None), ("LSR-Ones", 1, (0.55, 0.85)),
                                                ("LSR-Zeros", 0, (0.0, 0.3))])
def test_chexpert_uncertain_label_policies(tmp_path, policy, hard, soft):
    data = D.from_chexpert(_chexpert(tmp_path, CELLS), size=8, policy=policy, progress=False)
    y = data.labels.numpy()
    assert data.task == D.MULTI_LABEL and data.label_names == list(D.CHEXPERT_LABELS)
    assert y[0, 0] == 1 and y[0, 1] == 0 and y[0, 3] == 0 and y[1, 2] == 1  # positives, blanks → 0, negatives
    assert y[0, 2] == hard and y[1, 1] == hard  # the uncertain cells
    assert data.meta["uncertain"].sum() == 2
    assert data.meta.get("uncertain_range") == soft
    ones = D.from_chexpert(_chexpert(tmp_path / "u", CELLS), size=8, policy=policy, unknown=1, progress=False)
    assert ones.labels[0, 1] == 1 and ones.labels[0, 3] == 0


def test_chexpert_lsr_labels_are_redrawn_every_training_epoch(tmp_path):
    data = D.from_chexpert(_chexpert(tmp_path, CELLS), size=8, policy="LSR-Ones", progress=False)
    train = D.loader(data, batch_size=2, shuffle=False, seed=4)
    train.shuffle = True  # the training loader (fit shuffles)
    draws = []
    for epoch in range(3):
        train.set_epoch(epoch)
        _, y = next(iter(train))
        order = train.order(epoch).numpy()
        unc = data.meta["uncertain"][order]
        vals = y.numpy()[unc]
        assert ((vals >= 0.55) & (vals <= 0.85)).all()
        assert np.array_equal(y.numpy()[~unc], data.labels.numpy()[order][~unc])
        draws.append(sorted(vals.tolist()))
    assert draws[0] != draws[1]
    train.set_epoch(0)
    assert sorted(next(iter(train))[1].numpy()[data.meta["uncertain"][train.order(0).numpy()]].tolist()) == draws[0]
    _, y_eval = next(iter(D.loader(data, batch_size=2)))
    assert torch.equal(y_eval, data.labels)  # evaluation sees the hard labels


def test_chexpert_auc_on_the_five_reported_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 14)) < 0.4).astype(int)
    s = rng.random((40, 14))
    cols = [D.CHEXPERT_LABELS.index(n) for n in D.CHEXPERT_EVAL]
    from sklearn.metrics import roc_auc_score

    per = ev.per_class_auc(y, s, D.MULTI_LABEL, cols)
    assert np.allclose(per, [roc_auc_score(y[:, c], s[:, c]) for c in cols])


def test_chexpert_bad_cells_are_named(tmp_path):
    with pytest.raises(ValueError, match="'maybe'"):
        D.from_chexpert(_chexpert(tmp_path, [["maybe"] + [""] * 13]), size=8, progress=False)
    with pytest.raises(ValueError, match="policy"):
        D.from_chexpert(_chexpert(tmp_path / "b", CELLS), size=8, policy="Twos", progress=False)


def test_shenzhen_comma_list_without_header(tmp_path):
    for name in ("CHNCXR_0001_0.png", "CHNCXR_0002_1.png", "CHNCXR_0003_1.png"):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / name)
    (tmp_path / "train.txt").write_text("CHNCXR_0001_0.png,0\nCHNCXR_0002_1.png,1\nCHNCXR_0003_1.png, 1\n")
    data = D.from_list(tmp_path / "train.txt", sep=",", size=8, progress=False)
    assert data.task == D.BINARY and data.labels.tolist() == [0, 1, 1]


# --- the initialisation zoo and `medtl models fetch` ----------------------------------------------
def test_zoo_table_has_the_studys_21_initialisations():
    table = M.inits_table()
    assert len(table) == 21 and table["name"].is_unique
    assert table.groupby("category").size().to_dict() == {"domain-adaptive": 2, "fine-grained": 2, "in-domain": 2,
                                                          "self-supervised": 14, "supervised": 1}
    for row in M.INITS.values():
        assert row.method is None or row.method in M.SSL_PREFIXES
        assert row.url.startswith("https://")
    # the BYOL checkpoint the BYOL paper's code and the study download (DeepMind's bucket)
    assert M.get_init("byol").url == "https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl"
    # direct links where upstream has them (the study's download script and PyContrast's zoo): only
    # iNat2021 (a download page) is not fetched by medtl; SimCLR's TF1 checkpoints are google-research/simclr's
    assert {r.name for r in M.INITS.values() if r.fmt not in ("torch", "haiku", "tf")} == {"inat2021",
                                                                                         "inat2021-mini"}
    assert M.get_init("simclr-v1").url == \
        "https://storage.googleapis.com/simclr-checkpoints/simclrv1/pretrain/1x/model.ckpt-225206"
    assert M.get_init("simclr-v2").url == \
        "https://storage.googleapis.com/simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228"
    zenodo = "https://zenodo.org/record/5205234/files/"
    assert {M.get_init(n).url for n in ("chestx-ray14", "chexpert", "imagenet_chestx-ray14", "imagenet_chexpert")} == {
        f"{zenodo}{f}.pth.tar?download=1" for f in ("chestxray14", "chexpert", "ImageNet_chestxray14", "ImageNet_chexpert")}
    assert M.get_init("pcl-v2").url.endswith("/sfr-pcl-data-research/PCL_checkpoint/PCL_v2_epoch200.pth.tar")
    for name, file in (("insdis", "InsDis.pth"), ("pirl", "PIRL.pth"), ("infomin", "InfoMin_800.pth")):
        url = M.get_init(name).url
        assert url.startswith("https://www.dropbox.com/sh/87d24jqsl6ra7t2/") and url.endswith(f"/{file}?dl=1")


@pytest.fixture
def zoo_row(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt, state = _moco_checkpoint("resnet50", tracked=False)
    src = tmp_path / "upstream" / "moco_test.pth.tar"
    src.parent.mkdir()
    torch.save(ckpt, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    row = M.register_init(M.Init("moco-test", "self-supervised", "ImageNet-1k", "momentum contrast",
                                 src.as_uri(), "moco_test.pth.tar", "moco-v2", sha256=digest))
    yield row, src, state
    M.INITS.unregister("moco-test")


def test_fetch_from_file_url_then_load_by_zoo_name(zoo_row):
    row, src, state = zoo_row
    with pytest.raises(FileNotFoundError, match="medtl models fetch moco-test"):
        M.create("resnet50", weights="moco-test")
    assert cli.main(["models", "fetch", "moco-test", "--quiet"]) == 0
    assert row.path.read_bytes() == src.read_bytes() and not row.path.with_name(row.file + ".part").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = M.create("resnet50", num_classes=2, weights="moco-test")  # no num_batches_tracked: still loads
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert model.medtl["weights"] == "moco-test" and model.medtl["normalize"] == "imagenet"
    with pytest.raises(ValueError, match="resnet50 checkpoint, not resnet18"):
        M.create("resnet18", weights="moco-test")


def test_fetch_resumes_a_partial_download(zoo_row):
    row, src, _ = zoo_row
    payload = src.read_bytes()
    part = row.path.with_name(row.file + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[: len(payload) // 2])
    assert M.fetch("moco-test", progress=False) == row.path
    assert row.path.read_bytes() == payload


def test_fetch_refuses_a_checksum_mismatch(zoo_row, tmp_path):
    row, src, _ = zoo_row
    other = tmp_path / "other.pth"
    other.write_bytes(b"not the checkpoint")
    with pytest.raises(ValueError, match="sha256"):
        M.fetch("moco-test", url=other.as_uri(), progress=False)
    assert not row.path.exists() and not row.path.with_name(row.file + ".part").exists()


def test_fetch_offline_names_url_and_destination(zoo_row):
    row, _, _ = zoo_row
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/moco_test.pth.tar"
    with pytest.raises(OSError) as err:
        M.fetch("moco-test", url=url, progress=False, timeout=5)
    assert url in str(err.value) and str(row.path) in str(err.value)


def test_foreign_formats_name_their_conversion_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="medtl models fetch byol.*and converts it"):
        M.create("resnet50", weights="byol")
    with pytest.raises(FileNotFoundError, match=r"medtl models fetch simclr-v1.*model.ckpt-225206.index .*converts it"):
        M.create("resnet50", weights="simclr-v1")
    with pytest.raises(ValueError, match="download page"):
        M.fetch("inat2021", progress=False)


def test_fetch_checks_a_published_hash_prefix_before_the_file_appears(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    src = tmp_path / "resnet50-0676ba61.pth"
    src.write_bytes(b"a file whose SHA-256 does not start with 0676ba61")
    with pytest.raises(ValueError, match="sha256"):
        M.fetch("imagenet", url=src.as_uri(), progress=False)
    assert not M.get_init("imagenet").path.exists()
    good = tmp_path / "good.pth"
    good.write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    M.register_init(M.Init("prefixed", "supervised", "-", "-", good.as_uri(), "prefixed.pth", sha256_prefix=digest[:8]))
    try:
        assert M.fetch("prefixed", progress=False).read_bytes() == b"x"
    finally:
        M.INITS.unregister("prefixed")


# --- BYOL: DeepMind's Haiku pickle, converted (spec §2 step 2) -----------------------------------
def _byol_pickle(path, net):
    """A BYOL checkpoint as DeepMind's code pickles it: ``{"experiment_state":
    _ByolExperimentState(online_params, target_params, online_state, target_state, opt_state),
    "step", "rng"}`` of numpy arrays, Haiku module names and layouts (HWIO kernels, (1,1,1,C)
    batch-norm params, ``mean_ema``/``var_ema`` states), projector/predictor heads included.
    The state's class lives in a ``byol`` module that is gone when the file is read."""
    import collections
    import pickle
    import sys
    import types

    params, state = {}, {}
    root = "res_net50/~/"

    def conv(name, m):
        params[root + name] = {"w": m.weight.detach().permute(2, 3, 1, 0).numpy().copy()}

    def bn(name, m):
        c = m.num_features
        params[root + name] = {"scale": m.weight.detach().numpy().reshape(1, 1, 1, c).copy(),
                               "offset": m.bias.detach().numpy().reshape(1, 1, 1, c).copy()}
        for ema, buf in (("mean_ema", m.running_mean), ("var_ema", m.running_var)):
            state[f"{root}{name}/~/{ema}"] = {"average": buf.numpy().reshape(1, 1, 1, c).copy(),
                                              "hidden": buf.numpy().reshape(1, 1, 1, c).copy(), "counter": np.int64(7)}

    conv("initial_conv", net.conv1)
    bn("initial_batchnorm", net.bn1)
    for g, layer in enumerate((net.layer1, net.layer2, net.layer3, net.layer4)):
        for b, block in enumerate(layer):
            pre = f"block_group_{g}/~/block_{b}/~/"
            for i, (c, n) in enumerate(((block.conv1, block.bn1), (block.conv2, block.bn2), (block.conv3, block.bn3))):
                conv(f"{pre}conv_{i}", c)
                bn(f"{pre}batchnorm_{i}", n)
            if block.downsample is not None:
                conv(f"{pre}shortcut_conv", block.downsample[0])
                bn(f"{pre}shortcut_batchnorm", block.downsample[1])
    params["projector/~/linear"] = {"w": np.ones((2048, 4096), np.float32), "b": np.zeros(4096, np.float32)}
    params["projector/~/batch_norm"] = {"scale": np.ones((1, 4096), np.float32), "offset": np.zeros((1, 4096), np.float32)}
    params["predictor/~/linear"] = {"w": np.ones((256, 4096), np.float32), "b": np.zeros(4096, np.float32)}
    params["classifier"] = {"w": np.ones((2048, 1000), np.float32), "b": np.zeros(1000, np.float32)}
    mod = types.ModuleType("byol.byol_experiment")
    cls = collections.namedtuple("_ByolExperimentState", ["online_params", "target_params", "online_state",
                                                          "target_state", "opt_state"])
    cls.__module__ = mod.__name__
    mod._ByolExperimentState = cls
    pkg = types.ModuleType("byol")
    pkg.byol_experiment = mod
    sys.modules.update({"byol": pkg, mod.__name__: mod})
    try:
        ordered = dict(sorted(params.items()))  # Haiku's flat mapping: sorted module names
        es = cls(ordered, {}, dict(sorted(state.items())), {}, ())
        with open(path, "wb") as f:
            pickle.dump({"experiment_state": es, "step": np.int64(300_000), "rng": np.zeros(2, np.uint32)}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        del sys.modules[mod.__name__], sys.modules["byol"]


def _random_resnet50():
    from torchvision.models import resnet50

    torch.manual_seed(0)
    net = resnet50().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics and affine parameters
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_()
    return net


def test_byol_pickle_converts_to_the_same_torchvision_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = _random_resnet50()
    pkl = tmp_path / "upstream" / "pretrain_res50x1.pkl"
    pkl.parent.mkdir()
    _byol_pickle(pkl, net)
    params, state = M.read_byol(pkl)  # read without the byol package
    assert "res_net50/~/initial_conv" in params and "res_net50/~/initial_batchnorm/~/var_ema" in state
    with pytest.raises(FileNotFoundError, match="medtl models fetch byol"):
        M.create("resnet50", weights="byol")
    assert M.fetch("byol", url=pkl.as_uri(), progress=False) == M.get_init("byol").path  # download + convert
    model = M.create("resnet50", num_classes=3, weights="byol").eval()
    ref = net.state_dict()
    got = model.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref if not k.startswith("fc.") and "num_batches" not in k)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # the same features on a fixed tensor (the study's advice)
        net.fc = torch.nn.Identity()
        model.fc = torch.nn.Identity()
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    out = tmp_path / "byol-by-hand.pth"
    assert cli.main(["models", "convert", "byol", str(pkl), "--dest", str(out)]) == 0
    assert torch.equal(torch.load(out)["state_dict"]["layer4.2.bn3.running_var"], ref["layer4.2.bn3.running_var"])


def test_byol_conversion_names_what_does_not_fit(tmp_path):
    net = _random_resnet50()
    pkl = tmp_path / "b.pkl"
    _byol_pickle(pkl, net)
    params, state = M.read_byol(pkl)
    short = {k: v for k, v in params.items() if "block_group_3/~/block_2/~/conv_2" not in k}
    with pytest.raises(ValueError, match="52 convolutions and 53 batch norms; a ResNet-50 has 53 and 53"):
        M.byol_state_dict(short, state)
    bad = dict(params)
    bad["res_net50/~/initial_conv"] = {"w": np.zeros((3, 3, 3, 64), np.float32)}
    with pytest.raises(ValueError, match="initial_conv has shape"):
        M.byol_state_dict(bad, state)
    no_ema = {k: v for k, v in state.items() if not k.endswith("initial_batchnorm/~/mean_ema")}
    with pytest.raises(ValueError, match="lacks res_net50/~/initial_batchnorm/~/mean_ema"):
        M.byol_state_dict(params, no_ema)
    other = tmp_path / "other.pkl"
    other.write_bytes(__import__("pickle").dumps({"weights": 1}))
    with pytest.raises(ValueError, match="not a BYOL checkpoint"):
        M.read_byol(other)


# --- binary targets: one sigmoid output (spec §3: Linear(2048→C) + Sigmoid, BCE; Shenzhen C = 1) ----
def _binary(split: str, n: int | None = None) -> D.ImageSet:
    whole = D.synthetic("shape-a", split)
    keep = torch.nonzero(whole.labels < 2)[:, 0].numpy()[:n]
    part = whole.subset(keep)
    return D.ImageSet(part.images, part.labels, D.BINARY, ["circle", "square"], name=f"shapes-binary/{split}")


def test_a_binary_head_with_one_sigmoid_trains_on_bce_of_the_label():
    from torch.nn import functional as F

    train, val = _binary("train", 120), _binary("val", 60)
    model = M.create("resnet18", num_classes=1, seed=0)
    fit(model, train, val, epochs=1, batch_size=32, optimizer="adam", lr=1e-3, loss="bce", progress=False)
    r = evaluate(model, val)
    logits = r["logits"]
    assert r["y_score"].shape == (len(val), 1)
    y = val.labels.numpy()
    assert r["auc"] == pytest.approx(ev.auc(y, r["y_score"][:, 0], D.BINARY))
    by_hand = F.binary_cross_entropy_with_logits(torch.as_tensor(logits)[:, 0].double(),
                                                 torch.as_tensor(y).double()).item()
    assert r["loss"] == pytest.approx(by_hand, rel=1e-4)
    torch.testing.assert_close(torch.as_tensor(r["y_score"]).double(), torch.sigmoid(torch.as_tensor(logits).double()),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one output .*loss='bce', not 'ce'"):
        fit(M.create("resnet18", num_classes=1, seed=0), train, None, epochs=1, loss="ce", progress=False)
    with pytest.raises(ValueError, match="class count mismatch"):
        fit(M.create("resnet18", num_classes=1, seed=0), D.synthetic("shape-a", "val"), None, epochs=1,
            progress=False)


def test_classify_trials_give_binary_targets_one_output(monkeypatch):
    from medtl import study

    built, models, real = [], [], M.create

    def recording_create(*args, **kwargs):  # the real builder, its class count and model kept
        built.append(kwargs.get("num_classes"))
        models.append(real(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(M, "create", recording_create)
    train, val, test = _binary("train", 64), _binary("val", 32), _binary("test", 40)
    rows = study.classify_trials("random", "resnet18", train, val, test, seeds=(0,), epochs=1, n_boot=20,
                                 batch_size=32)
    assert built == [1] and rows.value.between(0, 1).all()
    assert models[0].medtl["normalize"] == "imagenet"  # ImageNet statistics for every init, random included (§3)
    assert models[0].medtl["eval_crop"] == 224 / 256  # validation/test: Resize 256 → CenterCrop 224 (§3)
    study.classify_trials("random", "resnet18", train, val, test, seeds=(0,), epochs=1, n_boot=20, batch_size=32,
                          binary_outputs=2)
    assert built == [1, 2]
    with pytest.raises(ValueError, match="binary_outputs must be 1"):
        study.classify_trials("random", "resnet18", train, val, test, seeds=(0,), binary_outputs=3)


# --- official split files (ChestX-ray14 / Shenzhen lists, CheXpert CSVs) through get() and benchmark() ----
def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_a_folder_of_split_lists_keeps_its_official_splits(tmp_path):
    """The study's ChestX-ray14 lists (whitespace, 14 multi-hot labels) and Shenzhen lists
    (comma, binary): each split is its own file, never a 70/10/20 re-split."""
    cxr = tmp_path / "xray14"
    counts = {"train": 9, "val": 4, "test": 5}
    for split, n in counts.items():
        lines = []
        for i in range(n):
            _img(cxr / "images" / f"{split}{i}.png", 10 * i)
            bits = [(i + j) % 3 == 0 for j in range(14)]
            lines.append(" ".join([f"images/{split}{i}.png", *("1" if b else "0" for b in bits)]))
        (cxr / f"Xray14_{split}_official.txt").write_text("\n".join(lines) + "\n")
    for split, n in counts.items():
        ds = D.get(cxr, split, size=8)
        assert len(ds) == n and ds.task == D.MULTI_LABEL and ds.labels.shape == (n, 14)
        assert ds.name == f"xray14/{split}"
    assert D.family_of(str(cxr)).name == "split-files"
    sz = tmp_path / "shenzhen"
    for split, n in (("train", 6), ("valid", 2), ("test", 4)):
        for i in range(n):
            _img(sz / f"CHNCXR_{split}{i}_{i % 2}.png", 40 * i)
        (sz / f"ShenzenCXR_{split}_data.txt").write_text(
            "\n".join(f"CHNCXR_{split}{i}_{i % 2}.png,{i % 2}" for i in range(n)) + "\n")
    val = D.get(sz, "val", size=8)
    assert len(val) == 2 and val.task == D.BINARY and val.labels.tolist() == [0, 1]
    (sz / "notes_train_extra.txt").write_text("x\n")  # a second file naming the train split
    with pytest.raises(ValueError, match="exactly one list/CSV per split"):
        D.get(sz, "train", size=8)


def _chexpert_folder(root, sizes=(("train", 8), ("valid", 6), ("test", 6))):
    """CheXpert's layout: <root>/<split>.csv with paths relative to the root's parent."""
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *D.CHEXPERT_LABELS]
    for split, n in sizes:
        lines = [",".join(header)]
        for i in range(n):
            _img(root / split / f"p{i}.jpg", (25 * i) % 256)
            cells = ["1.0" if (i + j) % 2 else "0.0" for j in range(14)]
            lines.append(",".join([f"{root.name}/{split}/p{i}.jpg", "Male", "50", "Frontal", "AP", *cells]))
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_chexpert_csvs_are_splits_and_benchmark_reports_the_five_labels(tmp_path):
    root = _chexpert_folder(tmp_path / "chexpert")
    test = D.get(root, "test", size=8)  # paths relative to the CSV's parent's parent, as CheXpert's
    assert test.meta["eval_labels"] == list(D.CHEXPERT_EVAL) and test.labels.shape == (6, 14)
    assert len(D.get(root, "val", size=8)) == 6 and len(D.get(root, "train", size=8)) == 8  # valid.csv is val
    import json

    from medtl import study

    rows = study.benchmark(["random"], [str(root)], arch="resnet18", seeds=(0,), size=28, epochs=1, n_boot=10,
                           batch_size=4)
    assert len(json.loads(rows.per_class[0])) == 5  # AUC on the 5 reported observations


def test_the_studys_comparison_figures_come_from_the_zoo_kinds(tmp_path):
    """Spec §5: ImageNet_vs_iNat21 (scratch, ImageNet, iNat2021), SSL_vs_ImageNet (each SSL
    model against supervised ImageNet) and the domain-adaptive comparison, each against
    ImageNet; a planted gain of one SSL model is marked in its figure and an init outside the
    zoo is in none of them."""
    import pandas as pd

    from medtl import analysis, study

    rng = np.random.default_rng(1)
    means = {"random": 0.70, "imagenet": 0.80, "inat2021": 0.79, "moco-v2": 0.80, "swav": 0.86, "chexpert": 0.82,
             "imagenet_chexpert": 0.83, "source:mine": 0.9}
    rows = [{"arm": "classification", "target": "t", "metric": "auc", "init": init, "trial": i, "value": v}
            for init, mu in means.items() for i, v in enumerate(mu + 0.004 * rng.standard_normal(5))]
    table = pd.DataFrame(rows)
    groups = analysis.benchmark_groups(table.init)
    assert {k: g["members"] for k, g in groups.items()} == {
        "domain_adaptive": ["random", "imagenet", "chexpert", "imagenet_chexpert"],
        "imagenet_vs_inat21": ["random", "imagenet", "inat2021"],
        "ssl_vs_imagenet": ["imagenet", "moco-v2", "swav"]}
    assert all(g["baseline"] == "imagenet" for g in groups.values())
    assert analysis.benchmark_groups(["random", "moco-v2"]) == {}  # no ImageNet runs: nothing to compare against
    out = analysis.benchmark_figures(table, "random", tmp_path)
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert names == {"benchmark_bars.png", "benchmark_auc_dice.png", "benchmark_domain_adaptive.png",
                     "benchmark_imagenet_vs_inat21.png", "benchmark_ssl_vs_imagenet.png"}
    ssl = out["ssl_vs_imagenet"].axes[0]
    assert [t.get_text() for t in ssl.get_xticklabels()] == ["imagenet", "moco-v2", "swav"]
    assert [t.get_text() for t in ssl.texts] == ["n.s.", "****"]  # vs ImageNet, not vs the run's baseline
    declared = table.assign(init_kind=table.init.map(study.init_kinds(table.init, {"source:mine": "self-supervised"})))
    assert analysis.benchmark_groups(declared)["ssl_vs_imagenet"]["members"] == ["imagenet", "moco-v2", "swav",
                                                                                "source:mine"]
    with pytest.raises(ValueError, match="unknown initialisation kind"):
        study.init_kinds(["source:mine"], {"source:mine": "ssl"})
    explicit = analysis.benchmark_groups(table.init, {"mine_vs_imagenet": {"baseline": "imagenet",
                                                                           "members": ["source:mine"]}})
    assert explicit["mine_vs_imagenet"]["members"] == ["imagenet", "source:mine"]
    with pytest.raises(ValueError, match=r"without runs: \['byol'\]"):
        analysis.benchmark_groups(table.init, {"x": {"baseline": "imagenet", "members": ["byol"]}})


@pytest.mark.slow
def test_chest_xray_folders_run_through_the_benchmark_notebook(tmp_path):
    """Spec §4 targets as a user has them: a CheXpert folder (its CSVs) and a Shenzhen folder
    (its official lists) through the benchmark notebook under papermill: both are trained and
    scored (their official splits: tested through ``get`` above), CheXpert on its 5 reported
    observations, Shenzhen on its one binary label."""
    from medtl import experiments as E
    from medtl import results as rs

    chexpert = _chexpert_folder(tmp_path / "chexpert", (("train", 12), ("valid", 6), ("test", 8)))
    sz = tmp_path / "shenzhen"
    for split, n in (("train", 12), ("valid", 6), ("test", 8)):
        for i in range(n):
            _img(sz / f"CHNCXR_{split}{i}_{i % 2}.png", (30 * i) % 256)
        (sz / f"ShenzenCXR_{split}_data.txt").write_text(
            "\n".join(f"CHNCXR_{split}{i}_{i % 2}.png,{i % 2}" for i in range(n)) + "\n")
    r = E.run("experiments/benchmark", {"targets": [str(chexpert), str(sz)], "seg_targets": [],
                                         "inits": ["random", "imagenet"], "arch": "resnet18", "trials": 2,
                                         "epochs": 1, "n_train": None, "n_boot": 10, "progress": False},
              out_dir=tmp_path / "run")
    assert r.status == "finished", r
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = rs.load(r.run_dir, "benchmark")
    auc = table[table.metric == "auc"]
    assert set(auc.target) == {"chexpert", "shenzhen"} and sorted(auc.seed.unique()) == [0, 1]
    import json

    per = {t: len(json.loads(g.per_class.iloc[0])) for t, g in auc.groupby("target")}
    assert per == {"chexpert": 5, "shenzhen": 1}
