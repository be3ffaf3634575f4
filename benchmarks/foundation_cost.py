"""Foundation-model candidates on this CPU: features/s of a tiny model of each loader family
(built with the real library, loaded through ``medtl.models.load_foundation``, extracted
through ``medtl.features.extract``), the machine's measured multiply-accumulate rate on a
known network (torchvision ResNet-50 at 224 px: 4.09 GMACs per image), and from it the
per-image cost of every full-size row of ``medtl.models.FOUNDATION`` (its GMACs ÷ that rate)
and the time to extract features of 1,000 images — what ``rank`` will spend per candidate.

    python benchmarks/foundation_cost.py [--images 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import medtl.data as D
import medtl.models as M
from medtl import features

sys.path.insert(0, str(Path(__file__).parent))
from _common import save_record  # noqa: E402

RESNET50_GMACS = 4.09  # torchvision's ResNet-50 at 224 px (its weights metadata: 4.09 GFLOPS, counted as MACs)


def tiny_rows(folder: Path) -> list[str]:
    """Save a tiny model of each hub family in its upstream format and register a row for it."""
    import open_clip
    import timm
    import transformers
    from open_clip.model import CLIP
    from timm.models import save_for_hf

    args = dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3)
    save_for_hf(timm.create_model("vit_small_patch16_224", num_classes=0, **args), folder / "bench-timm", model_args=args)
    cfg = {"embed_dim": 128, "vision_cfg": {"image_size": 64, "layers": 4, "width": 192, "patch_size": 8, "head_width": 64},
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    (folder / "bench-clip").mkdir(parents=True)
    (folder / "bench-clip" / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.save(CLIP(**cfg).state_dict(), folder / "bench-clip" / "open_clip_pytorch_model.bin")
    hf = transformers.Dinov2Config(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768,
                                   image_size=64, patch_size=8)
    transformers.Dinov2Model(hf).save_pretrained(folder / "bench-hf")
    assert open_clip  # imported for its model classes
    common = dict(stem="s", input_size=64, licence="benchmark")
    rows = [M.Foundation("bench-timm", "timm", "-", 192, feature="pooled", layers=("blocks.0",), mean=(0.5,) * 3,
                         std=(0.5,) * 3, **common),
            M.Foundation("bench-clip", "open_clip", "-", 128, feature="embedding", layers=("transformer",),
                         mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711), **common),
            M.Foundation("bench-hf", "transformers", "-", 192, feature="cls", layers=("encoder",), **common)]
    for row in rows:
        M.register_foundation(row)
    return [r.name for r in rows]


def features_per_second(model, data: D.ImageSet) -> float:
    features.extract(model, data.subset(np.arange(16)), progress=False)  # warm-up
    t0 = time.perf_counter()
    features.extract(model, data, progress=False, batch_size=64)
    return len(data) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = D.synthetic("texture-a", n=args.images, size=28)
    from torchvision.models import resnet50

    net = resnet50().eval()
    x = torch.rand(16, 3, 224, 224)
    with torch.inference_mode():
        net(x[:2])
        t0 = time.perf_counter()
        net(x)
        sec = (time.perf_counter() - t0) / len(x)
    gmacs_per_s = RESNET50_GMACS / sec
    tiny = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in tiny_rows(Path(tmp)):
            model = M.load_foundation(name, path=Path(tmp) / name)
            tiny[name] = {"features_per_s": round(features_per_second(model, data), 1),
                          "feature_dim": M.FOUNDATION.get(name).feature_dim}
            M.unregister_foundation(name)
    full = {r.name: {"gmacs": r.gmacs, "params_m": r.params_m, "cpu": r.cpu,
                     "seconds_per_image": round(r.gmacs / gmacs_per_s, 4),
                     "minutes_per_1000_images": round(1000 * r.gmacs / gmacs_per_s / 60, 2)}
            for r in M.FOUNDATION.values()}
    print(f"measured rate: {gmacs_per_s:.1f} GMAC/s (ResNet-50, 224 px, batch 16, {torch.get_num_threads()} threads)")
    for name, row in tiny.items():
        print(f"  tiny {name:12s} {row['features_per_s']:8.1f} features/s ({args.images} images of 28 px, 64 px input)")
    for name, row in full.items():
        print(f"  {name:26s} {row['gmacs']:6.1f} GMACs  ~{row['seconds_per_image']:.3f} s/image  "
              f"~{row['minutes_per_1000_images']:.1f} min per 1,000 images  cpu: {row['cpu']}")
    save_record("foundation_cost", gmacs_per_s=round(gmacs_per_s, 2), tiny=tiny, full_size=full, images=args.images)


if __name__ == "__main__":
    main()
