"""Foundation models and medical zoos as sources (medtl.models.foundation): tiny models built
with the real libraries (random weights, small configs) and saved in each upstream format
load through the same code path as the full-size rows, give the row's feature width, equal
the library's own forward pass and preprocessing, and work wherever a source works
(features, CKA, fit with a fresh head and frozen blocks, rank). Gated rows, missing
extras, versions outside the tested range and rows contradicted by their files fail
clearly."""

import json
import sys
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import medtl.data as D
import medtl.models as M
import medtl.similarity as S
import medtl.train as T
import medtl.transfer as TR
from medtl import features
from medtl.cli import main
from medtl.models import foundation as FM

timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip", reason="open_clip_torch is part of medtl[foundation] and [dev]")
transformers = pytest.importorskip("transformers", reason="transformers is part of medtl[foundation] and [dev]")
xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision is part of medtl[foundation] and [dev]")

CLIP = (FM.CLIP_MEAN, FM.CLIP_STD)


def _tiny_timm(folder):
    from timm.models import save_for_hf

    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **args)
    save_for_hf(model, folder, model_args=args)
    row = M.Foundation("tiny-timm", "timm", "hf-hub:medtl-tests/absent", 32, feature="pooled",
                       layers=("blocks.0", "blocks.1"), stem="patch_embed.proj", input_size=32, resize=35,
                       mean=(0.5,) * 3, std=(0.5,) * 3, licence="test")
    return row, model


def _tiny_open_clip(folder):
    from open_clip.model import CLIP as Clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                                           "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    model = Clip(**cfg)
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": cfg, "preprocess_cfg": {"mean": list(CLIP[0]), "std": list(CLIP[1])}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    row = M.Foundation("tiny-clip", "open_clip", "hf-hub:medtl-tests/absent", 16, feature="embedding",
                       layers=("transformer.resblocks.0", "transformer.resblocks.1"), stem="conv1", input_size=32,
                       resize=32, mean=CLIP[0], std=CLIP[1], licence="test")
    return row, model.visual


