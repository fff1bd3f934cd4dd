"""The per-case works of ``pasta batch``: segment (and measure), report, synthesise.

Each runs the actions of the single-case commands (:mod:`pastacore.actions`) and writes
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

from ..cohort.case import Case, CaseWork
from ..cohort.table import SYNTHETIC_COLUMNS, lesion_columns, lesion_table_rows, synthetic_row
from ..errors import PastaError

if TYPE_CHECKING:
    from ..cohort.case import Timer, WorkerResources
    from .report import ReportOptions
    from .segment import SegmentOptions
    from .synth import SynthOptions


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

    def __init__(self, options: SegmentOptions, report: ReportOptions | None = None) -> None:
        from ..cohort.fingerprint import model_sha256
        from .report import ReportOptions

        self.options, self.report = options, report or ReportOptions(formats=("json",))
        self.model = options.model or None
        self.model_sha256 = model_sha256(options.model or "")
        self.needs_gpu = options.device != "cpu"
        self.table_columns = lesion_columns()

    def settings(self) -> dict:
        from ..cohort.fingerprint import content_hash
        from .options import options_to_dict

        options = options_to_dict(self.options)
        del options["device"], options["model"]  # the model is its weights' SHA256 (the basis holds it)
        if self.options.model_config:
            options["model_config"] = content_hash(self.options.model_config)
        return {"segment": options, "report": options_to_dict(self.report)}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from dataclasses import replace

        from . import report, segment

        with timer("load model"):
            model = resources.model((self.options.model, self.options.model_config), lambda: segment.load_model(self.options))
        options = self.options
        if case.params.get("box"):
            options = replace(options, roi=tuple(segment.parse_box(case.params["box"])))
        if case.params.get("organ_label") is not None:
            options = replace(options, organ_label=case.params["organ_label"])
        with timer("segment"):
            inputs = segment.SegmentInputs(case.inputs["image"], case.inputs.get("organ_mask"))
            segmented = segment.run(options, inputs, model=model)
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                labels_path, _ = segment.write_segmentation(segmented, staging / SEGMENTATION)
            rows = []
            if self._has_lesion(segmented.result):
                with timer("report"):
                    inputs = report.ReportInputs(
                        segmented.image,
                        labels_path,
                        case.inputs.get("organ_mask"),
                        case_id=case.case_id,
                        image_file=case.inputs["image"],
                    )
                    reported = report.run(self.report, inputs)
                    report.write(reported, self.report, staging)
                rows = lesion_table_rows(reported.report)
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

    def __init__(self, options: ReportOptions) -> None:
        self.options = options
        self.table_columns = lesion_columns()

    def settings(self) -> dict:
        from .options import options_to_dict

        return options_to_dict(self.options)

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from . import report

        with timer("measure"):
            inputs = report.ReportInputs(
                case.inputs["image"], case.inputs["seg"], case.inputs.get("organ_mask"), case_id=case.case_id
            )
            reported = report.run(self.options, inputs)
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                report.write(reported, self.options, staging)
            return self.finish(out_dir, case, staging, fingerprint, lesion_table_rows(reported.report))


class SynthWork(CaseWork):
    kind = "synth"
    owned = SYNTH_FILES + ("mask.json",)  # the mask's sidecar: which label is synthetic
    table_columns = SYNTHETIC_COLUMNS

    def __init__(self, options: SynthOptions) -> None:
        self.options = options
        self.needs_gpu = options.backend != "procedural" and options.device != "cpu"

    def settings(self) -> dict:
        return {"backend": self.options.backend, "backend_options": self.options.backend_settings()}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        from dataclasses import replace

        from . import synth

        params = case.params
        if params.get("problem"):
            raise PastaError(params["problem"])
        options = replace(
            self.options,
            seed=params["seed"],
            attributes=params.get("attributes") or "",
            lesion_type=params.get("lesion_type") or "",
            box=tuple(synth.numbers(params["box"], "box")) if params.get("box") else None,
            box_ijk=tuple(int(v) for v in synth.numbers(params["box_ijk"], "box_ijk")) if params.get("box_ijk") else None,
            organ_label=params.get("organ_label"),
            labels=case.inputs.get("seg") or self.options.labels,
        )
        with timer("synthesise"):
            made = synth.run(options, synth.SynthInputs(case.inputs["image"], case.inputs.get("organ_mask")))
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                synth.write_synthesis(made, *(staging / name for name in SYNTH_FILES))
            row = synthetic_row(case.case_id, made.report, Path(case.inputs["image"]).name)
            return self.finish(out_dir, case, staging, fingerprint, [row])


def _report_files() -> tuple:
    """The files a report folder can hold, from the report-format registry (formats added later included)."""
    from ..report.formats import report_files

    return report_files()
