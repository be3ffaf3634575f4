import numpy as np
import pytest
import torch
from PIL import Image

import medtl.data as D


def _png(path, value, size=(10, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)
    return path


def test_from_folder_sorted_classes_resized(tmp_path):
    _png(tmp_path / "normal" / "a.png", 10)
    _png(tmp_path / "normal" / "b.png", 20)
    _png(tmp_path / "abnormal" / "c.jpg", 200, mode="L")
    ds = D.from_folder(tmp_path, size=16, channels=3)
    assert ds.label_names == ["abnormal", "normal"] and ds.task == D.BINARY
    assert ds.images.shape == (3, 3, 16, 16) and ds.labels.tolist() == [0, 1, 1]
    assert int(ds.images[0].float().mean().round()) == 200
    grey = D.from_folder(tmp_path, size=8, channels=1)
    assert grey.images.shape == (3, 1, 8, 8) and int(grey.images[1, 0, 0, 0]) == 10


def test_from_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.from_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        D.from_folder(tmp_path / "empty")
    _png(tmp_path / "one" / "only" / "a.png", 1)
    with pytest.raises(ValueError, match="single class 'only'"):
        D.from_folder(tmp_path / "one")


def test_from_list_single_and_multilabel(tmp_path):
    for i in range(4):
        _png(tmp_path / "img" / f"{i}.png", 50 * i)
    (tmp_path / "single.txt").write_text("# path label\nimg/0.png 0\nimg/1.png 2\n\nimg/2.png 1\n")
    ds = D.from_list(tmp_path / "single.txt", size=8, label_names=["a", "b", "c"])
    assert ds.labels.tolist() == [0, 2, 1] and ds.task == D.MULTI_CLASS and ds.label_names == ["a", "b", "c"]
    assert int(ds.images[1].float().mean().round()) == 50
    (tmp_path / "multi.txt").write_text("img/0.png 0 1 0\nimg/3.png 1 1 0\n")
    ml = D.from_list(tmp_path / "multi.txt", size=8)
    assert ml.task == D.MULTI_LABEL and ml.labels.tolist() == [[0, 1, 0], [1, 1, 0]]
    (tmp_path / "bad.txt").write_text("img/0.png 0 1\nimg/1.png 1\n")
    with pytest.raises(ValueError, match=r"same number of label columns, found \[2, 3\]"):
        D.from_list(tmp_path / "bad.txt")
    (tmp_path / "missing.txt").write_text("img/9.png 0\nimg/0.png 1\n")
    with pytest.raises(ValueError, match="cannot decode image .*9.png"):
        D.from_list(tmp_path / "missing.txt")
    # every undecodable file is named in one error, not one per run
    (tmp_path / "img" / "torn.png").write_bytes(b"not a png")
    (tmp_path / "several.txt").write_text("img/9.png 0\nimg/0.png 1\nimg/torn.png 1\nimg/8.png 0\n")
    with pytest.raises(ValueError, match="cannot decode 3 of 4 images") as err:
        D.from_list(tmp_path / "several.txt")
    assert all(f"{name}.png" in str(err.value) for name in ("9", "torn", "8")) and "0.png" not in str(err.value)


def test_from_csv_names_indices_and_multihot(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", 30 * i)
    (tmp_path / "t.csv").write_text("file,diagnosis\n0.png,benign\n1.png,malignant\n2.png,benign\n")
    ds = D.from_csv(tmp_path / "t.csv", path_column="file", label_columns="diagnosis", size=4)
    assert ds.label_names == ["benign", "malignant"] and ds.labels.tolist() == [0, 1, 0]
    (tmp_path / "m.csv").write_text("path,effusion,mass\n0.png,1,0\n2.png,0,0\n")
    ml = D.from_csv(tmp_path / "m.csv", label_columns=["effusion", "mass"], size=4, channels=1)
    assert ml.label_names == ["effusion", "mass"] and ml.labels.tolist() == [[1, 0], [0, 0]]
    assert ml.images.shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        D.from_csv(tmp_path / "m.csv")


def test_sixteen_bit_images_are_rescaled(tmp_path):
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = D.decode_images([tmp_path / "x.png"], size=2, channels=1, progress=False)
    assert img[0, 0].tolist() == [[0, 64], [128, 255]]
    assert img.dtype == torch.uint8


def test_a_folder_without_splits_is_cut_70_10_20_per_class_and_says_so(tmp_path):
    """A class folder without train/val/test sub-folders: each class is cut 70/10/20 under the
    seed (a tiny class too), the three splits are disjoint and cover the folder, each says
    what it was cut from, and `rank` says which images it scored."""
    import importlib

    ranking = importlib.import_module("medtl.transfer.rank")  # the module (medtl.transfer.rank is the function)
    counts = {"a": 20, "b": 10, "tiny": 3}
    for cls, k in counts.items():
        for i in range(k):
            _png(tmp_path / "imgs" / cls / f"{i:02d}.png", 7 * i + 50 * len(cls))
    parts = {s: D.get(tmp_path / "imgs", s, size=8) for s in ("train", "val", "test")}
    paths = {s: set(p.meta["paths"].tolist()) for s, p in parts.items()}
    assert not (paths["train"] & paths["val"] or paths["train"] & paths["test"] or paths["val"] & paths["test"])
    assert sum(map(len, paths.values())) == 33
    for s, bounds in {"train": (0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0)}.items():  # cumulative cuts
        per_class = np.bincount(parts[s].labels.numpy(), minlength=3).tolist()
        assert per_class == [int(round(bounds[1] * k) - round(bounds[0] * k)) for k in counts.values()], (s, per_class)
        assert parts[s].meta["split_from"] == {"images": 33, "fractions": {"train": 0.7, "val": 0.1, "test": 0.2},
                                               "seed": 0}
    assert sorted(paths["train"]) == sorted(D.get(tmp_path / "imgs", "train", size=8).meta["paths"].tolist())
    _, scored, _ = ranking._scored_images(tmp_path / "imgs", None, 8, None, 0)
    assert scored.startswith("the whole training split: 23 of the 33 images") and "70/10/20" in scored
    _, scored, _ = ranking._scored_images("texture-b", None, 28, None, 0)
    assert scored == "the whole training split"  # its own splits: nothing was cut
