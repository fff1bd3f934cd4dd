"""Synthetic training datasets: the layouts and one case (the dataset action runs many of them).

Layouts:

- ``pasta-gen`` (PASTA-Gen-30K): ``{Organ}/{Lesion}/{id}/img.nii.gz, label.nii.gz
  (organ 1, lesion 2), total.nii.gz (organ segmentation), type.json`` plus our
  ``report.json``; images on PASTA's 1 mm grid.
- ``nnunet`` (nnU-Net v2 raw): ``imagesTr/case_0000_0000.nii.gz``,
  ``labelsTr/case_0000.nii.gz``, ``dataset.json``; reports in ``reports/``.

Case ``n`` uses background ``n mod B``, lesion type ``n mod T`` and its own seed derived
from (seed, n), so a dataset is reproducible with any number of workers. The cases run on
the cohort engine (:mod:`pastacore.cohort.engine`): in this process, or on Dask workers
(``workers`` > 1, or a ``scheduler`` address); ``manifest.sqlite`` records each case (its
background and mask hashes, parameters, status, timings) and ``cohort.csv``/``.parquet`` list
the lesions. An interrupted run resumes where it stopped: finished cases whose background,
mask and parameters are unchanged are skipped (each case is written atomically).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cohort.table import synthetic_row
from ..errors import PastaError
from ..fileio.discover import MASK_HINTS, find_images, image_stem, is_image
from ..synthesis import schema as S
from ..synthesis.schema import sample_attributes

if TYPE_CHECKING:
    from collections.abc import Sequence


FORMATS = ("pasta-gen", "nnunet")
CASE_FILES = ("img.nii.gz", "label.nii.gz", "total.nii.gz", "type.json", "report.json")  # of a pasta-gen case folder


def find_backgrounds(backgrounds: str | Path | Sequence[str | Path]) -> list:
    """Image files from a folder, a file, or a list of either (masks and labels left out)."""
    return find_images(backgrounds, what="background")


def match_masks(images: list, organ_masks: str | Path | Sequence[str | Path] | None) -> dict:
    """{image path: organ mask path or None}; masks match by file name (same stem, or stem + _seg etc.)."""
    items = [organ_masks] if isinstance(organ_masks, (str, os.PathLike)) else list(organ_masks or [])
    candidates = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            candidates += [p for p in path.iterdir() if is_image(p)]
        elif is_image(path):
            candidates.append(path)
        else:
            raise PastaError(f"organ mask {path} is neither an image file nor a folder")
    if len(items) and len(candidates) == len(images) and all(Path(i).is_file() for i in items) and len(items) == len(images):
        return dict(zip(images, candidates))  # given one by one, in the same order
    own = {Path(i).resolve() for i in images}
    candidates = [p for p in candidates if p.resolve() not in own]
    by_stem = {image_stem(p): p for p in candidates}
    result = {}
    for image in images:
        stem = image_stem(image)
        neighbours = {image_stem(p): p for p in image.parent.iterdir() if is_image(p) and p != image}
        match = by_stem.get(stem)
        for hint in MASK_HINTS:
            match = match or by_stem.get(stem + hint) or (neighbours.get(stem + hint) if hint != "_label" else None)
        result[image] = match
    return result


@functools.lru_cache(maxsize=2)
def _background(image_path: str, mask_path: str | None):
    from ..fileio import read_volume
    from ..geometry.standardize import standardize

    volume = standardize(read_volume(image_path), is_label=False).volume
    mask = standardize(read_volume(mask_path, is_label=True), is_label=True).volume if mask_path else None
    return volume, mask


@functools.lru_cache(maxsize=2)
def _auto_organ(image_path: str, organ: str):
    """An organ found without a model (the lungs) on the standardised background, cached."""
    from ..geometry import Volume
    from ..synthesis.engine import auto_organ

    volume, _ = _background(image_path, None)
    mask = auto_organ(volume, S.lesion_type(next(k for k in S.lesion_types() if S.lesion_type(k).organ == organ)))
    return None if mask is None else Volume(mask.astype(np.uint8), volume.grid, is_label=True)


def case_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] & 0x7FFFFFFF)


def case_paths(output: Path, layout: str, index: int, kind: S.LesionType) -> dict:
    if layout == "pasta-gen":
        folder = output / kind.dataset_folder / str(index)
        return {
            "folder": folder,
            "image": folder / "img.nii.gz",
            "label": folder / "label.nii.gz",
            "total": folder / "total.nii.gz",
            "type": folder / "type.json",
            "report": folder / "report.json",
        }
    name = f"case_{index:04d}"
    return {
        "image": output / "imagesTr" / f"{name}_0000.nii.gz",
        "label": output / "labelsTr" / f"{name}.nii.gz",
        "report": output / "reports" / f"{name}.json",
        "type": output / "reports" / f"{name}_type.json",
    }


def is_finished(paths: dict) -> bool:
    return all(paths[k].is_file() for k in ("image", "label", "report", "type"))


def case_name(index: int) -> str:
    return f"case_{index:04d}"


def make_case(spec: dict) -> dict:
    """Synthesise and write one case; returns ``{"outputs": {path relative to the dataset:
    size}, "rows": [its cohort-table row]}``. A case that cannot be made raises PastaError."""
    from ..fileio import write_volume
    from ..fileio.atomic import atomic_directory, atomic_outputs
    from ..synthesis.engine import synthesize_lesion

    kind = S.lesion_type(spec["lesion_type"])
    output = Path(spec["output"])
    paths = case_paths(output, spec["format"], spec["index"], kind)
    volume, mask = _background(spec["image"], spec["mask"])
    if mask is None:
        mask = _auto_organ(spec["image"], kind.organ)
    attributes = spec["attributes"] if spec["attributes"] is not None else sample_attributes(kind, spec["seed"])
    result = synthesize_lesion(
        volume=volume,
        organ_labels=mask,
        lesion_type=kind.key,
        attributes=attributes,
        seed=spec["seed"],
        organ_label=spec.get("organ_label"),
        backend=spec.get("backend", "procedural"),
        backend_options=spec.get("backend_options"),
    )
    image = result.image.with_array(np.round(result.image.array).astype(np.int16))
    report = dict(result.report, background=Path(spec["image"]).name, case=spec["index"], fingerprint=spec.get("fingerprint"))
    if spec["format"] == "pasta-gen":
        paths["folder"].parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(paths["folder"], overwrite=True, owned=CASE_FILES) as temp:
            write_volume(image, temp / "img.nii.gz")
            write_volume(result.labels, temp / "label.nii.gz")
            total = mask if mask is not None else result.organ
            if total is not None:
                write_volume(total, temp / "total.nii.gz")
            (temp / "type.json").write_text(json.dumps(result.type_json), encoding="utf-8")
            (temp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    else:
        for key in ("image", "label", "report"):
            paths[key].parent.mkdir(parents=True, exist_ok=True)
        with atomic_outputs(paths["image"], paths["type"], paths["report"], overwrite=True) as temps:
            write_volume(image, temps[0])
            temps[1].write_text(json.dumps(result.type_json), encoding="utf-8")
            temps[2].write_text(json.dumps(report, indent=1), encoding="utf-8")
        write_volume(result.labels, paths["label"], overwrite=True)  # last: marks the case finished
    return {"outputs": case_sizes(output, paths), "rows": [synthetic_row(case_name(spec["index"]), report, report["background"])]}


def case_sizes(output: Path, paths: dict) -> dict:
    files = [p for k, p in paths.items() if k != "folder" and p.is_file()]
    return {p.relative_to(output).as_posix(): p.stat().st_size for p in files}


def write_dataset_json(output: Path, count: int, types: list) -> Path:
    """nnU-Net v2 ``dataset.json`` for the finished cases."""
    data = {
        "name": "PASTA synthetic lesions",
        "description": f"Synthetic lesions ({', '.join(types)}) made by pastacore; research use only",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": count,
        "file_ending": ".nii.gz",
    }
    from ..fileio.atomic import atomic_outputs

    path = output / "dataset.json"
    with atomic_outputs(path, overwrite=True) as temp:
        temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def output_folder(output_dir: str | Path) -> Path:
    """The dataset folder, created (not its parents) after the same checks as every output."""
    from ..fileio.atomic import check_output_dir

    output = check_output_dir(output_dir, overwrite=True)
    output.mkdir(exist_ok=True)
    return output
