"""The built-in model's folder as ``pasta train-default`` writes it: fp16 weights
(``model.pth``), ``model.json`` (name, labels, patch, reporting floor, SHA256), ``metrics.json``
and the model card (``README.md``: data, recipe, scores on real tumours, limits)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


MODEL_FILES = ("model.pth", "metrics.json", "model.json", "README.md")  # what the folder holds


def write_default_model(folder: Path, network: torch.nn.Module, metrics: dict, command: str) -> dict:
    """Write the model folder's files into ``folder``; returns the model description."""
    import torch

    from ..modelstore.store import sha256_of

    folder = Path(folder)
    torch.save({k: v.half() for k, v in network.state_dict().items()}, folder / "model.pth")
    description = model_description(metrics)
    description["files"] = [{"name": "model.pth", "sha256": sha256_of(folder / "model.pth")}]
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "model.json").write_text(json.dumps(description, indent=2))
    (folder / "README.md").write_text(model_card(metrics, description, command))
    return description


def training_precision_name() -> str:
    from .recipe import training_precision

    dtype, _ = training_precision("cpu", True)
    return "bf16" if dtype is not None else "fp32"


def model_description(metrics: dict) -> dict:
    return {
        "name": "pasta-lung-default",
        "version": "0.3",
        "task": "segmentation",
        "description": "Small PASTA-topology network for lung lesions in chest CT, trained only on synthetic lesions.",
        "architecture": {
            "type": "pasta_generic_unet",
            "base_features": metrics["base_features"],
            "num_pool": 4,
            "input_channels": 1,
        },
        "input_spacing_mm": [1.0, 1.0, 1.0],
        "normalization": "pasta_slf",
        "patch_size": metrics["patch"],
        "labels": [{"value": 1, "term": "lung"}, {"value": 2, "term": "tumor@lung"}],
        "weights": "model.pth",
        "files": [{"name": "model.pth", "sha256": None}],
        # what its reports list as lesions (pastacore.candidates.Floor): smaller or less sure pieces are set apart
        "reporting_floor": {"min_long_axis_mm": 3.0, "min_volume_ml": 0.03, "min_confidence": 0.7},
        "license": "Apache-2.0 (trained by this project)",
        "source": "pasta train-default",
    }


def reporting_floor(description: dict) -> str:
    """The model card's paragraph on what reports leave out (empty when the model sets no floor)."""
    floor = description.get("reporting_floor")
    if not floor:
        return ""
    return f"""## Reports

`model.json` sets the reporting floor (`reporting_floor`): pieces with a long axis under {floor["min_long_axis_mm"]:g} mm,
under {floor["min_volume_ml"]:g} mL, or with a mean lesion probability under {floor["min_confidence"]:g} are listed apart in a report,
not as lesions (`pasta report --min-confidence` and the other `--min-*` options change it). The
probability orders the candidates; it is not a calibrated probability of disease.

"""


def false_positive_range(metrics: dict) -> str:
    volumes = [s["false_positive_ml"] for s in metrics["evaluation"]]
    return f"{min(volumes):.0f}-{max(volumes):.0f} mL" if volumes else "not measured"


def wall_clipping(metrics: dict) -> str:
    reach = metrics.get("pleura_mm", 0)
    if reach <= 0:
        return "clipped by the air-based lung mask"
    return (
        f"reaching up to the wall: clipped by the lung mask grown {reach} mm, so no line of air\n"
        "  separates a lesion from the wall, as none separates a real one"
    )


def scaling(metrics: dict) -> str:
    """How patches were scaled: runs since training moved onto MONAI record ``trainer``."""
    if metrics.get("trainer") != "monai" or metrics.get("elastic_mm"):
        return "0.8-1.25"
    return "0.8-1.2 per axis"


def warp(metrics: dict) -> str:
    mm = metrics.get("elastic_mm", 0)
    return f" (those also smoothly warped, {mm:g} mm standard deviation)" if mm else ""


def second_stage(metrics: dict) -> str:
    steps = metrics.get("hard_negative_steps", 0)
    if not steps:
        return ""
    found = " and ".join(f"{v:.0f} mL" for v in metrics.get("mined_false_positive_ml", [])) or "none"
    return (
        f", then {steps} steps at a quarter of the learning rate with about 40 % of the lesion-free\n"
        f"  patches centred on the first stage's own false positives in the backgrounds ({found})"
    )


def zone_is_set(metrics: dict) -> bool:
    from .backgrounds import default_zone_mm

    return metrics.get("zone_mm") is not None and metrics["zone_mm"] != default_zone_mm(metrics["patch"][0])


