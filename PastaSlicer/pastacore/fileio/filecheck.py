"""Is a volume file whole, and does its header say what its data holds?

Readers silently "fix" what they find odd: the NIfTI library turns a voxel size of 0 into
1 mm and a negative one into its absolute value, ITK reads NaN voxels of a NIfTI file as 0
and ignores data beyond what the header describes, and a short write by SimpleITK's NIfTI
writer only prints a message. So the header of each file is read here from its own bytes, and
the amount of voxel data is counted, for files read (:func:`check_volume_file` in
:func:`~pastacore.fileio.readers.read_volume`) and for files just written (the verification step
of :mod:`pastacore.fileio.atomic`).

Each format registers one checker in :data:`CHECKERS`; a checker raises :class:`FileProblem`
with the reason in a few words, which the caller words as "cannot read X: ..." or "could not
write X: ...".
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

BLOCK = 1 << 22


class FileProblem(Exception):
    """What is wrong with a volume file, in a few words (no file name)."""


# --- helpers ------------------------------------------------------------------------------


def _count_bytes(stream, skip: int = 0, float_dtype=None) -> tuple:
    """(bytes after ``skip``, non-finite values among them when ``float_dtype`` is given)."""
    size, bad, carry = 0, 0, b""
    itemsize = float_dtype.itemsize if float_dtype is not None else 1
    while True:
        block = stream.read(BLOCK)
        if not block:
            break
        if skip:
            cut = min(skip, len(block))
            block, skip = block[cut:], skip - cut
        size += len(block)
        if float_dtype is not None and block:
            block = carry + block
            whole = len(block) - len(block) % itemsize
            values = np.frombuffer(block[:whole], dtype=float_dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            carry = block[whole:]
    return size, bad


def _data_size(
    path: Path, offset: int, compressed: str | None, float_dtype=None, expected: int | None = None, raw_offset: int = 0
) -> tuple:
    """(voxel bytes found after ``offset``, non-finite values in the first ``expected`` bytes).

    ``raw_offset`` bytes of the file come first (an NRRD header before gzip data); ``offset``
    counts after them, in decompressed bytes."""
    if compressed is None and float_dtype is None:
        return path.stat().st_size - raw_offset - offset, 0
    if compressed == "gzip" and float_dtype is None and expected is not None:
        if _gzip_length(path, raw_offset) == (offset + expected) % (1 << 32):
            return expected, 0  # the gzip trailer records the length: no need to decompress it all again
    try:
        with open(path, "rb") as handle:
            handle.seek(raw_offset)
            if compressed == "gzip":
                with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                    return _limited(stream, offset, float_dtype, expected)
            return _limited(handle, offset, float_dtype, expected)
    except (EOFError, OSError, zlib.error):
        raise FileProblem("the file is corrupt or truncated (damaged gzip stream)") from None


def _gzip_length(path: Path, start: int) -> int | None:
    """The uncompressed length (mod 2^32) that a gzip stream's trailer records, or None.

    A cut file ends in the middle of compressed data, whose last 4 bytes match the expected
    length by chance once in 2^32; a file with more data than expected records more."""
    with open(path, "rb") as handle:
        handle.seek(start)
        if handle.read(2) != b"\x1f\x8b":
            return None
        handle.seek(0, 2)
        if handle.tell() - start < 18:
            return None
        handle.seek(-4, 2)
        return struct.unpack("<I", handle.read(4))[0]


def _limited(stream, offset, float_dtype, expected):
    if float_dtype is None or expected is None:
        return _count_bytes(stream, offset, float_dtype)
    if offset:
        stream.read(offset)

    class _Head:  # non-finite values are counted in the voxel data only, not in what follows
        def __init__(self):
            self.left = expected

        def read(self, n):
            data = stream.read(min(n, self.left)) if self.left > 0 else b""
            self.left -= len(data)
            return data

    size, bad = _count_bytes(_Head(), 0, float_dtype)
    rest, _ = _count_bytes(stream)
    return size + rest, bad


def _check_sizes(found: int, expected: int) -> None:
    if found < expected:
        raise FileProblem(f"the file is truncated ({found} of {expected} bytes of voxel data)")
    if found > expected:
        raise FileProblem(
            f"the header describes {expected} bytes of voxel data but the file holds {found} (header and data disagree)"
        )


def _check_spacing(values, what: str = "voxel size") -> None:
    values = [float(v) for v in values]
    if not all(np.isfinite(values)):
        raise FileProblem(f"the header gives a non-finite {what} ({_fmt(values)})")
    if min(values) == 0:
        raise FileProblem(f"the header gives a {what} of 0 ({_fmt(values)}); readers would silently use 1 mm")
    if min(values) < 0:
        raise FileProblem(f"the header gives a negative {what} ({_fmt(values)})")


def _fmt(values) -> str:
    return " x ".join(f"{v:g}" for v in values) + " mm"


# --- NIfTI --------------------------------------------------------------------------------

_NIFTI_TYPES = {
    2: "u1",
    4: "i2",
    8: "i4",
    16: "f4",
    32: "c8",
    64: "f8",
    128: "V3",
    256: "i1",
    512: "u2",
    768: "u4",
    1024: "i8",
    1280: "u8",
    1536: "V16",
    1792: "c16",
    2048: "V32",
    2304: "V4",
}


# NIfTI-1 (header of 348 bytes) and NIfTI-2 (540): the first byte the data may start at, the
# magic's bytes, and each field's struct format and byte offset
_NIFTI_LAYOUTS = {
    348: (
        352,
        (344, 348),
        {"dims": ("8h", 40), "datatype": ("h", 70), "bitpix": ("h", 72), "pixdim": ("8f", 76), "offset": ("f", 108)},
    ),
    540: (
        544,
        (4, 12),
        {"datatype": ("h", 12), "bitpix": ("h", 14), "dims": ("8q", 16), "pixdim": ("8d", 104), "offset": ("q", 168)},
    ),
}


def _nifti_header(raw: bytes) -> dict:
    if len(raw) < 348:
        raise FileProblem("the file is too short for a NIfTI header")
    for endian in "<>":
        size = struct.unpack(endian + "i", raw[:4])[0]
        if size not in _NIFTI_LAYOUTS or len(raw) < size:
            continue
        min_offset, (magic_start, magic_end), fields = _NIFTI_LAYOUTS[size]
        header = {"endian": endian, "magic": raw[magic_start:magic_end], "min_offset": min_offset}
        for name, (fmt, at) in fields.items():
            values = struct.unpack_from(endian + fmt, raw, at)
            header[name] = values if len(values) > 1 else values[0]
        return header
    raise FileProblem("the file is corrupt or not NIfTI (no NIfTI header)")


def check_nifti(path: Path, scan_values: bool = True) -> None:
    """Header fields from the file's bytes; every voxel byte there, no more; no NaN/Inf voxels."""
    compressed = "gzip" if path.name.lower().endswith(".gz") else None
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            raw = stream.read(544)
    except (EOFError, OSError, zlib.error):
        raise FileProblem("the file is corrupt or truncated (damaged gzip stream)") from None
    header = _nifti_header(raw)
    if not header["magic"].startswith((b"n+1", b"n+2")):
        raise FileProblem("the file is corrupt or not a single-file NIfTI (bad magic)")
    dims = header["dims"]
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or any(int(d) < 1 for d in dims[1 : ndim + 1]):
        raise FileProblem(f"the header gives impossible dimensions {list(dims[1 : max(ndim, 1) + 1])}")
    _check_spacing(header["pixdim"][1 : min(ndim, 3) + 1])
    code = _NIFTI_TYPES.get(int(header["datatype"]))
    itemsize = np.dtype(code).itemsize if code else max(1, int(header["bitpix"]) // 8)
    offset = header["offset"]
    if not np.isfinite(offset) or offset < header["min_offset"] - 4:
        raise FileProblem(f"the header gives an impossible data offset ({offset})")
    expected = int(np.prod([int(d) for d in dims[1 : ndim + 1]], dtype=np.int64)) * itemsize
    float_dtype = np.dtype(code).newbyteorder(header["endian"]) if scan_values and code in ("f4", "f8") else None
    found, bad = _data_size(path, int(offset), compressed, float_dtype, expected)
    _check_sizes(found, expected)
    if bad:
        raise FileProblem(f"it has {bad} NaN or infinite voxel(s), which the reader would turn into 0; fix or mask them first")


# --- NRRD ---------------------------------------------------------------------------------

_NRRD_SIZES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: (
        "short",
        "short int",
        "signed short",
        "signed short int",
        "int16",
        "int16_t",
        "ushort",
        "unsigned short",
        "unsigned short int",
        "uint16",
        "uint16_t",
    ),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: (
        "longlong",
        "long long",
        "long long int",
        "signed long long",
        "signed long long int",
        "int64",
        "int64_t",
        "ulonglong",
        "unsigned long long",
        "unsigned long long int",
        "uint64",
        "uint64_t",
        "double",
    ),
}
_NON_SPATIAL_KINDS = (
    "list",
    "point",
    "vector",
    "covariant-vector",
    "normal",
    "stub",
    "scalar",
    "complex",
    "2-vector",
    "3-color",
    "rgb-color",
    "hsv-color",
    "xyz-color",
    "4-color",
    "rgba-color",
    "3-vector",
    "3-gradient",
    "3-normal",
    "4-vector",
    "quaternion",
    "2d-symmetric-matrix",
    "2d-masked-symmetric-matrix",
    "2d-matrix",
    "2d-masked-matrix",
    "3d-symmetric-matrix",
    "3d-masked-symmetric-matrix",
    "3d-matrix",
    "3d-masked-matrix",
    "time",
)


