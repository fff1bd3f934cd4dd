"""Finding CT images among files and folders: what a folder of cases holds.

An image is a file with a volume suffix; a folder holding DICOM files is one image too (a
series). Files named like masks (``*_seg``, ``*_total``, ``*label*`` ...) are left out of the
images and matched to them instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from .readers import IMAGE_SUFFIXES, image_stem

if TYPE_CHECKING:
    from collections.abc import Sequence


MASK_HINTS = ("_seg", "_total", "_organs", "_organ", "_mask", "_label", "_labels")


def is_image(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def looks_like_mask(path: str | Path) -> bool:
    stem = image_stem(path).lower()
    return any(stem.endswith(h) or f"{h}_" in stem for h in MASK_HINTS) or "label" in stem


def is_dicom_folder(path: str | Path) -> bool:
    """A folder with at least one file in it that starts like a DICOM file (``DICM`` at byte 128)."""
    path = Path(path)
    if not path.is_dir():
        return False
    for entry in sorted(path.iterdir()):
        if entry.is_file():
            try:
                with open(entry, "rb") as handle:
                    handle.seek(128)
                    if handle.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False


def find_images(items: str | Path | Sequence[str | Path], dicom_folders: bool = False, what: str = "background") -> list:
    """Image files from a folder, a file, or a list of either (masks and labels left out);
    with ``dicom_folders``, the sub-folders of a folder that hold DICOM files count as images."""
    items = [items] if isinstance(items, (str, os.PathLike)) else list(items or [])
    found = []
    for item in items:
        path = Path(item)
        if is_image(path) or (dicom_folders and is_dicom_folder(path)):
            found.append(path)
        elif path.is_dir():
            for entry in sorted(path.iterdir()):
                if (is_image(entry) and not looks_like_mask(entry)) or (dicom_folders and is_dicom_folder(entry)):
                    found.append(entry)
        else:
            raise PastaError(f"{what} {path} is neither an image file nor a folder")
    if not found:
        raise PastaError(f"no {what} CT images found in {', '.join(map(str, items)) or 'nothing'}")
    return found
