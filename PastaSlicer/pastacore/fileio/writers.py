"""Write volumes and label maps to NIfTI or NRRD with their exact geometry, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PastaError
from ..geometry.volume import Volume
from .atomic import atomic_outputs, write_error
from .readers import IMAGE_SUFFIXES, _suffix
from .sitk_bridge import sitk_from_volume

WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


def volume_output(path: str | Path) -> tuple:
    """``(path, suffixes)`` of a volume output, for :func:`pastacore.fileio.atomic.check_outputs`."""
    return (path, WRITE_SUFFIXES) if path else (None, None)


def storage_array(volume: Volume) -> np.ndarray:
    """Labels as the smallest unsigned integer type; integer-valued images as int16."""
    array = volume.array
    if volume.is_label:
        hi = int(array.max()) if array.size else 0
        return array.astype(np.uint8 if hi < 256 else np.uint16, copy=False)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating) and array.size and np.array_equal(array, np.round(array)):
        lo, hi = float(array.min()), float(array.max())
        if -32768 <= lo and hi <= 32767:
            return array.astype(np.int16)
    return array


def write_volume(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` to ``path`` (format from the suffix) without leaving partial files.

    The file is verified before it replaces anything (see :mod:`pastacore.fileio.verify`): the
    NIfTI writer reports a short write only on descriptor 2, which is kept aside here."""
    import SimpleITK as sitk

    from ..native import captured_stderr

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES and suffix != ".seg.nrrd":
        raise PastaError(f"cannot write {path.name}: use .nii.gz, .nii or .nrrd (supported inputs: {', '.join(IMAGE_SUFFIXES)})")
    image = sitk_from_volume(volume.with_array(storage_array(volume)))
    with atomic_outputs(path, overwrite=overwrite) as temp:
        with captured_stderr() as noise:
            try:
                sitk.WriteImage(image, str(temp), useCompression=suffix != ".nii")
            except RuntimeError as exc:
                raise write_error(path.name, exc, temp.parent, detail=str(exc).strip().splitlines()[-1][:160]) from None
        if noise.text.strip() and not temp.is_file():
            raise write_error(path.name, folder=temp.parent, detail=noise.text.strip().splitlines()[-1][:160])
    return path
