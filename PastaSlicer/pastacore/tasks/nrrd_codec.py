"""Volumes as gzip-compressed NRRD bytes, with numpy and the standard library only (a client of a
PASTA server needs neither SimpleITK nor torch to send a CT or read the labels back).

The header is NRRD 5 as Slicer and ITK read it: ``space: left-posterior-superior``, ``sizes`` in
i, j, k order (the fastest axis first, as ``array[k, j, i]`` lies in memory), ``space directions``
(each axis' direction times its spacing, mm) and ``space origin`` (mm). Two key/value lines keep
what a reader would otherwise round: ``PASTA_grid`` (spacing, origin and direction exactly, as
JSON) and ``PASTA_label`` (whether the volume holds labels).
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np

MAGIC = b"NRRD0005"
NRRD_TYPES = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "float32": "float",
    "float64": "double",
}
NUMPY_TYPES = {name: np.dtype(dtype) for dtype, name in NRRD_TYPES.items()}
NUMPY_TYPES.update({"uchar": np.dtype("uint8"), "short": np.dtype("int16"), "ushort": np.dtype("uint16")})
NUMPY_TYPES.update({"int": np.dtype("int32"), "uint": np.dtype("uint32"), "signed char": np.dtype("int8")})
MAX_HEADER_BYTES = 1 << 16


class NrrdError(ValueError):
    """Bytes that are not an NRRD this codec reads (one line saying why)."""


def encode_nrrd(
    array: np.ndarray,
    spacing: tuple,
    origin: tuple,
    direction: np.ndarray,
    is_label: bool = False,
    level: int = 1,
) -> bytes:
    """``array[k, j, i]`` on its grid (spacing and origin in mm, LPS; ``direction`` 3x3 with the
    axis directions as columns) as gzip NRRD bytes; ``level`` 1 favours speed over size."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim != 3 or array.dtype.name not in NRRD_TYPES:
        raise NrrdError(f"cannot encode a {array.ndim}-D {array.dtype} array as a volume")
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    columns = [direction[:, axis] * float(spacing[axis]) for axis in range(3)]
    grid = {"spacing": [float(s) for s in spacing], "origin": [float(o) for o in origin], "direction": direction.tolist()}
    lines = [
        MAGIC.decode(),
        f"type: {NRRD_TYPES[array.dtype.name]}",
        "dimension: 3",
        "space: left-posterior-superior",
        f"sizes: {array.shape[2]} {array.shape[1]} {array.shape[0]}",
        "space directions: " + " ".join("(" + ",".join(repr(float(v)) for v in c) + ")" for c in columns),
        "kinds: domain domain domain",
        "endian: little",
        "encoding: gzip",
        "space origin: (" + ",".join(repr(float(v)) for v in origin) + ")",
        f"PASTA_grid:={json.dumps(grid)}",
        f"PASTA_label:={int(bool(is_label))}",
    ]
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return ("\n".join(lines) + "\n\n").encode("ascii") + gzip.compress(data, compresslevel=level, mtime=0)


def decode_nrrd(data: bytes) -> tuple:
    """``(array[k, j, i], spacing, origin, direction 3x3, is_label)`` of gzip or raw NRRD bytes
    (a single file, 3-D, scalar). The grid comes from ``PASTA_grid`` when present."""
    if not data.startswith(b"NRRD000"):
        raise NrrdError("not an NRRD file")
    end = data.find(b"\n\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise NrrdError("the NRRD header does not end")
    fields, values = _header(data[:end].decode("ascii", "replace").splitlines()[1:])
    sizes = [int(v) for v in fields.get("sizes", "").split()]
    kind = NUMPY_TYPES.get(fields.get("type", ""))
    if len(sizes) != 3 or kind is None or fields.get("dimension") != "3":
        raise NrrdError(f"a 3-D scalar NRRD is needed (type {fields.get('type')!r}, sizes {fields.get('sizes')!r})")
    if fields.get("encoding") not in ("gzip", "gz", "raw"):
        raise NrrdError(f"NRRD encoding {fields.get('encoding')!r} is not read here (gzip or raw)")
    body = data[end + 2 :]
    raw = gzip.decompress(body) if fields["encoding"] in ("gzip", "gz") else body
    dtype = kind.newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    count = math.prod(sizes)
    if len(raw) != count * dtype.itemsize:
        raise NrrdError(f"the NRRD holds {len(raw)} bytes of voxels; its header describes {count * dtype.itemsize}")
    array = np.frombuffer(raw, dtype=dtype).reshape(sizes[::-1]).astype(kind, copy=False)
    spacing, origin, direction = _grid(fields, values)
    return array, spacing, origin, direction, values.get("PASTA_label") == "1"


def _header(lines: list) -> tuple:
    fields, values = {}, {}
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        if ":=" in line:
            key, value = line.split(":=", 1)
            values[key.strip()] = value.strip()
        elif ": " in line:
            key, value = line.split(": ", 1)
            fields[key.strip().lower()] = value.strip()
    return fields, values


def _grid(fields: dict, values: dict) -> tuple:
    if "PASTA_grid" in values:
        try:
            grid = json.loads(values["PASTA_grid"])
            return tuple(grid["spacing"]), tuple(grid["origin"]), np.array(grid["direction"], dtype=float)
        except (ValueError, KeyError, TypeError):
            raise NrrdError("the NRRD's PASTA_grid line is damaged") from None
    try:
        columns = [np.array([float(v) for v in c.strip("() ").split(",")]) for c in fields["space directions"].split(")")[:3]]
        origin = tuple(float(v) for v in fields.get("space origin", "(0,0,0)").strip("() ").split(","))
    except (KeyError, ValueError):
        raise NrrdError("the NRRD has no readable space directions") from None
    spacing = tuple(float(np.linalg.norm(c)) for c in columns)
    if fields.get("space", "left-posterior-superior") != "left-posterior-superior" or not all(s > 0 for s in spacing):
        raise NrrdError("only NRRD in LPS space with non-zero directions is read here")
    return spacing, origin, np.stack([c / s for c, s in zip(columns, spacing)], axis=1)
