"""DICOM series input: slice sorting, geometry, and refusal of tilted, irregular or mixed series.

The series are written here with pydicom from the real lung1 CT (a 96 x 96 in-plane crop of
12 slices), so the expected voxels and geometry are known exactly.
"""

import numpy as np
import pytest

from pastacore.errors import PastaError
from pastacore.fileio import read_volume

pydicom = pytest.importorskip("pydicom")


def write_series(
    folder,
    array,
    spacing,
    origin,
    row=(1, 0, 0),
    col=(0, 1, 0),
    modality="CT",
    shift=None,
    series_uid=None,
    skip=(),
    shuffle=True,
):
    """One file per slice of ``array`` [k, j, i] (int16 HU) with the given LPS geometry."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    normal = np.cross(row, col)
    order = np.random.default_rng(0).permutation(len(array)) if shuffle else range(len(array))
    for k in order:
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = modality, "PASTA-TEST", "Test^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesDescription = study_uid, series_uid, f"{modality} test"
        ds.InstanceNumber = int(k) + 1
        position = np.asarray(origin, float) + k * spacing[2] * normal
        if shift is not None:
            position = position + k * np.asarray(shift, float)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.3f}"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = np.ascontiguousarray(array[k].astype(np.int16)).tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return series_uid


@pytest.fixture(scope="module")
def crop(lung1):
    image, _ = lung1
    return image.array[18:30, 200:296, 200:296].copy()


def test_series_reads_back_exactly(tmp_path, crop):
    spacing, origin = (0.5703125, 0.5703125, 5.0), (-30.0, -40.0, -700.0)
    uid = write_series(tmp_path / "ct", crop, spacing, origin)
    volume = read_volume(tmp_path / "ct")
    assert np.array_equal(volume.array, crop)
    assert np.allclose(volume.grid.spacing, spacing) and np.allclose(volume.grid.origin, origin)
    assert np.allclose(volume.grid.direction, np.eye(3))
    assert volume.meta["modality"] == "CT" and volume.meta["series_uid"] == uid


def test_oblique_series_geometry(tmp_path, crop):
    angle = np.radians(20)
    row, col = (np.cos(angle), np.sin(angle), 0.0), (-np.sin(angle), np.cos(angle), 0.0)
    write_series(tmp_path / "ct", crop, (0.6, 0.7, 2.0), (1.0, 2.0, 3.0), row=row, col=col)
    volume = read_volume(tmp_path / "ct")
    assert np.array_equal(volume.array, crop)
    expected = np.column_stack([row, col, np.cross(row, col)])
    assert np.allclose(volume.grid.direction, expected, atol=1e-5)
    assert np.allclose(volume.grid.spacing, (0.6, 0.7, 2.0))
    # the last voxel sits where the DICOM header of the last slice says
    far = volume.grid.index_to_lps([0, 0, crop.shape[0] - 1])
    assert np.allclose(far, np.array([1.0, 2.0, 3.0]) + (crop.shape[0] - 1) * 2.0 * np.cross(row, col), atol=1e-4)


def test_gantry_tilt_is_refused(tmp_path, crop):
    write_series(tmp_path / "ct", crop, (0.6, 0.6, 2.0), (0, 0, 0), shift=(0.0, 0.5, 0.0))
    with pytest.raises(PastaError, match="gantry-tilted"):
        read_volume(tmp_path / "ct")


def test_missing_slice_is_refused(tmp_path, crop):
    write_series(tmp_path / "ct", crop, (0.6, 0.6, 2.0), (0, 0, 0), skip=(5,))
    with pytest.raises(PastaError, match="irregularly spaced"):
        read_volume(tmp_path / "ct")


def test_mixed_series_folder(tmp_path, crop):
    first = write_series(tmp_path / "study" / "a", crop, (0.6, 0.6, 2.0), (0, 0, 0))
    write_series(tmp_path / "study" / "b", crop[:6], (0.6, 0.6, 2.0), (0, 0, 0))
    with pytest.raises(PastaError, match='mixes 2 CT series; choose one with the "series" setting'):
        read_volume(tmp_path / "study")
    assert read_volume(tmp_path / "study", series_uid=first).array.shape == crop.shape


def test_ct_series_is_chosen_next_to_an_mr_series(tmp_path, crop):
    write_series(tmp_path / "study" / "ct", crop, (0.6, 0.6, 2.0), (0, 0, 0))
    write_series(tmp_path / "study" / "mr", np.abs(crop[:4]), (0.6, 0.6, 2.0), (0, 0, 0), modality="MR")
    assert read_volume(tmp_path / "study").meta["modality"] == "CT"


def test_mr_only_folder(tmp_path, crop):
    write_series(tmp_path / "mr", np.abs(crop[:4]), (0.6, 0.6, 2.0), (0, 0, 0), modality="MR")
    with pytest.raises(PastaError, match="no CT series"):
        read_volume(tmp_path / "mr")
