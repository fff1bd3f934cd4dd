"""One synthetic lesion in a CT (what ``pasta synth`` does for one image)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..geometry.boxes import VoxelBox
    from ..geometry.grid import Grid


@dataclass
class SynthesizedCase:
    image: object  # the CT as read
    result: object  # the SynthesisResult (image with the lesion, labels organ 1 / lesion 2)
    report: dict  # our report.json: plan, measurements, type.json, source


def numbers(text: str | Sequence[float], what: str, count: int = 6) -> list:
    """``count`` numbers from comma-separated text (or a sequence)."""
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        try:
            values = [float(v) for v in str(text).replace(" ", "").split(",")]
        except ValueError:
            raise PastaError(f"{what} needs {count} comma-separated numbers, got {text!r}") from None
    if len(values) != count:
        raise PastaError(f"{what} needs {count} comma-separated numbers, got {len(values)}")
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
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PastaError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PastaError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PastaError(f"{path} must hold a JSON object of attributes")
    return data


def synth_case(
    image: str | Path,
    *,
    seed: int | None,
    attributes: str | dict | None = None,
    box: str | Sequence[float] | None = None,
    box_ijk: str | Sequence[float] | None = None,
    lesion_type: str | None = None,
    organ_mask: str | Path | None = None,
    organ_label: int | None = None,
    backend: str = "procedural",
    backend_options: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> SynthesizedCase:
    """Insert one lesion into the CT ``image`` (a file or DICOM folder).

    ``box`` (RAS corners R1,A1,S1,R2,A2,S2) or ``box_ijk`` (corner voxels) says where; neither:
    a place in the organ. ``attributes``: free text or a mapping; ``backend``: a backend name
    (with ``backend_options``) or a constructed backend."""
    from ..fileio import read_volume
    from ..geometry.boxes import box_from_ras_bounds
    from ..synthesis import synthesize_lesion

    volume = read_volume(image)
    roi_box = None
    if box is not None and box != "":
        roi_box = box_from_ras_bounds(numbers(box, option("box")), volume.grid)
    elif box_ijk is not None and box_ijk != "":
        roi_box = box_from_ijk(box_ijk, volume.grid)
    organ = read_volume(organ_mask, is_label=True) if organ_mask else None
    result = synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        roi_box=roi_box,
        lesion_type=lesion_type,
        attributes=attributes,
        seed=seed,
        progress=progress,
        is_cancelled=is_cancelled,
        organ_label=organ_label,
        backend=backend,
        backend_options=backend_options,
    )
    report = dict(result.report, type_json=result.type_json, source=str(image))
    return SynthesizedCase(volume, result, report)


def write_synthesis(
    case: SynthesizedCase,
    out_image: str | Path,
    out_mask: str | Path,
    out_report: str | Path,
    out_type_json: str | Path | None = None,
    overwrite: bool = False,
) -> list:
    """Write the image with the lesion, its labels, our report (and the PASTA-Gen type.json)
    together: all of them or none."""
    from ..fileio import write_volume
    from ..fileio.atomic import atomic_outputs

    outputs = [out_image, out_mask, out_report] + ([out_type_json] if out_type_json else [])
    with atomic_outputs(*outputs, overwrite=overwrite) as temps:
        write_volume(case.result.image, temps[0])
        write_volume(case.result.labels, temps[1])
        temps[2].write_text(json.dumps(case.report, indent=1), encoding="utf-8")
        if out_type_json:
            temps[3].write_text(json.dumps(case.result.type_json), encoding="utf-8")
    return [Path(p) for p in outputs]
