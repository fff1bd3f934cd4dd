"""From a CT and its segmentation to a report folder, in the formats asked for.

Layout of the folder written by :func:`write_report` (all-or-nothing; an existing folder with
files is refused unless ``overwrite``)::

    report.json  type.json           (json)
    report.html  images/lesion_N.png (html)
    report.pdf                       (pdf)
    dicom/seg.dcm                    (seg)
    dicom/sr.dcm                     (sr)
    dicom/ct/CT*.dcm                 (seg/sr from a non-DICOM CT: the derived series they reference)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import PastaError
from .measure import measure_lesions
from .model import CaseInfo, ModelProvenance, build_report

ALL_FORMATS = ("json", "html", "pdf", "seg", "sr")
_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def parse_formats(text: str) -> tuple:
    wanted = tuple(dict.fromkeys(f.strip().lower() for f in (text or "").split(",") if f.strip()))
    unknown = [f for f in wanted if f not in ALL_FORMATS]
    if unknown or not wanted:
        raise PastaError(f"unknown report format {', '.join(unknown) or '(none)'}; choose from {','.join(ALL_FORMATS)}")
    return wanted


def stem(path) -> str:
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_info(image, image_path, seg_path=None, case_id: str | None = None) -> CaseInfo:
    meta = image.meta or {}
    return CaseInfo(
        case_id=case_id or stem(image_path), patient_id=str(meta.get("patient_id", "")),
        patient_name=str(meta.get("patient_name", "")), study_uid=str(meta.get("study_uid", "")),
        series_uid=str(meta.get("series_uid", "")), study_description=str(meta.get("study_description", "")),
        image_name=Path(image_path).name, segmentation_name=Path(seg_path).name if seg_path else "",
        is_dicom=bool(meta.get("dicom_files")),
    )


def label_names_of(volume, path) -> tuple:
    """(label value -> name, model provenances) from a ``.seg.nrrd``'s segments or a JSON sidecar.

    The sidecar is ``<name>.json`` beside the file, as ``pasta segment`` writes it
    (``{"labels": {"2": {"name": ...}}, "model": {...}}``), or a plain ``{"2": "liver tumor"}``.
    """
    names = {int(s["label"]): s["name"] for s in (volume.meta or {}).get("segments", [])}
    models = []
    sidecar = Path(path).with_name(stem(path) + ".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        labels = data.get("labels", data) if isinstance(data, dict) else {}
        for key, value in labels.items():
            if str(key).isdigit():
                names.setdefault(int(key), value.get("name", "") if isinstance(value, dict) else str(value))
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, dict) and model.get("name"):
            models.append(ModelProvenance(str(model["name"]), str(model.get("version", "")),
                                          str(model.get("sha256", "")), "segmentation"))
    return names, models


def split_organs_and_lesions(names: dict) -> tuple:
    """(lesion labels, organ labels) from label names: organ names are terms without a lesion word."""
    from ..terminology import term_for_label_name

    lesions, organs = [], []
    for label, name in sorted(names.items()):
        term = term_for_label_name(name)
        (organs if term and "@" not in term else lesions).append(label)
    return lesions, organs


def make_report(image, labels, *, case: CaseInfo, lesion_labels=None, label_names=None, organs=None,
                organ_names=None, attributes=None, models=(), split_components=True, progress=None):
    """Measure ``labels`` on ``image`` and build the :class:`~pastacore.report.model.CaseReport`.

    When ``lesion_labels`` is None and the label names say which labels are organs, those are
    used as the organ mask (unless ``organs`` is given) and the others are measured.
    """
    from .. import io

    labels = io.as_label(labels, "the segmentation")
    image.check_matches(labels, "segmentation")
    label_names = dict(label_names or {})
    if lesion_labels is None and label_names:
        present = {int(v) for v in np.unique(labels.array) if v}
        lesion_set, organ_set = split_organs_and_lesions({k: v for k, v in label_names.items() if k in present})
        if organ_set and lesion_set:
            lesion_labels = lesion_set + sorted(present - set(lesion_set) - set(organ_set))
            if organs is None:
                organs = labels.with_array(np.where(np.isin(labels.array, organ_set), labels.array, 0))
                organ_names = {k: label_names[k] for k in organ_set}
    measurements = measure_lesions(image, labels, lesion_labels=lesion_labels, label_names=label_names,
                                   organs=organs, organ_names=organ_names, split_components=split_components,
                                   progress=progress)
    notes = []
    border = [m.index for m in measurements if m.touches_border]
    if border:
        notes.append(f"Lesion {', '.join(map(str, border))} touches the border of the image volume and may be cut: "
                     "its size may be underestimated.")
    return build_report(case, measurements, attributes=attributes, models=models, notes=notes)


def check_out_dir(path, overwrite: bool = False) -> None:
    """Refuse, before any work, a report folder that already holds files (unless ``overwrite``)."""
    from ..io.atomic import check_output_dir

    check_output_dir(path, overwrite)


def write_report(report, image, labels, out_dir, formats=ALL_FORMATS, overwrite=False, progress=None) -> list:
    """Write the report folder (see module docstring); return the written file names (relative)."""
    from ..io.atomic import atomic_directory
    from .report_json import write_report_json, write_type_json

    formats = tuple(formats)
    with atomic_directory(out_dir, overwrite=overwrite) as temp:
        temp = Path(temp)
        step = (lambda f, msg="": progress(f, msg)) if progress else (lambda f, msg="": None)
        if "seg" in formats or "sr" in formats:  # first: it adds a note when the CT had to be derived
            from .dicom_export import write_seg_sr

            step(0.05, "DICOM SEG/SR")
            write_seg_sr(report, image, labels, temp / "dicom", formats)
        if "html" in formats or "pdf" in formats:
            from .report_html import write_html_pdf

            step(0.5, "key images")
            write_html_pdf(report, image, labels, temp, formats)
        if "json" in formats:
            write_report_json(report, temp / "report.json")
            write_type_json(report, image.grid, temp / "type.json")
        written = sorted(str(p.relative_to(temp)) for p in temp.rglob("*") if p.is_file())
        step(1.0, "done")
    return written
