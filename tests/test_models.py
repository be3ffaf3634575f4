import urllib.error

import pytest
import torch
from torch import nn
from torchvision import models as tvm

import medtl.models as M


def _sizes(a) -> list[tuple[int, str]]:
    """Native size (standard stem), 64 px where the standard stem allows it, and 28 px with
    the small-input stem where the table has one."""
    sizes = [(a.native_size, "imagenet")]
    if a.min_size <= 64:
        sizes.append((64, "imagenet"))
    if a.small_stem is not None:
        sizes.append((28, "cifar"))
    return sizes


# foundation rows build through their own libraries and hub configurations: tests/test_foundation.py
# checks every one of them (and tiny models of each loader family) the same way
@pytest.mark.parametrize("arch", [a for a in M.ARCHS if M.spec(a).family != "foundation"])
def test_every_arch_builds_runs_and_lists_real_layers(arch):
    a = M.spec(arch)
    listed = {layer for g in a.granularities for layer in a.layer_list(g)}
    sizes = _sizes(a)
    for size, stem in sizes:
        for c in (1, 3):
            model = M.create(arch, num_classes=3, in_chans=c, stem=stem, image_size=size, seed=0)
            names = dict(model.named_modules())
            for layer in (*listed, *a.fu_layers, a.head, a.feature_node, a.stem):
                assert layer in names, f"{arch}: {layer} not in the model"
            for fu in a.fu_layers:
                assert isinstance(names[fu], (nn.Conv2d, nn.Linear))
            with torch.no_grad():
                assert model.eval()(torch.randn(1, c, size, size)).shape == (1, 3), (arch, size, c)
    # trains (forward and backward in train mode) at the smallest size
    size, _ = sizes[-1]
    model = M.create(arch, num_classes=3, in_chans=1, stem=sizes[-1][1], image_size=size, seed=0).train()
    model(torch.randn(2, 1, size, size)).sum().backward()
    assert M.get_module(model, a.stem).weight.grad is not None
    # the head's input is the table's width
    assert M.get_module(model, a.head).in_features == a.head_in


def test_feature_dim_is_the_feature_node_input():
    for arch in ("mobilenet_v3_small", "efficientnet_v2_s", "resnet18", "vgg11"):
        a = M.spec(arch)
        model = M.create(arch, num_classes=4, image_size=224).eval()
        seen = []
        h = M.get_module(model, a.feature_node).register_forward_hook(lambda m, i, o, out=seen: out.append(i[0]))
        model(torch.randn(1, 3, 224, 224))
        h.remove()
        assert seen[0].shape == (1, a.feature_dim), arch


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'; valid: resnet18, resnet50, densenet121"):
        M.create("resnet19")
    assert M.spec("densenet").name == "densenet121"


def test_standard_stem_refuses_too_small_inputs():
    with pytest.raises(ValueError, match="vgg11 with the standard stem needs inputs of at least 32 px, got 28; use stem='cifar'"):
        M.create("vgg11", num_classes=2, image_size=28)