def _nrrd_fields(path: Path) -> tuple:
    """(fields, byte offset of the data) of an NRRD header."""
    fields = {}
    with open(path, "rb") as stream:
        first = stream.readline(64)
        if not first.startswith(b"NRRD"):
            raise FileProblem("the file is corrupt or not NRRD (no NRRD magic)")
        offset = len(first)
        while True:
            line = stream.readline(1 << 16)
            offset += len(line)
            if not line:
                break
            text = line.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            if text.startswith("#") or (":=" in text and (": " not in text or text.index(":=") < text.index(": "))):
                continue  # comments and key/value pairs
            key, sep, value = text.partition(": ")
            if sep:
                fields[key.strip().lower()] = value.strip()
    return fields, offset


def _nrrd_vectors(text: str) -> list:
    """'(1,0,0) none (0,1,0)' -> [[1,0,0], None, [0,1,0]]."""
    vectors = []
    for part in text.replace(") (", ")|(").replace(")(", ")|(").split():
        for item in part.split("|"):
            if item.lower() == "none":
                vectors.append(None)
            elif item.startswith("("):
                try:
                    vectors.append([float(v) for v in item.strip("()").split(",")])
                except ValueError:
                    raise FileProblem(f"the header has an unreadable space direction {item!r}") from None
    return vectors


