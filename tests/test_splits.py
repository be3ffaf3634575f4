# ruff: noqa: NPY002  (the reference below must use the legacy global RNG, as the study did)
import numpy as np
import pytest
import torch
from conftest import need_file
from medmnist.info import INFO

import medtl.data as D


def _study_reference(n_train, n_val, n_classes, n_folds=5):
    """The spec's procedure written literally: global NumPy RNG seeded once with 24, then
    per fold np.random.choice on train, then on val if it is larger than 25·C."""
    state = np.random.get_state()
    try:
        np.random.seed(24)
        out = []
        for _ in range(n_folds):
            tr = np.random.choice(np.arange(n_train), 100 * n_classes, replace=False)
            if n_val > 25 * n_classes:
                va = np.random.choice(np.arange(n_val), 25 * n_classes, replace=False)
            else:
                va = np.arange(n_val)
            out.append((tr, va))
        return out
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("flag", ["bloodmnist", "retinamnist", "breastmnist", "organamnist", "chestmnist"])
def test_fold_indices_follow_the_study_procedure(flag):
    info = INFO[flag]
    c = len(info["label"])
    got = D.fold_indices(info["n_samples"]["train"], info["n_samples"]["val"], c)
    want = _study_reference(info["n_samples"]["train"], info["n_samples"]["val"], c)
    assert len(got) == 5
    for (tr, va), (rtr, rva) in zip(got, want):
        assert np.array_equal(tr, rtr) and np.array_equal(va, rva)
        assert len(tr) == 100 * c and len(set(tr.tolist())) == len(tr)
        assert len(va) == min(25 * c, info["n_samples"]["val"])


def test_fold_sizes_from_the_spec_table():
    spec = {"bloodmnist": (800, 200), "breastmnist": (200, 50), "chestmnist": (1400, 350),
            "octmnist": (400, 100), "organamnist": (1100, 275), "retinamnist": (500, 120),
            "tissuemnist": (800, 200), "pathmnist": (900, 225)}
    for flag, (n_tr, n_va) in spec.items():
        info = INFO[flag]
        tr, va = D.fold_indices(info["n_samples"]["train"], info["n_samples"]["val"], len(info["label"]))[0]
        assert (len(tr), len(va)) == (n_tr, n_va), flag


def test_fold_protocol_rejects_too_small_splits():
    with pytest.raises(ValueError, match="needs 800 train images but the split has 500"):
        D.fold_indices(500, 100, 8)


@pytest.mark.realdata
@pytest.mark.parametrize("flag", ["bloodmnist", "retinamnist", "pneumoniamnist"])
def test_folds_on_real_files(medmnist_root, flag):
    need_file(medmnist_root, f"{flag}.npz")
    a = D.folds(flag, root=medmnist_root)
    b = D.folds(flag, root=medmnist_root)
    c = len(INFO[flag]["label"])
    train = D.load(flag, "train", root=medmnist_root)
    assert [f.index for f in a] == [1, 2, 3, 4, 5]
    for fa, fb in zip(a, b):
        assert len(fa.train) == 100 * c
        assert len(fa.val) == min(25 * c, INFO[flag]["n_samples"]["val"])
        assert torch.equal(fa.train.images, fb.train.images) and torch.equal(fa.val.labels, fb.val.labels)
        assert torch.equal(fa.train.images, train.images[torch.as_tensor(fa.train_indices)])
    assert not np.array_equal(a[0].train_indices, a[1].train_indices)


# --- subset ------------------------------------------------------------------------------
def _toy(n=200, classes=(0.5, 0.3, 0.2)):
    labels = np.repeat(np.arange(len(classes)), (np.asarray(classes) * n).astype(int))
    return D.ImageSet(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), torch.as_tensor(labels),
                      "multi-class", [f"c{i}" for i in range(len(classes))], name="toy")


def test_subset_n_is_seeded_and_without_replacement():
    ds = _toy()
    a, b, c = D.subset(ds, 50, seed=1), D.subset(ds, 50, seed=1), D.subset(ds, 50, seed=2)
    assert len(a) == 50 and len(set(a.meta["indices"].tolist())) == 50
    assert np.array_equal(a.meta["indices"], b.meta["indices"])
    assert not np.array_equal(a.meta["indices"], c.meta["indices"])


def test_subset_stratified_keeps_proportions():
    ds = _toy()
    sub = D.subset(ds, 50, stratified=True, seed=0)
    assert sub.class_counts().tolist() == [25, 15, 10]
    sub = D.subset(ds, 7, stratified=True, seed=0)  # largest remainder: 3.5, 2.1, 1.4 -> 4, 2, 1
    assert sub.class_counts().tolist() == [4, 2, 1]


def test_subset_per_class_and_fraction():
    ds = _toy()
    assert D.subset(ds, per_class=10).class_counts().tolist() == [10, 10, 10]
    assert len(D.subset(ds, fraction=0.25)) == 50
    with pytest.raises(ValueError, match=r"class 2 \('c2'\) of 'toy' has only 40 images, fewer than per_class=41"):
        D.subset(ds, per_class=41)
    with pytest.raises(ValueError, match="exactly one of n, per_class or fraction"):
        D.subset(ds, 10, fraction=0.5)
    with pytest.raises(ValueError, match=r"n must be in 1..200"):
        D.subset(ds, 201)


def test_nested_subset_indices_point_into_the_original():
    ds = _toy()
    ds.images[:, 0, 0, 0] = torch.arange(200, dtype=torch.uint8)
    sub = D.subset(D.subset(ds, 100, seed=3), 10, seed=4)
    assert torch.equal(sub.images[:, 0, 0, 0].long(), torch.as_tensor(sub.meta["indices"]))


def test_cv_folds_stratified_and_grouped():
    import medtl.data as D

    data = D.synthetic("shape-a", "train")  # 700 images, 4 balanced classes
    folds = D.cv_folds(data, k=5, seed=2)
    held = np.concatenate([f.val.meta["indices"] for f in folds])
    assert sorted(held.tolist()) == list(range(len(data)))  # every image held out exactly once
    for f in folds:
        assert not set(f.train.meta["indices"]) & set(f.val.meta["indices"])
        counts = np.bincount(f.val.labels.numpy(), minlength=4)
        assert counts.max() - counts.min() <= 1  # stratified
    # grouped: a patient never straddles train and held-out images
    patients = np.arange(len(data)) // 7
    data.meta["patient"] = patients
    v2 = D.cv_folds(data, k=5, groups="patient", test=True)
    for f in v2:
        tr = set(patients[f.train.meta["indices"]])
        rest = set(patients[f.val.meta["indices"]]) | set(patients[f.test.meta["indices"]])
        assert not tr & rest and not set(patients[f.val.meta["indices"]]) & set(patients[f.test.meta["indices"]])
        assert len(f.train) + len(f.val) + len(f.test) == len(data)
        assert 0.03 < len(f.val) / len(data) < 0.08  # ≈5% val, ≈15% test (the study's v2 grouped split)
    with pytest.raises(ValueError, match="group column 'pid' is not in"):
        D.cv_folds(data, groups="pid")
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        D.cv_folds(data, k=1)
