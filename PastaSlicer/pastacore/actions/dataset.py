"""Synthetic dataset: many lesions into background CTs (PASTA-Gen-30K or nnU-Net raw layout).

``pasta synth-dataset`` and the Synth module's batch section (through the task process) build a
:class:`DatasetOptions` and call :func:`run`; the cases run on the cohort engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..cohort.case import Case, CaseWork
from ..cohort.table import SYNTHETIC_COLUMNS, synthetic_row
from ..errors import PastaError, option
from ..synthesis import schema as S
from .dataset_cases import (
    FORMATS,
    case_name,
    case_paths,
    case_seed,
    case_sizes,
    find_backgrounds,
    is_finished,
    make_case,
    match_masks,
    output_folder,
    write_dataset_json,
)
from .result import ActionResult
from .synth import SynthOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..cohort.case import Timer, WorkerResources
    from ..progress import Cancelled, Progress


@dataclass(frozen=True)
class DatasetOptions:
    count: int = 10  # number of cases
    format: str = "pasta-gen"  # pasta-gen or nnunet
    lesion_types: tuple[str, ...] = ()  # used in turn (() = every type the masks allow)
    synth: SynthOptions = SynthOptions()  # its attributes serve every case ("" = varied per case); its seed and backend
    organ_label: int | None = None  # the organ's value in the organ masks
    workers: int = 1  # 1 runs in this process; more start a local Dask cluster
    scheduler: str = ""  # "" (from workers), local, inline or a Dask scheduler address

    def check(self) -> None:
        if self.workers < 1:
            raise PastaError(f"{option('workers')} must be at least 1")
        if self.count < 1:
            raise PastaError("the number of cases must be at least 1")


@dataclass
class DatasetInputs:
    backgrounds: str | Path | list  # background CT files, or folders of them
    output: str | Path  # the dataset folder (created; finished cases are kept)
    organ_masks: str | Path | list | None = None  # organ segmentations matched to the backgrounds by name


@dataclass
class Dataset(ActionResult):
    summary: dict  # written, skipped, failed, output

    def to_dict(self) -> dict:
        return dict(self.summary)


class DatasetWork(CaseWork):
    """One case of a synthetic dataset (``pasta dataset``) on the cohort engine."""

    kind = "dataset"
    table_columns = SYNTHETIC_COLUMNS

    def __init__(
        self,
        format: str = "pasta-gen",
        backend: str = "procedural",
        backend_options: dict | None = None,
        organ_label: int | None = None,
    ) -> None:
        self.format, self.backend, self.backend_options = format, backend, dict(backend_options or {})
        self.organ_label = organ_label
        self.needs_gpu = backend != "procedural" and self.backend_options.get("device", "auto") != "cpu"

    def settings(self) -> dict:
        options = {k: v for k, v in self.backend_options.items() if k not in ("allow_slow", "device", "precision")}
        return {"format": self.format, "backend": self.backend, "backend_options": options, "organ_label": self.organ_label}

    def _paths(self, out_dir: Path, case: Case) -> dict:
        return case_paths(out_dir, self.format, case.params["index"], S.lesion_type(case.params["lesion_type"]))

    def found(self, out_dir: Path, case: Case, fingerprint: str) -> dict | None:
        """A finished case made for this fingerprint (or by a version that wrote none)."""
        paths = self._paths(out_dir, case)
        if not is_finished(paths):
            return None
        try:
            report = json.loads(paths["report"].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if report.get("fingerprint") not in (None, fingerprint):
            return None
        return {
            "outputs": case_sizes(out_dir, paths),
            "rows": [synthetic_row(case.case_id, report, report.get("background", ""))],
        }

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        spec = dict(
            case.params,
            image=case.inputs["image"],
            mask=case.inputs.get("organ_mask"),
            format=self.format,
            output=str(out_dir),
            organ_label=self.organ_label,
            backend=self.backend,
            backend_options=self.backend_options,
            fingerprint=fingerprint,
        )
        with timer("synthesise and write"):
            return make_case(spec)


def generate_dataset(
    backgrounds_dir: str | Path | Sequence[str | Path] | None = None,
    output_dir: str | Path | None = None,
    count: int = 10,
    format: str = "pasta-gen",
    lesion_type: str | None = None,
    attributes: str | dict | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    organ_masks: str | Path | Sequence[str | Path] | None = None,
    workers: int = 1,
    organ_label: int | None = None,
    backend: str = "procedural",
    backend_options: dict | None = None,
    scheduler: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict:
    """Write ``count`` synthetic cases; returns a summary (written, skipped, failed, output).

    ``workers``: 1 runs the cases in this process; more start a local Dask cluster of that
    many workers; ``scheduler`` ("local", "inline" or a Dask scheduler address) chooses
    explicitly. ``backend`` / ``backend_options``: the synthesis backend of every case (see
    :func:`~pastacore.synthesis.backends.get_backend`); checked before any case starts."""
    from ..cohort.engine import run_cohort

    if format not in FORMATS:
        raise PastaError(f"unknown dataset format {format!r}; choose one of: {', '.join(FORMATS)}")
    if output_dir is None or str(output_dir) == "":
        raise PastaError("choose an output folder for the dataset")
    count = int(count)
    if count < 1:
        raise PastaError("the number of cases must be at least 1")
    workers = max(1, int(workers or 1))
    scheduler = scheduler or ("inline" if workers == 1 else "local")
    if scheduler != "inline":
        from ..cohort.cluster import require_dask

        require_dask()
    from ..synthesis.backends import get_backend

    get_backend(backend, **(backend_options or {}))
    images = find_backgrounds(backgrounds_dir)
    masks = match_masks(images, organ_masks)
    if isinstance(lesion_type, str) and lesion_type:
        types = [S.lesion_type(t).key for t in lesion_type.replace(",", " ").split()]
    elif lesion_type:
        types = [S.lesion_type(t).key for t in lesion_type]
    else:
        types = [t for t in S.lesion_types() if any(masks.values()) or S.lesion_type(t).organ == "lung"]
    if attributes is not None and not isinstance(attributes, (str, dict)):
        raise PastaError("attributes must be a description (text) or a mapping")
    if isinstance(attributes, str) and not attributes.strip():
        attributes = None
    for t in types:  # refuse bad attributes before any work
        from ..synthesis.engine import read_attributes

        read_attributes(attributes, t)
    output = output_folder(output_dir)
    cases = []
    for index in range(count):
        image = images[index % len(images)]
        mask = masks.get(image)
        inputs = {"image": str(Path(image).resolve())}
        if mask:
            inputs["organ_mask"] = str(Path(mask).resolve())
        cases.append(
            Case(
                case_name(index),
                inputs,
                {
                    "index": index,
                    "lesion_type": types[index % len(types)],
                    "attributes": attributes,
                    "seed": case_seed(seed, index),
                },
                position=index,
            )
        )
    work = DatasetWork(format, backend, backend_options, organ_label)
    summary = run_cohort(
        work,
        cases,
        output,
        scheduler=scheduler,
        workers=workers if scheduler == "local" else None,
        device=(backend_options or {}).get("device", "auto"),
        progress=progress,
        is_cancelled=is_cancelled,
        notify=notify,
    )
    by_name = {c.case_id: c for c in cases}
    failed = [
        {"index": by_name[f["case_id"]].params["index"], "error": f["error"], "background": by_name[f["case_id"]].inputs["image"]}
        for f in summary["failed"]
    ]
    finished = [
        c for c in cases if is_finished(case_paths(output, format, c.params["index"], S.lesion_type(c.params["lesion_type"])))
    ]
    if format == "nnunet":
        write_dataset_json(output, len(finished), types)
    result = {
        "output": str(output),
        "format": format,
        "requested": count,
        "written": summary["done"],
        "skipped": summary["skipped"],
        "failed": failed,
        "finished": len(finished),
        "types": types,
        "manifest": str(output / "manifest.sqlite"),
        "workers": summary["workers"],
        "dashboard": summary["dashboard"],
    }
    if failed and len(failed) == count:
        raise PastaError(f"no case could be made: {failed[0]['error']}")
    return result


def run(
    options: DatasetOptions,
    inputs: DatasetInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    notify: Callable[[str], None] | None = None,
) -> Dataset:
    from .synth import backend

    options.check()
    synth = options.synth
    backend(synth)  # unavailable or too slow: say so before any work
    summary = generate_dataset(
        backgrounds_dir=inputs.backgrounds,
        output_dir=inputs.output,
        count=options.count,
        format=options.format,
        lesion_type=list(options.lesion_types) or None,
        attributes=synth.attributes or None,
        seed=synth.seed,
        progress=progress,
        is_cancelled=is_cancelled,
        organ_masks=inputs.organ_masks,
        workers=options.workers,
        organ_label=options.organ_label,
        backend=synth.backend,
        backend_options=synth.backend_options(),
        scheduler=options.scheduler or None,
        notify=notify,
    )
    return Dataset(summary)


def dataset_options(synth: SynthOptions, **fields) -> DatasetOptions:
    """DatasetOptions around ``synth`` (its attributes, seed and backend serve every case)."""
    return replace(DatasetOptions(synth=synth), **fields)


OPTIONS, INPUTS = DatasetOptions, DatasetInputs