def check_nrrd(path: Path, scan_values: bool = True) -> None:
    """Voxel sizes from 'space directions' or 'spacings'; the amount of raw or gzip data."""
    fields, offset = _nrrd_fields(path)
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError:
        raise FileProblem("the header has unreadable sizes") from None
    kinds = fields.get("kinds", "").lower().split()
    spatial = [n for n in range(len(sizes)) if not kinds or kinds[n] not in _NON_SPATIAL_KINDS] if kinds else None
    if "space directions" in fields:
        for vector in _nrrd_vectors(fields["space directions"]):
            if vector is not None:
                _check_spacing([float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else float("nan")])
    elif "spacings" in fields:
        try:
            values = [float(v) for v in fields["spacings"].split()]
        except ValueError:
            raise FileProblem("the header has unreadable spacings") from None
        chosen = [values[n] for n in (spatial if spatial is not None else range(len(values))) if n < len(values)]
        _check_spacing(chosen)
    data_file = fields.get("data file") or fields.get("datafile")
    encoding = fields.get("encoding", "raw").lower()
    if any(k in fields for k in ("line skip", "lineskip", "byte skip", "byteskip")) or encoding not in ("raw", "gzip", "gz"):
        return  # unusual layouts: the reader's own checks apply
    size = next((n for n, names in _NRRD_SIZES.items() if fields.get("type", "").lower() in names), None)
    if size is None or not sizes or (data_file and data_file.upper().startswith("LIST")) or (data_file and " " in data_file):
        return
    expected = int(np.prod(sizes, dtype=np.int64)) * size
    target, start = (path.parent / data_file, 0) if data_file else (path, offset)
    if not target.is_file():
        raise FileProblem(f"its data file {data_file} is missing")
    found, _ = _data_size(target, 0, "gzip" if encoding in ("gzip", "gz") else None, expected=expected, raw_offset=start)
    _check_sizes(found, expected)


