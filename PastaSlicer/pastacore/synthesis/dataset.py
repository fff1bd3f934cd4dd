"""Synthetic training datasets: many lesions into background CTs.

Layouts:

- ``pasta-gen`` (PASTA-Gen-30K): ``{Organ}/{Lesion}/{id}/img.nii.gz, label.nii.gz
  (organ 1, lesion 2), total.nii.gz (organ segmentation), type.json`` plus our
  ``report.json``; images on PASTA's 1 mm grid.
- ``nnunet`` (nnU-Net v2 raw): ``imagesTr/case_0000_0000.nii.gz``,
  ``labelsTr/case_0000.nii.gz``, ``dataset.json``; reports in ``reports/``.

Case ``n`` uses background ``n mod B``, lesion type ``n mod T`` and its own seed derived
from (seed, n), so a dataset is reproducible with any number of workers and an interrupted
run resumes where it stopped: finished cases are skipped (each is written atomically).
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..errors import CancelledError, PastaError
from . import schema as S

FORMATS = ("pasta-gen", "nnunet")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")
MASK_HINTS = ("_seg", "_total", "_organs", "_organ", "_mask", "_label", "_labels")
CASE_FILES = ("img.nii.gz", "label.nii.gz", "total.nii.gz", "type.json", "report.json")  # of a pasta-gen case folder


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _looks_like_mask(path: Path) -> bool:
    stem = _stem(path).lower()
    return any(stem.endswith(h) or f"{h}_" in stem for h in MASK_HINTS) or "label" in stem


def find_backgrounds(backgrounds) -> list:
    """Image files from a folder, a file, or a list of either (masks and labels left out)."""
    items = [backgrounds] if isinstance(backgrounds, (str, os.PathLike)) else list(backgrounds or [])
    found = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if _is_image(p) and not _looks_like_mask(p))
        elif _is_image(path):
            found.append(path)
        else:
            raise PastaError(f"background {path} is neither an image file nor a folder")
    if not found:
        raise PastaError(f"no background CT images found in {', '.join(map(str, items)) or 'nothing'}")
    return found


def match_masks(images: list, organ_masks) -> dict:
    """{image path: organ mask path or None}; masks match by file name (same stem, or stem + _seg etc.)."""
    items = [organ_masks] if isinstance(organ_masks, (str, os.PathLike)) else list(organ_masks or [])
    candidates = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            candidates += [p for p in path.iterdir() if _is_image(p)]
        elif _is_image(path):
            candidates.append(path)
        else:
            raise PastaError(f"organ mask {path} is neither an image file nor a folder")
    if len(items) and len(candidates) == len(images) and all(Path(i).is_file() for i in items) and len(items) == len(images):
        return dict(zip(images, candidates))  # given one by one, in the same order
    own = {Path(i).resolve() for i in images}
    candidates = [p for p in candidates if p.resolve() not in own]
    by_stem = {_stem(p): p for p in candidates}
    result = {}
    for image in images:
        stem = _stem(image)
        neighbours = {_stem(p): p for p in image.parent.iterdir() if _is_image(p) and p != image}
        match = by_stem.get(stem)
        for hint in MASK_HINTS:
            match = match or by_stem.get(stem + hint) or (neighbours.get(stem + hint) if hint != "_label" else None)
        result[image] = match
    return result


@functools.lru_cache(maxsize=2)
def _background(image_path: str, mask_path: str | None):
    from ..io import read_volume
    from ..io.standardize import standardize

    volume = standardize(read_volume(image_path), is_label=False).volume
    mask = standardize(read_volume(mask_path, is_label=True), is_label=True).volume if mask_path else None
    return volume, mask


@functools.lru_cache(maxsize=2)
def _auto_organ(image_path: str, organ: str):
    """An organ found without a model (the lungs) on the standardised background, cached."""
    from ..io import Volume
    from .engine import auto_organ

    volume, _ = _background(image_path, None)
    mask = auto_organ(volume, S.lesion_type(next(k for k in S.lesion_types() if S.lesion_type(k).organ == organ)))
    return None if mask is None else Volume(mask.astype(np.uint8), volume.grid, is_label=True)


def case_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] & 0x7FFFFFFF)


def sample_attributes(kind: S.LesionType, seed: int) -> dict:
    """A consistent variation of the type's defaults, drawn from its ``variants`` (for diverse datasets)."""
    rng = np.random.default_rng([seed, 17])
    for _ in range(20):
        chosen = {key: options[int(rng.integers(len(options)))] for key, options in kind.variants.items()}
        try:
            S.check_consistency(kind, S.merged_attributes(kind, chosen))
        except PastaError:
            continue
        return chosen
    return {}


def case_paths(output: Path, layout: str, index: int, kind: S.LesionType) -> dict:
    if layout == "pasta-gen":
        folder = output / kind.dataset_folder / str(index)
        return {"folder": folder, "image": folder / "img.nii.gz", "label": folder / "label.nii.gz",
                "total": folder / "total.nii.gz", "type": folder / "type.json", "report": folder / "report.json"}
    name = f"case_{index:04d}"
    return {"image": output / "imagesTr" / f"{name}_0000.nii.gz", "label": output / "labelsTr" / f"{name}.nii.gz",
            "report": output / "reports" / f"{name}.json", "type": output / "reports" / f"{name}_type.json"}


