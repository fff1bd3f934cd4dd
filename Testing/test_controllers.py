"""The controllers behind the Slicer modules and the web app, driven as a click drives them, on
the real Slicer MRML of slicer-core: Segment, Preview/Apply/Discard a lesion, measure and
follow edits, export. Every action is checked for what it leaves in the scene."""

import json
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from conftest import phantom_ct  # noqa: E402

from pastacore.actions.finetune import FinetuneOptions  # noqa: E402
from pastacore.actions.segment import SegmentOptions  # noqa: E402
from pastacore.actions.synth import SynthOptions  # noqa: E402
from pastacore.errors import PastaError  # noqa: E402
from pastacore.mrml import roi, segmentations, volumes  # noqa: E402
from pastacore.mrml.scene import new_scene, node_ids  # noqa: E402
from pastacore.tasks import InlineRunner  # noqa: E402
from pastacore.terminology import segment_info  # noqa: E402
from PastaSlicerLib.controllers import ReportController, SegmentController, SegmentRequest, SynthController, SynthRequest  # noqa: E402
from PastaSlicerLib.controllers.segment import MODEL_ATTRIBUTE  # noqa: E402


class LaterRunner(InlineRunner):
    """Runs the job at once but reports the outcome only when polled: lets a test change the
    scene while a job is 'running', as a user can."""

    def start(self, job, params, folder, on_progress=None, on_finished=None):
        outcomes = []
        super().start(job, params, folder, on_progress, outcomes.append)
        handle = type(self).Handle(lambda: on_finished(outcomes[0]))
        return handle

    class Handle:
        def __init__(self, deliver):
            self.deliver, self.outcome = deliver, None

        def poll(self):
            if self.outcome is None:
                self.outcome = True
                self.deliver()
            return False

        wait = poll


@pytest.fixture()
def world():
    context = new_scene()
    ct = volumes.node_from_volume(context.scene, phantom_ct(), "phantom CT")
    return context.scene, ct


def added_nodes(scene, before):
    return [scene.GetNodeByID(i) for i in node_ids(scene) if i not in before]


def classes(nodes):
    return sorted(n.GetClassName() for n in nodes)


# -- Segment ---------------------------------------------------------------------------------


def test_segment_adds_one_new_segmentation_and_nothing_else(world, tiny_lung_model):
    scene, ct = world
    before = set(node_ids(scene))
    controller = SegmentController(scene, InlineRunner())
    request = SegmentRequest(ct, SegmentOptions(model=tiny_lung_model))
    assert "lungs" in controller.region_text(request)  # a lung model searches the lungs by default
    outcomes, progress = [], []
    controller.start(request, on_progress=lambda f, m: progress.append(f), on_finished=outcomes.append)
    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    node = outcome.value
    assert classes(added_nodes(scene, before)) == ["vtkMRMLSegmentationDisplayNode", "vtkMRMLSegmentationNode"]
    assert json.loads(node.GetAttribute(MODEL_ATTRIBUTE))["name"] == "tiny-lung"
    assert "lungs" in " ".join(controller.last_result["notes"])
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    names = segmentations.segment_names(node)
    assert set(names) <= {"Lung", "Lung tumor"} and names


def test_segment_again_adds_a_second_node_and_keeps_the_first(world, tiny_lung_model):
    scene, ct = world
    controller = SegmentController(scene, InlineRunner())
    first, second = [], []
    controller.start(SegmentRequest(ct, SegmentOptions(model=tiny_lung_model)), on_finished=first.append)
    segments_before = segmentations.segment_names(first[0].value)
    controller.start(SegmentRequest(ct, SegmentOptions(model=tiny_lung_model)), on_finished=second.append)
    assert second[0].value.GetID() != first[0].value.GetID()
    assert segmentations.segment_names(first[0].value) == segments_before


def test_segment_in_a_box_and_in_a_study(world, tiny_lung_model):
    scene, ct = world
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    item = sh.GetItemByDataNode(ct) or sh.CreateItem(sh.GetSceneItemID(), ct)
    sh.SetItemParent(item, study)
    box = roi.add_roi(scene, (-48.0, 0.0, 0.0), (30.0, 30.0, 30.0), name="search box")
    controller = SegmentController(scene, InlineRunner())
    request = SegmentRequest(ct, SegmentOptions(model=tiny_lung_model), roi=box)
    assert "box" in controller.region_text(request)
    outcomes = []
    controller.start(request, on_finished=outcomes.append)
    node = outcomes[0].value
    assert controller.last_result["notes"] == ["restricted to the user box"]
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    labels, _ = segmentations.labels_from_segmentation(scene, node, ct)
    inside = np.zeros(labels.array.shape, bool)
    from pastacore.mrml.roi import box_from_roi

    inside[box_from_roi(box, labels.grid).slices] = True
    assert not (labels.array[~inside] > 0).any()


