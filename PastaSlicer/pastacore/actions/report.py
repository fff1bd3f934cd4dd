"""Report: measure a segmentation's lesions on its CT and write the structured report.

``pasta report``, ``pasta batch report|segment``, and the Slicer/web report panel (through the
task process) build a :class:`ReportOptions` and call :func:`run`, then :func:`write`. From
files, label names, the model and its lesion candidates come from the segmentation's sidecar;
from a scene, the front end passes them in :class:`ReportInputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from ..report.model import CaseReport

WRITE_SHARE = 0.7  # of a job's progress: key images, PDF and DICOM take longer than measuring


@dataclass(frozen=True)
class ReportOptions:
    """What the user chose for a report (every front end builds one)."""

    formats: tuple[str, ...] = ()  # report formats (pastacore.report.formats); () = all
    lesion_labels: tuple[int, ...] | None = None  # the lesions' label values (None: named by the sidecar, else 2)
    whole_labels: bool = False  # one lesion per label instead of per connected piece
    min_long_axis_mm: float | None = None  # the reporting floor; None = the model's (or the default)
    min_volume_ml: float | None = None
    min_confidence: float | None = None
    targets: tuple[int, ...] | None = None  # RECIST 1.1 target lesions (numbers of this report)
    baseline: str = ""  # an earlier report folder: this report is the follow-up
    force: bool = False  # a baseline of another patient, or dated after this scan, is used anyway
    allow_organ_lesions: bool = False  # lesion labels the segmentation names as organs are measured anyway

    def check(self) -> None:
        from ..report.export import parse_formats

        if self.formats and not any(f.strip() for f in self.formats):
            raise PastaError(f"{option('formats')} lists no format; name at least one (or leave it out for all)")
        if self.formats:
            parse_formats(",".join(self.formats))
        for name in ("min_long_axis_mm", "min_volume_ml", "min_confidence"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < float("inf"):
                raise PastaError(f"{option(name)} must be a number >= 0, got {value}")
        if self.min_confidence is not None and self.min_confidence > 1.0:
            raise PastaError(f"{option('min_confidence')} is a probability from 0 to 1, got {self.min_confidence:g}")
        if self.lesion_labels is not None and (not self.lesion_labels or min(self.lesion_labels) < 1):
            raise PastaError(f"{option('lesion_label')} takes label values from 1, got {list(self.lesion_labels)}")
        if self.targets is not None and (not self.targets or min(self.targets) < 1):
            raise PastaError(f"{option('targets')} takes lesion numbers from 1, got {list(self.targets)}")
        if self.baseline and self.targets:
            raise PastaError(f"target lesions are chosen at baseline: {option('targets')} cannot go with {option('baseline')}")

    def format_names(self) -> tuple:
        from ..report.export import parse_formats
        from ..report.formats import format_names

        return parse_formats(",".join(self.formats or format_names()))

    def floor(self) -> dict:
        return {
            "min_long_axis_mm": self.min_long_axis_mm,
            "min_volume_ml": self.min_volume_ml,
            "min_confidence": self.min_confidence,
        }


@dataclass
class ReportInputs:
    """What a report reads: paths (files or DICOM folders) or Volumes, and what a scene knows of
    its segments (``None``: read from the segmentation's sidecar, as from files)."""

    image: str | Path | Volume
    seg: str | Path | Volume
    organ_mask: str | Path | Volume | None = None  # organ labels giving each lesion its organ
    baseline_image: str | Path | Volume | None = None  # register the CT to this one before pairing lesions
    case_id: str | None = None  # the case's name (default: the image's file name)
    image_file: str | Path | None = None  # the file an ``image`` Volume was read from (the report names it)
    case: dict | None = None  # CaseInfo fields a scene knows (default: from the files and case_id)
    label_names: dict | None = None  # label value -> segment name
    models: list | None = None  # ModelProvenance dicts of the models that made the segments
    candidates: dict | None = None  # the model's lesion candidates (candidates_to_json form)
    confirmed: dict | None = None  # label value -> lesions a person confirmed
    rejected: dict | None = None  # label value -> lesions a person rejected (not lesions)
    model_record: dict | None = None  # the segmenting model as its sidecar records it (with its reporting floor)
    attributes: dict | None = None  # lesion number -> {attribute: AttributeValue dict}
    names_from: str | None = None  # the file that named the labels (with ``label_names``)
    model_labels: tuple | None = None  # the label values the segmenting model made (its sidecar's)
    organ_names: dict | None = None  # organ label value -> name (with an organ mask Volume)
    synthetic: dict | None = None  # label value -> synthesis record of a synthetic lesion (None: from the sidecar)


@dataclass
class ReportedCase(ActionResult):
    report: CaseReport
    image: Volume
    labels: Volume

    def to_dict(self) -> dict:
        report = self.report
        return {
            "lesions": len(report.lesions),
            "comparison": report.comparison,
            "recist": report.recist,
            "lesion_labels": report.lesion_labels,
            "origin": report.origin,
            "touching_border": [m.measurement.index for m in report.lesions if m.measurement.touches_border],
        }


def run(
    options: ReportOptions, inputs: ReportInputs, progress: Progress | None = None, is_cancelled: Cancelled | None = None
) -> ReportedCase:
    """Measure the lesions and build the report (nothing is written)."""
    from ..candidates import candidates_from_json, choose_floor
    from ..fileio import as_volume
    from ..report.export import case_info, label_names_of, make_report, recorded_candidates, recorded_model, recorded_synthetic
    from ..report.model import AttributeValue, CaseInfo, ModelProvenance

    options.check()
    say = reporter(progress)
    baseline = load_baseline(options)
    image = as_volume(inputs.image)
    labels = as_volume(inputs.seg, is_label=True)
    from_file = not hasattr(inputs.seg, "array")
    if inputs.label_names is not None:
        names, names_from = {int(k): v for k, v in inputs.label_names.items()}, inputs.names_from or ""
        models = [ModelProvenance(**m) for m in inputs.models or []]
    elif from_file:
        names, models, names_from = label_names_of(labels, inputs.seg)
    else:
        names, models, names_from = None, [], ""
    _refuse_organs_as_lesions(options, names or {})
    model_labels = (
        tuple(inputs.model_labels) if inputs.model_labels is not None else _model_labels(inputs.seg) if from_file else ()
    )
    organs = organ_names = None
    if inputs.organ_mask is not None:
        organs = as_volume(inputs.organ_mask, is_label=True)
        if inputs.organ_names is not None:
            organ_names = {int(k): v for k, v in inputs.organ_names.items()}
        elif not hasattr(inputs.organ_mask, "array"):
            organ_names, _, _ = label_names_of(organs, inputs.organ_mask)
    if inputs.candidates is not None:
        candidates = candidates_from_json(inputs.candidates)
    else:
        candidates = recorded_candidates(inputs.seg) if from_file else None
    if inputs.synthetic is not None:
        synthetic = {int(k): v for k, v in inputs.synthetic.items()}
    else:
        synthetic = recorded_synthetic(inputs.seg) if from_file else {}
    model_record = inputs.model_record if inputs.model_record is not None else recorded_model(inputs.seg) if from_file else {}
    floor = choose_floor(options.floor(), model_record)
    case = (
        CaseInfo(**inputs.case)
        if inputs.case
        else case_info(image, inputs.image_file or _path(inputs.image), _path(inputs.seg), inputs.case_id)
    )
    followup, forced = {}, []
    if baseline is not None:
        from dataclasses import asdict

        from ..report.report_check import check_time_points

        forced = check_time_points(baseline, {"case": asdict(case)}, options.force)
        followup["baseline"] = baseline
        if inputs.baseline_image is not None:
            from ..report.registration import register

            registration = register(as_volume(inputs.baseline_image), image, lambda f, m="": say(0.1 * f, m))
            followup.update(to_baseline=registration.to_baseline, registration=registration.describe())
    attributes = {
        int(n): {a: v if isinstance(v, AttributeValue) else AttributeValue(**v) for a, v in values.items()}
        for n, values in (inputs.attributes or {}).items()
    }
    report = make_report(
        image,
        labels,
        case=case,
        lesion_labels=list(options.lesion_labels) if options.lesion_labels else None,
        label_names=names,
        names_from=names_from,
        organs=organs,
        organ_names=organ_names,
        attributes=attributes or None,
        models=models,
        split_components=not options.whole_labels,
        progress=lambda f, m="": say(0.1 + 0.9 * f, m),
        candidates=candidates,
        confirmed={int(k): v for k, v in (inputs.confirmed or {}).items()},
        rejected={int(k): v for k, v in (inputs.rejected or {}).items()},
        floor=floor,
        targets=list(options.targets) if options.targets else None,
        model_labels=model_labels,
        synthetic=synthetic,
        **followup,
    )
    report.notes.extend(forced)
    return ReportedCase(report, image, labels)


def portable_inputs(inputs: ReportInputs) -> ReportInputs:
    """The inputs with every file read here: the volumes, and what the segmentation's sidecar and
    the files' names tell a report. :func:`run` on them (on a PASTA server, which reads no path)
    gives the report it gives on the files."""
    from dataclasses import asdict, replace

    from ..candidates import candidates_to_json
    from ..fileio import as_volume
    from ..report.export import case_info, label_names_of, recorded_candidates, recorded_model

    image = as_volume(inputs.image)
    labels = as_volume(inputs.seg, is_label=True)
    organs = as_volume(inputs.organ_mask, is_label=True) if inputs.organ_mask is not None else None
    baseline = as_volume(inputs.baseline_image) if inputs.baseline_image is not None else None
    portable = replace(inputs, image=image, seg=labels, organ_mask=organs, baseline_image=baseline)
    if inputs.organ_mask is not None and inputs.organ_names is None and not hasattr(inputs.organ_mask, "array"):
        portable.organ_names = {str(k): v for k, v in (label_names_of(organs, inputs.organ_mask)[0] or {}).items()}
    if hasattr(inputs.seg, "array"):
        return portable
    names, models, names_from = label_names_of(labels, inputs.seg)
    candidates = recorded_candidates(inputs.seg)
    if inputs.label_names is None:
        portable.label_names = {str(k): v for k, v in (names or {}).items()}
        portable.models = [asdict(m) for m in models]
        portable.names_from = names_from
    if inputs.candidates is None and candidates is not None:
        portable.candidates = candidates_to_json(candidates)
    if inputs.model_record is None:
        portable.model_record = recorded_model(inputs.seg)
    if inputs.model_labels is None:
        portable.model_labels = _model_labels(inputs.seg)
    if not inputs.case:
        portable.case = asdict(case_info(image, inputs.image_file or _path(inputs.image), _path(inputs.seg), inputs.case_id))
    return portable


def _refuse_organs_as_lesions(options: ReportOptions, names: dict) -> None:
    """A lesion label the segmentation names as an organ ("Lung") is a mistake unless the user insists."""
    from ..terminology import is_lesion, term_for_label_name

    if options.allow_organ_lesions:
        return
    for value in options.lesion_labels or ():
        name = names.get(value)
        if name and not is_lesion(name) and term_for_label_name(name):
            raise PastaError(
                f"{option('lesion_label')} {value}: the segmentation names label {value} {name!r}, an organ, not a "
                f"lesion; pass {option('allow_organ_lesions')} to measure it as lesions anyway"
            )


def _model_labels(seg) -> tuple:
    """The label values the segmenting model made, as its sidecar lists them (none: no sidecar)."""
    from ..inference.sidecar import read_sidecar

    data = read_sidecar(seg)
    labels = data.get("labels") if isinstance(data.get("model"), dict) else None
    return tuple(int(k) for k in labels if str(k).isdigit()) if isinstance(labels, dict) else ()


def _path(source) -> str | Path:
    return "" if hasattr(source, "array") else source


def load_baseline(options: ReportOptions) -> dict | None:
    """The baseline report (its report.json) of a follow-up, read before any work."""
    if not options.baseline:
        return None
    from ..report.followup import load_report

    return load_report(options.baseline)


def write(
    case: ReportedCase,
    options: ReportOptions,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list:
    """Write the report folder in the options' formats; returns the files written."""
    from ..report.export import write_report

    return write_report(
        case.report,
        case.image,
        case.labels,
        out_dir,
        options.format_names(),
        overwrite=overwrite,
        progress=progress,
        baseline_dir=options.baseline or None,
    )


OPTIONS, INPUTS = ReportOptions, ReportInputs
