"""Reading and writing volumes: exact geometry, integer labels, and one-line errors on bad input."""

import gzip

import numpy as np
import pytest
from conftest import make_volume, rotation

from pastacore.errors import PastaError
from pastacore.fileio import as_label, check_ct, read_volume, write_volume
from pastacore.geometry import Grid


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
@pytest.mark.parametrize("left_handed", [False, True])
def test_write_read_keeps_voxels_and_geometry(tmp_path, suffix, left_handed):
    volume = make_volume(spacing=(0.7, 0.9, 2.5), origin=(10, -20, 30), direction=rotation(20, 10, 5, left_handed))
    volume = volume.with_array(np.rint(volume.array))
    path = write_volume(volume, tmp_path / f"ct{suffix}")
    back = read_volume(path)
    assert np.array_equal(back.array, volume.array)
    assert np.allclose(back.grid.ijk_to_lps(), volume.grid.ijk_to_lps(), atol=1e-4)
    assert back.grid.is_left_handed == left_handed


def test_labels_are_written_as_integers(tmp_path):
    labels = make_volume(is_label=True)
    path = write_volume(labels, tmp_path / "seg.nii.gz")
    import SimpleITK as sitk

    assert sitk.ReadImage(str(path)).GetPixelIDTypeAsString() == "8-bit unsigned integer"
    assert np.array_equal(read_volume(path, is_label=True).array, labels.array)


def test_real_ct_geometry(lung1):
    image, label = lung1
    assert image.array.shape == (48, 512, 512) and image.array.dtype == np.int16
    assert np.allclose(image.grid.spacing, (0.5703125, 0.5703125, 5.0))
    assert label.array.sum() == 837  # the reference tumour's voxel count
    image.check_matches(label)


def test_ras_and_lps_conventions():
    grid = Grid((2, 3, 4), (0.5, 0.6, 2.0), (10.0, 20.0, 30.0), np.eye(3))
    ras = grid.ijk_to_ras()
    assert np.allclose(ras[:3, 3], (-10, -20, 30))
    assert np.allclose(np.diag(ras)[:3], (-0.5, -0.6, 2.0))
    assert Grid.from_ijk_to_ras(grid.shape, ras).same_as(grid, 1e-12)