def test_segment_whole_body_ignores_the_model_organ(world, tiny_lung_model):
    scene, ct = world
    controller = SegmentController(scene, InlineRunner())
    request = SegmentRequest(ct, SegmentOptions(model=tiny_lung_model, organ="body"))
    assert controller.region_text(request) == "in the whole body"
    controller.start(request, on_finished=lambda outcome: None)
    assert controller.last_result["notes"] == ["air outside the body skipped"]


def test_a_volume_removed_while_segmenting_gets_nothing(world, tiny_lung_model):
    scene, ct = world
    outcomes = []
    handle = SegmentController(scene, LaterRunner()).start(
        SegmentRequest(ct, SegmentOptions(model=tiny_lung_model)), on_finished=outcomes.append
    )
    scene.RemoveNode(ct)
    before = set(node_ids(scene))
    handle.poll()
    assert not outcomes[0].ok and "removed" in outcomes[0].error
    assert set(node_ids(scene)) == before


def test_segment_refuses_a_missing_volume(world):
    scene, _ = world
    controller = SegmentController(scene, InlineRunner())
    assert controller.problem(SegmentRequest(None)) == "Select a CT volume"
    from pastacore.errors import PastaError

    with pytest.raises(PastaError, match="Select a CT volume"):
        controller.start(SegmentRequest(None))


def test_bad_model_is_an_error_outcome_and_adds_nothing(world, tmp_path):
    scene, ct = world
    before = set(node_ids(scene))
    outcomes = []
    SegmentController(scene, InlineRunner()).start(
        SegmentRequest(ct, SegmentOptions(model=str(tmp_path / "nothing.pth"))), on_finished=outcomes.append
    )
    assert outcomes[0].error and "\n" not in outcomes[0].error
    assert set(node_ids(scene)) == before


# -- Synthesise ------------------------------------------------------------------------------


def lesion_request(ct, box):
    return SynthRequest(ct, SynthOptions(lesion_type="lung_tumor", attributes="12 mm round-like solid nodule", seed=3), roi=box)


