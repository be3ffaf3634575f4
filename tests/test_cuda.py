"""The CUDA paths agree with the CPU: training in float32 and in bf16 autocast, feature
extraction, prediction and a similarity measure on the device. Skipped (with the reason)
where torch sees no CUDA device; ``benchmarks/gpu.sh`` runs them on a machine with one."""

import numpy as np
import pytest
import torch

import medtl.data as D
import medtl.features as F
import medtl.models as M
import medtl.similarity as S
from medtl.train import evaluate, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


@pytest.fixture(scope="module")
def data():
    return D.synthetic("texture-a", "train", n=128), D.synthetic("texture-a", "val", n=64)


def _fit(train, val, device, amp):
    model = M.create("resnet18", num_classes=train.n_classes, seed=0, stem="cifar")
    return fit(model, train, val, epochs=2, batch_size=32, lr=0.05, device=device, amp=amp, deterministic=True,
               progress=False, seed=0, patience=None)


def test_float32_training_on_cuda_matches_the_cpu(data):
    train, val = data
    cpu, gpu = _fit(train, val, "cpu", False), _fit(train, val, "cuda", False)
    assert next(gpu.model.parameters()).device.type == "cuda"
    a, b = cpu.history.train_loss.to_numpy(), gpu.history.train_loss.to_numpy()
    np.testing.assert_allclose(b, a, rtol=2e-2)  # same data order, seed and schedule; only kernels differ


def test_bf16_autocast_training_learns_and_keeps_float32_weights(data):
    train, val = data
    r = _fit(train, val, "cuda", True)
    assert all(p.dtype == torch.float32 for p in r.model.parameters())  # autocast, not a bf16 model
    assert np.isfinite(r.history.train_loss).all()
    assert r.history.train_loss.iloc[-1] < r.history.train_loss.iloc[0]
    assert evaluate(r.model, val)["auc"] > 0.6


def test_extraction_and_prediction_on_cuda_match_the_cpu(data):
    train, _ = data
    model = M.create("resnet18", num_classes=train.n_classes, seed=0)
    cpu = F.extract(model, train, ["penultimate", "logits"], progress=False, device="cpu")
    gpu = F.extract(model, train, ["penultimate", "logits"], progress=False, device="cuda")
    for layer in cpu:
        assert gpu[layer].device.type == "cpu"  # activations come back to the host
        torch.testing.assert_close(gpu[layer], cpu[layer], rtol=1e-3, atol=1e-4)
    p32 = F.predict(model, train, device="cuda", amp=False)[0].softmax(1)
    p16 = F.predict(model, train, device="cuda", amp=True)[0].softmax(1)
    assert (p16 - p32).abs().max() < 0.1  # bf16 autocast keeps about 3 significant digits


def test_cka_on_cuda_tensors_equals_the_cpu():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, 64, generator=gen), torch.randn(500, 32, generator=gen)
    y[:, :8] += x[:, :8]
    cpu = float(S.cka(x, y))
    gpu = float(S.cka(x.cuda(), y.cuda()))
    assert abs(cpu - gpu) < 1e-5 and 0.05 < cpu < 0.9
