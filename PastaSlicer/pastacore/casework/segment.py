"""A CT's organ and lesion labels (what ``pasta segment`` does for one image)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..inference.sidecar import sidecar_content, sidecar_path, write_sidecar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..inference.segmentation_model import SegmentationModel


@dataclass
class SegmentedCase:
    image: object  # the CT as read (a Volume)
    result: object  # the SegmentationResult (labels on the CT's grid)
    description: dict  # what the sidecar JSON holds


def parse_box(text: str | Sequence[float]) -> list[float]:
    """Six numbers R1,A1,S1,R2,A2,S2 from text (or a sequence of six numbers)."""
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            values = []
    if len(values) != 6:
        raise PastaError(f"a box is six comma-separated numbers R1,A1,S1,R2,A2,S2, got {text!r}")
    return [float(v) for v in values]


def segment_case(
    image: str | Path,
    *,
    model: str | Path | SegmentationModel | None = None,
    organ_mask: str | Path | None = None,
    organ_label: int | None = None,
    organ: str | None = None,
    totalsegmentator_version: int = 2,
    roi: str | Sequence[float] | None = None,
    device: str = "auto",
    tta: bool = False,
    overlap: float = 0.5,
    min_lesion_mm3: float = 0.0,
    progress: Callable[[float, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> SegmentedCase:
    """Read ``image`` (a file or DICOM folder), find where to look and segment it.

    ``model``: a name, path or an already loaded SegmentationModel (a batch worker passes the
    one it keeps). ``organ_mask`` + ``organ_label``/``organ``: a label map restricting the
    search; ``organ`` alone: ``lungs`` or ``body``; ``roi``: a RAS box (text or six numbers).
    """
    from ..anatomy.organs import classical_organ, organ_from_labels
    from ..fileio import read_volume
    from ..geometry.boxes import box_from_ras_bounds
    from ..inference.segment import segment_volume

    volume = read_volume(image)
    organ_volume = None
    if organ_mask:
        organ_volume = organ_from_labels(
            read_volume(organ_mask, is_label=True),
            label=organ_label,
            organ=organ,
            totalsegmentator_version=totalsegmentator_version,
        )
    elif organ and organ != "body":
        organ_volume = classical_organ(volume, organ)
    roi_box = box_from_ras_bounds(parse_box(roi), volume.grid) if roi else None
    result = segment_volume(
        volume,
        model,
        device=device,
        tta=tta,
        overlap=overlap,
        organ_mask=organ_volume,
        roi_box=roi_box,
        whole_body=organ == "body" and not organ_mask,
        min_lesion_mm3=min_lesion_mm3,
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
