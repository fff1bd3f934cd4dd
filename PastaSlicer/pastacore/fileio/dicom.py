"""Read one CT series from a DICOM folder, with the checks a radiologist would expect.

Slices are inspected with pydicom (headers only), sorted by their position along the slice
normal, and refused when the series is gantry-tilted, irregularly spaced, mixes orientations,
pixel spacings or sizes, or has a slice without a position: no slice is ever dropped, and the
volume read has exactly one slice per file. Pixels are then read by SimpleITK in that order.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import PastaError, option
from ..geometry.grid import Grid
from ..geometry.volume import Volume


def _headers(folder: Path):
    import pydicom

    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not a DICOM file: skip it like every DICOM browser does
            continue
        if "Rows" in ds and "Columns" in ds:  # an image (SR, RT structures and the like have none)
            yield path, ds


def list_series(folder: str | Path) -> dict:
    """SeriesInstanceUID -> list of (path, dataset) for the image slices under ``folder``."""
    series = defaultdict(list)
    for path, ds in _headers(Path(folder)):
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((path, ds))
    return dict(series)


def _describe(uid, slices) -> str:
    ds = slices[0][1]
    return f"{uid} ({getattr(ds, 'Modality', '?')}, {len(slices)} slices, '{getattr(ds, 'SeriesDescription', '')}')"


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    folder = Path(folder)
    series = list_series(folder)
    if not series:
        raise PastaError(f"{folder} is a folder without DICOM images; give a NIfTI/NRRD file or a DICOM series folder")
    if series_uid is not None:
        if series_uid not in series:
            raise PastaError(
                f"series {series_uid} is not in {folder}; it holds " + "; ".join(_describe(u, s) for u, s in series.items())
            )
        chosen = series_uid
    else:
        ct = [
            uid
            for uid, slices in series.items()
            if str(getattr(slices[0][1], "Modality", "")).upper() == "CT" and len(slices) > 1
        ]
        if len(ct) == 1:
            chosen = ct[0]
        elif not ct:
            raise PastaError(
                f"{folder} holds no CT series with several slices: " + "; ".join(_describe(u, s) for u, s in series.items())
            )
        else:
            raise PastaError(
                f"{folder} mixes {len(ct)} CT series; choose one with {option('series')}: "
                + "; ".join(_describe(u, series[u]) for u in ct)
            )
    return _load(series[chosen], chosen)


def _check_slices(slices, uid) -> None:
    """Every file of the series is one slice of the same geometry, or the series is refused."""
    frames = [p.name for p, ds in slices if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1]
    if frames:
        raise PastaError(f"series {uid} holds multi-frame files ({frames[0]}); export it as one file per slice")
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        missing = [p.name for p, ds in slices if tag not in ds or not ds[tag].value]
        if missing:
            raise PastaError(
                f"series {uid}: {len(missing)} of {len(slices)} files have no {tag}, e.g. {missing[0]}; "
                "without it the slices cannot be placed, so none is used"
            )
    first = slices[0][1]
    iop = np.array(first.ImageOrientationPatient, dtype=float).ravel()
    if (
        iop.shape != (6,)
        or not np.all(np.isfinite(iop))
        or not np.allclose(np.linalg.norm(iop.reshape(2, 3), axis=1), 1, atol=1e-3)
    ):
        raise PastaError(
            f"series {uid} has an impossible ImageOrientationPatient ({len(iop)} values: {list(iop)[:6]}); "
            "it needs two unit vectors (6 numbers)"
        )
    shape = (int(first.Rows), int(first.Columns))
    pixel = np.array(first.PixelSpacing, dtype=float)
    if pixel.shape != (2,) or not np.all(np.isfinite(pixel)) or np.any(pixel <= 0):
        raise PastaError(f"series {uid} has an impossible PixelSpacing ({list(first.PixelSpacing)})")
    for path, ds in slices:
        if not np.allclose(np.array(ds.ImageOrientationPatient, dtype=float), iop, atol=1e-4):
            raise PastaError(
                f"series {uid} mixes slice orientations ({path.name}; a localizer in the series?); export the axial stack alone"
            )
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise PastaError(
                f"series {uid} mixes slice sizes ({path.name} is {ds.Rows}x{ds.Columns}, others "
                f"{shape[0]}x{shape[1]}); export the axial stack alone"
            )
        if not np.allclose(np.array(ds.PixelSpacing, dtype=float), pixel, rtol=1e-4, atol=1e-6):
            raise PastaError(
                f"series {uid} mixes pixel spacings ({path.name}: {_mm(ds.PixelSpacing)}, others "
                f"{_mm(first.PixelSpacing)}); its slices do not form one volume"
            )


def _mm(values) -> str:
    return " x ".join(f"{float(v):g}" for v in values) + " mm"


def _load(slices, uid) -> Volume:
    import SimpleITK as sitk

    if len(slices) < 2:
        raise PastaError(f"series {uid} has a single slice; a 3D volume is required")
    _check_slices(slices, uid)
    first = slices[0][1]
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    shape = (int(first.Rows), int(first.Columns))
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([np.array(ds.ImagePositionPatient, dtype=float) for _, ds in slices])
    order = np.argsort(positions @ normal)
    positions = positions[order]
    slices = [slices[i] for i in order]
    steps = np.diff(positions, axis=0)
    distances = steps @ normal
    if np.any(np.abs(distances) < 1e-3):
        raise PastaError(f"series {uid} has several slices at the same position (duplicates or several acquisitions)")
    along = np.linalg.norm(steps - np.outer(distances, normal), axis=1)
    if np.max(along) > 0.01 * np.mean(np.abs(distances)) + 1e-3:
        raise PastaError(f"series {uid} is gantry-tilted (slices are offset sideways); resample it to an orthogonal grid first")
    spacing_k = float(np.median(distances))
    if np.max(np.abs(distances - spacing_k)) > max(0.01 * spacing_k, 1e-3):
        raise PastaError(
            f"series {uid} is irregularly spaced (slice gaps {distances.min():.3g} to {distances.max():.3g} mm; missing slices?)"
        )
    from ..native import captured_stderr

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p, _ in slices])
    try:
        with captured_stderr():
            image = reader.Execute()
    except RuntimeError:
        raise PastaError(f"cannot read the pixel data of series {uid}: corrupt or unsupported compression") from None
    array = sitk.GetArrayFromImage(image)
    if array.shape != (len(slices), *shape):
        raise PastaError(
            f"series {uid}: {len(slices)} files of {shape[0]}x{shape[1]} pixels gave a volume of "
            f"{array.shape}; refusing a volume that does not match its files"
        )
    pixel = np.array(first.PixelSpacing, dtype=float)  # (row spacing, column spacing) = (sj, si)
    direction = np.column_stack([row, col, normal])
    grid = Grid(array.shape, (pixel[1], pixel[0], spacing_k), positions[0], direction)
    meta = {
        "modality": str(getattr(first, "Modality", "")),
        "patient_id": str(getattr(first, "PatientID", "")),
        "patient_name": str(getattr(first, "PatientName", "")),
        "study_uid": str(getattr(first, "StudyInstanceUID", "")),
        "series_uid": uid,
        "study_description": str(getattr(first, "StudyDescription", "")),
        "study_date": str(getattr(first, "StudyDate", "") or ""),
        "dicom_files": [str(p) for p, _ in slices],
    }
    return Volume(array, grid, meta=meta)
