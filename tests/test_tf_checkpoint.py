"""TensorFlow checkpoints read without TensorFlow (files TensorFlow itself wrote, in
tests/data/tf_checkpoint, see make.py there), and SimCLR's TF1 ResNet-50 converted into
torchvision: equal to SimCLR's own forward computation, written here from its resnet.py
(TF padding rules included)."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import medtl.models as M
from medtl.models import read_tf_checkpoint, simclr_state_dict

DATA = Path(__file__).parent / "data" / "tf_checkpoint"


def test_reads_a_tf1_saver_checkpoint_written_by_tensorflow():
    v = read_tf_checkpoint(DATA / "model.ckpt-3")
    assert len(v) == 305  # five named variables and 300 filling several index blocks
    assert v["base_model/conv2d/kernel"].dtype == np.float32 and v["base_model/conv2d/kernel"].shape == (2, 2, 3, 4)
    assert np.array_equal(v["base_model/conv2d/kernel"], np.arange(48, dtype=np.float32).reshape(2, 2, 3, 4))
    assert v["global_step"].dtype == np.int64 and int(v["global_step"]) == 7
    assert np.array_equal(v["x/double"], np.linspace(0, 1, 5)) and v["x/double"].dtype == np.float64
    assert np.array_equal(v["x/int32"], [[1, -2], [3, 4]]) and v["x/scalar"].shape == () and v["x/scalar"] == 2.5
    assert all(v[f"many/a_rather_long_scope_name_to_fill_index_blocks/v{i:04d}"] == i for i in range(300))
    same = read_tf_checkpoint(DATA / "model.ckpt-3.index")  # the index file or a shard name the same checkpoint
    assert same.keys() == v.keys() and read_tf_checkpoint(DATA / "model.ckpt-3.data-00000-of-00001").keys() == v.keys()


def test_reads_a_tf2_object_checkpoint_and_leaves_out_its_object_graph():
    v = read_tf_checkpoint(DATA / "tf2" / "ckpt")
    assert set(v) == {"model/w/.ATTRIBUTES/VARIABLE_VALUE", "model/b/.ATTRIBUTES/VARIABLE_VALUE"}
    assert np.array_equal(v["model/w/.ATTRIBUTES/VARIABLE_VALUE"], np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="no SimCLR base network .* TF1 checkpoints"):
        simclr_state_dict(v)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint index at .*nope.index"):
        read_tf_checkpoint(tmp_path / "nope")
    (tmp_path / "junk.index").write_bytes(b"not a table" * 10)
    with pytest.raises(ValueError, match="is not a TensorFlow checkpoint index"):
        read_tf_checkpoint(tmp_path / "junk")
    (tmp_path / "c.index").write_bytes((DATA / "model.ckpt-3.index").read_bytes())
    with pytest.raises(FileNotFoundError, match="data shard .*c.data-00000-of-00001 is missing"):
        read_tf_checkpoint(tmp_path / "c")
    (tmp_path / "c.data-00000-of-00001").write_bytes((DATA / "model.ckpt-3.data-00000-of-00001").read_bytes()[:100])
    with pytest.raises(ValueError, match="do not hold shape .* inside its shard"):
        read_tf_checkpoint(tmp_path / "c")


# --- SimCLR -----------------------------------------------------------------------------------
def _simclr_variables(rng, prefix="base_model/", blocks=(3, 4, 6, 3)):
    """Variables named as SimCLR's resnet.py creates them with TF1's layers API (conv2d,
    conv2d_1, …; batch_normalization, …): the 7×7 stem conv and its BN; per bottleneck the
    projection shortcut first (first block of a group), then 1×1, 3×3, 1×1 convs with BNs.
    Returns the variables and the plan of SimCLR's forward in those names."""
    v, count = {}, {"conv2d": 0, "batch_normalization": 0}

    def scope(kind):
        i = count[kind]
        count[kind] += 1
        return prefix + (kind if i == 0 else f"{kind}_{i}")

    def conv(k, cin, cout):
        name = scope("conv2d")
        v[name + "/kernel"] = rng.normal(0, np.sqrt(1.0 / (k * k * cin)), (k, k, cin, cout)).astype(np.float32)
        return name

    def bn(c):
        name = scope("batch_normalization")
        for key, value in (("gamma", rng.uniform(0.5, 1.0, c)), ("beta", rng.normal(0, 0.1, c)),
                           ("moving_mean", rng.normal(0, 0.1, c)), ("moving_variance", rng.uniform(0.5, 1.5, c))):
            v[f"{name}/{key}"] = value.astype(np.float32)
        return name

    plan = {"stem": (conv(7, 3, 64), bn(64)), "blocks": []}
    cin = 64
    for g, n in enumerate(blocks):
        f = 64 * 2 ** g
        for b in range(n):
            block = {"stride": (1 if g == 0 else 2) if b == 0 else 1}
            if b == 0:
                block["proj"] = (conv(1, cin, 4 * f), bn(4 * f))
            block["convs"] = [(conv(1, cin, f), bn(f)), (conv(3, f, f), bn(f)), (conv(1, f, 4 * f), bn(4 * f))]
            plan["blocks"].append(block)
            cin = 4 * f
    v["head_supervised/linear_layer/dense/kernel"] = rng.normal(0, 0.02, (2048, 1000)).astype(np.float32)
    v["head_supervised/linear_layer/dense/bias"] = rng.normal(0, 0.1, 1000).astype(np.float32)
    v[plan["stem"][0] + "/kernel/Momentum"] = np.zeros((7, 7, 3, 64), np.float32)  # an optimiser slot
    v["global_step"] = np.int64(225206)
    return v, plan


