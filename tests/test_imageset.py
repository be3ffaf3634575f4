import numpy as np
import pytest
import torch

import medtl.data as D


def _images(n=4, c=1):
    return torch.zeros(n, c, 5, 5, dtype=torch.uint8)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"labels must lie in 0..1 \(2 label names\), got range 0..2"):
        D.ImageSet(_images(), torch.tensor([0, 1, 2, 0]), "binary-class", ["a", "b"], name="x")
    with pytest.raises(ValueError, match="uint8 N×C×H×W tensor, got dtype torch.float32"):
        D.ImageSet(_images().float(), torch.zeros(4), "binary-class", ["a", "b"])
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        D.ImageSet(_images(), torch.zeros(3), "binary-class", ["a", "b"])
    with pytest.raises(ValueError, match=r"multi-hot, got shape \(4,\)"):
        D.ImageSet(_images(), torch.zeros(4), "multi-label, binary-class", ["a", "b"])
    with pytest.raises(ValueError, match="unknown task"):
        D.ImageSet(_images(), torch.zeros(4), "regression", ["a", "b"])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        D.ImageSet(_images(c=2), torch.zeros(4), "binary-class", ["a", "b"])


def test_indexing_and_summary():
    ds = D.ImageSet(_images(6), np.array([[0], [1], [1], [2], [2], [2]]), "multi-class", ["a", "b", "c"], name="t")
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (6,)
    img, lab = ds[3]
    assert img.shape == (1, 5, 5) and int(lab) == 2
    sub = ds[1:4]
    assert len(sub) == 3 and sub.meta["indices"].tolist() == [1, 2, 3]
    assert ds[np.array([True, False] * 3)].labels.tolist() == [0, 1, 2]
    assert ds.summary()["count"].tolist() == [1, 2, 3]
    both = D.concat([ds, sub])
    assert len(both) == 9
    with pytest.raises(ValueError, match="cannot concatenate"):
        D.concat([ds, D.ImageSet(_images(2), torch.zeros(2), "binary-class", ["a", "b"])])


def test_multilabel_primary_labels():
    lab = torch.tensor([[0, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    ds = D.ImageSet(_images(3), lab, "multi-label, binary-class", ["a", "b", "c"])
    assert ds.primary_labels().tolist() == [1, -1, 0]
    assert ds.class_counts().tolist() == [1, 1, 1]