# --- MetaImage ----------------------------------------------------------------------------

_META_SIZES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
}


def check_meta(path: Path, scan_values: bool = True) -> None:
    """ElementSpacing / ElementSize from the header; the amount of uncompressed or zlib data."""
    fields, offset = {}, 0
    with open(path, "rb") as stream:
        while True:
            line = stream.readline(1 << 16)
            if not line:
                break
            offset += len(line)
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                raise FileProblem("the file is corrupt or not a MetaImage (unreadable header line)")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                break
    for key in ("ElementSpacing", "ElementSize"):
        if key in fields:
            try:
                values = [float(v) for v in fields[key].split()]
            except ValueError:
                raise FileProblem(f"the header has an unreadable {key}") from None
            _check_spacing(values)
    try:
        sizes = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise FileProblem("the header has an unreadable DimSize") from None
    size = _META_SIZES.get(fields.get("ElementType", ""))
    data_file = fields.get("ElementDataFile", "")
    if size is None or not sizes or "HeaderSize" in fields or data_file.upper().startswith("LIST") or "%" in data_file:
        return
    expected = int(np.prod(sizes, dtype=np.int64)) * size * channels
    target, start = (path, offset) if data_file.upper() == "LOCAL" else (path.parent / data_file, 0)
    if not target.is_file():
        raise FileProblem(f"its data file {data_file} is missing")
    if fields.get("CompressedData", "False").lower() == "true":
        found = _zlib_size(target, start)
    else:
        found = target.stat().st_size - start
    _check_sizes(found, expected)


def _zlib_size(path: Path, start: int) -> int:
    decompressor, size = zlib.decompressobj(), 0
    try:
        with open(path, "rb") as stream:
            stream.seek(start)
            for block in iter(lambda: stream.read(BLOCK), b""):
                size += len(decompressor.decompress(block))
                if decompressor.eof:
                    break
            size += len(decompressor.flush())
    except zlib.error:
        raise FileProblem("the file is corrupt or truncated (damaged compressed data)") from None
    if not decompressor.eof:
        raise FileProblem("the file is truncated (the compressed data ends early)")
    return size


CHECKERS = {
    ".nii.gz": check_nifti,
    ".nii": check_nifti,
    ".seg.nrrd": check_nrrd,
    ".nrrd": check_nrrd,
    ".nhdr": check_nrrd,
    ".mha": check_meta,
    ".mhd": check_meta,
}


def checker_for(path: str | Path) -> object | None:
    name = Path(path).name.lower()
    return next((check for suffix, check in CHECKERS.items() if name.endswith(suffix)), None)


def check_volume_file(path: str | Path, scan_values: bool = True) -> None:
    """Raise :class:`FileProblem` when the file at ``path`` is incomplete or its header lies."""
    check = checker_for(path)
    if check is not None:
        check(Path(path), scan_values)
