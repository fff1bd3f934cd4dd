"""Lesion measurements and the structured report of one case (what ``pasta report`` does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from ..geometry.volume import Volume
    from ..report.model import CaseReport


def report_case(
    image_path: str | Path,
    seg_path: str | Path,
    organ_path: str | Path | None = None,
    *,
    lesion_labels: Sequence[int] | None = None,
    whole_labels: bool = False,
    case_id: str | None = None,
    image: Volume | None = None,
    progress: Callable[[float, str], None] | None = None,
    floor: dict | None = None,
    targets: Sequence[int] | None = None,
    followup: Callable[[Volume], dict] | None = None,
) -> tuple[CaseReport, Volume, Volume]:
    """``(report, image, labels)``: the CaseReport of the label map ``seg_path`` on the CT
    ``image_path`` (``image``: that CT already read, to skip reading it again).

    Lesions are ``lesion_labels`` when given, else the labels that a ``.seg.nrrd`` or a JSON
    sidecar names as lesions, else label 2; each connected piece is one lesion unless
    ``whole_labels``. ``organ_path``: an organ label map giving each lesion its organ.
    ``floor``: the reporting floor's values the user gave (the rest from the model that made the
    label map, or the default); ``targets``: RECIST target choice; ``followup(image)``: the
    follow-up arguments (baseline report, registration) for ``make_report``."""
    from ..candidates import choose_floor
    from ..fileio import read_volume
    from ..report.export import case_info, label_names_of, make_report, recorded_candidates, recorded_model

    image = image if image is not None else read_volume(image_path)
    labels = read_volume(seg_path, is_label=True)
    names, models, names_from = label_names_of(labels, seg_path)
    organs = organ_names = None
    if organ_path:
        organs = read_volume(organ_path, is_label=True)
        organ_names, _, _ = label_names_of(organs, organ_path)
    report = make_report(
        image,
        labels,
        case=case_info(image, image_path, seg_path, case_id),
        lesion_labels=lesion_labels,
        label_names=names,
        names_from=names_from,
        organs=organs,
        organ_names=organ_names,
        models=models,
        split_components=not whole_labels,
        progress=progress,
        candidates=recorded_candidates(seg_path),
        floor=choose_floor(floor, recorded_model(seg_path)),
        targets=targets,
        **(followup(image) if followup else {}),
    )
    return report, image, labels
