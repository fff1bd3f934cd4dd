"""Segment: a CT's organ and lesion labels, on the CT's own grid.

``pasta segment``, ``pasta batch segment``, the task process behind the Slicer module and the
web app all build a :class:`SegmentOptions` and call :func:`run`; what they differ in is only
where the inputs come from and where the result goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..inference.sidecar import sidecar_content, sidecar_path, write_sidecar

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.boxes import VoxelBox
    from ..geometry.volume import Volume
    from ..inference.segment import SegmentationResult
    from ..inference.segmentation_model import SegmentationModel
    from ..progress import Cancelled, Progress


REGIONS = ("lungs", "body")  # what `organ` may name without an organ mask


@dataclass(frozen=True)
class SegmentOptions:
    """What the user chose for a segmentation (every front end builds one)."""

    model: str = ""  # installed name, weight file, nnU-Net result folder or model folder; "" = the built-in model
    model_config: str = ""  # a model family's config (JSON) for a weight file given by path
    prompt: str = ""  # what to segment ("liver tumor"), for models that take text prompts
    organ: str = ""  # "" = the model's own organ; "lungs" or "body"; with an organ mask, the organ's name in it
    organ_label: int | None = None  # the organ's value in the organ mask (None: any non-zero)
    totalsegmentator_version: int = 2  # label numbering of a TotalSegmentator organ mask
    roi: tuple[float, ...] | None = None  # R1,A1,S1,R2,A2,S2 in RAS mm restricting the search
    device: str = "auto"  # auto, cuda, mps or cpu
    tta: bool = False  # mirroring test-time augmentation
    overlap: float = 0.5  # patch overlap in [0, 1)
    precision: str = "auto"  # auto (bf16/fp16 where the device has it) or fp32
    min_lesion_mm3: float = 0.0  # lesion pieces smaller than this are dropped

    def check(self) -> None:
        """Refuse values that cannot work, before any heavy work."""
        from ..deps import check_device

        if not 0.0 <= self.overlap < 1.0:
            raise PastaError(f"{option('overlap')} must be in [0, 1), got {self.overlap}")
        if not self.min_lesion_mm3 >= 0.0 or self.min_lesion_mm3 == float("inf"):
            raise PastaError(f"{option('min_lesion_mm3')} must be a number >= 0, got {self.min_lesion_mm3}")
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise PastaError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.totalsegmentator_version not in (1, 2):
            raise PastaError(f"{option('totalsegmentator_version')} is 1 or 2, got {self.totalsegmentator_version}")
        if self.roi is not None:
            parse_box(self.roi)
        if self.model_config and not self.model:
            raise PastaError(f"{option('model_config')} describes the weight file given with {option('model')}")


PRECISIONS = ("auto", "fp32")


@dataclass
class SegmentInputs:
    """The volumes a segmentation reads: each a path (file or DICOM folder) or a Volume."""

    image: str | Path | Volume
    organ_mask: str | Path | Volume | None = None  # a label map restricting the search
    roi_box: VoxelBox | None = None  # a box on the image's grid (a Slicer ROI); wins over ``options.roi``


@dataclass
class SegmentedCase:
    image: Volume  # the CT as read
    result: SegmentationResult  # the labels on the CT's grid, segments, provenance
    description: dict  # what the sidecar JSON holds

    def to_dict(self) -> dict:
        """The result a front end reads back (the task process, the server)."""
        from ..terminology import segments_to_dict

        result = self.result
        return {
            "segments": segments_to_dict(result.segments),
            "model": result.model,
            "device": result.device,
            "seconds": round(result.seconds, 2),
            "notes": result.notes,
            "warnings": result.warnings,
            "candidates": result.candidates_json(),
            "sidecar": self.description,  # what `pasta segment` writes beside the labels (a server's client writes it)
        }

    def volumes(self) -> dict:
        return {"labels": self.result.labels}


def parse_box(text: str | Sequence[float]) -> list[float]:
    """Six finite numbers R1,A1,S1,R2,A2,S2 from text (or a sequence of six numbers)."""
    import math

    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            values = []
    if len(values) != 6 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise PastaError(f"a box is six comma-separated numbers R1,A1,S1,R2,A2,S2, all finite, got {text!r}")
    return [float(v) for v in values]


def load_model(options: SegmentOptions, store: object | None = None) -> SegmentationModel:
    """The segmentation model the options name (a model family's weight file with its config too)."""
    from ..inference.segmentation_model import resolve_segmentation_model

    return resolve_segmentation_model(options.model or None, store, config=options.model_config or None)


def run(
    options: SegmentOptions,
    inputs: SegmentInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    model: SegmentationModel | None = None,
) -> SegmentedCase:
    """Read the inputs, find where to look and segment (``model``: one already loaded, as a batch
    worker keeps it; else the model the options name)."""
    from ..anatomy.organs import classical_organ, organ_from_labels
    from ..fileio import as_volume
    from ..geometry.boxes import box_from_ras_bounds
    from ..inference.segment import segment_volume

    options.check()
    volume = as_volume(inputs.image)
    organ_volume = None
    if inputs.organ_mask is not None:
        organ_volume = organ_from_labels(
            as_volume(inputs.organ_mask, is_label=True),
            label=options.organ_label,
            organ=options.organ if options.organ not in ("", *REGIONS) else None,
            totalsegmentator_version=options.totalsegmentator_version,
        )
    elif options.organ and options.organ != "body":
        organ_volume = classical_organ(volume, options.organ)
    roi_box = inputs.roi_box
    if roi_box is None and options.roi is not None:
        roi_box = box_from_ras_bounds(parse_box(options.roi), volume.grid)
    model = model if model is not None else load_model(options)
    if model.pipeline is not None:  # a model family that runs its own pipeline (e.g. gCIS's test.py)
        result = model.pipeline(volume, options, progress, is_cancelled)
    else:
        result = segment_volume(
            volume,
            model,
            device=options.device,
            tta=options.tta,
            overlap=options.overlap,
            organ_mask=organ_volume,
            roi_box=roi_box,
            whole_body=options.organ == "body" and inputs.organ_mask is None,
            min_lesion_mm3=options.min_lesion_mm3,
            amp=options.precision == "auto",
            progress=progress,
            is_cancelled=is_cancelled,
        )
    return SegmentedCase(volume, result, sidecar_content(result))


def write_segmentation(case: SegmentedCase, out: str | Path, overwrite: bool = False) -> tuple:
    """Write the label map ``out`` and its sidecar ``OUT.json`` together (all or nothing)."""
    from ..fileio import write_volume
    from ..fileio.atomic import atomic_outputs

    sidecar = sidecar_path(out)
    with atomic_outputs(out, sidecar, overwrite=overwrite) as (labels_temp, sidecar_temp):
        write_volume(case.result.labels, labels_temp)
        write_sidecar(sidecar_temp, case.description)
    return Path(out), sidecar


OPTIONS, INPUTS = SegmentOptions, SegmentInputs
