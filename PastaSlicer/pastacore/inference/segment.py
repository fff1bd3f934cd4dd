"""Segment a CT: standardise, find where to look, run the network, map labels back.

:func:`segment_volume` is what the Segment button and ``pasta segment`` call. It writes
nothing: the caller decides where results go (a new segmentation node, a file), so a
cancelled or failed run leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..anatomy.masks import body_mask, grow
from ..candidates import candidates_of, lesion_probability
from ..errors import PastaError, option
from ..fileio.readers import check_ct
from ..geometry.standardize import standardize
from ..geometry.volume import Volume
from ..progress import reporter
from .sliding_window import WindowSettings, predict_logits

if TYPE_CHECKING:
    from pathlib import Path

    from ..geometry.boxes import VoxelBox
    from ..modelstore.store import ModelStore
    from ..progress import Cancelled, Progress
    from .segmentation_model import SegmentationModel


ORGAN, LESION = 1, 2  # PASTA-Gen's label convention


@dataclass
class SegmentationResult:
    labels: Volume  # on the input volume's grid
    segments: dict  # label value -> SegmentInfo
    model: dict  # provenance: name, version, sha256, trainer
    device: str = "cpu"
    seconds: float = 0.0
    tiles_run: int = 0
    tiles_total: int = 0
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # what the user should know about the result's reliability
    candidates: dict = field(default_factory=dict)  # lesion value -> [Candidate]: each piece with its confidence

    def candidates_json(self) -> dict:
        from ..candidates import candidates_to_json

        return candidates_to_json(self.candidates)


def _progress(callback, start, span):
    if callback is None:
        return None
    return lambda fraction, message="": callback(start + span * fraction, message)


def segment_volume(
    volume: Volume,
    model: str | Path | SegmentationModel | None = None,
    *,
    device: str = "auto",
    tta: bool = False,
    overlap: float = 0.5,
    organ_mask: Volume | None = None,
    roi_box: VoxelBox | None = None,
    whole_body: bool = False,
    min_lesion_mm3: float = 0.0,
    batch_size: int = 2,
    amp: bool = True,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    store: ModelStore | None = None,
) -> SegmentationResult:
    """Labels for ``volume`` from ``model`` (an installed model's name, a file or folder, a
    :class:`~pastacore.inference.segmentation_model.SegmentationModel`; None = the default model).

    Where the network runs (:func:`search_region`): ``roi_box`` (a
    :class:`~pastacore.geometry.boxes.VoxelBox` of the volume), else ``organ_mask`` (a label map on
    the volume's grid; non-zero = organ), else the model's own organ when it declares one and a
    classical mask finds it (the lungs for a lung model), else the body (``whole_body`` forces
    this). ``progress(fraction, message)`` is called
    along the way and ``is_cancelled()`` is polled between batches. ``amp`` allows reduced
    precision (bf16 on CPUs with native support, fp16/bf16 on GPUs).
    """
    from .. import deps
    from .segmentation_model import resolve_segmentation_model

    started = time.perf_counter()
    report = reporter(progress)
    check_ct(volume)
    if not 0.0 <= overlap < 1.0:
        raise PastaError(f"{option('overlap')} must be in [0, 1), got {overlap}")
    if organ_mask is not None:
        volume.check_matches(organ_mask, "organ mask")
        if not np.any(organ_mask.array):
            raise PastaError("the organ mask is empty; choose another segment or label")
    seg_model = resolve_segmentation_model(model, store)
    if seg_model.pipeline is not None:
        raise PastaError(
            f"model {seg_model.provenance.get('name', '')!r} runs its own pipeline: segment with it through pastacore.actions.segment"
        )
    info = deps.torch_device_info(device)
    report(0.05, "standardising to 1 mm")
    std = standardize(volume, is_label=False)
    hu = std.volume.array
    spacing = std.volume.grid.spacing
    notes, warnings = [], []
    assumed = seg_model.provenance.get("assumed")
    if assumed:  # a bare weight file: nothing says how it was trained
        guesses = {
            "patch size": f"patch size {'x'.join(map(str, seg_model.patch_size))}",
            "labels": "labels 1 = organ, 2 = lesion",
        }
        warnings.append(
            f"nothing describes {seg_model.provenance.get('file')} (no model.json naming it beside it), "
            f"so PASTA's defaults were assumed: {', '.join(guesses[a] for a in assumed)}"
        )
    user_organ, region, note = search_region(volume, hu, spacing, organ_mask, roi_box, None if whole_body else seg_model.organ)
    notes.append(note)
    report(0.15, "running the network")
    settings = WindowSettings(
        patch_size=seg_model.patch_size,
        overlap=overlap,
        batch_size=batch_size,
        mirror_axes=(0, 1, 2) if tta else (),
        device=info.kind,
        amp=amp,
    )
    network = seg_model.network.to(info.kind)
    image = seg_model.normalize(hu)[None]
    logits, box, run, total = predict_logits(network, image, settings, region, _progress(report, 0.15, 0.75), is_cancelled)
    inside = tuple(slice(a, b) for a, b in box)
    labels = np.zeros(hu.shape, np.uint8)
    labels[inside] = np.argmax(logits, axis=0).astype(np.uint8)
    labels[~region] = 0
    probability = np.zeros(hu.shape, np.float32)
    probability[inside] = lesion_probability(logits, seg_model.lesion_values)
    del logits
    report(0.92, "post-processing")
    labels = _postprocess(labels, seg_model.lesion_values, seg_model.organ_values, user_organ, min_lesion_mm3, spacing)
    report(0.96, "mapping back to the original grid")
    result_labels = std.to_source(std.volume.with_array(labels, is_label=True))
    candidates = candidates_of(result_labels, std.to_source(probability, is_label=False).array, seg_model.lesion_values)
    report(1.0, "done")
    return SegmentationResult(
        result_labels,
        seg_model.segments,
        seg_model.provenance,
        info.kind,
        time.perf_counter() - started,
        run,
        total,
        notes,
        warnings,
        candidates,
    )


ORGAN_MARGIN_MM = 20.0  # the network runs this far around an organ mask


def search_region(
    volume: Volume,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    organ_mask: Volume | None = None,
    roi_box: VoxelBox | None = None,
    model_organ: str | None = None,
) -> tuple[np.ndarray | None, np.ndarray, str]:
    """(organ on the standard grid or None, where the network runs, a note saying which).

    The user's box wins, then the user's organ mask, then the classical mask of the model's
    organ (``model_organ``, e.g. "lung"), then the body. An organ (the user's or the model's)
    also keeps lesions to that organ in post-processing.
    """
    from ..anatomy.organs import classical_mask_standard, classical_search_region

    def on_standard_grid(mask):
        return standardize(volume.with_array(mask.astype(np.uint8), is_label=True), is_label=True).volume.array > 0

    organ = on_standard_grid(organ_mask.array > 0) if organ_mask is not None else None
    if roi_box is not None:
        box_mask = np.zeros(volume.array.shape, bool)
        box_mask[roi_box.slices] = True
        return organ, on_standard_grid(box_mask), "restricted to the user box"
    if organ is not None:
        return organ, grow(organ, ORGAN_MARGIN_MM, spacing), f"restricted to the organ mask + {ORGAN_MARGIN_MM:g} mm"
    classical = classical_search_region(model_organ)
    if classical:
        organ = classical_mask_standard(classical, hu, spacing)
        return (
            organ,
            grow(organ, ORGAN_MARGIN_MM, spacing),
            (f"restricted to the {classical} (the model's organ, found by the classical mask) + {ORGAN_MARGIN_MM:g} mm"),
        )
    return None, body_mask(hu), "air outside the body skipped"


LESION_MARGIN_MM = 10.0  # lesions may reach this far beyond the organ mask
LESION_IN_ORGAN_FRACTION = 0.02  # and a lesion piece must have this share of its voxels in the organ


def _postprocess(labels, lesion_values, organ_values, user_organ, min_lesion_mm3, spacing):
    """Keep lesions of the organ; drop lesion pieces below ``min_lesion_mm3``.

    A lesion of an organ lies in it or against it: lesion voxels further than
    ``LESION_MARGIN_MM`` from the organ (the model's organ labels and the user's organ mask)
    are dropped. Where the user gave an organ mask, every connected lesion piece with less
    than ``LESION_IN_ORGAN_FRACTION`` of its voxels in that mask goes too (the model's own
    organ label cannot serve: its lesion voxels are by definition not organ voxels). The
    margin is wide because an organ mask made from intensity (the lungs' air) leaves out a
    mass against the chest wall (on the pyradiomics ``lung2`` scan, 70 % of the real tumour is
    within 5 mm of the lung mask and 98 % within 10 mm); the share rule removes what only
    borders the organ from outside, such as the liver dome under the lung."""
    from scipy import ndimage

    organ = np.isin(labels, list(organ_values)) if organ_values else np.zeros(labels.shape, bool)
    if user_organ is not None:
        organ |= user_organ
    lesions = np.isin(labels, list(lesion_values))
    if organ.any() and lesions.any():
        allowed = grow(organ, LESION_MARGIN_MM, spacing)
        labels[lesions & ~allowed] = 0
        if user_organ is not None:
            pieces, count = ndimage.label(np.isin(labels, list(lesion_values)))
            size = np.bincount(pieces.ravel(), minlength=count + 1)
            inside = np.bincount(pieces.ravel(), weights=user_organ.ravel(), minlength=count + 1)
            outside = np.flatnonzero(inside < LESION_IN_ORGAN_FRACTION * size)
            labels[np.isin(pieces, outside[outside > 0])] = 0
    if min_lesion_mm3 > 0 and lesions.any():
        voxel = float(np.prod(spacing))
        pieces, count = ndimage.label(np.isin(labels, list(lesion_values)))
        sizes = np.bincount(pieces.ravel()) * voxel
        small = np.flatnonzero(sizes < min_lesion_mm3)
        labels[np.isin(pieces, small[small > 0])] = 0
    return labels
