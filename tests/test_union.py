import numpy as np
import pytest
import torch
from conftest import write_fake_medmnist
from medmnist.info import INFO

import medtl.data as D


def _c(flag):
    return len(INFO[flag]["label"])


@pytest.mark.parametrize("target", D.FLAGS)
def test_slot_count_per_target(target):
    n = D.union_layout(target).attrs["n_slots"]
    if target in ("pneumoniamnist", "organamnist", "organcmnist", "organsmnist"):
        assert n == 69
    elif target == "chestmnist":
        assert n == 56
    else:
        assert n == 69 - _c(target)


def test_layout_mapping_with_chest_present():
    lay = D.union_layout("bloodmnist")
    slot = {(r.dataset, r["class"]): r.slot for _, r in lay.iterrows()}
    assert [slot[("chestmnist", i)] for i in range(14)] == list(range(14))
    assert slot[("chestmnist", -1)] == 14
    assert slot[("pneumoniamnist", 0)] == 14 and slot[("pneumoniamnist", 1)] == 6
    # path, derma, oct, retina, breast, (blood left out), tissue in order after chest's 15
    assert slot[("pathmnist", 0)] == 15 and slot[("dermamnist", 0)] == 24 and slot[("octmnist", 0)] == 31
    assert slot[("retinamnist", 0)] == 35 and slot[("breastmnist", 0)] == 40 and slot[("tissuemnist", 0)] == 42
    # the three organ datasets share the last 11 slots, class by class
    for i in range(11):
        assert slot[("organamnist", i)] == slot[("organcmnist", i)] == slot[("organsmnist", i)] == 50 + i
    assert lay.slot.max() == 60 and sorted(lay.slot.unique()) == list(range(61))


def test_layout_when_chest_is_the_target():
    lay = D.union_layout("chestmnist")
    slot = {(r.dataset, r["class"]): r.slot for _, r in lay.iterrows()}
    assert slot[("pneumoniamnist", 0)] == 0 and slot[("pneumoniamnist", 1)] == 1
    assert slot[("pathmnist", 0)] == 2


def test_organ_target_keeps_the_shared_block():
    lay = D.union_layout("organcmnist")
    assert set(lay[lay.slot >= 58].dataset) == {"organamnist", "organsmnist"}


def test_union_from_written_files(tmp_path, monkeypatch):
    small = {"train": 12, "val": 4, "test": 4}
    for flag in ("chestmnist", "pneumoniamnist", "organamnist", "retinamnist"):
        write_fake_medmnist(tmp_path, flag, n=small, seed=len(flag))
    # small files have non-INFO split sizes: bypass only the INFO size check
    monkeypatch.setattr(D.catalog, "_check_arrays", lambda *a, **k: None)
    ds = D.leave_target_out("bloodmnist", "train", root=tmp_path, verify=False,
                            sources=["chestmnist", "pneumoniamnist", "organamnist", "retinamnist"])
    assert ds.task == D.MULTI_LABEL and ds.n_classes == 61 and len(ds) == 48
    assert ds.images.shape[1] == 3
    src = ds.meta["source"]
    chest = ds.labels[torch.as_tensor(src == "chestmnist")]
    raw = np.load(tmp_path / "chestmnist.npz")["train_labels"]
    assert torch.equal(chest[:, :14], torch.as_tensor(raw, dtype=torch.float32))
    assert torch.equal(chest[:, 14], torch.as_tensor(raw.sum(1) == 0, dtype=torch.float32))
    pneu = ds.labels[torch.as_tensor(src == "pneumoniamnist")]
    raw = np.load(tmp_path / "pneumoniamnist.npz")["train_labels"][:, 0]
    assert torch.equal(pneu.argmax(1), torch.as_tensor(np.where(raw == 1, 6, 14)))
    organ = ds.labels[torch.as_tensor(src == "organamnist")]
    raw = np.load(tmp_path / "organamnist.npz")["train_labels"][:, 0]
    assert torch.equal(organ.argmax(1), torch.as_tensor(50 + raw)) and bool((organ.sum(1) == 1).all())
    # subsets keep the per-image source
    sub = ds.subset([0, 47])
    assert list(sub.meta["source"]) == [src[0], src[47]]


def test_union_bad_sources(tmp_path):
    with pytest.raises(ValueError, match=r"\['bloodmnist'\] cannot be sources"):
        D.leave_target_out("bloodmnist", root=tmp_path, sources=["bloodmnist"])
    with pytest.raises(FileNotFoundError, match="none of .* is present"):
        with pytest.warns(UserWarning):
            D.leave_target_out("bloodmnist", root=tmp_path)


@pytest.mark.realdata
def test_union_on_real_files(medmnist_root):
    with pytest.warns(UserWarning, match="the union is built from"):
        ds = D.leave_target_out("bloodmnist", "val", root=medmnist_root)
    present = [f for f in D.available(medmnist_root) if f != "bloodmnist"]
    assert set(ds.meta["sources"]) == set(present)
    assert len(ds) == sum(INFO[f]["n_samples"]["val"] for f in present)
    assert ds.n_classes == 61 and bool((ds.labels.sum(1) == 1).all())
