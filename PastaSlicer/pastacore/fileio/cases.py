"""Lists of cases: INPUTS as a folder, a glob, image files, or a CSV (the one reader of
``pasta batch``, ``pasta report --cases`` and ``pasta finetune --cases``).

A CSV has one case per row and a header naming its columns (paths relative to the CSV's
folder): ``image`` (required), ``case_id``, ``organ_mask``, ``organ_label``, ``seg`` (the label
map: what a report measures, what fine-tuning learns; ``label`` is read as ``seg`` too),
``box`` (R1,A1,S1,R2,A2,S2 in RAS mm), ``box_ijk``, ``attributes`` (text, or a JSON object),
``lesion_type``, ``seed``, ``split`` (train or val, for fine-tuning). Other columns are
ignored (and named). Without a CSV, each image file (masks and labels left out) or DICOM
series folder is a case named after it; when label maps are needed, the one beside each image
(``<name>_seg.nii.gz``, ``_label``, ``_mask`` ...).
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..fileio.discover import IMAGE_SUFFIXES, MASK_HINTS, find_images, image_stem

if TYPE_CHECKING:
    from collections.abc import Sequence


COLUMNS = (
    "image",
    "case_id",
    "organ_mask",
    "organ_label",
    "seg",
    "label",
    "box",
    "box_ijk",
    "attributes",
    "lesion_type",
    "seed",
    "split",
)
SPLITS = ("train", "val")
PATH_COLUMNS = ("image", "organ_mask", "seg")
RESERVED = {"manifest.sqlite", "manifest.lock", "cohort.csv", "cohort.parquet", "manifest.sqlite-journal"}
MAX_ID = 100


@dataclass
class CaseRow:
    case_id: str
    image: str
    organ_mask: str | None = None
    organ_label: int | None = None
    seg: str | None = None
    box: str | None = None
    box_ijk: str | None = None
    attributes: object = None
    lesion_type: str | None = None
    seed: int | None = None
    split: str = "train"  # train or val (fine-tuning)


def read_inputs(items: str | Path | Sequence[str | Path], need_seg: bool = False, unique_ids: bool = True) -> tuple:
    """``(rows, ignored CSV columns)`` from the INPUTS of ``pasta batch``; checks every row
    before any work (a missing file is left to its case: it fails alone). ``unique_ids``: each
    case names an output folder, so two cases of one name are refused (fine-tuning's are not)."""
    items = [str(i) for i in (items if isinstance(items, (list, tuple)) else [items])]
    if len(items) == 1 and items[0].lower().endswith(".csv"):
        rows, ignored = _read_csv(Path(items[0]))
    else:
        rows, ignored = _from_files(_expand(items), need_seg), []
    if need_seg:
        missing = [r.case_id for r in rows if not r.seg]
        if missing:
            raise PastaError(f"case {missing[0]} has no segmentation to measure: give a CSV with a seg column")
    if unique_ids:
        _check_ids(rows)
    return rows, ignored


def _expand(items) -> list:
    paths = []
    for item in items:
        if Path(item).exists() or not glob.has_magic(item):
            paths.append(Path(item))
            continue
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            raise PastaError(f"nothing matches {item}")
        paths += [Path(m) for m in matches]
    return paths


def _partner(image: Path) -> str | None:
    """The label map beside ``image``: same name plus ``_seg``, ``_label``, ``_mask`` ..."""
    stem = image_stem(image)
    for hint in MASK_HINTS:
        for suffix in IMAGE_SUFFIXES:
            candidate = image.with_name(stem + hint + suffix)
            if candidate.is_file():
                return str(candidate)
    return None


def _from_files(paths, need_seg: bool) -> list:
    for path in paths:
        if not path.exists():
            raise PastaError(f"input {path} does not exist")
    images = find_images(paths, dicom_folders=True, what="input")
    return [
        CaseRow(case_id=image_stem(p) if p.is_file() else p.name, image=str(p), seg=_partner(p) if need_seg else None)
        for p in images
    ]


def _read_csv(path: Path) -> tuple:
    from .readers import require_regular_file

    require_regular_file(path, "case list")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            records = list(reader)
    except OSError as exc:
        raise PastaError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error):
        raise PastaError(f"{path} is not a UTF-8 CSV file") from None
    if "image" not in header:
        raise PastaError(f"{path} needs a header row with at least an image column (known columns: {', '.join(COLUMNS)})")
    if not records:
        raise PastaError(f"{path} lists no case")
    folder = path.resolve().parent
    rows = []
    for number, record in enumerate(records, start=2):
        record = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
        rows.append(_row(record, folder, f"{path.name} line {number}"))
    return rows, [h for h in header if h not in COLUMNS]


def _row(record: dict, folder: Path, where: str) -> CaseRow:
    def path_of(column):
        value = record.get(column) or ""
        if not value:
            return None
        return str(folder / value) if not Path(value).is_absolute() else value

    image = path_of("image")
    if not image:
        raise PastaError(f"{where}: the image column is empty")
    case_id = record.get("case_id") or (image_stem(image) if not Path(image).is_dir() else Path(image).name)
    return CaseRow(
        case_id=case_id,
        image=image,
        organ_mask=path_of("organ_mask"),
        organ_label=_integer(record.get("organ_label"), "organ_label", where),
        seg=path_of("seg") or path_of("label"),
        box=record.get("box") or None,
        box_ijk=record.get("box_ijk") or None,
        attributes=_attributes(record.get("attributes"), where),
        lesion_type=record.get("lesion_type") or None,
        seed=_integer(record.get("seed"), "seed", where),
        split=_split(record.get("split"), where),
    )


def _split(text, where) -> str:
    split = (text or "train").strip().lower()
    if split not in SPLITS:
        raise PastaError(f"{where}: split is {' or '.join(SPLITS)}, got {split!r}")
    return split


def _integer(text, column, where):
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise PastaError(f"{where}: {column} must be a whole number, got {text!r}") from None
    if value < 0:
        raise PastaError(f"{where}: {column} must not be negative, got {value}")
    return value


def _attributes(text, where):
    """Free text, or a JSON object of attributes when the cell starts with ``{``."""
    if not text:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PastaError(f"{where}: the attributes cell is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise PastaError(f"{where}: the attributes cell must hold a JSON object")
        return value
    return text


def _check_ids(rows) -> None:
    seen = {}
    for row in rows:
        name = row.case_id
        if name in seen:
            raise PastaError(f"two cases are named {name} ({seen[name]} and {row.image}); give each a case_id in a CSV")
        if (
            not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or name.startswith(".")
            or name.lower() in RESERVED
            or len(name) > MAX_ID
            or any(ord(c) < 32 for c in name)
        ):
            raise PastaError(
                f"case id {name[:40]!r} cannot be a folder name of the output; give a plain case_id "
                f"(at most {MAX_ID} characters, no '/', not starting with '.')"
            )
        seen[name] = row.image
