"""The MRML adapters against the real Slicer MRML of the PyPI package slicer-core."""

import numpy as np
import pytest
from conftest import make_volume, rotation

from pastacore.errors import PastaError
from pastacore.terminology import parse_tag, segment_info

slicer = pytest.importorskip("slicer")

from pastacore.mrml import roi, scene_io, segmentations, volumes  # noqa: E402


@pytest.mark.parametrize("left_handed", [False, True])
def test_volume_node_round_trip_is_exact(scene, left_handed):
    volume = make_volume((9, 10, 11), (0.7, 0.8, 2.5), (12.0, -30.0, 4.0), rotation(15, -20, 35, left_handed))
    node = volumes.node_from_volume(scene.scene, volume, "ct")
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(ijk_to_ras, volume.grid.ijk_to_ras(), atol=1e-9)
    back = volumes.volume_from_node(node)
    assert np.array_equal(back.array, volume.array) and back.grid.same_as(volume.grid, 1e-9)


def test_user_volume_is_never_reused(scene):
    volume = make_volume()
    first = volumes.node_from_volume(scene.scene, volume, "ct")
    second = volumes.node_from_volume(scene.scene, volume, "ct")
    assert first.GetID() != second.GetID() and first.GetName() != second.GetName()


def test_transformed_volume_is_refused(scene):
    node = volumes.node_from_volume(scene.scene, make_volume(), "ct")
    transform = scene.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(PastaError, match="harden"):
        volumes.volume_from_node(node)


def test_labelmap_to_segmentation_with_terminology(scene, lung1):
    image, label = lung1
    node = volumes.node_from_volume(scene.scene, image, "lung1")
    labels = label.with_array(label.array.copy())
    labels.array[5:7, 200:230, 200:230] = 2
    seg, added = segmentations.add_labels_to_segmentation(
        scene.scene, labels, {1: segment_info("tumor@lung"), 2: segment_info("lung"), 3: segment_info("liver")}, node
    )
    assert set(added) == {1, 2}  # label 3 is absent: no empty segment
    infos = dict(segmentations.segment_infos(seg))
    tumour = infos[added[1]]
    assert tumour.name == "Lung tumor" and tumour.color == pytest.approx(segment_info("tumor@lung").color)
    tag = parse_tag(tumour.terminology)
    assert tag["type"] == ("SCT", "108369006", "Neoplasm") and tag["region"] == ("SCT", "39607008", "Lung")
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()).GetID() == node.GetID()
    exported, ids = segmentations.labels_from_segmentation(scene.scene, seg, node, [added[1], added[2]])
    assert np.array_equal(exported.array == 1, labels.array == 1)
    assert np.array_equal(exported.array == 2, labels.array == 2)


def test_adding_results_never_overwrites_existing_segments(scene, lung1):
    image, label = lung1
    node = volumes.node_from_volume(scene.scene, image, "lung1")
    seg, first = segmentations.add_labels_to_segmentation(scene.scene, label, {1: segment_info("tumor@lung")}, node)
    before, _ = segmentations.labels_from_segmentation(scene.scene, seg, node, [first[1]])
    shifted = label.with_array(np.roll(label.array, 5, axis=2))
    seg, second = segmentations.add_labels_to_segmentation(
        scene.scene, shifted, {1: segment_info("tumor@lung")}, node, segmentation_node=seg
    )
    assert segmentations.segment_names(seg) == ["Lung tumor", "Lung tumor 2"]
    after, _ = segmentations.labels_from_segmentation(scene.scene, seg, node, [first[1]])
    assert np.array_equal(before.array, after.array)


def test_segmentation_is_placed_in_the_volume_study(scene):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene.scene)
    volume = make_volume(is_label=False)
    node = volumes.node_from_volume(scene.scene, volume, "ct")
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient")
    study = sh.CreateStudyItem(patient, "Study")
    sh.CreateItem(study, node)
    seg, _ = segmentations.add_labels_to_segmentation(scene.scene, make_volume(is_label=True), {1: segment_info("liver")}, node)
    assert sh.GetItemParent(sh.GetItemByDataNode(seg)) == study


def test_labels_on_another_grid_are_refused(scene, lung1, lung2):
    node = volumes.node_from_volume(scene.scene, lung1[0], "lung1")
    with pytest.raises(PastaError, match="reference volume's grid"):
        segmentations.add_labels_to_segmentation(scene.scene, lung2[1], {1: segment_info("tumor@lung")}, node)