def test_seeded_build_is_bit_identical():
    a = M.create("resnet18", num_classes=5, seed=3).state_dict()
    b = M.create("resnet18", num_classes=5, seed=3).state_dict()
    c = M.create("resnet18", num_classes=5, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


# --- ImageNet weights through torchvision's own cache --------------------------------------
def _write_imagenet(tmp_path, monkeypatch, arch, **builder):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = M.imagenet_weights(arch)
    file = M.imagenet_file(weights)
    assert file == tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(123)
    state = tvm.get_model(arch, weights=None, **builder).state_dict()
    torch.save(state, file)
    return state


def test_imagenet_weights_load_bit_exactly_from_torch_home(tmp_path, monkeypatch):
    state = _write_imagenet(tmp_path, monkeypatch, "resnet18")
    assert (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    model = M.create("resnet18", weights="imagenet")
    got = model.state_dict()
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert model.medtl["normalize"] == "imagenet" and model.medtl["num_classes"] == 1000
    fresh = M.create("resnet18", num_classes=3, weights="imagenet", in_chans=1).state_dict()
    assert torch.equal(fresh["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert torch.equal(fresh["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert fresh["fc.weight"].shape == (3, 512)


def test_imagenet_googlenet_drops_aux_heads(tmp_path, monkeypatch):
    state = _write_imagenet(tmp_path, monkeypatch, "googlenet", aux_logits=True, init_weights=True)
    model = M.create("googlenet", num_classes=2, weights="imagenet")
    assert torch.equal(model.state_dict()["inception5b.branch1.conv.weight"], state["inception5b.branch1.conv.weight"])
    assert model.transform_input  # torchvision's ImageNet GoogLeNet convention


def test_imagenet_absent_offline_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError) as err:
        M.create("densenet121", weights="imagenet")
    msg = str(err.value)
    assert "densenet121-a639ec97.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_imagenet_inception_v3_drops_its_aux_head(tmp_path, monkeypatch):
    state = _write_imagenet(tmp_path, monkeypatch, "inception_v3", aux_logits=True, init_weights=True)
    assert any(k.startswith("AuxLogits") for k in state)
    model = M.create("inception_v3", num_classes=2, weights="imagenet", image_size=299)
    got = model.state_dict()
    assert not any(k.startswith("AuxLogits") for k in got)
    assert torch.equal(got["Mixed_7c.branch_pool.conv.weight"], state["Mixed_7c.branch_pool.conv.weight"])


def _timm_state(name: str) -> dict:
    import timm

    torch.manual_seed(7)
    return timm.create_model(name, pretrained=False).state_dict()


def test_timm_weights_from_torch_hub_cache_and_from_a_file(tmp_path, monkeypatch):
    """DeiT-S as FAIR publishes it (``{"model": state}`` at its URL's file name in torch
    hub's cache), and the same checkpoint passed as a path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _timm_state("deit_small_patch16_224")
    file = tmp_path / "hub" / "checkpoints" / "deit_small_patch16_224-cd65a155.pth"
    file.parent.mkdir(parents=True)
    torch.save({"model": state}, file)
    model = M.create("deit_small", num_classes=3, weights="imagenet", image_size=224)
    got = model.state_dict()
    assert torch.equal(got["blocks.11.mlp.fc2.weight"], state["blocks.11.mlp.fc2.weight"])
    assert torch.equal(got["pos_embed"], state["pos_embed"]) and got["head.weight"].shape == (3, 384)
    # at 64 px the position table is resampled to the 4×4 grid by timm's own filter
    small = M.create("deit_small", num_classes=3, weights="imagenet", image_size=64).state_dict()
    assert small["pos_embed"].shape == (1, 1 + 16, 384)
    assert torch.equal(small["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    by_path = M.create("deit_small", num_classes=3, weights=str(file), image_size=224).state_dict()
    assert torch.equal(by_path["blocks.3.norm1.weight"], state["blocks.3.norm1.weight"])


def test_timm_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """vit_small's hub weights (safetensors) in a Hugging Face cache laid out as the hub client
    writes it (refs/main → snapshot)."""
    from safetensors.torch import save_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    state = _timm_state("vit_small_patch16_224")
    repo = tmp_path / "hf" / "models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    got = M.create("vit_small", num_classes=2, weights="imagenet", image_size=224).state_dict()
    assert torch.equal(got["blocks.5.attn.proj.weight"], state["blocks.5.attn.proj.weight"])


def test_timm_weights_absent_offline_name_file_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError) as err:
        M.create("deit_small", num_classes=2, weights="imagenet")
    msg = str(err.value)
    assert "deit_small_patch16_224-cd65a155.pth" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "timm/deit_small_patch16_224.fb_in1k" in msg and "weights=<path" in msg


# --- checkpoints ---------------------------------------------------------------------------
WRAPPERS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 7},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    "net": lambda sd: {"net": sd},
    "module.": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "state_dict+module.": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("form", list(WRAPPERS))
def test_checkpoint_wrappers_load_identically(tmp_path, form):
    src = M.create("resnet18", num_classes=4, seed=1)
    file = tmp_path / "ckpt.pth"
    torch.save(WRAPPERS[form](src.state_dict()), file)
    dst = M.create("resnet18", weights=file)  # num_classes=None keeps the checkpoint's head
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    assert dst.medtl["num_classes"] == 4
    fresh = M.create("resnet18", num_classes=4, weights=file).state_dict()  # a fresh head
    assert torch.equal(fresh["layer4.1.bn2.running_var"], src.state_dict()["layer4.1.bn2.running_var"])
    assert not torch.equal(fresh["fc.weight"], src.state_dict()["fc.weight"])


def test_checkpoint_with_other_head_size_keeps_backbone(tmp_path):
    src = M.create("resnet18", num_classes=10, seed=1)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "c.pth")
    dst = M.create("resnet18", num_classes=3, weights=tmp_path / "c.pth")
    assert torch.equal(dst.state_dict()["layer1.0.conv1.weight"], src.state_dict()["layer1.0.conv1.weight"])


def test_checkpoint_of_another_architecture_is_an_error(tmp_path):
    torch.save(M.create("resnet18", num_classes=2).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not fit ResNet: .* non-head tensors missing or of another shape"):
        M.create("resnet50", num_classes=2, weights=tmp_path / "r18.pth")
    torch.save(M.create("vgg11", num_classes=2).state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="matched none of the model's"):
        M.create("resnet18", num_classes=2, weights=tmp_path / "vgg.pth")
    # strict=False loads what fits and reports the rest
    with pytest.warns(UserWarning, match="missing"):
        M.create("resnet50", num_classes=2, weights=tmp_path / "r18.pth", strict=False)


def _backbone(seed=5):
    m = tvm.resnet50(weights=None)
    torch.manual_seed(seed)
    for p in m.parameters():
        p.data.normal_()
    return {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}


@pytest.mark.parametrize("method,prefix,extra", [
    ("moco-v2", "module.encoder_q.", {"module.encoder_q.fc.0.weight": torch.zeros(3), "module.queue": torch.zeros(2)}),
    ("swav", "module.", {"module.projection_head.0.weight": torch.zeros(2), "module.prototypes.weight": torch.zeros(2)}),
    ("infomin", "module.encoder.", {"module.encoder.head.weight": torch.zeros(2)}),
    ("cmc", "module.encoder1.", {"module.encoder1.linear.weight": torch.zeros(2)}),
    ("barlowtwins", "", {"fc.weight": torch.zeros(2)}),
])
def test_ssl_remap_rules(tmp_path, method, prefix, extra):
    bb = _backbone()
    ckpt = {"state_dict": {**{prefix + k: v for k, v in bb.items()}, **extra}}
    torch.save(ckpt, tmp_path / "ssl.pth")
    model = M.create("resnet50", num_classes=2, weights=tmp_path / "ssl.pth", method=method, strict=True)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in bb.items())


def test_ssl_rule_details():
    state = {"module.jigsaw.w": torch.zeros(1), "module.encoder.conv1.weight": torch.zeros(1),
             "layer.module.encoder.x": torch.zeros(1)}
    with pytest.warns(UserWarning, match="jigsaw"):
        out, report = M.remap(state, "pirl", [])
    assert "conv1.weight" in out and "module.jigsaw.w" in report.dropped
    assert "layer.module.encoder.x" in out  # anchored: a prefix inside a key is not stripped
    with pytest.raises(ValueError, match="unknown checkpoint method 'mocov2'"):
        M.remap(state, "mocov2", [])
    with pytest.raises(ValueError, match="SimCLR-v2"):
        M.remap(state, "simclr-v2", [])


def test_medtl_sources_by_name(tmp_path):
    model = M.create("resnet18", num_classes=6, in_chans=1, stem="cifar", image_size=28, seed=2)
    model.medtl["normalize"] = "medmnist"
    M.save_source(model, "toy-src", root=tmp_path, source_data="toy", classes=list("abcdef"))
    back = M.load_source("toy-src", root=tmp_path)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    assert back.medtl["source"]["classes"] == list("abcdef") and back.medtl["in_chans"] == 1
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model.eval()(x), back.eval()(x))
    new = M.load_source(tmp_path / "toy-src.pt", num_classes=2)
    assert new.fc.out_features == 2


def test_grey_stem_sum_equals_channel_replication():
    rgb = M.create("resnet18", num_classes=3, seed=0).eval()
    grey = M.adapt_in_chans(M.create("resnet18", num_classes=3, seed=0), 1).eval()
    x = torch.randn(2, 1, 64, 64)
    assert torch.allclose(rgb(x.expand(-1, 3, -1, -1)), grey(x), atol=1e-5)
    first = M.adapt_in_chans(M.create("resnet18", num_classes=3, seed=0), 1, mode="first")
    assert torch.equal(first.conv1.weight, rgb.conv1.weight[:, :1])
    # the identity needs the channels normalised alike: under ImageNet's per-channel mean/std a
    # replicated grey image is not what the sum kernel sees (the docstring says so)
    raw = torch.rand(2, 1, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    per_channel = rgb((raw.expand(-1, 3, -1, -1) - mean) / std)
    one_stat = grey((raw - mean.mean()) / std.mean())
    assert not torch.allclose(per_channel, one_stat, atol=1e-3)
    alike = rgb((raw.expand(-1, 3, -1, -1) - mean.mean()) / std.mean())
    assert torch.allclose(alike, one_stat, atol=1e-5)


# --- RI / WT / ST --------------------------------------------------------------------------
def test_stats_transfer_matches_per_tensor_moments():
    wt = M.create("resnet18", num_classes=4, seed=0)
    for m in wt.modules():  # give BN layers non-default values to see the reset
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(2.0)
            m.running_mean.fill_(0.3)
    src = {k: v.clone() for k, v in wt.state_dict().items()}
    st = M.create("resnet18", num_classes=4, seed=0)
    st.load_state_dict(src)
    M.reinit(st, "st", seed=1)
    got = st.state_dict()
    for name, mod in st.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and not name.startswith("fc"):
            w, s = src[f"{name}.weight"].double(), got[f"{name}.weight"].double()
            n = w.numel()
            assert not torch.equal(w, s)
            assert abs(s.mean() - w.mean()) < 5 * w.std() / n**0.5 + 1e-12
            assert abs(s.std() / w.std() - 1) < 5 / (2 * n) ** 0.5
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.equal(got[f"{name}.weight"], torch.ones_like(got[f"{name}.weight"]))
            assert torch.equal(got[f"{name}.running_mean"], torch.zeros_like(got[f"{name}.running_mean"]))
            assert torch.equal(got[f"{name}.running_var"], torch.ones_like(got[f"{name}.running_var"]))
    assert torch.equal(got["fc.weight"], src["fc.weight"])  # the head is left alone


def test_wt_st_hybrid_keeps_weights_up_to_layer():
    wt = M.create("resnet18", num_classes=4, seed=0)
    src = {k: v.clone() for k, v in wt.state_dict().items()}
    M.reinit(wt, "st", up_to=1, seed=0)  # conv1, bn1, layer1 WT; layer2..4 ST
    got = wt.state_dict()
    for k in src:
        if k.startswith(("conv1", "bn1", "layer1")):
            assert torch.equal(got[k], src[k]), k
    assert not torch.equal(got["layer2.0.conv1.weight"], src["layer2.0.conv1.weight"])
    assert torch.equal(got["layer2.0.bn1.weight"], torch.ones(128))
    with pytest.raises(ValueError, match=r"up_to must be in -2..4"):
        M.reinit(wt, "st", up_to=5)


def test_random_init_is_seeded_and_fresh():
    a = M.reinit(M.create("resnet18", num_classes=4, seed=9), "ri", seed=1)
    b = M.reinit(M.create("resnet18", num_classes=4, seed=8), "ri", seed=1)
    sa, sb = a.state_dict(), b.state_dict()
    assert torch.equal(sa["layer3.0.conv1.weight"], sb["layer3.0.conv1.weight"])
    assert not torch.equal(sa["fc.weight"], sb["fc.weight"])  # heads untouched
    with pytest.raises(ValueError, match="scheme must be 'ri', 'wt' or 'st'"):
        M.reinit(a, "xavier")


# --- truncation ----------------------------------------------------------------------------
def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_truncation_parameter_counts_resnet50():
    r50 = M.create("resnet50", num_classes=2, seed=0)
    t3 = M.truncate(r50, 3, mode="block", head="gap", num_classes=2)
    assert _n_params(t3.body) == 8_543_296 and _n_params(t3.head) == 2_050
    k12 = M.truncate(r50, 12, mode="layer", head="gap", num_classes=2)
    assert _n_params(k12.body) == 6_308_928 and _n_params(k12.head) == 2_050
    assert len(M.resnet_sequence(r50)) == 21 and M.cut_points(r50, "layer")[-2] == 17
    flat = M.truncate(r50, 1, head="flatten", num_classes=2, image_size=224)
    assert flat.head[1].in_features == 256 * 56 * 56
    assert M.truncate(r50, -1, num_classes=2)(torch.randn(1, 3, 64, 64)).shape == (1, 2)
    with pytest.raises(ValueError, match="layer-wise cut must be in 1..17 or -1, got 18"):
        M.truncate(r50, 18, mode="layer")


def test_truncation_densenet_blocks():
    d = M.create("densenet121", num_classes=2, seed=0)
    t = M.truncate(d, 2, head="gap", num_classes=3)
    assert len(t.body) == 8 and t(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert t.head[-1].in_features == 256
    with pytest.raises(ValueError, match="vgg11 has no truncation recipe in the architecture table"):
        M.truncate(M.create("vgg11", num_classes=2), 1)


def test_freeze_and_unfreeze():
    m = M.create("resnet18", num_classes=2)
    M.freeze(m, except_layers=["fc"])
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    M.unfreeze(m, ["layer4"])
    assert m.layer4[0].conv1.weight.requires_grad and not m.layer3[0].conv1.weight.requires_grad


def test_a_source_name_that_exists_is_refused_where_it_would_replace_or_shadow(tmp_path, monkeypatch):
    """The demo's source stays the one `load_source` finds: saving the same name into the
    default models folder is refused; a study's own models folder only refuses replacement."""
    monkeypatch.setenv("MEDTL_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("MEDTL_MODELS", raising=False)
    net = M.create("resnet18", num_classes=2, seed=0)
    demo = tmp_path / "results" / "demo" / "models"
    M.save_source(net, "x-resnet18", root=demo)
    with pytest.raises(FileExistsError, match="already exists at .*demo"):
        M.save_source(net, "x-resnet18")  # would shadow the demo's for load_source("x-resnet18")
    M.save_source(net, "x-resnet18", root=tmp_path / "own")  # a folder of its own: no shadowing
    with pytest.raises(FileExistsError, match="overwrite=True"):
        M.save_source(net, "x-resnet18", root=tmp_path / "own")
    M.save_source(net, "x-resnet18", root=tmp_path / "own", overwrite=True)
