"""TensorFlow checkpoints without TensorFlow: read a V2 checkpoint (a TensorBundle: the
``.index`` table and its ``.data-NNNNN-of-NNNNN`` shards) and convert SimCLR's ResNets
(v1 and v2, TF1 checkpoints) into torchvision state dicts — the benchmark study's
SimCLR-v1 / SimCLR-v2 initialisations (spec benchmark-transfer §1), which it converted with
external tools."""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

#: The table footer's magic number (LevelDB's table format, which TensorBundle's index uses).
_MAGIC = 0xDB4775248B80FB57
#: TensorFlow DataType enum → numpy dtype (little-endian), the types a checkpoint holds.
_STRING = 7
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2",
          22: "<u4", 23: "<u8"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in a TensorFlow checkpoint index")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs: varints as ints, length-delimited
    fields as bytes, fixed32/fixed64 as ints."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in a TensorFlow checkpoint index")
        out.append((number, value))
    return out


def _block(data: bytes, offset: int, size: int, file: Path) -> bytes:
    """A table block's contents, after checking its trailer (compression type)."""
    if offset + size + 5 > len(data):
        raise ValueError(f"{file} is truncated: a block at {offset} (+{size}) runs past its end ({len(data)} bytes)")
    kind = data[offset + size]
    if kind != 0:
        raise ValueError(f"{file} holds a compressed index block (type {kind}); TensorFlow writes checkpoint "
                         "indexes uncompressed — this is not a TensorFlow V2 checkpoint index")
    return data[offset:offset + size]


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of a table block (prefix-compressed keys, restart array)."""
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    out, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        own, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + own]
        pos += own
        out.append((key, block[pos:pos + size]))
        pos += size
    return out


def _index_file(prefix: str | os.PathLike) -> Path:
    p = Path(prefix).expanduser()
    if p.suffix == ".index":
        return p
    if re.search(r"\.data-\d{5}-of-\d{5}$", p.name):
        return p.with_name(p.name.rsplit(".data-", 1)[0] + ".index")
    return p.with_name(p.name + ".index")


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a TensorFlow V2 checkpoint, read without TensorFlow.

    Args:
        prefix: the checkpoint prefix (``…/model.ckpt-225206``), its ``.index`` file or one
            of its ``.data-*`` shards.

    Returns:
        ``{variable name: numpy array}`` in the checkpoint's dtypes and shapes.

    The ``.index`` file is a LevelDB-format table (footer with the index block's handle,
    magic 0xdb4775248b80fb57) mapping each name to a ``BundleEntryProto`` (dtype, shape,
    shard, offset, size); the header entry (empty key) gives the shard count. String
    tensors (a TF2 checkpoint's object graph) are left out; partitioned (sliced) variables
    are refused with the name."""
    index = _index_file(prefix)
    if not index.is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint index at {index} (give the checkpoint prefix, e.g. "
                                ".../model.ckpt-225206, or its .index file)")
    data = index.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise ValueError(f"{index} is not a TensorFlow checkpoint index (no table magic number at its end)")
    footer = data[-48:-8]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    offset, pos = _varint(footer, pos)
    size, _ = _varint(footer, pos)
    entries = []
    for _, handle in _entries(_block(data, offset, size, index)):
        b_off, p = _varint(handle, 0)
        b_size, _ = _varint(handle, p)
        entries += _entries(_block(data, b_off, b_size, index))
    header = dict(_fields(dict(entries).get(b"", b"")))
    shards = int(header.get(1, 1))
    base = index.with_name(index.name[: -len(".index")])
    files: dict[int, bytes] = {}
    out = {}
    for key, value in entries:
        entry = dict(_fields(value)) if key else {}
        if key and int(entry.get(1, 0)) != _STRING:  # strings: TF2's object graph, not weights
            out[key.decode()] = _tensor(key.decode(), entry, base, shards, files)
    return out


def _tensor(name: str, entry: dict, base: Path, shards: int, files: dict) -> np.ndarray:
    if 7 in entry:
        raise ValueError(f"checkpoint variable {name!r} is partitioned (sliced); medtl reads whole variables only")
    dtype = DTYPES.get(int(entry.get(1, 0)))
    if dtype is None:
        raise ValueError(f"checkpoint variable {name!r} has TensorFlow dtype {entry.get(1)}, which medtl does not read")
    shape = [int(dict(_fields(d)).get(1, 0)) for n, d in _fields(entry.get(2, b"")) if n == 2]
    shard = int(entry.get(3, 0))
    if shard not in files:
        path = base.with_name(f"{base.name}.data-{shard:05d}-of-{shards:05d}")
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint data shard {path} is missing (variable {name!r} is stored there)")
        files[shard] = path.read_bytes()
    offset, size = int(entry.get(4, 0)), int(entry.get(5, 0))
    want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size != want or offset + size > len(files[shard]):
        raise ValueError(f"checkpoint variable {name!r}: {size} bytes at offset {offset} do not hold shape {shape} "
                         f"of {np.dtype(dtype)} ({want} bytes) inside its shard ({len(files[shard])} bytes)")
    return np.frombuffer(files[shard], dtype=dtype, count=want // np.dtype(dtype).itemsize,
                         offset=offset).reshape(shape).copy()


