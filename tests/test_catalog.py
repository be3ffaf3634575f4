import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import need_file, write_fake_medmnist
from medmnist.info import INFO

import medtl.data as D
from medtl.data import catalog


def test_flags_are_infos_2d_flags():
    assert len(D.FLAGS) == 12
    assert set(D.FLAGS) == {f for f in INFO if not f.endswith("3d")}


def test_unknown_flag_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown MedMNIST 2D flag 'bloodmnst'") as err:
        D.load("bloodmnst", root=tmp_path)
    for flag in D.FLAGS:
        assert flag in str(err.value)


def test_unknown_size_and_split(tmp_path):
    with pytest.raises(ValueError, match=r"unknown MedMNIST image size 32; valid sizes: \(28, 64, 128, 224\)"):
        D.load("bloodmnist", size=32, root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'training'"):
        D.load("bloodmnist", split="training", root=tmp_path)


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDTL_DATA", str(tmp_path / "env"))
    assert D.resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_root() == tmp_path / "env"
    monkeypatch.delenv("MEDTL_DATA")
    assert D.resolve_root() == Path(catalog.DEFAULT_ROOT)


def test_missing_file_message_names_file_flag_and_remedy(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        D.load("pathmnist", size=64, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "pathmnist_64.npz") in msg
    assert "'pathmnist'" in msg and "64 px" in msg
    assert "download=True" in msg and "medtl data download pathmnist --size 64" in msg
    assert INFO["pathmnist"]["url_64"] in msg


def test_md5_mismatch_message(tmp_path):
    file = write_fake_medmnist(tmp_path, "breastmnist")
    got = hashlib.md5(file.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        D.load("breastmnist", root=tmp_path)
    msg = str(err.value)
    assert "MD5 mismatch" in msg and str(file) in msg and "'breastmnist'" in msg
    assert got in msg and INFO["breastmnist"]["MD5"] in msg
    assert "download" in msg


def test_missing_keys_message(tmp_path):
    write_fake_medmnist(tmp_path, "breastmnist", drop_keys=("val_labels",))
    assert len(D.load("breastmnist", "train", root=tmp_path, verify=False)) == 546
    with pytest.raises(ValueError, match=re.escape("lacks the key(s) ['val_labels']")) as err:
        D.load("breastmnist", "val", root=tmp_path, verify=False)
    assert "'breastmnist'" in str(err.value) and "Re-download" in str(err.value)


def test_split_size_mismatch_message(tmp_path):
    write_fake_medmnist(tmp_path, "breastmnist", n={"train": 500, "val": 78, "test": 156})
    with pytest.raises(ValueError) as err:
        D.load("breastmnist", "train", root=tmp_path, verify=False)
    msg = str(err.value)
    assert "disagrees with medmnist INFO" in msg
    assert "train_images has shape (500, 28, 28), INFO implies (546, 28, 28)" in msg
    assert "train_labels has shape (500, 1), INFO implies (546, 1)" in msg


def test_image_shape_mismatch_message(tmp_path):
    # a 28 px file stored under the 64 px name
    write_fake_medmnist(tmp_path, "breastmnist", size=28)
    os.rename(tmp_path / "breastmnist.npz", tmp_path / "breastmnist_64.npz")
    with pytest.raises(ValueError, match=re.escape("test_images has shape (156, 28, 28), INFO implies (156, 64, 64)")):
        D.load("breastmnist", "test", size=64, root=tmp_path, verify=False)


def test_not_an_npz(tmp_path):
    (tmp_path / "bloodmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read .*bloodmnist.npz .*'bloodmnist'"):
        D.load("bloodmnist", root=tmp_path, verify=False)


def test_md5_cache_keyed_by_size_and_mtime(tmp_path, monkeypatch):
    file = tmp_path / "x.bin"
    file.write_bytes(b"abc")
    calls = []
    real_md5 = hashlib.md5

    def counting_md5(*args):
        calls.append(1)
        return real_md5(*args)

    monkeypatch.setattr(catalog.hashlib, "md5", counting_md5)
    assert catalog.file_md5(file) == real_md5(b"abc").hexdigest()
    assert catalog.file_md5(file) == real_md5(b"abc").hexdigest()
    assert len(calls) == 1  # second call served from the cache
    catalog._MD5_MEMO.clear()  # a new process reads the cache file
    assert catalog.file_md5(file) == real_md5(b"abc").hexdigest()
    assert len(calls) == 1
    file.write_bytes(b"abcd")
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert catalog.file_md5(file) == real_md5(b"abcd").hexdigest()
    assert len(calls) == 2


def test_download_is_atomic_and_verified(tmp_path, monkeypatch):
    served = write_fake_medmnist(tmp_path / "server", "breastmnist")
    digest = hashlib.md5(served.read_bytes()).hexdigest()
    monkeypatch.setattr(catalog, "url", lambda flag, size=28: served.as_uri())
    root = tmp_path / "root"
    # wrong MD5: nothing is written, the error says so
    monkeypatch.setattr(catalog, "md5", lambda flag, size=28: "0" * 32)
    with pytest.raises(ValueError, match="nothing was written"):
        D.download("breastmnist", root=root)
    assert list(root.iterdir()) == []  # no partial file left
    monkeypatch.setattr(catalog, "md5", lambda flag, size=28: digest)
    ds = D.load("breastmnist", "test", root=root, download=True)
    assert (root / "breastmnist.npz").read_bytes() == served.read_bytes()
    assert len(ds) == 156 and [p.name for p in root.iterdir()] == ["breastmnist.npz"]


def test_info_table_reports_status(tmp_path):
    write_fake_medmnist(tmp_path, "breastmnist")
    table = D.info_table(tmp_path).set_index("flag")
    assert list(table.index) == list(D.FLAGS)
    assert table.loc["breastmnist", "28px"] == "md5 mismatch"
    assert table.loc["bloodmnist", "28px"] == "missing"
    assert table.loc["bloodmnist", "classes"] == 8 and table.loc["bloodmnist", "train"] == 11959
    assert D.info_table(tmp_path, check_md5=False).set_index("flag").loc["breastmnist", "28px"] == "present"


# --- real files --------------------------------------------------------------------------
@pytest.mark.realdata
def test_every_manifest_file_loads_with_info_sizes(medmnist_root, manifest):
    for entry in manifest["datasets"]:
        flag, size = entry["dataset"], entry["size"]
        need_file(medmnist_root, Path(entry["file"]).name)
        assert D.status(flag, size, medmnist_root) == "verified"
        info = INFO[flag]
        for split in D.SPLITS:
            ds = D.load(flag, split, size, root=medmnist_root, verify=True)
            n = info["n_samples"][split]
            assert len(ds) == n == entry["splits"][split]["n"]
            assert ds.images.shape == (n, info["n_channels"], size, size)
            assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
            assert ds.task == info["task"] and ds.n_classes == len(info["label"])
            assert ds.label_names[0] == info["label"]["0"]
            counts = np.bincount(ds.labels.numpy(), minlength=ds.n_classes)
            assert counts.tolist() == entry["splits"][split]["label_counts"]


@pytest.mark.realdata
def test_loaded_pixels_match_the_file(medmnist_root):
    file = need_file(medmnist_root, "bloodmnist.npz")
    raw = np.load(file)["val_images"]
    ds = D.load("bloodmnist", "val", root=medmnist_root)
    assert np.array_equal(ds.images.permute(0, 2, 3, 1).numpy(), raw)
    grey = D.load("pneumoniamnist", "val", root=medmnist_root)
    assert np.array_equal(grey.images[:, 0].numpy(), np.load(medmnist_root / "pneumoniamnist.npz")["val_images"])
