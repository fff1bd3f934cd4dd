"""Read CT volumes and label maps from NIfTI, NRRD (incl. Slicer ``.seg.nrrd``) and DICOM.

Every reader returns a :class:`~pastacore.geometry.volume.Volume` in the LPS convention of
:mod:`pastacore.geometry.grid`, and refuses bad input with a one-line :class:`PastaError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PastaError, option
from ..geometry.grid import Grid
from ..geometry.volume import Volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def image_stem(path: str | Path) -> str:
    """The file name without its image suffix (one of :data:`IMAGE_SUFFIXES`, any case):
    ``ct.nii.gz`` -> ``ct``, ``labels.seg.nrrd`` -> ``labels``; other names are kept whole."""
    name = Path(path).name
    suffix = _suffix(Path(name))
    return name[: -len(suffix)] if suffix else name


def read_volume(
    path: str | Path, *, is_label: bool = False, volume_index: int | None = None, series_uid: str | None = None
) -> Volume:
    """Read a 3D volume from a file or a DICOM folder.

    ``is_label`` says the file holds class labels (integers); they come back with an
    integer dtype. A 4D file is refused unless ``volume_index`` picks one volume. A DICOM
    folder must hold exactly one CT series unless ``series_uid`` picks one.
    """
    path = Path(path)
    if not path.exists():
        raise PastaError(f"{path} does not exist")
    if path.is_dir():
        from .dicom import read_dicom_series

        volume = read_dicom_series(path, series_uid=series_uid)
        return as_label(volume, str(path)) if is_label else check_voxels(volume, path.name)
    suffix = _suffix(path)
    if suffix is None:
        raise PastaError(f"{path.name}: unsupported format; use NIfTI (.nii, .nii.gz), NRRD (.nrrd, .seg.nrrd) or a DICOM folder")
    require_regular_file(path)
    check_file(path)
    image, meta = _read_sitk(path)
    volume = _to_volume(image, path, volume_index, meta)
    if suffix == ".seg.nrrd":
        volume = _merge_segmentation_layers(volume, path)
        is_label = True
    volume.meta.setdefault("source", str(path))
    return as_label(volume, path.name) if is_label else check_voxels(volume, path.name)


def require_regular_file(path: str | Path, what: str = "input") -> Path:
    """``path`` when it is an ordinary file; a named pipe, device or socket is refused at once
    (reading one would wait forever or never end), as is a missing file."""
    import stat

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise PastaError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise PastaError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise PastaError(f"{what} {path} is a folder; give a file")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise PastaError(f"{what} {path} is {kind}, not a file; give an ordinary file")
    return path


def check_file(path: Path) -> None:
    """The header as written in the file, and the amount of data it promises (see :mod:`.filecheck`)."""
    from .filecheck import FileProblem, check_volume_file

    try:
        check_volume_file(path)
    except FileProblem as problem:
        raise PastaError(f"cannot read {path.name}: {problem}") from None
    except OSError as exc:
        raise PastaError(f"cannot read {path.name}: {exc.strerror or exc}") from None


def check_voxels(volume: Volume, what: str) -> Volume:
    """Every input volume, whatever its format: finite voxels (labels are checked by :func:`as_label`)."""
    array = volume.array
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise PastaError(f"{what} has {bad} NaN or infinite voxel(s); fix or mask them before processing")
    return volume


def _read_sitk(path: Path):
    import SimpleITK as sitk

    from ..native import captured_stderr

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with captured_stderr():  # ITK's warnings about odd headers; what matters is checked here
            image = reader.Execute()
    except RuntimeError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip().startswith(("Description", "ITK ERROR"))), "")
        detail = first.split(":", 1)[-1].strip() if first else "unreadable"
        raise PastaError(f"cannot read {path.name}: the file is corrupt, truncated or not an image ({detail[:120]})") from None
    meta = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys()}
    return image, meta


def _to_volume(image, path: Path, volume_index, meta) -> Volume:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() > 1 and not path.name.lower().endswith(".seg.nrrd"):
        raise PastaError(
            f"{path.name} holds {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or vector image); a CT has one"
        )
    if dim == 2 or (dim == 3 and image.GetSize()[2] == 1):
        raise PastaError(f"{path.name} is a 2D image ({image.GetSize()[0]}x{image.GetSize()[1]}); a 3D volume is required")
    if dim == 4:
        count = image.GetSize()[3]
        if count == 1:
            volume_index = 0
        if volume_index is None:
            raise PastaError(
                f"{path.name} is 4D with {count} volumes; choose one with {option('volume_index')} (0 to {count - 1})"
            )
        if not 0 <= volume_index < count:
            raise PastaError(f"{option('volume_index')} {volume_index} is out of range; {path.name} has volumes 0 to {count - 1}")
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, volume_index])
    elif dim != 3:
        raise PastaError(f"{path.name} has {dim} dimensions; a 3D volume is required")
    array = sitk.GetArrayFromImage(image)
    segments = None
    if array.ndim == 4:  # a .seg.nrrd whose overlapping segments lie in several layers
        array, segments = _merge_layers(array, _segments_of(meta))
    grid = Grid(array.shape, image.GetSpacing(), image.GetOrigin(), np.array(image.GetDirection()).reshape(3, 3))
    volume = Volume(array, grid, meta={"header": meta})
    if segments is not None:
        volume.meta["segments"] = segments
    return volume


def _merge_layers(array: np.ndarray, segments: list) -> tuple:
    """One label per (layer, value) of a layered segmentation, later segments winning where they overlap."""
    merged = np.zeros(array.shape[:3], dtype=np.int32)
    for new_label, seg in enumerate(segments, start=1):
        if seg["layer"] < array.shape[3]:
            merged[array[..., seg["layer"]] == seg["label"]] = new_label
        seg["label"] = new_label
    return merged, segments


def _merge_segmentation_layers(volume: Volume, path: Path) -> Volume:
    """Slicer ``.seg.nrrd``: one label value per segment, possibly in several layers."""
    if "segments" in volume.meta:  # layers merged while reading
        return volume
    volume.meta["segments"] = _segments_of(volume.meta.get("header", {}))
    return volume


def _segments_of(header: dict) -> list:
    """The segments a ``.seg.nrrd`` header describes: name, label value, layer, colour, terminology."""
    segments = []
    index = 0
    while f"Segment{index}_ID" in header or f"Segment{index}_Name" in header:
        key = f"Segment{index}_"
        segments.append(
            {
                "name": header.get(key + "Name", f"Segment_{index + 1}"),
                "label": int(header.get(key + "LabelValue", index + 1)),
                "layer": int(header.get(key + "Layer", 0)),
                "color": [float(c) for c in header.get(key + "Color", "0.5 0.5 0.5").split()],
                "terminology": header.get(key + "Tags", ""),
            }
        )
        index += 1
    return segments


def as_label(volume: Volume, what: str = "the label map") -> Volume:
    """Return ``volume`` as a label map with an integer dtype, refusing non-integer values."""
    array = volume.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise PastaError(f"{what} has NaN or infinite values; a label map holds whole numbers")
        if not np.array_equal(array, np.round(array)):
            raise PastaError(f"{what} holds non-integer values; it looks like an image, not a label map")
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if lo < 0:
        raise PastaError(f"{what} has negative values (min {lo}); it looks like a CT image, not a label map")
    if hi > 65535:
        raise PastaError(f"{what} has label values above 65535 (max {hi}); it looks like an image, not a label map")
    dtype = np.uint8 if hi < 256 else np.uint16
    return volume.with_array(array.astype(dtype, copy=False), is_label=True)


def check_ct(volume: Volume, what: str = "the input") -> Volume:
    """A cheap CT check: modality tag when known, else Hounsfield-like intensities with air."""
    modality = str(volume.meta.get("modality", "")).upper()
    if modality and modality not in ("CT", "OT"):
        raise PastaError(f"{what} is a {modality} series; this step works on CT only")
    if volume.is_label:
        raise PastaError(f"{what} is a label map; this step needs a CT image")
    volume.check_finite()
    sample = volume.array[:: max(1, volume.array.shape[0] // 16)]
    p1, p99 = np.percentile(sample, [1, 99])
    if p1 > -300 or p99 > 4000 or p99 < -200:
        hint = " (if it is CT stored without rescaling, convert it to Hounsfield units first)" if p1 >= -10 else ""
        raise PastaError(
            f"{what} does not look like CT in Hounsfield units (1st-99th percentile {p1:.0f} to {p99:.0f}; "
            f"CT has air near -1000){hint}"
        )
    return volume


def as_volume(source: str | Path | Volume, is_label: bool = False) -> Volume:
    """``source`` itself when it is already a Volume, else the volume read from that path."""
    return source if isinstance(source, Volume) else read_volume(source, is_label=is_label)