# --- SimCLR (TF1 checkpoints) → torchvision ResNets --------------------------------------------
#: SimCLR's ResNet depths with bottleneck blocks (torchvision's layout; its ResNet-18/34 give
#: every block group a projection shortcut, which torchvision's first group lacks).
SIMCLR_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _numbered(names, prefix: str, stem: str) -> list[str]:
    """``stem``, ``stem_1``, ``stem_2`` … layer scopes under ``prefix``, in creation order."""
    pat = re.compile(re.escape(prefix) + re.escape(stem) + r"(?:_(\d+))?/")
    found = {}
    for n in names:
        m = pat.match(n)
        if m:
            found[int(m.group(1) or 0)] = n[: m.end() - 1]
    if sorted(found) != list(range(len(found))):
        raise ValueError(f"the {stem} layers under {prefix!r} are not numbered 0..{len(found) - 1}")
    return [found[i] for i in range(len(found))]


def simclr_modules(depth: int = 50) -> list[tuple[str, str]]:
    """torchvision ResNet module names in the order SimCLR's ``resnet.py`` creates its
    layers: (kind, name) with kind ``"conv"`` or ``"bn"`` — the stem, then per bottleneck
    its projection shortcut first (first block of each group), then conv1, conv2, conv3 with
    their batch norms."""
    if depth not in SIMCLR_DEPTHS:
        raise ValueError(f"SimCLR ResNet-{depth} has no torchvision layout medtl converts into; depths: "
                         f"{', '.join(map(str, SIMCLR_DEPTHS))} (ResNet-18/34 give every group a projection "
                         "shortcut torchvision's first group lacks)")
    out = [("conv", "conv1"), ("bn", "bn1")]
    for g, blocks in enumerate(SIMCLR_DEPTHS[depth], start=1):
        for b in range(blocks):
            name = f"layer{g}.{b}"
            if b == 0:
                out += [("conv", f"{name}.downsample.0"), ("bn", f"{name}.downsample.1")]
            for i in (1, 2, 3):
                out += [("conv", f"{name}.conv{i}"), ("bn", f"{name}.bn{i}")]
    return out


def simclr_state_dict(variables: Mapping[str, np.ndarray], depth: int = 50,
                      ema: bool = False) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict from SimCLR's TF1 checkpoint variables
    (:func:`read_tf_checkpoint`): the ``base_model/`` (``ema_model/base_model/`` with ``ema``)
    layers ``conv2d``, ``conv2d_1``, … and ``batch_normalization``, ``_1``, … matched to
    :func:`simclr_modules` in creation order; kernels HWIO → OIHW; γ, β, moving mean and
    variance → weight, bias, running statistics; the supervised head
    (``head_supervised/linear_layer/dense``) → ``fc`` where the checkpoint has it. Optimiser
    slots (``…/Momentum``) and the contrastive head are left out. Every shape is checked
    against torchvision's ResNet-{depth}; a wider (2×, 4×) or selective-kernel (sk1) model is
    refused, as torchvision has no such layout.

    SimCLR's max-pool pads TF-style ("SAME": at even sizes one pixel at the end only, where
    torchvision pads both sides), so the converted network equals SimCLR's forward exactly
    where the stem output is odd (e.g. 226 px inputs) and approximately at 224 px."""
    import torchvision

    prefix = ("ema_model/" if ema else "") + "base_model/"
    names = [n for n in variables if n.startswith(prefix) and not n.endswith("/Momentum")]
    if not names:
        raise ValueError(f"no SimCLR base network in these variables (no {prefix!r} names; a TF2 object checkpoint? "
                         "medtl converts SimCLR's TF1 checkpoints, e.g. simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228)")
    convs, bns = _numbered(names, prefix, "conv2d"), _numbered(names, prefix, "batch_normalization")
    modules = simclr_modules(depth)
    want = {k: sum(1 for kind, _ in modules if kind == k) for k in ("conv", "bn")}
    if (len(convs), len(bns)) != (want["conv"], want["bn"]):
        raise ValueError(f"SimCLR checkpoint has {len(convs)} convolutions and {len(bns)} batch norms; a ResNet-{depth} "
                         f"without selective kernels has {want['conv']} and {want['bn']} (a selective-kernel (sk1) "
                         "or another depth's model?)")
    shapes = {k: v.shape for k, v in getattr(torchvision.models, f"resnet{depth}")().state_dict().items()}
    sd: dict[str, torch.Tensor] = {}
    conv_iter, bn_iter = iter(convs), iter(bns)
    for kind, module in modules:
        if kind == "conv":
            sd[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(
                variables[next(conv_iter) + "/kernel"].transpose(3, 2, 0, 1)))
        else:
            scope = next(bn_iter)
            for tf_name, pt in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                ("moving_variance", "running_var")):
                sd[f"{module}.{pt}"] = torch.from_numpy(np.array(variables[f"{scope}/{tf_name}"]))
            sd[f"{module}.num_batches_tracked"] = torch.tensor(0)
    head = "head_supervised/linear_layer/dense/"
    if head + "kernel" in variables:
        sd["fc.weight"] = torch.from_numpy(np.ascontiguousarray(variables[head + "kernel"].T))
        sd["fc.bias"] = torch.from_numpy(np.array(variables[head + "bias"]))
    bad = [f"{k} {tuple(v.shape)} vs {tuple(shapes[k])}" for k, v in sd.items() if tuple(v.shape) != tuple(shapes[k])]
    if bad:
        raise ValueError(f"SimCLR checkpoint does not fit torchvision's ResNet-{depth} ({len(bad)} tensors, e.g. "
                         f"{bad[0]}): a wider (2×/4×) model? torchvision has only the 1× layout")
    return sd