def zone(metrics: dict) -> str:
    """How far training stayed from the real tumours (older runs: half a patch + 10 mm)."""
    return f"{metrics['zone_mm']} mm" if zone_is_set(metrics) else "half a patch + 10 mm"


def tiling_rows(metrics: dict) -> str:
    tilings = metrics.get("evaluation_tilings")
    if not tilings:
        return ""
    rows = "\n".join(
        f"| {t['case']} | {t['dice_mean']:.3f} | {t['dice_min']:.3f}-{t['dice_max']:.3f} | "
        f"{t['detected']} of {len(t['dice'])} | {min(t['false_positive_ml']):.1f}-{max(t['false_positive_ml']):.1f} |"
        for t in tilings
    )
    return f"""Where the sliding-window tiles fall is arbitrary, and moving them by a few voxels changes the
result. The same scans scored with the tiles at {len(tilings[0]["dice"])} offsets (no test-time augmentation):

| scan | Dice, mean | Dice, range | real tumour detected | false positives (mL), range |
|---|---|---|---|---|
{rows}

"""


def model_card(metrics: dict, description: dict, command: str) -> str:
    """The model card: what the model is, how it was made, how it scored, what it is not for;
    ``command`` trains it again."""
    rows = (
        "\n".join(
            f"| {s['case']} | {'8 mirrorings (--tta)' if s.get('tta') else 'none (default)'} | {s['dice']:.3f} | {'yes' if s['detected'] else 'no'} | {s['false_positive_ml']:.1f} | "
            f"{s['tumour_ml']:.1f} | {'yes' if s['case'] in metrics['backgrounds'] else 'no'} |"
            for s in metrics["evaluation"]
        )
        or "| (not evaluated) | | | | | | |"
    )
    return f"""# {description["name"]} {description["version"]}: lung lesions learnt from synthetic lesions only

**Research use only. Not for diagnosis.**

- **What it does:** segments the lungs (label 1) and lung lesions (label 2) in chest CT, on
  PASTA's 1 mm grid with PASTA's HU normalisation (SLF). PASTA's network topology (nnU-Net v1
  `Generic_UNet`) at reduced width: {metrics["base_features"]} base features, 4 poolings, patch {metrics["patch"][0]}^3.
- **Training data:** real chest CT backgrounds ({", ".join(metrics["backgrounds"])}: the pyradiomics 3.1.0
  sample scans) with {metrics["synthetic_lesions"]} lesions made by our procedural synthesis engine (lung tumours,
  6-70 mm, varied shape, density, texture and margins; 40 % against the chest wall, mediastinum
  or diaphragm, {wall_clipping(metrics)}). Each lesion is rendered at 1 mm and then put
  through the scan's own 5 mm slice sampling, so it is no sharper along z than the real
  anatomy. The real tumours of those scans were never training targets and never inside a
  training patch (a zone of the tumour box + {zone(metrics)} is excluded). Lung labels
  come from the classical lung mask. Lesion-free patches are centred on the lung surface
  half of the time (hard negatives).
- **Training:** {metrics["steps"]} steps of batch 2{second_stage(metrics)}, AdamW, one-cycle learning rate, cross-entropy + soft
  Dice{" (MONAI)" if metrics.get("trainer") == "monai" else ""}, random flips, random rotation (up to 15 degrees) and scaling ({scaling(metrics)}) of
  {round(100 * metrics.get("spatial_augmentation", 0))} % of patches{warp(metrics)}, random HU gain/offset/noise, {metrics.get("precision", "bf16")} on CPU; {metrics["train_seconds"]} s of training ({metrics["total_seconds"]} s in all) on
  {metrics["machine"]}. Weights stored in fp16 ({description["files"][0]["sha256"][:12]}...).
- **Reproduce:** `{command}`

## Scores on real tumours

| scan | test-time augmentation | Dice | real tumour detected | false-positive lesion volume (mL) | tumour (mL) | scan used as background |
|---|---|---|---|---|---|---|
{rows}

{tiling_rows(metrics)}A scan used as a background was seen during training (its tumour was not). Cross-wise
scores (training on one scan, scoring on the other) are in `Testing/Benchmarks/RESULTS.md`.

{reporting_floor(description)}## Limits
{len(metrics["backgrounds"])} real training scan(s) only ({", ".join(metrics["backgrounds"])}); chest CT at about 1 mm after standardisation; lung lesions only;
false positives at the diaphragm domes, the mediastinum, the heart border and hilar vessels are expected
({false_positive_range(metrics)} per scan on the sample scans). A PASTA checkpoint or an nnU-Net
result folder imported in the hub gives better results where one is available. Runs of this size
vary widely with the seed (the same command with another seed can find much less of a tumour);
`Testing/Benchmarks/RESULTS.md` records how much, and the scores above are this run's only.
"""
