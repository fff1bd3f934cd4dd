"""The per-case works of ``pasta batch``: segment (and measure), report, synthesise.

Each calls the functions of the single-case commands (:mod:`pastacore.casework`) and writes
the same files, into ``DIR/<case id>/`` with the case's ``case.json``:

- ``segment``: ``segmentation.nii.gz`` + ``segmentation.json`` (as ``pasta segment``) and the
  report of its lesions (as ``pasta report`` on them; ``json`` by default, ``formats`` adds
  html, pdf, seg, sr). A case where the model finds no lesion is done, with no report.
- ``report``: the report files of ``pasta report``.
- ``synth``: ``image.nii.gz``, ``mask.nii.gz``, ``report.json``, ``type.json`` (as ``pasta synth``
  with ``--out-type-json``); the seed derives from the case id unless the case gives one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine import Case, CaseWork
from .table import SYNTHETIC_COLUMNS, lesion_columns, lesion_table_rows, synthetic_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .engine import Timer, WorkerResources


SEGMENTATION = "segmentation.nii.gz"
SYNTH_FILES = ("image.nii.gz", "mask.nii.gz", "report.json", "type.json")


def case_seed(seed: int, case_id: str) -> int:
    """The synthesis seed of a case: from the run's seed and the case id (so a rerun, or the
    same case in another cohort, gives the same lesion)."""
    name = int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "little")
    return int(np.random.SeedSequence([int(seed), name]).generate_state(1)[0] & 0x7FFFFFFF)


class SegmentWork(CaseWork):
    kind = "segment"

    @property
    def owned(self) -> tuple:
        return (SEGMENTATION, "segmentation.json") + _report_files()

    def __init__(
        self,
        model: str | Path | None = None,
        model_sha256: str | None = None,
        device: str = "auto",
        organ: str | None = None,
        totalsegmentator_version: int = 2,
        roi: str | Sequence[float] | None = None,
        tta: bool = False,
        overlap: float = 0.5,
        min_lesion_mm3: float = 0.0,
        formats: Sequence[str] = ("json",),
        whole_labels: bool = False,
    ) -> None:
        self.model, self.model_sha256, self.device = model, model_sha256, device
        self.options = {
            "organ": organ,
            "totalsegmentator_version": totalsegmentator_version,
            "roi": roi,
            "tta": bool(tta),
            "overlap": float(overlap),
            "min_lesion_mm3": float(min_lesion_mm3),
        }
        self.formats, self.whole_labels = tuple(formats), bool(whole_labels)
        self.needs_gpu = device != "cpu"
        self.table_columns = lesion_columns()

    def settings(self) -> dict:
        return dict(self.options, formats=list(self.formats), whole_labels=self.whole_labels)

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from ..casework.report import report_case
        from ..casework.segment import segment_case, write_segmentation
        from ..report.export import write_report

        with timer("load model"):
            model = resources.segmentation_model(self.model)
        options = dict(self.options, roi=case.params.get("box") or self.options["roi"])
        with timer("segment"):
            segmented = segment_case(
                case.inputs["image"],
                model=model,
                organ_mask=case.inputs.get("organ_mask"),
                organ_label=case.params.get("organ_label"),
                device=self.device,
                **options,
            )
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                labels_path, _ = write_segmentation(segmented, staging / SEGMENTATION)
            rows = []
            if self._has_lesion(segmented.result):
                with timer("report"):
                    report, image, labels = report_case(
                        case.inputs["image"],
                        labels_path,
                        case.inputs.get("organ_mask"),
                        whole_labels=self.whole_labels,
                        case_id=case.case_id,
                        image=segmented.image,
                    )
                    write_report(report, image, labels, staging, self.formats)
                rows = lesion_table_rows(report)
            return self.finish(out_dir, case, staging, fingerprint, rows)

    @staticmethod
    def _has_lesion(result) -> bool:
        lesions = [value for value, info in result.segments.items() if "@" in (info.term or "")]
        return bool(lesions) and bool(np.isin(result.labels.array, lesions).any())


class ReportWork(CaseWork):
    kind = "report"

    @property
    def owned(self) -> tuple:
        return _report_files()

    def __init__(
        self, formats: Sequence[str] = ("json",), lesion_labels: Sequence[int] | None = None, whole_labels: bool = False
    ) -> None:
        self.formats, self.lesion_labels, self.whole_labels = tuple(formats), lesion_labels, bool(whole_labels)
        self.table_columns = lesion_columns()

    def settings(self) -> dict:
        return {"formats": list(self.formats), "lesion_labels": self.lesion_labels, "whole_labels": self.whole_labels}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from ..casework.report import report_case
        from ..report.export import write_report

        with timer("measure"):
            report, image, labels = report_case(
                case.inputs["image"],
                case.inputs["seg"],
                case.inputs.get("organ_mask"),
                lesion_labels=self.lesion_labels,
                whole_labels=self.whole_labels,
                case_id=case.case_id,
            )
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                write_report(report, image, labels, staging, self.formats)
            return self.finish(out_dir, case, staging, fingerprint, lesion_table_rows(report))


class SynthWork(CaseWork):
    kind = "synth"
    owned = SYNTH_FILES
    table_columns = SYNTHETIC_COLUMNS

    def __init__(self, backend: str = "procedural", backend_options: dict | None = None) -> None:
        self.backend, self.backend_options = backend, dict(backend_options or {})
        self.needs_gpu = backend != "procedural" and self.backend_options.get("device", "auto") != "cpu"

    def settings(self) -> dict:
        options = {k: v for k, v in self.backend_options.items() if k not in ("allow_slow", "device", "precision")}
        return {"backend": self.backend, "backend_options": options}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from ..casework.synth import synth_case, write_synthesis

        params = case.params
        with timer("synthesise"):
            made = synth_case(
                case.inputs["image"],
                seed=params["seed"],
                attributes=params.get("attributes"),
                box=params.get("box"),
                box_ijk=params.get("box_ijk"),
                lesion_type=params.get("lesion_type"),
                organ_mask=case.inputs.get("organ_mask"),
                organ_label=params.get("organ_label"),
                backend=self.backend,
                backend_options=self.backend_options,
            )
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                write_synthesis(made, *(staging / name for name in SYNTH_FILES))
            row = synthetic_row(case.case_id, made.report, Path(case.inputs["image"]).name)
            return self.finish(out_dir, case, staging, fingerprint, [row])


def _report_files() -> tuple:
    """The files a report folder can hold, from the report-format registry (formats added later included)."""
    from ..report.formats import report_files

    return report_files()