def _corrupt(tmp_path, source):
    data = source.read_bytes()
    bad = tmp_path / source.name
    bad.write_bytes(data[: len(data) // 3])
    return bad


def test_truncated_nrrd_is_refused(tmp_path, sample_dir):
    with pytest.raises(PastaError, match="corrupt|truncated"):
        read_volume(_corrupt(tmp_path, sample_dir / "lung1_image.nrrd"))


def test_truncated_nifti_is_refused(tmp_path):
    path = write_volume(make_volume(), tmp_path / "ok.nii.gz")
    data = gzip.decompress(path.read_bytes())
    bad = tmp_path / "bad.nii"
    bad.write_bytes(data[:400])
    with pytest.raises(PastaError, match="corrupt|truncated"):
        read_volume(bad)
    half = tmp_path / "half.nii.gz"
    half.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(PastaError, match="corrupt|truncated"):
        read_volume(half)


@pytest.mark.parametrize(
    "name,message",
    [
        ("scan.png", "unsupported format"),
        ("missing.nii.gz", "does not exist"),
    ],
)
def test_unsupported_or_missing(tmp_path, name, message):
    if name.endswith(".png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(PastaError, match=message):
        read_volume(tmp_path / name)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PastaError, match="without DICOM"):
        read_volume(tmp_path)


def test_2d_and_4d_images(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.Image(32, 32, sitk.sitkInt16), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(PastaError, match="2D image"):
        read_volume(tmp_path / "flat.nii.gz")
    four = sitk.JoinSeries([sitk.Image(8, 8, 8, sitk.sitkInt16) + i for i in range(3)])
    sitk.WriteImage(four, str(tmp_path / "four.nii.gz"))
    with pytest.raises(PastaError, match='4D with 3 volumes; choose one with the "volume index" setting'):
        read_volume(tmp_path / "four.nii.gz")
    assert int(read_volume(tmp_path / "four.nii.gz", volume_index=2).array.max()) == 2


def test_nan_voxels_and_bad_spacing():
    volume = make_volume()
    volume.array[3, 3, 3] = np.nan
    with pytest.raises(PastaError, match="1 NaN or infinite"):
        volume.check_finite()
    with pytest.raises(PastaError, match="spacing must be positive"):
        Grid((2, 2, 2), (1.0, 0.0, 1.0))
    with pytest.raises(PastaError, match="spacing must be positive"):
        Grid((2, 2, 2), (1.0, -1.0, 1.0))


def test_float_labels_and_label_like_images_are_refused():
    volume = make_volume()
    with pytest.raises(PastaError, match="non-integer|negative"):
        as_label(volume)
    with pytest.raises(PastaError, match="non-integer"):
        as_label(volume.with_array(np.full(volume.array.shape, 0.5, np.float32)))
    float_labels = make_volume(is_label=True)
    assert as_label(float_labels.with_array(float_labels.array.astype(np.float64))).array.dtype == np.uint8


def test_mr_is_refused_by_ct_check(sample_dir, lung1):
    check_ct(lung1[0])
    with pytest.raises(PastaError, match="does not look like CT"):
        check_ct(read_volume(sample_dir / "brain1_image.nrrd"))


def test_grid_mismatch_is_refused(lung1, lung2):
    with pytest.raises(PastaError, match="does not match the image grid"):
        lung1[0].check_matches(lung2[1])


def test_write_never_overwrites_without_permission(tmp_path):
    volume = make_volume()
    path = write_volume(volume, tmp_path / "a.nii.gz")
    before = path.read_bytes()
    with pytest.raises(PastaError, match="already exists"):
        write_volume(make_volume(seed=3), path)
    assert path.read_bytes() == before
    write_volume(make_volume(seed=3), path, overwrite=True)
    assert path.read_bytes() != before


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import SimpleITK as sitk

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken)
    with pytest.raises(PastaError, match="disk full"):
        write_volume(make_volume(), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_seg_nrrd_segments_are_read(tmp_path, scene, lung1):
    from pastacore.mrml import segmentations, volumes
    from pastacore.terminology import segment_info

    image, label = lung1
    node = volumes.node_from_volume(scene.scene, image, "ct")
    seg, _ = segmentations.add_labels_to_segmentation(scene.scene, label, {1: segment_info("tumor@lung")}, node)
    seg.AddDefaultStorageNode()
    seg.GetStorageNode().SetFileName(str(tmp_path / "tumour.seg.nrrd"))
    assert seg.GetStorageNode().WriteData(seg)
    back = read_volume(tmp_path / "tumour.seg.nrrd")
    assert back.is_label and back.meta["segments"][0]["name"] == "Lung tumor"
    full = np.zeros(image.array.shape, bool)
    # the file stores the segment's extent only; place it by geometry
    from pastacore.geometry.resample import resample

    assert np.array_equal(resample(back, image.grid).array > 0, label.array > 0)
    assert full.shape == image.array.shape


def test_voxel_box_of_a_mask_and_its_extent_in_mm():
    from conftest import make_volume, rotation

    from pastacore.geometry.boxes import VoxelBox

    mask = np.zeros((10, 12, 14), bool)
    assert VoxelBox.from_mask(mask) is None
    mask[2:5, 3:9, 4:6] = True
    box = VoxelBox.from_mask(mask)
    assert box.start == (2, 3, 4) and box.stop == (5, 9, 6)
    assert VoxelBox.from_mask(mask, margin=3) == VoxelBox((0, 0, 1), (8, 12, 9))
    grid = make_volume((10, 12, 14), (0.5, 0.8, 2.5)).grid
    assert grid.extent_mm(box) == pytest.approx([2 * 0.5, 6 * 0.8, 3 * 2.5])  # i, j, k footprints included
    assert grid.extent_mm() == pytest.approx([14 * 0.5, 12 * 0.8, 10 * 2.5])
    rotated = make_volume((10, 12, 14), (1.0, 1.0, 1.0), direction=rotation(0, 0, 90)).grid
    assert rotated.extent_mm(box) == pytest.approx([6.0, 2.0, 3.0])  # x and y swap under a 90 degree turn
