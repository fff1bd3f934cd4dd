"""The end-to-end demo on a real chest CT (pyradiomics ``lung2``).

standardise -> body and lung masks -> Segment with the default model -> measurements and a
report in every format -> synthesise a new lesion from text in a box -> segment again and
check it is found -> a Slicer scene (.mrb) with the CT, the synthetic-lesion volume,
segmentations with terminology, the box and the measurement table, plus PNG key images.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from .report.model import CaseReport


SYNTH_TEXT = "25 mm round-like solid lung nodule, well-defined margin, homogeneous"
DEMO_STEPS = 9
# What the demo writes into its folder (--overwrite replaces these and keeps any other file).
DEMO_FILES = (
    "summary.json",
    "pasta_demo.mrb",
    "lung2_segmentation.png",
    "lung2_synthetic_lesion.png",
    "lung2_with_synthetic_lesion.nii.gz",
    "synthetic_lesion_labels.nii.gz",
    "synthetic_lesion.type.json",
)


def demo_files() -> tuple:
    from .report.formats import report_files

    return DEMO_FILES + tuple(f"report/{pattern}" for pattern in report_files())


@dataclass
class DemoResult:
    out_dir: Path
    files: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


def _dice(a, b) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _synthesis_box(lungs: np.ndarray, tumour: np.ndarray, grid, size_mm: float = 40.0):
    """A box in the lung farthest from the real tumour (the other side), fully inside the lung."""
    from scipy import ndimage

    from .geometry.boxes import VoxelBox

    depth = ndimage.distance_transform_edt(lungs, sampling=grid.spacing[::-1])
    tumour_k, tumour_j, tumour_i = [c.mean() for c in np.nonzero(tumour)]
    k, j, i = np.nonzero(depth > 14)
    far = np.abs(i - tumour_i) * grid.spacing[0] + 0.2 * np.abs(k - tumour_k) * grid.spacing[2]
    best = np.argmax(far + 3 * depth[k, j, i])
    centre = np.array([k[best], j[best], i[best]])
    half = np.ceil(size_mm / 2 / np.array(grid.spacing[::-1])).astype(int)
    start = np.maximum(centre - half, 0)
    stop = np.minimum(centre + half + 1, lungs.shape)
    return VoxelBox(tuple(int(v) for v in start), tuple(int(v) for v in stop))


def report_facts(report: CaseReport) -> dict:
    """What the demo's summary says about its report: the lesions with their confidence, the
    model, the RECIST targets and their sum of diameters."""
    return {
        "report_lesions": len(report.lesions),
        "report_models": [m.describe() for m in report.models],
        "report_origin": report.origin,
        "report_rows": [
            {
                "number": lesion.number,
                "volume_ml": round(lesion.measurement.volume_ml, 2),
                "long_axis_mm": round(lesion.measurement.long_axis_mm, 1),
                "confidence": None if lesion.mean_probability is None else round(lesion.mean_probability, 3),
                "status": lesion.status,
                "recist": lesion.role,
            }
            for lesion in report.lesions
        ],
        "report_below_floor": len(report.below_floor),
        "report_floor": report.floor,
        "recist_targets": report.recist.get("targets", []),
        "recist_sum_of_diameters_mm": report.recist.get("sum_of_diameters_mm"),
    }


def run_demo(out_dir: str | Path, overwrite: bool = False, advance: Callable[[str], None] = lambda label="": None) -> DemoResult:
    from .anatomy.masks import pieces_touching
    from .anatomy.organs import classical_organ
    from .candidates import choose_floor
    from .fileio import read_volume, write_volume
    from .fileio.atomic import atomic_directory
    from .geometry.standardize import standardize
    from .inference.segment import segment_volume
    from .modelstore.store import ModelStore
    from .mrml import roi, scene_io, segmentations, tables, volumes
    from .mrml.scene import new_scene
    from .report.export import case_info, make_report, write_report
    from .report.key_images import LUNG_WINDOW
    from .report.model import ModelProvenance
    from .report.snapshots import save_orthogonal_views
    from .samples import sample_paths
    from .synthesis import synthesize_lesion
    from .terminology import segment_info

    out_dir = Path(out_dir)
    result = DemoResult(out_dir)
    facts = result.facts
    started = time.perf_counter()
    image_path, label_path = sample_paths("lung2")
    ct = read_volume(image_path)
    tumour = read_volume(label_path, is_label=True)
    ct.check_matches(tumour, "tumour mask")
    advance("real CT read")
    std = standardize(ct, is_label=False)
    std_tumour = standardize(tumour, is_label=True)
    back = std_tumour.to_source(std_tumour.volume)
    facts.update(
        original_grid=ct.grid.describe(),
        standard_grid=std.volume.grid.describe(),
        reference_tumour_ml=float((tumour.array > 0).sum() * np.prod(ct.grid.spacing) / 1000),
        round_trip_dice=_dice(back.array > 0, tumour.array > 0),
    )
    advance("standardised")
    lungs = classical_organ(ct, "lungs")
    body = classical_organ(ct, "body")
    facts.update(
        lungs_litres=float(lungs.array.sum() * np.prod(ct.grid.spacing) / 1e6),
        body_litres=float(body.array.sum() * np.prod(ct.grid.spacing) / 1e6),
    )
    advance("body and lung masks")
    defaults = [m for m in ModelStore().list() if m.builtin and m.task == "segmentation"]
    model = defaults[0].name if defaults else None
    seg = None
    if model:
        seg = segment_volume(ct, model, organ_mask=lungs, min_lesion_mm3=100.0)
        found = seg.labels.array == 2
        facts.update(
            model=seg.model,
            segment_seconds=round(seg.seconds, 1),
            real_tumour_dice=_dice(found, tumour.array > 0),
            real_tumour_detected=bool((found & (tumour.array > 0)).any()),
        )
    else:
        facts["model"] = "none installed: segmentation steps skipped, the reference tumour is reported instead"
    advance("segmented")
    with atomic_directory(out_dir, overwrite=overwrite, owned=demo_files()) as tmp:
        report_labels = seg.labels if seg is not None else tumour
        names = {v: i.name for v, i in (seg.segments.items() if seg is not None else {1: segment_info("tumor@lung")}.items())}
        lesion_values = [2] if seg is not None else [1]
        if not np.isin(report_labels.array, lesion_values).any():
            report_labels, names, lesion_values = tumour, {1: segment_info("tumor@lung").name}, [1]
            facts["report_note"] = "the model found no lesion; the report measures the reference tumour"
        case = case_info(ct, image_path, case_id="lung2")
        made_by_model = seg is not None and report_labels is seg.labels
        report = make_report(
            ct,
            report_labels,
            case=case,
            lesion_labels=lesion_values,
            label_names=names,
            organs=lungs,
            organ_names={1: "lung"},
            models=[ModelProvenance.from_dict(seg.model)] if made_by_model else [],
            candidates=seg.candidates if made_by_model else None,
            floor=choose_floor(None, seg.model if made_by_model else None),
        )
        write_report(report, ct, report_labels, tmp / "report")
        facts.update(report_facts(report))
        advance("report written")
        box = _synthesis_box(lungs.array > 0, tumour.array > 0, ct.grid)
        synth = synthesize_lesion(
            ct, organ_labels=lungs, organ_names={1: "lung"}, roi_box=box, lesion_type="lung_tumor", attributes=SYNTH_TEXT, seed=7
        )
        facts.update(synthesis_text=SYNTH_TEXT, synthetic_lesion_ml=float(synth.lesion.sum() * np.prod(ct.grid.spacing) / 1000))
        write_volume(synth.image, tmp / "lung2_with_synthetic_lesion.nii.gz")
        write_volume(synth.labels, tmp / "synthetic_lesion_labels.nii.gz")
        (tmp / "synthetic_lesion.type.json").write_text(json.dumps(synth.type_json, indent=1))
        advance("lesion synthesised")
        seg2 = None
        if model:
            seg2 = segment_volume(synth.image, model, organ_mask=lungs, min_lesion_mm3=100.0)
            found2 = seg2.labels.array == 2
            # the pieces found there, not the whole scan's lesions (the real tumour is still in it)
            there = pieces_touching(found2, synth.lesion)
            facts.update(synthetic_lesion_dice=_dice(there, synth.lesion), synthetic_lesion_found=bool(there.any()))
        advance("segmented again")
        context = new_scene()
        scene = context.scene
        ct_node = volumes.node_from_volume(scene, ct, "lung2 CT")
        synth_node = volumes.node_from_volume(scene, synth.image, "lung2 CT with synthetic lesion")
        segmentations.add_labels_to_segmentation(scene, tumour, {1: segment_info("tumor@lung")}, ct_node, name="reference tumour")
        organs = lungs.with_array(np.where(body.array > 0, 1, 0).astype(np.uint8))
        organs.array[lungs.array > 0] = 2
        segmentations.add_labels_to_segmentation(
            scene, organs, {1: segment_info("body"), 2: segment_info("lung")}, ct_node, name="body and lungs (classical)"
        )
        if seg is not None:
            node, added = segmentations.add_labels_to_segmentation(
                scene, seg.labels, seg.segments, ct_node, name="PASTA segmentation"
            )
            segmentations.record_origin(node, seg.model, seg.candidates_json(), added)
        segmentations.add_labels_to_segmentation(scene, synth.labels, synth.segments, synth_node, name="synthetic lesion")
        if seg2 is not None:
            segmentations.add_labels_to_segmentation(
                scene, seg2.labels, seg2.segments, synth_node, name="PASTA segmentation (synthetic case)"
            )
        corners = [ct.grid.ijk_to_ras() @ np.array([*idx[::-1], 1.0]) for idx in (box.start, np.array(box.stop) - 1)]
        centre = (corners[0][:3] + corners[1][:3]) / 2
        roi.add_roi(scene, centre, np.abs(corners[1][:3] - corners[0][:3]) + np.array(ct.grid.spacing), name="synthesis box")
        tables.lesions_to_table(scene, report.lesions)
        files = {"scene": scene_io.save_mrb(scene, tmp / "pasta_demo.mrb")}
        advance("scene built")
        shown = seg.labels if seg is not None else tumour
        files["snapshot_segmentation"] = save_orthogonal_views(
            ct, tmp / "lung2_segmentation.png", shown, title="lung2: PASTA default model" if seg else "lung2", window=LUNG_WINDOW
        )
        synth_shown = seg2.labels if seg2 is not None else synth.labels
        files["snapshot_synthetic"] = save_orthogonal_views(
            synth.image,
            tmp / "lung2_synthetic_lesion.png",
            synth_shown,
            center=[int(np.median(a)) for a in np.nonzero(synth.lesion)],
            title=f"synthetic: {SYNTH_TEXT}",
            window=LUNG_WINDOW,
        )
        facts["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / "summary.json").write_text(json.dumps(facts, indent=2, default=str))
        files.update(
            report=tmp / "report", synthetic_volume=tmp / "lung2_with_synthetic_lesion.nii.gz", summary=tmp / "summary.json"
        )
        advance("files written")
    result.files = {key: out_dir / Path(p).name for key, p in files.items()}
    return result
