"""Synthesise: one lesion described by attributes, inserted into a copy of a CT.

``pasta synth``, ``pasta batch synth`` and the Synth module's Preview (through the task process)
build a :class:`SynthOptions` and call :func:`run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.boxes import VoxelBox
    from ..geometry.grid import Grid
    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from ..synthesis.engine import SynthesisResult


@dataclass(frozen=True)
class SynthOptions:
    """What the user chose for a synthetic lesion (every front end builds one)."""

    lesion_type: str = ""  # one of the PASTA lesion types; "" = from the description
    attributes: str | dict = ""  # free text, or a mapping of attributes (a PASTA-Gen type.json too)
    seed: int = 0  # the same seed gives the same lesion
    box: tuple[float, ...] | None = None  # R1,A1,S1,R2,A2,S2 in RAS mm: where the lesion goes
    box_ijk: tuple[int, ...] | None = None  # or two opposite corner voxels I1,J1,K1,I2,J2,K2 (inclusive)
    organ_label: int | None = None  # the organ's value in the organ mask
    backend: str = "procedural"  # procedural, lesiondiffusion or lesiondiffusion-hybrid
    steps: int | None = None  # lesiondiffusion: DDIM steps per network
    allow_slow: bool = False  # lesiondiffusion: run even when the estimate on this CPU is long
    device: str = "auto"  # lesiondiffusion: auto, cuda or cpu
    precision: str = "auto"  # lesiondiffusion: auto, fp32, fp16 or bf16
    ld_models: str = ""  # lesiondiffusion: a folder of its checkpoints instead of the model store
    text_encoder: str = ""  # lesiondiffusion: a BiomedCLIP folder
    labels: str = ""  # the source CT's segmentation (a label map on its grid): the output mask is it plus the lesion

    def check(self) -> None:
        if not self.lesion_type and not (self.attributes.strip() if isinstance(self.attributes, str) else self.attributes):
            raise PastaError("choose a lesion type or describe the lesion")
        if self.box is not None and self.box_ijk is not None:
            raise PastaError(f"give {option('box')} or {option('box_ijk')}, not both")
        if self.box is not None:
            numbers(self.box, option("box"))
        if self.box_ijk is not None:
            numbers(self.box_ijk, option("box_ijk"))

    def backend_options(self) -> dict:
        """The options of the backend (none for the procedural one)."""
        if self.backend == "procedural":
            return {}
        return {
            "steps": self.steps,
            "allow_slow": self.allow_slow,
            "device": self.device,
            "precision": self.precision,
            "models": self.ld_models or None,
            "text_encoder": self.text_encoder or None,
        }

    def backend_settings(self) -> dict:
        """What of the backend decides a lesion (a cohort's fingerprint): not where or how fast it runs."""
        return {k: v for k, v in self.backend_options().items() if k not in ("allow_slow", "device", "precision")}


@dataclass
class SynthInputs:
    """The CT and the organ labels: paths (files or DICOM folders) or Volumes."""

    image: str | Path | Volume
    organ_mask: str | Path | Volume | None = None
    organ_names: dict | None = None  # label value -> organ name (segments of a scene)
    roi_box: VoxelBox | None = None  # a box on the image's grid (a Slicer ROI); wins over the options' box


@dataclass
class SynthesizedCase:
    image: Volume  # the CT as read
    result: SynthesisResult  # the image with the lesion, labels organ 1 / lesion 2
    report: dict  # our report.json: plan, measurements, type.json, source
    labels: Volume | None = None  # the case's label map: the source's labels (options.labels) + the lesion; None: result.labels
    sidecar: dict | None = None  # the label map's sidecar: names, the source's model and candidates, the synthetic label

    @property
    def mask(self) -> Volume:
        """The label map written as the case's mask."""
        return self.labels if self.labels is not None else self.result.labels

    def to_dict(self) -> dict:
        from ..terminology import segments_to_dict

        return {
            "segments": segments_to_dict(self.result.segments),
            "report": self.result.report,
            "type_json": self.result.type_json,
            "plan": self.result.plan.describe(),
            "not_understood": list(self.result.not_understood),
            "sidecar": self.sidecar,
        }

    def volumes(self) -> dict:
        return {"image": self.result.image, "labels": self.result.labels}


def numbers(text: str | Sequence[float], what: str, count: int = 6) -> list:
    """``count`` finite numbers from comma-separated text (or a sequence)."""
    import math

    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [float(v) for v in str(text).replace(" ", "").split(",")]
        except ValueError:
            raise PastaError(f"{what} needs {count} comma-separated numbers, got {text!r}") from None
    if len(values) != count:
        raise PastaError(f"{what} needs {count} comma-separated numbers, got {len(values)}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise PastaError(f"{what} needs {count} finite numbers, got {text!r}")
    return [float(v) for v in values]


def box_from_ijk(text: str | Sequence[float], grid: Grid) -> VoxelBox:
    """A VoxelBox from two opposite corner voxels I1,J1,K1,I2,J2,K2 (0-based, inclusive)."""
    from ..geometry.boxes import VoxelBox

    values = numbers(text, option("box_ijk"))
    if any(v != int(v) for v in values):
        raise PastaError(f"{option('box_ijk')} takes whole voxel indices")
    a, b = [int(v) for v in values[:3]], [int(v) for v in values[3:]]
    lo, hi = [min(x, y) for x, y in zip(a, b)], [max(x, y) for x, y in zip(a, b)]
    size = grid.size_ijk
    if any(h < 0 for h in hi) or any(l >= n for l, n in zip(lo, size)):
        raise PastaError(f"{option('box_ijk')} lies outside the volume (0..{size[0] - 1}, 0..{size[1] - 1}, 0..{size[2] - 1})")
    return VoxelBox((lo[2], lo[1], lo[0]), (hi[2] + 1, hi[1] + 1, hi[0] + 1))


def read_attributes_file(path: str | Path) -> dict:
    """A JSON object of attributes (or a PASTA-Gen type.json)."""
    from ..fileio.jsonfile import read_json_object
    from ..fileio.readers import require_regular_file

    return read_json_object(require_regular_file(path, "attributes file"))


def backend(options: SynthOptions) -> object:
    """The options' synthesis backend, checked usable (unavailable or too slow: one line, before any work)."""
    from ..synthesis.backends import get_backend

    return get_backend(options.backend, **options.backend_options())


def run(
    options: SynthOptions,
    inputs: SynthInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    engine: object | None = None,
) -> SynthesizedCase:
    """Insert one lesion into the CT (``engine``: a backend already made, as a worker keeps it).

    Where: the inputs' box, else the options' ``box`` (RAS) or ``box_ijk``; none: a place in the organ."""
    from ..fileio import as_volume
    from ..geometry.boxes import box_from_ras_bounds
    from ..synthesis import synthesize_lesion

    options.check()
    volume = as_volume(inputs.image)
    roi_box = inputs.roi_box
    if roi_box is None and options.box is not None:
        roi_box = box_from_ras_bounds(numbers(options.box, option("box")), volume.grid)
    elif roi_box is None and options.box_ijk is not None:
        roi_box = box_from_ijk(options.box_ijk, volume.grid)
    organ = as_volume(inputs.organ_mask, is_label=True) if inputs.organ_mask is not None else None
    result = synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        organ_names={int(k): v for k, v in inputs.organ_names.items()} if inputs.organ_names else None,
        roi_box=roi_box,
        lesion_type=options.lesion_type or None,
        attributes=options.attributes or None,
        seed=options.seed,
        progress=progress,
        is_cancelled=is_cancelled,
        organ_label=options.organ_label,
        backend=engine if engine is not None else backend(options),
    )
    source = "" if hasattr(inputs.image, "array") else str(inputs.image)
    report = dict(result.report, type_json=result.type_json, source=source)
    labels, sidecar = case_labels(result, volume, options.labels)
    if options.labels:
        report["source_labels"] = str(options.labels)
    return SynthesizedCase(volume, result, report, labels, sidecar)


def case_labels(result: SynthesisResult, volume: Volume, source_labels: str | Path = "") -> tuple:
    """(label map or None, its sidecar) of the synthetic case. With ``source_labels`` (a label map
    on the CT's grid, named by its own sidecar or ``.seg.nrrd``): its labels, the lesion's voxels
    taken out of them, plus the lesion as a new label (one above the largest); else the
    synthesis's own labels (organ 1, lesion 2). The sidecar names every label and marks the
    synthetic one; the source's model and candidates carry over."""
    import numpy as np

    from ..fileio import as_volume
    from ..inference.sidecar import read_sidecar
    from ..report.export import label_names_of
    from ..synthetic import record_from_report, synthetic_name
    from ..terminology import segment_info

    record = record_from_report(result.report)
    lesion_info = result.segments[2]
    entry = {"name": synthetic_name(lesion_info.name), "terminology": lesion_info.terminology, "synthetic": record}
    if not source_labels:
        labels = {str(v): {"name": info.name, "terminology": info.terminology} for v, info in result.segments.items()}
        return None, {"labels": {**labels, "2": entry}}
    source = as_volume(source_labels, is_label=True)
    volume.check_matches(source, "source segmentation (--labels)")
    names, _models, _where = label_names_of(source, source_labels)
    array = np.asarray(source.array)
    present = sorted(int(v) for v in np.unique(array) if v)
    value = max(present + [1]) + 1
    out = np.where(result.lesion, value, array).astype(np.uint16 if value > 255 else np.uint8)
    recorded = read_sidecar(source_labels)
    sidecar = {key: recorded[key] for key in ("model", "candidates") if key in recorded}
    if not names:  # nothing names the source's labels: PASTA-Gen's convention 1 = organ, 2 = lesion, as pasta report reads them
        organ = result.segments[1].name if 1 in result.segments else segment_info(result.plan.organ).name
        names = {v: {1: organ, 2: lesion_info.name}.get(v, f"label {v}") for v in present}
    sidecar["labels"] = {**{str(v): {"name": names.get(v, f"label {v}")} for v in present}, str(value): entry}
    return source.with_array(out, is_label=True), sidecar


def write_synthesis(
    case: SynthesizedCase,
    out_image: str | Path,
    out_mask: str | Path,
    out_report: str | Path,
    out_type_json: str | Path | None = None,
    overwrite: bool = False,
) -> list:
    """Write the image with the lesion, its labels with their sidecar (which label is synthetic),
    our report (and the PASTA-Gen type.json) together: all of them or none."""
    return write_synthesis_files(
        case.result.image,
        case.mask,
        case.report,
        case.result.type_json,
        out_image,
        out_mask,
        out_report,
        out_type_json,
        overwrite,
        case.sidecar,
    )


def write_synthesis_files(
    image: Volume,
    labels: Volume,
    report: dict,
    type_json: dict,
    out_image: str | Path,
    out_mask: str | Path,
    out_report: str | Path,
    out_type_json: str | Path | None = None,
    overwrite: bool = False,
    sidecar: dict | None = None,
) -> list:
    """:func:`write_synthesis` from its parts (what a PASTA server sends back too)."""
    from ..fileio import write_volume
    from ..fileio.atomic import atomic_outputs
    from ..inference.sidecar import sidecar_path, write_sidecar

    outputs = [out_image, out_mask, out_report, sidecar_path(out_mask)] + ([out_type_json] if out_type_json else [])
    with atomic_outputs(*outputs, overwrite=overwrite) as temps:
        write_volume(image, temps[0])
        write_volume(labels, temps[1])
        temps[2].write_text(json.dumps(report, indent=1), encoding="utf-8")
        write_sidecar(temps[3], sidecar or {})
        if out_type_json:
            temps[4].write_text(json.dumps(type_json), encoding="utf-8")
    return [Path(p) for p in outputs]


OPTIONS, INPUTS = SynthOptions, SynthInputs