def is_finished(paths: dict) -> bool:
    return all(paths[k].is_file() for k in ("image", "label", "report", "type"))


def make_case(spec: dict) -> dict:
    """Synthesise and write one case (runs in a worker process)."""
    from ..io import write_volume
    from ..io.atomic import atomic_directory, atomic_outputs
    from .engine import synthesize_lesion

    kind = S.lesion_type(spec["lesion_type"])
    paths = case_paths(Path(spec["output"]), spec["format"], spec["index"], kind)
    if is_finished(paths):
        return {"index": spec["index"], "status": "skipped"}
    try:
        volume, mask = _background(spec["image"], spec["mask"])
        if mask is None:
            mask = _auto_organ(spec["image"], kind.organ)
        attributes = spec["attributes"] if spec["attributes"] is not None else sample_attributes(kind, spec["seed"])
        result = synthesize_lesion(volume=volume, organ_labels=mask, lesion_type=kind.key, attributes=attributes,
                                   seed=spec["seed"], organ_label=spec.get("organ_label"),
                                   backend=spec.get("backend", "procedural"), backend_options=spec.get("backend_options"))
    except CancelledError:
        raise
    except PastaError as exc:
        return {"index": spec["index"], "status": "failed", "error": str(exc), "background": spec["image"]}
    image = result.image.with_array(np.round(result.image.array).astype(np.int16))
    report = dict(result.report, background=Path(spec["image"]).name, case=spec["index"])
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
    return {"index": spec["index"], "status": "written", "lesion_type": kind.key,
            "seconds": result.report["seconds"], "background": spec["image"]}


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
    from ..io.atomic import atomic_outputs

    path = output / "dataset.json"
    with atomic_outputs(path, overwrite=True) as temp:
        temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def _output_folder(output_dir) -> Path:
    """The dataset folder, created (not its parents) after the same checks as every output."""
    from ..io.atomic import check_output_dir

    output = check_output_dir(output_dir, overwrite=True)
    output.mkdir(exist_ok=True)
    return output


def generate_dataset(backgrounds_dir=None, output_dir=None, count: int = 10, format: str = "pasta-gen",
                     lesion_type=None, attributes=None, seed: int = 0, progress=None, is_cancelled=None,
                     organ_masks=None, workers: int = 1, organ_label=None, backend: str = "procedural",
                     backend_options: dict | None = None) -> dict:
    """Write ``count`` synthetic cases; returns a summary (written, skipped, failed, output).

    ``backend`` / ``backend_options``: the synthesis backend of every case (see
    :func:`~pastacore.synthesis.backends.get_backend`); checked before any case starts."""
    report = progress or (lambda f, m="": None)
    cancelled = is_cancelled or (lambda: False)
    if format not in FORMATS:
        raise PastaError(f"unknown dataset format {format!r}; choose one of: {', '.join(FORMATS)}")
    if output_dir is None or str(output_dir) == "":
        raise PastaError("choose an output folder for the dataset")
    count = int(count)
    if count < 1:
        raise PastaError("the number of cases must be at least 1")
    workers = max(1, int(workers or 1))
    from .backends import get_backend

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
        from .engine import read_attributes

        read_attributes(attributes, t)
    output = _output_folder(output_dir)
    specs = []
    for index in range(count):
        image = images[index % len(images)]
        mask = masks.get(image)
        specs.append({"index": index, "image": str(image), "mask": str(mask) if mask else None,
                      "lesion_type": types[index % len(types)], "attributes": attributes,
                      "seed": case_seed(seed, index), "format": format, "output": str(output),
                      "organ_label": organ_label, "backend": backend, "backend_options": backend_options})
    results = []

    def done(result):
        results.append(result)
        report(len(results) / count, f"case {len(results)}/{count}")

    report(0.0, f"{count} cases")
    if workers == 1:
        for spec in specs:
            if cancelled():
                raise CancelledError("cancelled; finished cases were kept and the next run resumes after them")
            done(make_case(spec))
    else:
        import multiprocessing

        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(make_case, spec) for spec in specs]
            try:
                for future in as_completed(futures):
                    done(future.result())
                    if cancelled():
                        raise CancelledError("cancelled; finished cases were kept and the next run resumes after them")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    results.sort(key=lambda r: r["index"])
    failed = [r for r in results if r["status"] == "failed"]
    finished = [s for s in specs if is_finished(case_paths(output, format, s["index"], S.lesion_type(s["lesion_type"])))]
    if format == "nnunet":
        write_dataset_json(output, len(finished), types)
    summary = {"output": str(output), "format": format, "requested": count,
               "written": sum(r["status"] == "written" for r in results),
               "skipped": sum(r["status"] == "skipped" for r in results),
               "failed": failed, "finished": len(finished), "types": types}
    if failed and len(failed) == count:
        raise PastaError(f"no case could be made: {failed[0]['error']}")
    return summary