def test_preview_then_apply_keeps_a_new_volume_and_lesion(world):
    scene, ct = world
    box = roi.add_roi(scene, (-48.0, 0.0, 0.0), (36.0, 36.0, 36.0))  # inside the right lung: an ROI alone
    before = set(node_ids(scene))
    original = volumes.volume_from_node(ct).array.copy()
    controller = SynthController(scene, InlineRunner())
    outcomes = []
    controller.preview(lesion_request(ct, box), on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    preview = outcomes[0].value
    changed = volumes.volume_from_node(preview).array != original
    assert changed.any() and np.array_equal(volumes.volume_from_node(ct).array, original)
    lesion_names = segmentations.segment_names(controller.preview_segmentation)
    assert "Lung tumor (synthetic)" in lesion_names
    kept = controller.apply()
    assert kept is preview and "synthetic lung_tumor" in kept.GetName() and not controller.has_preview
    made = added_nodes(scene, before)
    assert sum(n.IsA("vtkMRMLScalarVolumeNode") for n in made) == 1
    assert sum(n.IsA("vtkMRMLSegmentationNode") for n in made) == 1
    assert not any(n.IsA("vtkMRMLColorTableNode") or n.IsA("vtkMRMLLabelMapVolumeNode") for n in made)


def test_preview_again_replaces_and_discard_leaves_the_scene_as_it_was(world):
    scene, ct = world
    box = roi.add_roi(scene, (-48.0, 0.0, 0.0), (36.0, 36.0, 36.0))
    before = set(node_ids(scene))
    controller = SynthController(scene, InlineRunner())
    controller.preview(lesion_request(ct, box))
    first = set(node_ids(scene))
    controller.preview(lesion_request(ct, box))
    assert len(node_ids(scene)) == len(first)
    controller.discard()
    assert set(node_ids(scene)) == before and not controller.has_preview


def test_preview_outside_the_lung_is_a_one_line_error(world):
    scene, ct = world
    box = roi.add_roi(scene, (0.0, 60.0, 0.0), (10.0, 10.0, 10.0))  # in front of the body: no lung there
    outcomes = []
    SynthController(scene, InlineRunner()).preview(lesion_request(ct, box), on_finished=outcomes.append)
    assert outcomes[0].error and "lung" in outcomes[0].error and "\n" not in outcomes[0].error


def test_parsed_attributes_show_what_the_text_means():
    parsed = SynthController.parsed_attributes("3 cm irregular hypodense liver lesion, ill-defined margin")
    assert parsed["lesion_type"].startswith("liver")
    assert parsed["attributes"]["shape"] == ["irregular"]


# -- Measure, follow edits, export ------------------------------------------------------------


@pytest.fixture()
def lesion_segmentation(world):
    scene, ct = world
    labels = volumes.volume_from_node(ct)
    mask = np.zeros(labels.array.shape, np.uint8)
    mask[10:14, 36:44, 52:60] = 2
    node, _ = segmentations.add_labels_to_segmentation(
        scene, labels.with_array(mask, is_label=True), {2: segment_info("tumor@lung")}, ct
    )
    return node


def test_measure_uses_one_table_and_follows_edits(world, lesion_segmentation):
    scene, ct = world
    controller = ReportController(scene, InlineRunner())
    table, measurements = controller.measure(ct, lesion_segmentation)
    assert table.GetNumberOfRows() == 1 and measurements[0].volume_ml == pytest.approx(4 * 8 * 8 * 36 / 1000)
    count = scene.GetNumberOfNodes()
    seen = []
    watch = controller.follow_edits(ct, lesion_segmentation, on_measured=lambda t, m, e: seen.append((t, len(m), e)))
    # an edit: a second lesion painted into the segmentation
    labels = volumes.volume_from_node(ct)
    mask = np.zeros(labels.array.shape, np.uint8)
    mask[4:6, 36:40, 20:24] = 1
    segmentations.add_labels_to_segmentation(
        scene, labels.with_array(mask, is_label=True), {1: segment_info("nodule@lung")}, ct, lesion_segmentation
    )
    assert seen and seen[-1][0] is table and seen[-1][1] == 2 and seen[-1][2] is None
    assert table.GetNumberOfRows() == 2
    assert scene.GetNumberOfNodes() == count  # the same table; no colour table or label map left
    watch.stop()
    seen.clear()
    segmentations.add_labels_to_segmentation(
        scene, labels.with_array(mask, is_label=True), {1: segment_info("cyst@lung")}, ct, lesion_segmentation
    )
    assert not seen


def test_measure_after_the_table_was_deleted_makes_a_new_one(world, lesion_segmentation):
    scene, ct = world
    controller = ReportController(scene, InlineRunner())
    table, _ = controller.measure(ct, lesion_segmentation)
    scene.RemoveNode(table)
    again, _ = controller.measure(ct, lesion_segmentation)
    assert again is not table and again.GetScene() is scene


def test_export_writes_every_format_and_leaves_the_scene_alone(world, lesion_segmentation, tmp_path):
    scene, ct = world
    lesion_segmentation.SetAttribute(MODEL_ATTRIBUTE, json.dumps({"name": "tiny-lung", "version": "test", "sha256": "ab"}))
    before = set(node_ids(scene))
    outcomes = []
    controller = ReportController(scene, InlineRunner())
    controller.export(ct, lesion_segmentation, tmp_path / "report", on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    written = set(outcomes[0].value)
    assert {"report.json", "type.json", "report.html", "report.pdf", "dicom/seg.dcm", "dicom/sr.dcm"} <= written
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["tiny-lung"]
    assert set(node_ids(scene)) == before


def test_organ_segments_are_not_measured_as_lesions(world):
    scene, ct = world
    labels = volumes.volume_from_node(ct)
    mask = np.zeros(labels.array.shape, np.uint8)
    mask[6:18, 30:50, 18:30] = 1  # the lung
    mask[10:12, 38:42, 22:26] = 2  # a tumour in it
    node, _ = segmentations.add_labels_to_segmentation(
        scene, labels.with_array(mask, is_label=True), {1: segment_info("lung"), 2: segment_info("tumor@lung")}, ct
    )
    controller = ReportController(scene, InlineRunner())
    assert [node.GetSegmentation().GetSegment(s).GetName() for s in controller.lesion_segments(node)] == ["Lung tumor"]
    _table, measurements = controller.measure(ct, node)
    assert [m.name for m in measurements] == ["Lung tumor"]
    assert measurements[0].volume_ml == pytest.approx(2 * 4 * 4 * 36 / 1000)


# -- confidence, status and provenance through the scene, a .mrb and the report -----------------


def _opened(path):
    from pastacore.mrml.scene_io import load_mrb

    scene = load_mrb(path).scene
    ct = scene.GetFirstNodeByName("lung2 CT")
    node = next(
        scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
    )
    return scene, ct, node


def test_model_and_confidence_travel_from_the_node_through_an_mrb_to_the_report(lung2_segmented, tmp_path):
    from pastacore.candidates import CANDIDATES_TAG
    from pastacore.mrml.segmentations import segment_tag

    scene, ct, node = _opened(lung2_segmented)
    assert json.loads(node.GetAttribute(MODEL_ATTRIBUTE))["name"] == "pasta-lung-default"
    controller = ReportController(scene, InlineRunner())
    (lesion_segment,) = controller.lesion_segments(node)
    assert json.loads(segment_tag(node, lesion_segment, CANDIDATES_TAG))[0]["mean_probability"] > 0
    review = controller.review(ct, node)
    assert review.lesions and all(lesion.status == "proposed" for lesion in review.lesions)
    assert all(0 < lesion.mean_probability <= lesion.max_probability <= 1 for lesion in review.lesions)
    confidences = [lesion.mean_probability for lesion in review.lesions]
    assert confidences == sorted(confidences, reverse=True)  # most confident first
    assert "pasta-lung-default" in review.origin
    outcomes = []
    controller.export(ct, node, tmp_path / "report", formats=["json", "html"], on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    description = json.loads(
        (Path(__file__).parents[1] / "Resources" / "models" / "pasta-lung-default" / "model.json").read_text()
    )
    (model,) = data["models"]
    assert (model["name"], model["version"], model["sha256"]) == (
        "pasta-lung-default",
        description["version"],
        description["files"][0]["sha256"],
    )
    assert model["file"] == "model.pth" and "pasta-lung-default" in data["origin"]
    assert data["lesions"][0]["mean_probability"] == pytest.approx(review.lesions[0].mean_probability, abs=1e-3)
    assert "pasta-lung-default" in (tmp_path / "report" / "report.html").read_text()
    table, _ = controller.measure(ct, node)
    titles = [table.GetTable().GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert titles[2:6] == ["Confidence", "Max confidence", "Status", "RECIST"]
    assert table.GetCellText(0, 4) == "proposed" and float(table.GetCellText(0, 2)) > 0


def _grow_first_lesion(scene, ct, node, segment_id):
    """An edit as the Segment Editor makes it: the segment's largest piece grown by one voxel."""
    import vtk
    from scipy import ndimage

    from pastacore.mrml.scene import temporary_nodes

    labels, _ = segmentations.labels_from_segmentation(scene, node, ct, [segment_id])
    pieces, _ = ndimage.label(labels.array > 0, structure=np.ones((3, 3, 3), bool))
    largest = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1
    grown = (labels.array > 0) | ndimage.binary_dilation(largest)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    with temporary_nodes(scene):
        label_node = volumes.node_from_volume(scene, labels.with_array(grown.astype(np.uint8), is_label=True), "edit")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, node, ids)


def test_edits_additions_and_confirmations_are_told_apart_and_kept(lung2_segmented, tmp_path):
    from pastacore.mrml.scene_io import load_mrb, save_mrb

    scene, ct, node = _opened(lung2_segmented)
    controller = ReportController(scene, InlineRunner())
    (lesion_segment,) = controller.lesion_segments(node)
    first = controller.review(ct, node).lesions
    biggest = max(first, key=lambda lesion: lesion.measurement.voxel_count)
    _grow_first_lesion(scene, ct, node, lesion_segment)
    labels = volumes.volume_from_node(ct)
    drawn = np.zeros(labels.array.shape, np.uint8)
    drawn[5:8, 60:70, 60:70] = 1  # a person paints a new lesion far from the model's
    segmentations.add_labels_to_segmentation(
        scene, labels.with_array(drawn, is_label=True), {1: segment_info("nodule@lung")}, ct, node
    )
    review = controller.review(ct, node)
    by_status = {}
    for lesion in review.lesions:
        by_status.setdefault(lesion.status, []).append(lesion)
    assert len(by_status["edited"]) == 1 and len(by_status["manual"]) == 1
    edited = by_status["edited"][0]
    assert edited.mean_probability == pytest.approx(biggest.mean_probability)  # the model's confidence before
    assert by_status["manual"][0].mean_probability is None and review.lesions[0].status == "manual"  # drawn: first
    controller.confirm(ct, node, [edited.number])
    save_mrb(scene, tmp_path / "reviewed.mrb")
    again = load_mrb(tmp_path / "reviewed.mrb").scene
    node2 = again.GetNodeByID(node.GetID())
    review = ReportController(again, InlineRunner()).review(again.GetNodeByID(ct.GetID()), node2)
    assert sorted(lesion.status for lesion in review.lesions if lesion.status != "proposed") == ["confirmed", "manual"]


def test_compare_two_time_points_from_the_hub(world, lesion_segmentation, tmp_path):
    scene, ct = world
    controller = ReportController(scene, InlineRunner())
    done = []
    controller.export(ct, lesion_segmentation, tmp_path / "t1", formats=["json"], on_finished=done.append)
    labels = volumes.volume_from_node(ct)
    smaller = np.zeros(labels.array.shape, np.uint8)
    smaller[10:14, 38:42, 54:58] = 2  # the lesion at half its width
    later, _ = segmentations.add_labels_to_segmentation(
        scene, labels.with_array(smaller, is_label=True), {2: segment_info("tumor@lung")}, ct
    )
    controller.export(ct, later, tmp_path / "t2", formats=["json", "html"], baseline_dir=tmp_path / "t1", on_finished=done.append)
    assert all(outcome.ok for outcome in done), [o.error for o in done]
    compared = []
    controller.compare(tmp_path / "t1", tmp_path / "t2", on_finished=compared.append)
    value = compared[0].value
    assert value["overall_response"] == "PR" and value["sum_change_percent"] <= -30
    assert compared[0].message.startswith("RECIST 1.1 response: PR")
    followup = json.loads((tmp_path / "t2" / "report.json").read_text())
    assert followup["time_point"] == "follow-up" and followup["comparison"]["overall_response"] == "PR"
    with pytest.raises(PastaError, match="both CT volumes"):
        controller.compare(tmp_path / "t1", tmp_path / "t2", baseline_volume=ct)


# -- Fine-tune ----------------------------------------------------------------------------------


def test_finetune_trains_on_edited_segmentations_and_the_model_appears_in_the_list(world, tiny_lung_model, tmp_path):
    """Volumes with their corrected segmentations -> a tiny run in the task's job -> the new model
    in the store, usable by Segment at once; nothing is added to the scene."""
    pytest.importorskip("monai")
    from pastacore.modelstore.store import ModelStore
    from PastaSlicerLib.controllers import FinetuneCase, FinetuneController, FinetuneRequest

    scene, ct = world
    labels = volumes.volume_from_node(ct)
    mask = np.zeros(labels.array.shape, np.uint8)
    mask[10:14, 36:44, 52:60] = 1  # a "lung" segment (an organ: never taught as a lesion)
    mask[11:13, 38:42, 54:58] = 2  # the corrected tumour
    edited, _ = segmentations.add_labels_to_segmentation(
        scene, labels.with_array(mask, is_label=True), {1: segment_info("lung"), 2: segment_info("tumor@lung")}, ct
    )
    store = ModelStore(tmp_path / "store")
    controller = FinetuneController(scene, InlineRunner(), store)
    assert controller.candidates() == [(ct, edited)]
    assert [edited.GetSegmentation().GetSegment(s).GetName() for s in controller.lesion_segments(edited)] == ["Lung tumor"]
    request = FinetuneRequest(
        [FinetuneCase(ct, edited)], FinetuneOptions(name="my-lung", model=str(tiny_lung_model), steps=2, device="cpu")
    )
    assert (
        controller.problem(FinetuneRequest([], FinetuneOptions(name="x")))
        == "Pick at least one volume with its edited segmentation"
    )
    assert "letters, digits" in controller.problem(FinetuneRequest(request.cases, FinetuneOptions(name="no spaces")))
    before = set(node_ids(scene))
    outcomes, progress = [], []
    controller.start(request, on_progress=lambda f, m: progress.append(f), on_finished=outcomes.append)
    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    assert outcome.value.name == "my-lung" and "my-lung" in outcome.message
    assert set(node_ids(scene)) == before
    assert store.verify("my-lung") == (True, [])
    assert [m.name for m in store.list() if not m.builtin] == ["my-lung"]
    assert progress and progress[-1] == 1.0
    assert "already installed" in controller.problem(request)
    # the new model segments at once (from its folder in the store: the segment job reads the user's store)
    segment_outcomes = []
    SegmentController(scene, InlineRunner(), store).start(
        SegmentRequest(ct, SegmentOptions(model=str(outcome.value.path))), on_finished=segment_outcomes.append
    )
    assert segment_outcomes[0].ok, segment_outcomes[0].error
    assert json.loads(segment_outcomes[0].value.GetAttribute(MODEL_ATTRIBUTE))["name"] == "my-lung"
