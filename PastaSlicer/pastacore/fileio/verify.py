"""Read back what was just written, before it replaces anything.

Python's own writes raise on a full disk, but not every writer does: SimpleITK's NIfTI
writer prints ``** ERROR: NWAD: wrote only 0 of ... bytes`` and returns. So every output
file is checked in its staging folder by the checker registered for its suffix
(:data:`VERIFIERS`); a format without one only has to exist. A checker returns None when the
file is whole, else the problem in a few words.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


VERIFIERS = {}


def verifier(*suffixes) -> Callable[[Callable], Callable]:
    """Register the decorated function as the checker of files ending with ``suffixes``."""

    def register(function):
        for suffix in suffixes:
            VERIFIERS[suffix] = function
        return function

    return register


def verify_output(path: str | Path) -> str | None:
    """None when the file at ``path`` reads back whole, else what is wrong with it."""
    path = Path(path)
    name = path.name.lower()
    suffix = max((s for s in VERIFIERS if name.endswith(s)), key=len, default=None)
    if suffix is None:
        return None
    try:
        return VERIFIERS[suffix](path)
    except OSError as exc:
        return f"it cannot be read back ({exc.strerror or exc})"


@verifier(".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd")
def _volume(path: Path):
    from .filecheck import FileProblem, check_volume_file

    try:
        check_volume_file(path, scan_values=False)
    except FileProblem as problem:
        return str(problem)
    return None


@verifier(".json")
def _json(path: Path):
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "the written JSON is incomplete"
    return None


@verifier(".csv", ".html", ".md", ".txt")
def _text(path: Path):
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "the written text is incomplete"
    return None


@verifier(".pt", ".pth", ".ckpt")
def _torch(path: Path):
    """torch.save writes a zip archive; an older pickle-only file (imported as is) has nothing to read back."""
    with open(path, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    return _zip(path) if zipped else None


@verifier(".mrb", ".zip")
def _zip(path: Path):
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError):
        return "the written archive is incomplete"
    return f"the written archive is damaged ({bad})" if bad else None


@verifier(".npy")
def _npy(path: Path):
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError):
        return "the written array is incomplete"
    header = path.stat().st_size - array.nbytes
    return None if header > 0 else "the written array is incomplete"


@verifier(".parquet")
def _parquet(path: Path):
    with open(path, "rb") as handle:
        head = handle.read(4)
        handle.seek(max(0, path.stat().st_size - 4))
        tail = handle.read()
    return None if head == b"PAR1" and tail == b"PAR1" else "the written Parquet file is incomplete"


@verifier(".png")
def _png(path: Path):
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or b"IEND" not in data[-16:]:
        return "the written image is incomplete"
    return None


@verifier(".pdf")
def _pdf(path: Path):
    with open(path, "rb") as handle:
        head = handle.read(5)
        handle.seek(max(0, path.stat().st_size - 1024))
        tail = handle.read()
    return None if head == b"%PDF-" and b"%%EOF" in tail else "the written PDF is incomplete"


@verifier(".dcm")
def _dicom(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        if "PixelData" in ds and "Rows" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            bits = int(ds.BitsAllocated)
            expected = int(ds.Rows) * int(ds.Columns) * frames * int(getattr(ds, "SamplesPerPixel", 1)) * bits
            if len(ds.PixelData) * 8 < expected:
                return "the written DICOM pixel data is incomplete"
    except Exception:  # pydicom raises many types for a cut file
        return "the written DICOM file is incomplete"
    return None