def test_roi_to_voxel_box(scene, lung1):
    image, _ = lung1
    grid = image.grid
    centre_ijk = np.array([256, 256, 24])
    centre_ras = (grid.ijk_to_ras() @ np.append(centre_ijk, 1))[:3]
    node = roi.add_roi(scene.scene, centre_ras, (20.0, 30.0, 21.0))
    box = roi.box_from_roi(node, grid)
    # 20 mm / 0.5703 mm = 35 voxel spacings -> 36 centres (+-17.5); 21 mm / 5 mm -> 5 slices
    assert box.start[2] <= 256 < box.stop[2] and box.shape[2] in (35, 36)
    assert box.shape[0] == 5 and box.shape[1] in (52, 53)
    # voxel centres at the box edges are inside the ROI
    corner = grid.index_to_lps([box.start[2], box.start[1], box.start[0]]) * [-1, -1, 1]
    assert np.all(np.abs(corner - centre_ras) <= np.array([10, 15, 10.5]) + 1e-6)


def test_rotated_roi_and_clipping_and_outside(scene, lung1):
    grid = lung1[0].grid
    centre = (grid.ijk_to_ras() @ np.array([5, 5, 2, 1.0]))[:3]
    node = roi.add_roi(scene.scene, centre, (40.0, 40.0, 40.0))
    box = roi.box_from_roi(node, grid)
    assert box.start == (0, 0, 0)  # clipped at the volume corner
    middle = (grid.ijk_to_ras() @ np.array([256, 256, 24, 1.0]))[:3]
    rotated = roi.add_roi(scene.scene, middle, (40.0, 10.0, 10.0))
    import vtk

    transform = vtk.vtkMatrix4x4()  # the ROI's pose: rotation and its centre
    for r, row in enumerate(rotation(0, 0, 45)):
        for c, value in enumerate(row):
            transform.SetElement(r, c, value)
        transform.SetElement(r, 3, middle[r])
    rotated.SetAndObserveObjectToNodeMatrix(transform)
    rbox = roi.box_from_roi(rotated, grid)
    # a 40 x 10 mm box turned 45 degrees spans (40 + 10) / sqrt(2) = 35.4 mm along both R and A
    assert abs(rbox.shape[2] * grid.spacing[0] - 35.4) < 1.5 and abs(rbox.shape[1] * grid.spacing[1] - 35.4) < 1.5
    far = roi.add_roi(scene.scene, (5000.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    with pytest.raises(PastaError, match="entirely outside"):
        roi.box_from_roi(far, grid)


def test_mrb_save_and_reload(scene, lung1, tmp_path):
    image, label = lung1
    node = volumes.node_from_volume(scene.scene, image, "lung1")
    seg, added = segmentations.add_labels_to_segmentation(scene.scene, label, {1: segment_info("tumor@lung")}, node)
    roi.add_roi(scene.scene, (0.0, 180.0, -700.0), (30.0, 30.0, 30.0), name="box")
    path = scene_io.save_mrb(scene.scene, tmp_path / "scene.mrb")
    with pytest.raises(PastaError, match="already exists"):
        scene_io.save_mrb(scene.scene, path)
    reloaded = scene_io.load_mrb(path)
    new_node = reloaded.scene.GetFirstNodeByName("lung1")
    assert np.array_equal(volumes.volume_from_node(new_node).array, image.array)
    new_seg = reloaded.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    ((sid, info),) = segmentations.segment_infos(new_seg)
    assert info.name == "Lung tumor" and parse_tag(info.terminology)["region"][1] == "39607008"
    exported, _ = segmentations.labels_from_segmentation(reloaded.scene, new_seg, new_node)
    assert np.array_equal(exported.array > 0, label.array > 0)
    new_roi = reloaded.scene.GetFirstNodeByName("box")
    assert list(new_roi.GetSize()) == pytest.approx([30.0, 30.0, 30.0])


def test_corrupt_mrb_is_refused(tmp_path):
    bad = tmp_path / "bad.mrb"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PastaError, match="not a valid Slicer scene bundle"):
        scene_io.load_mrb(bad)


def test_mrb_with_a_relative_path(scene, tmp_path, monkeypatch):
    """``pasta demo`` writes into ./pasta-demo: a relative bundle path must work both ways."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    volume = make_volume()
    volumes.node_from_volume(scene.scene, volume, "small")
    path = scene_io.save_mrb(scene.scene, Path("out") / "scene.mrb")
    assert path.is_absolute() and path.is_file() and path.parent == tmp_path / "out"
    reloaded = scene_io.load_mrb(Path("out") / "scene.mrb")
    assert np.array_equal(volumes.volume_from_node(reloaded.scene.GetFirstNodeByName("small")).array, volume.array)