def _tf_conv(x, kernel, stride):
    """SimCLR's conv2d_fixed_padding: strided convs pad (k−1)//2 before and the rest after,
    then VALID; stride 1 is SAME (the same padding for odd k)."""
    k = kernel.shape[0]
    x = F.pad(x, ((k - 1) // 2, k - 1 - (k - 1) // 2) * 2)
    return F.conv2d(x, torch.from_numpy(kernel).permute(3, 2, 0, 1), stride=stride)


def _tf_bn(x, v, name):
    g, b, m, s = (torch.from_numpy(v[f"{name}/{k}"])[None, :, None, None]
                  for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    return g * (x - m) / torch.sqrt(s + 1e-5) + b


def _simclr_forward(v, plan, x):
    """SimCLR's ResNet forward (resnet.py, inference) in its own variable names."""
    conv, bn = plan["stem"]
    x = F.relu(_tf_bn(_tf_conv(x, v[conv + "/kernel"], 2), v, bn))
    n = x.shape[-1]  # max pool 3×3/2 'SAME': pad total max((ceil(n/2)−1)·2+3−n, 0), the extra pixel at the end
    total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
    x = F.max_pool2d(F.pad(x, (total // 2, total - total // 2) * 2, value=float("-inf")), 3, 2)
    for block in plan["blocks"]:
        shortcut = x
        if "proj" in block:
            conv, bn = block["proj"]
            shortcut = _tf_bn(_tf_conv(x, v[conv + "/kernel"], block["stride"]), v, bn)
        h = x
        for i, (conv, bn) in enumerate(block["convs"]):
            h = _tf_bn(_tf_conv(h, v[conv + "/kernel"], block["stride"] if i == 1 else 1), v, bn)
            h = F.relu(h) if i < 2 else h
        x = F.relu(h + shortcut)
    feats = x.mean((2, 3))
    return feats @ torch.from_numpy(v["head_supervised/linear_layer/dense/kernel"]) + torch.from_numpy(
        v["head_supervised/linear_layer/dense/bias"])


@pytest.fixture(scope="module")
def simclr():
    return _simclr_variables(np.random.default_rng(0))


def test_simclr_resnet50_converts_into_torchvision_and_computes_simclrs_forward(simclr):
    v, plan = simclr
    sd = simclr_state_dict(v)
    net = torchvision.models.resnet50()
    net.load_state_dict(sd)  # strict: every torchvision tensor, nothing else
    net.eval()
    x = torch.rand(2, 3, 226, 226)  # odd stem output (113): TF's and torchvision's max-pool padding agree
    with torch.no_grad():
        want, got = _simclr_forward(v, plan, x), net(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    x = torch.rand(2, 3, 224, 224)  # even (112): TF pads the max pool at the end only — the documented difference
    with torch.no_grad():
        assert not torch.allclose(net(x), _simclr_forward(v, plan, x), rtol=1e-4, atol=1e-4)


def test_simclr_v2_ema_weights_and_refusals(simclr):
    v, _ = simclr
    ema = {("ema_model/" + k if k.startswith("base_model/") else k): a * 2 for k, a in v.items()
           if k.startswith("base_model/")} | {k: a for k, a in v.items() if not k.startswith("base_model/")}
    both = {**v, **ema}
    assert torch.equal(simclr_state_dict(both, ema=True)["conv1.weight"], 2 * simclr_state_dict(v)["conv1.weight"])
    sk = {**v, "base_model/conv2d_999/kernel": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="not numbered"):
        simclr_state_dict(sk)
    extra = {**v, f"base_model/conv2d_{53}/kernel": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(ValueError, match="54 convolutions and 53 batch norms; .* 53 and 53 .*selective-kernel"):
        simclr_state_dict(extra)
    wide = {k: (np.concatenate([a, a], axis=-1) if k.endswith("conv2d/kernel") else a) for k, a in v.items()}
    with pytest.raises(ValueError, match=r"does not fit torchvision's ResNet-50 .* conv1.weight \(128, 3, 7, 7\)"):
        simclr_state_dict(wide)
    with pytest.raises(ValueError, match="ResNet-18/34"):
        simclr_state_dict(v, depth=18)


def _write_bundle(prefix: Path, variables: dict) -> None:
    """A TensorFlow V2 checkpoint in TensorFlow's layout (the reader is checked against files
    TensorFlow wrote, above): a data shard and an index table of BundleEntryProtos."""
    def varint(n):
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out

    def field(number, payload):  # length-delimited, or varint for ints
        return (varint(number << 3) + varint(payload)) if isinstance(payload, int) else \
            (varint(number << 3 | 2) + varint(len(payload)) + payload)

    def block(entries):
        body = b"".join(varint(0) + varint(len(k)) + varint(len(val)) + k + val for k, val in entries)
        return body + struct.pack("<II", 0, 1)

    codes = {np.dtype("float32"): 1, np.dtype("int64"): 9}
    data, entries = b"", [(b"", field(1, 1))]
    for name in sorted(variables):
        a = np.ascontiguousarray(variables[name])
        shape = b"".join(field(2, field(1, d)) for d in a.shape)
        entries.append((name.encode(), field(1, codes[a.dtype]) + field(2, shape) + field(4, len(data))
                        + field(5, a.nbytes)))
        data += a.tobytes()
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)
    body = block(entries)
    meta = block([])
    index = block([(entries[-1][0], varint(0) + varint(len(body)))])
    out = body + b"\0" * 5 + meta + b"\0" * 5 + index + b"\0" * 5
    handles = varint(len(body) + 5) + varint(len(meta)) + varint(len(body) + 5 + len(meta) + 5) + varint(len(index))
    prefix.with_name(prefix.name + ".index").write_bytes(out + handles.ljust(40, b"\0")
                                                         + struct.pack("<Q", 0xDB4775248B80FB57))


def test_fetch_downloads_a_simclr_checkpoint_converts_it_and_create_loads_it(simclr, tmp_path, monkeypatch):
    v, _ = simclr
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    mirror = tmp_path / "mirror" / "model.ckpt-225206"
    mirror.parent.mkdir()
    _write_bundle(mirror, v)
    assert read_tf_checkpoint(mirror).keys() == v.keys()
    path = M.fetch("simclr-v1", url=mirror.as_uri(), progress=False)
    assert path == M.get_init("simclr-v1").path and path.is_file()
    model = M.create("resnet50", num_classes=2, weights="simclr-v1")
    want = simclr_state_dict(v)
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("fc."))
    from medtl.cli import main

    out = tmp_path / "v2.pth"
    assert main(["models", "convert", "simclr-v2", str(mirror), "--dest", str(out)]) == 0
    assert torch.equal(torch.load(out)["state_dict"]["layer4.2.conv3.weight"], want["layer4.2.conv3.weight"])