def _tiny_hf(folder):
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=28, patch_size=7)
    model = transformers.Dinov2Model(cfg)
    model.save_pretrained(folder)
    transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                   image_mean=[0.5307] * 3, image_std=[0.2583] * 3, resample=3).save_pretrained(folder)
    row = M.Foundation("tiny-hf", "transformers", "medtl-tests/absent", 32, feature="cls",
                       layers=("encoder.layer.0", "encoder.layer.1"), stem="embeddings.patch_embeddings.projection",
                       input_size=28, resize=32, mean=(0.5307,) * 3, std=(0.2583,) * 3, licence="test")
    return row, model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{family: (row name, local copy, the library's own model)} for the three hub families."""
    root = tmp_path_factory.mktemp("foundation")
    made = {}
    for family, make in (("timm", _tiny_timm), ("open_clip", _tiny_open_clip), ("transformers", _tiny_hf)):
        torch.manual_seed(0)
        folder = root / {"timm": "tiny-timm", "open_clip": "tiny-clip", "transformers": "tiny-hf"}[family]
        row, lib_model = make(folder)
        M.register_foundation(row)
        made[family] = (row.name, folder, lib_model.eval())
    yield made
    for name, _, _ in made.values():
        M.unregister_foundation(name)


def _image(size=48, seed=0):
    """A known RGB image with structure at every scale (gradients, a disc, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([xx * 255 / size, yy * 255 / size, ((yy - 20) ** 2 + (xx - 26) ** 2 < 120) * 200.0], -1)
    return (img + rng.integers(0, 40, img.shape)).clip(0, 255).astype(np.uint8)


def _as_input(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def _library_preprocess(family, folder, img):
    pil = Image.fromarray(img)
    if family == "timm":
        model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
        cfg = timm.data.resolve_data_config({}, model=model)
        return timm.data.create_transform(**cfg)(pil)[None]
    if family == "open_clip":
        _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        return preprocess(pil)[None]
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    return proc(images=pil, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("family", ["timm", "open_clip", "transformers"])
def test_tiny_model_loads_through_the_row_and_equals_the_library(tiny, family):
    name, folder, lib_model = tiny[family]
    model = M.load_foundation(name, path=folder)
    row = M.FOUNDATION.get(name)
    assert isinstance(model, M.FoundationModel) and model.medtl["head"] == "untrained"
    img = _image()
    # the row's preprocessing is the library's own (resize of the shorter side, centre crop,
    # normalisation): a known image gives the library's tensor up to 8-bit rounding
    ours = model.preprocess(_as_input(img))
    theirs = _library_preprocess(family, folder, img)
    assert ours.shape == theirs.shape == (1, 3, row.input_size, row.input_size)
    assert (ours - theirs).abs().mean() < 0.01 and (ours - theirs).abs().max() < 0.06, family
    # the feature is the library's own forward pass on that input, of the row's width
    with torch.no_grad():
        feats = model.eval()(_as_input(img))
        if family == "transformers":
            expected = lib_model(pixel_values=model.preprocess(_as_input(img))).pooler_output
        else:
            expected = lib_model(model.preprocess(_as_input(img)))
    assert feats.shape == (1, row.feature_dim)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    # weights are the saved ones, not a fresh draw: a random build differs
    random = M.load_foundation(name, path=folder, pretrained=False, seed=3)
    with torch.no_grad():
        assert not torch.allclose(random.eval()(_as_input(img)), feats)
    assert random.medtl["init"] == "ri" and random.medtl["weights"] is None


def _grey_set(n_per_class=6, size=24, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, labels = [], []
    for i in range(n_per_class):
        imgs.append(((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2) * 180 + rng.integers(0, 60, (size, size)))
        imgs.append((np.sin(xx / 1.5 + i) > 0) * 90 + rng.integers(0, 60, (size, size)))
        labels += [0, 1]
    images = torch.from_numpy(np.stack(imgs).clip(0, 255).astype(np.uint8))[:, None]
    return D.ImageSet(images, torch.tensor(labels), task=D.BINARY, label_names=["disc", "stripes"],
                      name="discs-vs-stripes")


@pytest.mark.parametrize("family", ["timm", "open_clip", "transformers"])
def test_foundation_sources_work_where_sources_work(tiny, family):
    name, folder, _ = tiny[family]
    data = _grey_set()
    model = M.load_foundation(name, path=folder)
    layers = M.spec(name).layers
    assert layers == tuple(f"encoder.{p}" for p in M.FOUNDATION.get(name).layers)
    acts = features.extract(model, data, ["penultimate", layers[-1], "logits"], progress=False)
    assert acts["penultimate"].shape == (len(data), M.FOUNDATION.get(name).feature_dim)
    torch.testing.assert_close(acts["logits"], acts["penultimate"])  # no head: the output is the feature
    with torch.no_grad():  # hooks read what the forward pass computes
        torch.testing.assert_close(acts["penultimate"][:2], model.eval()(data.images[:2].float().div(255).expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="valid layers"):
        features.extract(model, data, ["blocks.9"], progress=False)
    # CKA of a model with itself is 1 at every listed layer
    table = S.cka_matrix(model, model, data, layers_a=layers, layers_b=layers, measure="cka")
    assert np.allclose(np.diag(table.pivot(index="layer_a", columns="layer_b", values="value").loc[list(layers), list(layers)]), 1.0, atol=1e-6)
    # fine-tuning with a fresh head and the first block frozen: frozen stays bit-identical
    net = M.create(name, num_classes=2, weights=str(folder), seed=0)
    assert isinstance(net.head, nn.Linear) and net.head.in_features == M.FOUNDATION.get(name).feature_dim
    M.freeze(net, layers[:1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    T.fit(net, data, epochs=1, batch_size=6, lr=1e-3, progress=False)
    after = net.state_dict()
    frozen = [k for k in before if k.startswith(layers[0] + ".")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_rank_takes_foundation_candidates_by_name_and_path(tiny, monkeypatch):
    monkeypatch.setenv("MEDTL_FOUNDATION", str(tiny["timm"][1].parent))  # local copies: <dir>/<row name>
    data = _grey_set(n_per_class=8)
    specs = [f"tiny-timm:{tiny['timm'][1]}", "tiny-hf", "tiny-clip:random"]
    r = TR.rank(data, specs, metrics=["logme", "knn_cosine", "leep"], n_boot=0, progress=False)
    assert set(r.recommendation.source) == {"tiny-timm:tiny-timm", "tiny-hf", "tiny-clip:random"}
    # the source heads are untrained: LEEP is recorded as failed for each, the feature metrics score them
    assert set(r.failed.loc[r.failed.metric == "leep", "source"]) == set(r.recommendation.source)
    assert r.scores.loc[r.scores.metric == "logme", "score"].notna().all()
    # score takes the same written forms, with the values of the models loaded by hand
    by_name = TR.score({"hf": "tiny-hf"}, data, metrics=["logme"], progress=False).query("metric == 'logme'")
    by_model = TR.score({"hf": M.load_foundation("tiny-hf", seed=0)}, data, metrics=["logme"],
                        progress=False).query("metric == 'logme'")
    assert len(by_name) == 1 and np.isfinite(by_name.value).all()
    np.testing.assert_allclose(by_name.value.to_numpy(), by_model.value.to_numpy(), rtol=1e-12)


def test_xrv_state_dict_loads_as_torchxrayvision_itself_loads_it(tmp_path, monkeypatch):
    """A full-size xrv DenseNet with random weights, pickled as the release files are, in the
    library's cache folder: medtl's load equals ``xrv.models.DenseNet(weights=...)``."""
    monkeypatch.setenv("MEDTL_FOUNDATION", str(tmp_path / "foundation"))
    row = M.FOUNDATION.get("xrv-densenet121-rsna")
    torch.manual_seed(0)
    released = xrv.models.DenseNet(num_classes=18)
    cache = tmp_path / "xrv"
    cache.mkdir()
    torch.save(released, cache / row.file)
    theirs = xrv.models.DenseNet(weights="densenet121-res224-rsna", cache_dir=str(cache)).eval()
    ours = M.load_foundation(row.name, path=cache).eval()
    img = _image(size=256)
    x = _as_input(img)
    with torch.no_grad():
        pre = ours.preprocess(x)
        torch.testing.assert_close(ours.embed(pre), theirs.features2(pre))
        # the head keeps the two outputs the RSNA model was trained on (pneumonia, lung opacity)
        assert ours.medtl["source"]["labels"] == ["Pneumonia", "Lung Opacity"]
        torch.testing.assert_close(ours(x), theirs.classifier(theirs.features2(pre))[:, [8, 16]])
    # preprocessing as xrv's own: normalize to [-1024, 1024], centre crop, resize to 224
    grey = img.mean(2)
    own = xrv.utils.normalize(grey, 255)[None]
    own = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(own))
    diff = (pre[0, 0] - torch.from_numpy(own[0]).float()).abs()
    assert diff.mean() < 8 and diff.max() < 100  # of a 2048-wide range: the two resizers differ slightly
    assert ours.medtl["source"]["task"] == D.MULTI_LABEL and ours.medtl["num_classes"] == 2


def test_xrv_download_failure_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_FOUNDATION", str(tmp_path / "foundation"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(xrv.models, "get_weights", offline)
    row = M.FOUNDATION.get("xrv-densenet121-all")
    with pytest.raises(FileNotFoundError, match=f"could not load {row.name}.*{row.local}"):
        M.load_foundation(row.name)


def test_radimagenet_conversion_layout_remaps_to_torchvision(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(0)
    ref = resnet50()
    ref.fc = nn.Identity()
    backbone = nn.Sequential(*list(ref.children())[:-1])  # the conversion's module: children but fc
    torch.save({f"backbone.{k}": v for k, v in backbone.state_dict().items()}, tmp_path / "ResNet50.pt")
    model = M.load_foundation("radimagenet-resnet50", path=tmp_path).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()((x - model.mean) / model.std))
    assert model.medtl["head"] == "untrained"
    assert M.radimagenet_remap({"module.backbone.4.0.conv1.weight": 1})["layer1.0.conv1.weight"] == 1


def test_gated_row_without_a_token_says_where_to_ask(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_FOUNDATION", str(tmp_path / "foundation"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(PermissionError, match=r"uni .* is gated: request access at https://huggingface.co/MahmoodLab"):
        M.load_foundation("uni")
    _, failed = TR.load_candidates(["uni"])  # as a rank candidate: reported, not fatal
    assert "gated" in failed.reason[0] and "HF_TOKEN" in failed.reason[0]


def test_missing_extra_and_version_outside_the_range(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if open_clip_torch were not installed
    with pytest.raises(ImportError, match=r"pip install 'medtl\[foundation\]'"):
        M.load_foundation("tiny-clip", path=tiny["open_clip"][1])
    monkeypatch.setitem(FM.LOADERS, "timm", FM.Loader("timm", "timm", "<0.1", "x"))
    with pytest.warns(UserWarning, match="outside the range"):
        M.load_foundation("tiny-timm", path=tiny["timm"][1])


def test_a_row_contradicted_by_its_files_is_refused(tiny):
    name, folder, _ = tiny["timm"]
    wrong = M.Foundation("tiny-timm-wrong", "timm", "hf-hub:x/y", 64, feature="pooled", layers=("blocks.0",),
                         stem="patch_embed.proj", input_size=32, licence="test")
    M.register_foundation(wrong)
    try:
        with pytest.raises(ValueError, match="features of shape \\(1, 32\\), its row says 64-d"):
            M.load_foundation("tiny-timm-wrong", path=folder)
        # a normalisation the library records differently is said
        with pytest.warns(UserWarning, match="library records normalisation"):
            M.register_foundation(M.Foundation("tiny-timm-norm", "timm", "hf-hub:x/y", 32, feature="pooled",
                                               layers=("blocks.0",), stem="patch_embed.proj", input_size=32,
                                               licence="test"))
            M.load_foundation("tiny-timm-norm", path=folder)
    finally:
        M.unregister_foundation("tiny-timm-wrong")
        if "tiny-timm-norm" in M.FOUNDATION:
            M.unregister_foundation("tiny-timm-norm")
    with pytest.raises(ValueError, match="already registered"):
        M.register_foundation(M.FOUNDATION.get("rad-dino"))
    with pytest.raises(ValueError, match="gated: say where"):
        M.Foundation("g", "timm", "hf-hub:x/y", 8, feature="pooled", layers=(), stem="s", gated=True)
    with pytest.raises(ValueError, match="foundation model"):
        M.create("rad-dino", weights="imagenet")


@pytest.mark.parametrize("name", list(M.FOUNDATION))
def test_every_shipped_row_is_complete(name):
    row = M.FOUNDATION.get(name)
    a = M.spec(name)
    assert a.family == "foundation" and a.head == "head" and a.head_in == row.feature_dim
    assert row.licence and row.citation and row.data and row.params_m > 0 and row.gmacs > 0
    assert row.cpu in ("yes", "slow", "no") and (row.cpu == "yes") == (row.gmacs < 10)
    assert len(row.layers) >= 4 and all(layer.startswith("encoder.") for layer in a.layers)
    assert row.loader in FM.LOADERS and (row.file or row.loader in ("timm", "open_clip", "transformers"))
    if row.gated:
        assert row.access.startswith("https://")
    assert row.input_size % 14 == 0 or row.input_size % 16 == 0 or row.loader in ("torchxrayvision", "torchvision")


def test_models_list_kind_foundation(capsys):
    assert main(["models", "list", "--kind", "foundation"]) == 0
    out = capsys.readouterr().out
    for text in ("rad-dino", "biomedclip", "xrv-densenet121-all", "radimagenet-resnet50", "CC-BY-NC-ND-4.0",
                 "licence", "gated", "cpu", "HF_TOKEN"):
        assert text in out, text
    uni = next(line for line in out.splitlines() if line.strip().startswith("uni "))
    assert " yes " in uni and " no" in uni  # gated, not CPU-feasible
