import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO, need_file

import medtl.data as D
import medtl.models as M
import medtl.train as T
from medtl.evaluate import auc


def _toy(split="train", n=None):
    return D.synthetic("shape-a", split, n=n)


def test_evaluate_matches_medtl_auc_on_its_predictions():
    model = M.create("resnet18", num_classes=4, seed=0)
    val = _toy("val")
    r = T.evaluate(model, val)
    assert r["y_score"].shape == (100, 4) and np.allclose(r["y_score"].sum(1), 1, atol=1e-5)
    assert r["auc"] == auc(val.labels.numpy(), r["y_score"], val.task)
    logits = torch.as_tensor(r["logits"])
    assert abs(r["loss"] - float(torch.nn.functional.cross_entropy(logits, val.labels))) < 1e-5


def test_class_count_and_label_errors():
    model = M.create("resnet18", num_classes=3)
    with pytest.raises(ValueError, match="class count mismatch: the model has 3 outputs but training data "
                                         "'shape-a/train' has 4 classes"):
        T.fit(model, _toy(), epochs=1, progress=False)
    with pytest.raises(ValueError, match="monitor must be one of"):
        T.fit(M.create("resnet18", num_classes=4), _toy(), monitor="auc", progress=False)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        T.fit(M.create("resnet18", num_classes=4), _toy(n=8), epochs=1, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        T.fit(M.create("resnet18", num_classes=4), _toy(n=8), epochs=1, schedule="linear", progress=False)


def test_linear_probe_then_finetune_and_history():
    model = M.create("resnet18", num_classes=4, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = T.fit(model, _toy(n=64), _toy("val", n=40), epochs=2, linear_probe_epochs=2, batch_size=32,
              lr=0.01, progress=False, restore_best=False)
    after = model.state_dict()
    assert torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    assert list(r.history.phase) == ["probe", "probe"]
    assert {"epoch", "lr", "train_loss", "val_loss", "val_auc", "val_acc", "seconds"} <= set(r.history.columns)
    assert all(p.requires_grad for p in model.parameters())


def test_early_stopping_restores_the_best_epoch():
    model = M.create("resnet18", num_classes=4, seed=0)
    val = _toy("val", n=60)
    r = T.fit(model, _toy(n=96), val, epochs=6, lr=0.5, momentum=0.0, patience=2, monitor="val_loss",
              batch_size=32, progress=False, schedule=None)
    h = r.history
    assert r.best_epoch == int(h.loc[h.val_loss.idxmin(), "epoch"])
    assert len(h) == min(6, r.best_epoch + 2)
    assert abs(T.evaluate(model, val)["loss"] - h.val_loss.min()) < 1e-5


def test_half_epoch_validation_selects_within_epochs_and_never_changes_training():
    """val_every=0.5 (the feature-reuse study): a validation half-way through every epoch,
    the best checkpoint possibly from one, restored exactly; training itself is untouched
    (the same weights as validating once per epoch)."""
    train, val = _toy(n=96), _toy("val", n=60)
    kw = dict(epochs=3, lr=0.3, momentum=0.0, batch_size=16, monitor="val_loss", schedule=None, progress=False,
              restore_best=False)
    once = M.create("resnet18", num_classes=4, seed=0)
    r1 = T.fit(once, train, val, **kw)
    twice = M.create("resnet18", num_classes=4, seed=0)
    r2 = T.fit(twice, train, val, val_every=0.5, **kw)
    assert r2.history.epoch.tolist() == [0.5, 1, 1.5, 2, 2.5, 3]
    assert all(torch.equal(a, b) for a, b in zip(once.state_dict().values(), twice.state_dict().values()))
    ends = r2.history[r2.history.epoch == r2.history.epoch.round()].reset_index(drop=True)
    assert np.allclose(ends.val_loss, r1.history.val_loss, rtol=0, atol=1e-6)
    best = r2.history.loc[r2.history.val_loss.idxmin()]
    assert r2.best_epoch == best.epoch and r2.best_value == best.val_loss
    chosen = M.create("resnet18", num_classes=4, seed=0)  # restore_best brings back that (maybe mid-epoch) state
    r3 = T.fit(chosen, train, val, val_every=0.5, **{**kw, "restore_best": True})
    assert r3.best_epoch == r2.best_epoch and abs(T.evaluate(chosen, val)["loss"] - r3.best_value) < 1e-6


def test_single_label_target_metrics_as_monitors():
    from medtl import evaluate as ev

    model, val = M.create("resnet18", num_classes=4, seed=0), _toy("val", n=60)
    r = T.fit(model, _toy(n=64), val, epochs=2, batch_size=32, lr=0.05, monitor="val_kappa", progress=False)
    assert "val_kappa" in r.history and r.monitor == "val_kappa"
    out = T.evaluate(model, val)
    assert r.best_value == pytest.approx(ev.kappa(out["y_true"], out["y_score"], val.task), abs=1e-12)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="val_every must be a fraction of an epoch in"):
            T.fit(M.create("resnet18", num_classes=4), _toy(n=8), epochs=1, val_every=bad, progress=False)
    multi = D.ImageSet(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.tensor([[0, 1], [1, 0]] * 4),
                       "multi-label, binary-class", ["a", "b"], "ml")
    with pytest.raises(ValueError, match="monitor='val_kappa' is a single-label metric"):
        T.fit(M.create("resnet18", num_classes=2), multi, monitor="val_kappa", progress=False)


def test_resume_after_kill_is_bit_exact(tmp_path):
    """A fit killed (SIGKILL) after epoch 2 and started again reaches the same weights as an
    uninterrupted run: shuffling, augmentation, dropout, optimiser and schedule state all
    come back from the checkpoint."""
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(REPO)!r})
        import medtl.data as D, medtl.models as M, medtl.train as T
        torch.set_num_threads(1)
        kill = sys.argv[2] == "kill"
        def crash(epoch, row):
            if kill and epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        model = M.create("resnet18", num_classes=4, dropout=0.3, seed=0)
        r = T.fit(model, D.synthetic("shape-a", n=48), D.synthetic("shape-a", "val", n=24), epochs=4,
                  batch_size=16, lr=0.02, augment="study", checkpoint_dir=sys.argv[1], seed=7,
                  progress=False, callbacks=[crash], restore_best=False)
        torch.save(model.state_dict(), os.path.join(sys.argv[1], "final.pt"))
        print("resumed_from", r.resumed_from)
    """)
    file = tmp_path / "run.py"
    file.write_text(script)
    killed = subprocess.run([sys.executable, str(file), str(tmp_path / "a"), "kill"], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=False)["epoch"] == 2
    resumed = subprocess.run([sys.executable, str(file), str(tmp_path / "a"), "run"], capture_output=True,
                             text=True, check=True)
    assert "resumed_from 3" in resumed.stdout
    subprocess.run([sys.executable, str(file), str(tmp_path / "b"), "run"], check=True, capture_output=True)
    a = torch.load(tmp_path / "a" / "final.pt")
    b = torch.load(tmp_path / "b" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["history"]
    hist_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["history"]
    assert [h["train_loss"] for h in hist_a] == [h["train_loss"] for h in hist_b]


def test_grid_search_resumes_and_selects_min_val_loss(tmp_path, monkeypatch):
    train, val = _toy(n=32), _toy("val", n=24)

    def build():
        return M.create("shufflenet_v2_x0_5", num_classes=4, seed=0)

    grid = {"lr": [0.01, 0.1], "momentum": [0.0, 0.9], "batch_size": [16]}
    table = T.grid_search(build, train, val, val, grid, out_dir=tmp_path, epochs=1, progress=False)
    assert len(table) == 4 and set(table.status) == {"finished"}
    assert len(set(table.config_id)) == 4 and len(list(tmp_path.glob("*.json"))) == 4
    best = T.select(table)
    assert best.val_loss == table.val_loss.min()
    calls = []
    monkeypatch.setattr("medtl.train._recipes.fit", lambda *a, **k: calls.append(1))  # the grid's own fit
    again = T.grid_search(build, train, val, val, grid, out_dir=tmp_path, epochs=1, progress=False)
    assert calls == [] and again.equals(table)
    row = json.loads((tmp_path / f"{best.config_id}.json").read_text())
    assert row["lr"] == best.lr and "test_auc" in row


def test_lr_grid_rows():
    table = T.lr_grid(lambda: M.create("shufflenet_v2_x0_5", num_classes=4, seed=0), _toy(n=32), _toy("val", n=24),
                      lrs=[1e-3, 1e-2], epochs=1, batch_size=16, progress=False)
    assert list(table.lr) == [1e-3, 1e-2] and table.best_by_loss.sum() == 1
    assert len(np.logspace(-5, -2, 25)) == 25


def test_pretrain_union_saves_a_named_source(tmp_path):
    parts = []
    for i, name in enumerate(["shape-a", "texture-a"]):
        ds = D.synthetic(name, n=40)
        multi = torch.zeros(40, 8)
        multi[torch.arange(40), ds.labels + 4 * i] = 1
        parts.append(D.ImageSet(ds.images, multi, D.MULTI_LABEL, [f"s{j}" for j in range(8)], name=name))
    union = D.concat(parts, name="union")
    w = T.inverse_frequency_weights(union)
    assert np.isclose(w[union.primary_labels() == 0].sum(), 1.0)
    r = T.pretrain("resnet18", union, union, name="u-src", root=tmp_path, epochs=2, batch_size=20, lr=0.01,
                   progress=False)
    assert r.history.val_loss.notna().all()
    meta = json.loads((tmp_path / "u-src.json").read_text())
    assert meta["arch"] == "resnet18" and meta["task"] == D.MULTI_LABEL and meta["num_classes"] == 8
    assert meta["normalize"] == "medmnist" and meta["source_data"] == "union"
    src = M.load_source("u-src", root=tmp_path, num_classes=3)
    assert src.fc.out_features == 3


# --- real data -----------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("flag,n,min_auc", [("bloodmnist", 800, 0.85), ("pneumoniamnist", 400, 0.85)])
def test_fit_on_real_subsets_beats_chance(medmnist_root, flag, n, min_auc):
    need_file(medmnist_root, f"{flag}.npz")
    train = D.subset(D.load(flag, "train", root=medmnist_root), n, stratified=True, seed=0)
    val = D.subset(D.load(flag, "val", root=medmnist_root), 200, stratified=True, seed=0)
    test = D.load(flag, "test", root=medmnist_root)
    model = M.create("resnet18", num_classes=train.n_classes, image_size=28, seed=0)
    r = T.fit(model, train, val, epochs=3, optimizer="adam", lr=1e-3, batch_size=32, progress=False)
    result = T.evaluate(r.model, test)
    assert result["auc"] > min_auc, result["auc"]
