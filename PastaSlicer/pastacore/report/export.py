"""From a CT and its segmentation to a report folder, in the formats asked for.

Layout of the folder written by :func:`write_report` with the built-in formats of
:mod:`.formats` (all-or-nothing; an existing folder that holds an earlier report is refused
unless ``overwrite``, which replaces the report's own files, :func:`.formats.report_files`, and
keeps every other file of the folder)::

    report.json  type.json           (json)
    report.html  images/lesion_N.png (html; a follow-up also images/baseline_lesion_N.png)
    report.pdf                       (pdf)
    dicom/seg.dcm                    (seg)
    dicom/sr.dcm                     (sr)
    dicom/ct/CT*.dcm                 (seg/sr from a non-DICOM CT: the derived series they reference)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..fileio.readers import image_stem
from ..inference.sidecar import read_sidecar, sidecar_path
from .measure import measure_lesions
from .model import CaseInfo, ModelProvenance, build_report

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..candidates import Floor
    from ..geometry.volume import Volume
    from ..progress import Progress
    from .model import CaseReport


def parse_formats(text: str) -> tuple:
    """The format names of a comma-separated list, checked against the registry (:mod:`.formats`)."""
    from .formats import choose_formats

    wanted = [f.strip().lower() for f in (text or "").split(",") if f.strip()]
    return tuple(f.name for f in choose_formats(wanted))


def case_info(image: Volume, image_path: str | Path, seg_path: str | Path | None = None, case_id: str | None = None) -> CaseInfo:
    meta = image.meta or {}
    return CaseInfo(
        case_id=case_id or image_stem(image_path),
        patient_id=str(meta.get("patient_id", "")),
        patient_name=str(meta.get("patient_name", "")),
        study_uid=str(meta.get("study_uid", "")),
        series_uid=str(meta.get("series_uid", "")),
        study_description=str(meta.get("study_description", "")),
        study_date=str(meta.get("study_date", "")),
        image_name=Path(image_path).name,
        segmentation_name=Path(seg_path).name if seg_path else "",
        is_dicom=bool(meta.get("dicom_files")),
    )


def label_names_of(volume: Volume, path: str | Path) -> tuple:
    """(label value -> name, model provenances, where the names came from) from a ``.seg.nrrd``'s
    segments or a JSON sidecar.

    The sidecar is the one :mod:`pastacore.inference.sidecar` reads (as ``pasta segment`` wrote it).
    """
    names = {int(s["label"]): s["name"] for s in (volume.meta or {}).get("segments", [])}
    source = Path(path).name if names else ""
    models = []
    data = read_sidecar(path)
    labels = data.get("labels", data)
    for key, value in labels.items() if isinstance(labels, dict) else ():
        if str(key).isdigit():
            names.setdefault(int(key), value.get("name", "") if isinstance(value, dict) else str(value))
            source = source or sidecar_path(path).name
    model = ModelProvenance.from_dict(data.get("model"))
    if model is not None:
        models.append(model)
    return names, models, source


def recorded_candidates(path: str | Path) -> dict | None:
    """``{label value: [Candidate]}`` the sidecar records, or None when it records none."""
    from ..candidates import candidates_from_json

    data = read_sidecar(path)
    return candidates_from_json(data["candidates"]) if isinstance(data.get("candidates"), dict) else None


def recorded_synthetic(path: str | Path) -> dict:
    """``{label value: synthesis record}`` of the labels the sidecar marks as synthetic (``pasta synth``)."""
    from ..synthetic import clean_record

    labels = read_sidecar(path).get("labels")
    out = {}
    for key, value in labels.items() if isinstance(labels, dict) else ():
        record = clean_record(value.get("synthetic")) if isinstance(value, dict) else None
        if str(key).isdigit() and record is not None:
            out[int(key)] = record
    return out


def recorded_model(path: str | Path) -> dict:
    """The model record of the sidecar (with its ``reporting_floor``), ``{}`` when none."""
    model = read_sidecar(path).get("model")
    return model if isinstance(model, dict) else {}


def make_report(
    image: Volume,
    labels: Volume,
    *,
    case: CaseInfo,
    lesion_labels: Sequence[int] | None = None,
    label_names: dict | None = None,
    names_from: str = "",
    organs: Volume | None = None,
    organ_names: dict | None = None,
    attributes: dict | None = None,
    models: Sequence[ModelProvenance] = (),
    split_components: bool = True,
    progress: Progress | None = None,
    candidates: dict | None = None,
    confirmed: dict | None = None,
    floor: Floor | None = None,
    targets: Sequence[int] | None = None,
    baseline: dict | None = None,
    to_baseline: Callable[[np.ndarray], np.ndarray] | None = None,
    registration: str = "",
    model_labels: Sequence[int] = (),
    rejected: dict | None = None,
    measure_cache: dict | None = None,
    synthetic: dict | None = None,
) -> CaseReport:
    """Measure ``labels`` on ``image`` and build the :class:`~pastacore.report.model.CaseReport`.

    Which labels are lesions is decided once, by :func:`pastacore.labels.choose_lesion_labels`:
    ``lesion_labels`` when given, else the label names (``names_from`` says where they came
    from), else the convention 1 = organ, 2 = lesion. The report states the decision. Labels
    named as organs are used as the organ mask unless ``organs`` is given.

    ``candidates`` (``{label: [Candidate]}``, None: not recorded) and ``confirmed`` give each
    lesion its status and confidence; ``floor`` (a :class:`~pastacore.candidates.Floor`) sets
    apart what is too small or unsure; lesions are numbered most confident first
    (:mod:`.assess`). ``targets``: lesion numbers a reader chose as RECIST target lesions.
    ``synthetic``: ``{label value: record}`` of synthetic lesions (:mod:`pastacore.synthetic`): they are
    marked so, and never chosen as RECIST targets automatically.
    ``baseline``: an earlier report (``report.json`` dict) makes this a follow-up report, its
    lesions paired with the baseline's (``to_baseline`` maps this scan's points into the
    baseline's; ``registration`` says how) and the RECIST response added.
    """
    from ..fileio import as_label
    from ..labels import choose_lesion_labels
    from .assess import assess, origin_sentence

    if baseline is not None and targets:
        raise PastaError("target lesions are chosen at baseline, not at follow-up: leave out the targets")
    labels = as_label(labels, "the segmentation")
    image.check_matches(labels, "segmentation")
    label_names = dict(label_names or {})
    from .measure import labels_present

    # with the lesions given, only they and the named labels can matter: test those values only
    known = set(label_names) | set(lesion_labels) if lesion_labels and label_names else None
    present = set(labels_present(labels.array, known))
    if not present:
        raise PastaError("the segmentation is empty: no lesion to measure")
    chosen = choose_lesion_labels(present, label_names, lesion_labels, names_from)
    named_organs = [v for v in chosen.organ_values if v in label_names]
    if organs is None and named_organs:
        organs = labels.with_array(np.where(np.isin(labels.array, named_organs), labels.array, 0))
        organ_names = {k: label_names[k] for k in named_organs}
    measurements = measure_lesions(
        image,
        labels,
        lesion_labels=chosen.values,
        label_names=label_names,
        organs=organs,
        organ_names=organ_names,
        split_components=split_components,
        progress=progress,
        cache=measure_cache,
    )
    report = build_report(case, measurements, attributes=attributes, models=models, notes=[chosen.reason])
    for lesion in report.lesions:
        lesion.synthetic = (synthetic or {}).get(lesion.measurement.label)
    made = frozenset(int(v) for v in (model_labels or ()))
    report.lesions, report.below_floor = assess(report.lesions, image.grid, candidates, confirmed, floor, made, rejected)
    from ..candidates import DEFAULT_FLOOR

    report.floor = (floor or DEFAULT_FLOOR).to_dict()
    report.origin = origin_sentence(report.models, report.lesions, candidates is not None)
    report.lesion_labels = {"values": chosen.values, "reason": chosen.reason}
    if report.below_floor:
        total = sum(r["volume_ml"] for r in report.below_floor)
        report.notes.append(
            f"{len(report.below_floor)} piece(s) under the reporting floor ({(floor or DEFAULT_FLOOR).describe()}) "
            f"are listed apart, not as lesions ({total:.2f} mL in all)."
        )
    _synthetic_notes(report)
    border = [lesion.number for lesion in report.lesions if lesion.measurement.touches_border]
    if border:
        report.notes.append(
            f"Lesion {', '.join(map(str, border))} touches the border of the image volume and may be "
            "cut: its size may be underestimated."
        )
    if baseline is None:
        _recist_baseline(report, image, targets)
    else:
        _recist_followup(report, image, baseline, to_baseline, registration)
    return report


def _synthetic_notes(report: CaseReport) -> None:
    """Say which lesions are synthetic, and how each was made."""
    from ..synthetic import describe

    synthetic = [lesion for lesion in report.lesions if lesion.synthetic]
    if not synthetic:
        return
    numbers = ", ".join(str(lesion.number) for lesion in synthetic)
    report.notes.append(
        f"Synthetic case: lesion {numbers} {'was' if len(synthetic) == 1 else 'were'} inserted into the CT by lesion "
        "synthesis; not a finding of this patient. A synthetic lesion is never chosen as a RECIST target automatically."
    )
    for lesion in synthetic:
        report.notes.append(f"Lesion {lesion.number}: {describe(lesion.synthetic)}.")


def _recist_baseline(report, image, targets) -> None:
    from dataclasses import asdict

    from pydicom.uid import generate_uid

    from .recist import baseline

    recist = baseline(report.lesions, image, targets)
    for lesion, entry in zip(report.lesions, recist.lesions):
        lesion.recist = asdict(entry)
        lesion.tracking_uid = generate_uid()
    report.recist = recist.to_dict()
    report.notes += recist.notes


def _recist_followup(report, image, baseline: dict, to_baseline, registration: str) -> None:
    """Roles and tracking identifiers from the paired baseline lesions; the response."""
    from dataclasses import asdict

    from pydicom.uid import generate_uid

    from .followup import compare, roles_at_followup
    from .recist import classify, slice_thickness
    from .report_json import report_dict

    report.time_point = "follow-up"
    thickness = slice_thickness(image)
    for lesion in report.lesions:
        lesion.recist = asdict(classify(lesion.number, lesion.measurement, lesion.term, thickness))
        lesion.recist["role"] = ""
    comparison = compare(baseline, report_dict(report), to_baseline, registration)
    base_uids = {int(lesion["number"]): lesion.get("tracking_uid", "") for lesion in baseline.get("lesions") or []}
    roles = roles_at_followup(comparison)
    for lesion in report.lesions:
        role, base_number, target_number = roles.get(lesion.number, ("", 0, 0))
        lesion.recist.update(role=role, target_number=target_number)
        lesion.baseline_number = base_number
        lesion.tracking_uid = base_uids.get(base_number) or generate_uid()
    report.comparison = comparison.to_dict()
    report.comparison["baseline_created"] = baseline.get("created", "")
    report.recist = {
        "criteria": "RECIST 1.1",
        "slice_thickness_mm": round(thickness, 2),
        "targets": [lesion.number for lesion in report.lesions if lesion.role == "target"],
        "sum_of_diameters_mm": comparison.sum_followup_mm,
        "chosen_by": "baseline",
    }
    report.notes += comparison.notes


def check_out_dir(path: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a report folder that holds an earlier report (unless ``overwrite``)."""
    from ..fileio.atomic import check_output_dir
    from .formats import report_files

    check_output_dir(path, overwrite, report_files())


def write_report(
    report: CaseReport,
    image: Volume,
    labels: Volume,
    out_dir: str | Path,
    formats: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    baseline_dir: str | Path | None = None,
) -> list:
    """Write the report folder in ``formats`` (names of :mod:`.formats`; default: all); return the
    written file names (relative). ``baseline_dir``: a follow-up's baseline report folder (its key
    images are shown beside)."""
    from ..fileio.atomic import atomic_directory
    from .formats import ReportContext, choose_formats, format_names, report_files, write_formats

    chosen = choose_formats(format_names() if formats is None else formats)
    with atomic_directory(out_dir, overwrite=overwrite, owned=report_files()) as temp:
        temp = Path(temp)
        step = (lambda f, msg="": progress(f, msg)) if progress else (lambda f, msg="": None)
        write_formats(ReportContext(report, image, labels, temp, baseline_dir, progress), chosen, step)
        written = sorted(str(p.relative_to(temp)) for p in temp.rglob("*") if p.is_file())
        step(1.0, "done")
    return written
