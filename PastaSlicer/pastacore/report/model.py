"""The report of one case: identifiers, lesions (measurements, attributes, organ), provenance.

Exporters (``report_json``, ``report_html``, ``dicom_export``, ``report_csv``) read this
model and nothing else, so the command line and the Slicer hub write the same files.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..digests import sha256_of
from .measure import LesionMeasurement

if TYPE_CHECKING:
    from collections.abc import Sequence


DISCLAIMER = "Research use only, not for diagnosis."
SOFTWARE = "PASTA for 3D Slicer"

# The five PASTA report attributes, in the order of the classifier's output groups.
ATTRIBUTE_NAMES = ("shape", "density", "heterogeneity", "surface", "invasion")


@dataclass
class AttributeValue:
    """One report attribute: its value and, when predicted, the probability of each option."""

    value: str
    probabilities: dict | None = None  # option -> probability; None when given by a person
    source: str = ""  # model name, or "manual"


@dataclass
class ModelProvenance:
    name: str
    version: str = ""
    sha256: str = ""
    role: str = ""  # "segmentation", "attributes", ...
    file: str = ""  # the weight file read (a checkpoint, or one inside an nnU-Net folder)
    source: str = ""  # what was given: an installed model's folder, a weight file, a result folder

    @classmethod
    def from_dict(cls, data: dict | None, role: str = "segmentation") -> ModelProvenance | None:
        """From a segmentation's recorded model (``pasta segment``'s sidecar, the Slicer node's
        ``PASTA.Model`` attribute); None when it names no model."""
        if not isinstance(data, dict) or not data.get("name"):
            return None
        return cls(
            str(data["name"]),
            str(data.get("version") or ""),
            str(data.get("sha256") or ""),
            str(data.get("role") or role),
            str(data.get("file") or ""),
            str(data.get("source") or ""),
        )

    def describe(self) -> str:
        """One line for a reader: name, version, file and checksum."""
        where = self.file if not self.source or self.source in (self.file, self.name) else f"{self.file} in {self.source}"
        parts = [f"{self.name} {self.version}".strip()]
        if where:
            parts.append(f"from {where}")
        parts.append(f"sha256 {self.sha256}" if self.sha256 else "sha256 not recorded")
        return ", ".join(parts)

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None, version: str = "", role: str = "") -> ModelProvenance:
        return cls(name or Path(path).name, version, sha256_of(path), role)


@dataclass
class CaseInfo:
    case_id: str
    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    series_uid: str = ""
    study_description: str = ""
    image_name: str = ""  # file or folder name of the CT (never a full path)
    segmentation_name: str = ""
    is_dicom: bool = False
    study_date: str = ""  # YYYYMMDD, as DICOM writes it ("" when the input does not say)


@dataclass
class LesionReport:
    measurement: LesionMeasurement
    term: str = ""  # terminology key, e.g. "tumor@lung" (see pastacore.terminology)
    attributes: dict = field(default_factory=dict)  # name -> AttributeValue
    status: str = "unknown"  # proposed, edited, confirmed, manual or unknown (pastacore.candidates)
    mean_probability: float | None = None  # the model's confidence: mean lesion probability over the candidate
    max_probability: float | None = None
    recist: dict = field(default_factory=dict)  # role, measurable, diameter_mm, reason... (report.recist)
    tracking_uid: str = ""  # the same lesion keeps it across time points (DICOM SR tracking)
    baseline_number: int = 0  # follow-up reports: the baseline lesion it is (0: new or none)
    synthetic: dict | None = None  # a synthetic lesion's record (pastacore.synthetic): type, attributes, seed, engine

    @property
    def confidence(self) -> float | None:
        return self.mean_probability

    @property
    def role(self) -> str:
        return self.recist.get("role", "")

    @property
    def number(self) -> int:
        return self.measurement.index


@dataclass
class CaseReport:
    case: CaseInfo
    lesions: list
    models: list = field(default_factory=list)  # ModelProvenance
    notes: list = field(default_factory=list)  # sentences for the reader (e.g. what DICOM holds)
    lesion_labels: dict = field(default_factory=dict)  # {"values": [...], "reason": "..."}: what was measured, why
    time_point: str = "baseline"  # "baseline" or "follow-up"
    origin: str = ""  # which model made the segmentation, or that nobody knows
    floor: dict = field(default_factory=dict)  # the reporting floor applied (pastacore.candidates.Floor)
    below_floor: list = field(default_factory=list)  # lesions too small or unsure to report: a short record each
    recist: dict = field(default_factory=dict)  # RECIST 1.1 baseline (report.recist.RecistBaseline.to_dict)
    comparison: dict = field(default_factory=dict)  # follow-up reports: the response (report.followup)
    software: dict = field(default_factory=lambda: {"name": SOFTWARE, "version": __version__})
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat())
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict:
        return asdict(self)


def lesion_term(label_name: str, organ: str) -> str:
    """Terminology key of a lesion from its label name and the organ it lies in ("tumor@lung")."""
    from ..terminology import term_for_label_name

    organ_key = term_for_label_name(organ) if organ else None
    if organ_key and "@" in organ_key:
        organ_key = organ_key.split("@", 1)[1]
    term = term_for_label_name(label_name or "", organ_hint=organ_key) if label_name else None
    if term and "@" in term:
        return term
    if organ_key:
        kind = term.split("@")[0] if term and "@" in term else "lesion"
        return f"{kind}@{organ_key}"
    return ""


def build_report(
    case: CaseInfo,
    measurements: list,
    attributes: dict | None = None,
    models: Sequence[ModelProvenance] = (),
    notes: Sequence[str] = (),
) -> CaseReport:
    """Wrap measurements (and attributes per lesion number, when known) into a :class:`CaseReport`."""
    attributes = attributes or {}
    lesions = []
    for m in measurements:
        base = m.name.rsplit(" ", 1)[0] if m.component and m.name.rsplit(" ", 1)[-1].isdigit() else m.name
        lesions.append(LesionReport(m, lesion_term(base, m.organ), dict(attributes.get(m.index, {}))))
    return CaseReport(case, lesions, list(models), list(notes))
