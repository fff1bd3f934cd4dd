"""The end-to-end demo on a real chest CT (pyradiomics ``lung2``).

Today: fetch the sample, standardise CT and tumour mask the PASTA way, map the mask back
and measure the agreement, then save a Slicer scene (CT, standardised CT, tumour
segmentation with terminology, a box around the tumour) and PNG key images. Later steps
(segmentation, synthesis, reports) join as they land.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DemoResult:
    out_dir: Path
    files: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


def run_demo(out_dir, overwrite: bool = False, advance=lambda label="": None) -> DemoResult:
    from .io import read_volume
    from .io.atomic import atomic_directory
    from .io.standardize import standardize
    from .mrml import roi, scene_io, segmentations, volumes
    from .mrml.scene import new_scene
    from .report.snapshots import save_orthogonal_views
    from .samples import sample_paths
    from .terminology import describe

    out_dir = Path(out_dir)
    result = DemoResult(out_dir)
    started = time.perf_counter()
    image_path, label_path = sample_paths("lung2")
    advance("sample data ready")
    ct = read_volume(image_path)
    tumour = read_volume(label_path, is_label=True)
    ct.check_matches(tumour, "tumour mask")
    advance("CT read")
    std_ct = standardize(ct, is_label=False)
    std_tumour = standardize(tumour, is_label=True)
    back = std_tumour.to_source(std_tumour.volume)
    a, b = back.array > 0, tumour.array > 0
    result.facts.update(
        original_grid=ct.grid.describe(), standard_grid=std_ct.volume.grid.describe(),
        tumour_volume_ml=float(b.sum() * np.prod(ct.grid.spacing) / 1000),
        tumour_volume_standard_ml=float((std_tumour.volume.array > 0).sum() / 1000),
        round_trip_dice=float(2 * (a & b).sum() / (a.sum() + b.sum())),
    )
    advance("standardised")
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        context = new_scene()
        scene = context.scene
        ct_node = volumes.node_from_volume(scene, ct, "lung2 CT")
        std_hu = std_ct.volume.with_array(np.rint(std_ct.volume.array).astype(np.int16))  # whole HU: 4x smaller files
        volumes.node_from_volume(scene, std_hu, "lung2 CT (PASTA 1 mm)")
        seg_node, _ = segmentations.add_labels_to_segmentation(
            scene, tumour, {1: describe("tumor@lung")}, ct_node, name="lung2 reference tumour")
        k, j, i = np.nonzero(tumour.array)
        lo = ct.grid.index_to_lps([i.min(), j.min(), k.min()]) * [-1, -1, 1]
        hi = ct.grid.index_to_lps([i.max(), j.max(), k.max()]) * [-1, -1, 1]
        roi.add_roi(scene, (lo + hi) / 2, np.abs(hi - lo) + 10, name="tumour box")
        advance("scene built")
        files = {
            "scene": scene_io.save_mrb(scene, tmp / "pasta_demo.mrb"),
            "snapshot": save_orthogonal_views(ct, tmp / "lung2_tumour.png", tumour, title="lung2: reference tumour"),
            "snapshot_standard": save_orthogonal_views(std_ct.volume, tmp / "lung2_tumour_1mm.png", std_tumour.volume,
                                                       title="lung2 on PASTA's 1 mm grid"),
        }
        result.facts["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / "summary.json").write_text(json.dumps(result.facts, indent=2))
        files["summary"] = tmp / "summary.json"
        advance("files written")
    result.files = {key: out_dir / Path(p).name for key, p in files.items()}
    return result
