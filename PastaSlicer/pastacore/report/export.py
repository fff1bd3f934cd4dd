"""From a CT and its segmentation to a report folder, in the formats asked for.

Layout of the folder written by :func:`write_report` (all-or-nothing; an existing folder that
holds an earlier report is refused unless ``overwrite``, which replaces the report's own files,
:data:`REPORT_FILES`, and keeps every other file of the folder)::

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
# Everything a report folder can hold: what --overwrite replaces (any other file there is kept).
REPORT_FILES = ("report.json", "type.json", "report.html", "images/lesion_*.png", "report.pdf", "dicom/seg.dcm",
                "dicom/sr.dcm", "dicom/ct/CT*.dcm")
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
    """(label value -> name, model provenances, where the names came from) from a ``.seg.nrrd``'s
    segments or a JSON sidecar.

    The sidecar is ``<name>.json`` beside the file, as ``pasta segment`` writes it
    (``{"labels": {"2": {"name": ...}}, "model": {...}}``), or a plain ``{"2": "liver tumor"}``.
    """
    names = {int(s["label"]): s["name"] for s in (volume.meta or {}).get("segments", [])}
    source = Path(path).name if names else ""
    models = []
    sidecar = Path(path).with_name(stem(path) + ".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        labels = data.get("labels", data) if isinstance(data, dict) else {}
        for key, value in (labels.items() if isinstance(labels, dict) else ()):
            if str(key).isdigit():
                names.setdefault(int(key), value.get("name", "") if isinstance(value, dict) else str(value))
                source = source or sidecar.name
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, dict) and model.get("name"):
            models.append(ModelProvenance(str(model["name"]), str(model.get("version", "")),
                                          str(model.get("sha256", "")), "segmentation"))
    return names, models, source


def make_report(image, labels, *, case: CaseInfo, lesion_labels=None, label_names=None, names_from: str = "",
                organs=None, organ_names=None, attributes=None, models=(), split_components=True, progress=None):
    """Measure ``labels`` on ``image`` and build the :class:`~pastacore.report.model.CaseReport`.

    Which labels are lesions is decided once, by :func:`pastacore.labels.choose_lesion_labels`:
    ``lesion_labels`` when given, else the label names (``names_from`` says where they came
    from), else the convention 1 = organ, 2 = lesion. The report states the decision. Labels
    named as organs are used as the organ mask unless ``organs`` is given.
    """
    from .. import io
    from ..labels import choose_lesion_labels

    labels = io.as_label(labels, "the segmentation")
    image.check_matches(labels, "segmentation")
    label_names = dict(label_names or {})
    present = {int(v) for v in np.unique(labels.array) if v}
    if not present:
        raise PastaError("the segmentation is empty: no lesion to measure")
    chosen = choose_lesion_labels(present, label_names, lesion_labels, names_from)
    named_organs = [v for v in chosen.organ_values if v in label_names]
    if organs is None and named_organs:
        organs = labels.with_array(np.where(np.isin(labels.array, named_organs), labels.array, 0))
        organ_names = {k: label_names[k] for k in named_organs}
    measurements = measure_lesions(image, labels, lesion_labels=chosen.values, label_names=label_names,
                                   organs=organs, organ_names=organ_names, split_components=split_components,
                                   progress=progress)
    notes = [chosen.reason]
    border = [m.index for m in measurements if m.touches_border]
    if border:
        notes.append(f"Lesion {', '.join(map(str, border))} touches the border of the image volume and may be cut: "
                     "its size may be underestimated.")
    report = build_report(case, measurements, attributes=attributes, models=models, notes=notes)
    report.lesion_labels = {"values": chosen.values, "reason": chosen.reason}
    return report


def check_out_dir(path, overwrite: bool = False) -> None:
    """Refuse, before any work, a report folder that holds an earlier report (unless ``overwrite``)."""
    from ..io.atomic import check_output_dir

    check_output_dir(path, overwrite, REPORT_FILES)


def write_report(report, image, labels, out_dir, formats=ALL_FORMATS, overwrite=False, progress=None) -> list:
    """Write the report folder (see module docstring); return the written file names (relative)."""
    from ..io.atomic import atomic_directory
    from .report_json import write_report_json, write_type_json

    formats = tuple(formats)
    with atomic_directory(out_dir, overwrite=overwrite, owned=REPORT_FILES) as temp:
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
