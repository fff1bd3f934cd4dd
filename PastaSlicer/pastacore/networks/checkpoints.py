"""Load checkpoint files without ever running code from them.

``torch.load(weights_only=True)`` unpickles tensors, plain containers and numbers only; a
file whose pickle asks for anything else (a class, a function, ``os.system``...) is
refused. ``.safetensors`` files are read with the safetensors package when present. The only
non-tensor classes allowed are numpy's array and scalar rebuilders (nnU-Net logs).

PyTorch Lightning checkpoints (``.ckpt``) may carry training metadata pickled as Lightning or
OmegaConf objects (hyper-parameters, loop state). With ``metadata_globals=True`` such names,
and only names from those packages, are read as inert placeholders (plain dicts, or objects
that ignore their state): the unpickler still runs no code from the file, and the weights
are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PastaError


@dataclass(frozen=True)
class WeightFormat:
    """A kind of weight file: its suffixes and a safe reader ``read(path, map_location,
    metadata_globals) -> object`` (usually a dict of tensors). Register one with :func:`register`."""

    name: str
    suffixes: tuple
    read: Callable
    description: str = ""


FORMATS: dict = {}  # name -> WeightFormat, in registration order


def register(weight_format: WeightFormat) -> WeightFormat:
    FORMATS[weight_format.name] = weight_format
    return weight_format


def weight_suffixes() -> tuple:
    """Every suffix a registered format reads (``.pth``, ``.safetensors``, ...)."""
    return tuple(s for f in FORMATS.values() for s in f.suffixes)


def format_of(path: str | Path) -> WeightFormat:
    """The registered format of ``path`` by its suffix; PyTorch's for an unknown one."""
    name = Path(path).name.lower()
    for weight_format in FORMATS.values():
        if name.endswith(weight_format.suffixes):
            return weight_format
    return FORMATS["PyTorch"]


METADATA_PACKAGES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "torchmetrics.")
_DICT_LIKE = ("AttributeDict",)  # dict subclasses: rebuilt as plain dicts


class _Inert:
    """Stands in for a training-metadata object: takes any arguments and state, does nothing."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _metadata_placeholders(path: Path) -> list:
    """(placeholder, name) pairs for the unsafe globals of a checkpoint, if all are metadata."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint: nothing to add
        return []
    if not names or not all(n.startswith(METADATA_PACKAGES) for n in names):
        return []
    return [(dict if n.rsplit(".", 1)[-1] in _DICT_LIKE else _Inert, n) for n in names]


def load_checkpoint(path: str | Path, map_location: str = "cpu", metadata_globals: bool = False) -> object:
    """The object stored in ``path`` (usually a dict of tensors), loaded safely.

    ``metadata_globals``: read Lightning/OmegaConf metadata objects as inert placeholders
    (see the module docstring) instead of refusing the file."""
    path = Path(path)
    if not path.is_file():
        raise PastaError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise PastaError(f"cannot read {path.name}: the file is empty (0 bytes); download it again")
    if _is_text(path):
        raise PastaError(f"cannot read {path.name}: it holds text, not weights (an error page saved instead of the download?)")
    return format_of(path).read(path, map_location, metadata_globals)


def _read_safetensors(path: Path, map_location: str, metadata_globals: bool):
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise PastaError("reading .safetensors files needs the 'safetensors' package") from None
    try:
        return load_file(str(path), device=map_location)
    except Exception as exc:  # safetensors raises several types for bad headers
        raise PastaError(f"cannot read {path.name}: corrupt safetensors file ({str(exc)[:120]})") from None


def _read_torch(path: Path, map_location: str, metadata_globals: bool):
    import pickle

    import torch

    try:
        # nnU-Net v2 keeps numpy scalars in its training log: allow numpy's array/scalar
        # rebuilders (they only turn bytes into arrays), nothing else.
        allowed = _numpy_safe_globals() + (_metadata_placeholders(path) if metadata_globals else [])
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location=map_location, weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):  # a class or function named in the pickle
            raise PastaError(
                f"refusing {path.name}: it contains code or objects beyond tensors ({_offender(exc)}); "
                "only plain weight files are loaded"
            ) from None
        raise PastaError(
            f"cannot read {path.name}: the file is corrupt or not a checkpoint ({_pickle_problem(exc)}); download it again"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # torch's unpickler raises KeyError, IndexError... on cut files
        raise PastaError(f"cannot read {path.name}: corrupt, truncated or not a checkpoint ({_first_line(exc)})") from None


register(
    WeightFormat("PyTorch", (".pth", ".pt", ".ckpt"), _read_torch, "torch.save files, read with weights_only=True (no code runs)")
)
register(WeightFormat("safetensors", (".safetensors",), _read_safetensors, "safetensors files"))


def _is_text(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _first_line(exc) -> str:
    text = str(exc).strip()
    detail = text.splitlines()[0][:120] if text else ""
    return f"{type(exc).__name__}: {detail}" if not isinstance(exc, (RuntimeError, OSError, ValueError)) else detail


def _numpy_safe_globals() -> list:
    """Numpy array/scalar rebuilders: they only turn bytes (and already unpickled data) into arrays."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch's users
        return []
    core = getattr(np, "_core", None) or np.core
    scalar, reconstruct = core.multiarray.scalar, core.multiarray._reconstruct
    allowed = [scalar, reconstruct, np.ndarray, np.dtype]
    for old, new in (
        ("numpy.core.multiarray.scalar", scalar),
        ("numpy.core.multiarray._reconstruct", reconstruct),
        ("numpy._core.multiarray.scalar", scalar),
        ("numpy._core.multiarray._reconstruct", reconstruct),
    ):
        allowed.append((new, old))
    for code in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "b1"):
        allowed.append(type(np.dtype(code)))  # numpy >= 1.25 pickles dtypes through their classes
    return allowed


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _pickle_problem(exc) -> str:
    """The unpickler's own complaint ("Unsupported operand 131"), without torch's advice about weights_only."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("Unsupported", "Invalid", "invalid", "Unexpected", "unpickling stack")):
            return line[:100]
    return _first_line(exc)


def _offender(exc) -> str:
    for line in str(exc).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip().split(":", 1)[-1].strip()[:80]
    return "unsupported pickle content"
