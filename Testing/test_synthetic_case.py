"""The synthetic case a user keeps (issue 32), on slicer-core with the real lung2 CT segmented by
the built-in model: Preview copies the source's segments (with their tags and the model) and adds
the lesion tagged as synthetic; the report lists the real tumour and the synthetic lesion, marked;
Apply keeps the whole case; Discard leaves the scene as it was."""

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from pastacore.actions.synth import SynthOptions  # noqa: E402
from pastacore.candidates import CANDIDATES_TAG  # noqa: E402
from pastacore.mrml import roi, segmentations, volumes  # noqa: E402
from pastacore.mrml.scene import node_ids  # noqa: E402
from pastacore.mrml.scene_io import load_mrb  # noqa: E402
from pastacore.synthetic import SYNTHETIC_TAG  # noqa: E402
from pastacore.tasks import InlineRunner  # noqa: E402
from PastaSlicerLib.controllers import ReportController, SynthController, SynthRequest  # noqa: E402

RIGHT_LUNG_RAS = (62.7, 106.3, -200.0)  # deep in lung2's right lung (pastacore.anatomy.masks.lung_mask), away from the tumour


def opened(path):
    scene = load_mrb(path).scene
    ct = scene.GetFirstNodeByName("lung2 CT")
    node = next(iter(scene.GetNodesByClass("vtkMRMLSegmentationNode")))
    return scene, ct, node


def segments(node):
    content = node.GetSegmentation()
    return {content.GetSegment(s).GetName(): s for s in content.GetSegmentIDs()}


def preview(scene, ct, seed=5):
    box = roi.add_roi(scene, RIGHT_LUNG_RAS, (32.0, 32.0, 30.0))
    controller = SynthController(scene, InlineRunner())
    request = SynthRequest(ct, SynthOptions(attributes="12 mm round-like solid lung nodule", seed=seed), roi=box)
    outcomes = []
    controller.preview(request, on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    return controller, box


def test_apply_keeps_the_source_segments_and_the_tagged_lesion(lung2_segmented):
    scene, ct, source = opened(lung2_segmented)
    source_names = segments(source)
    assert "Lung tumor" in source_names
    controller, _box = preview(scene, ct)  # the source segmentation is found: the last made on the CT
    case = controller.preview_segmentation
    names = segments(case)
    assert set(source_names) <= set(names) and "Lung tumor (synthetic)" in names
    assert len(names) == len(source_names) + 1
    for name, sid in source_names.items():  # copies with their terminology and the model's candidates
        for tag in (segmentations.TERMINOLOGY_TAG, CANDIDATES_TAG):
            assert segmentations.segment_tag(case, names[name], tag) == segmentations.segment_tag(source, sid, tag)
    assert case.GetAttribute(segmentations.MODEL_ATTRIBUTE) == source.GetAttribute(segmentations.MODEL_ATTRIBUTE)
    record = json.loads(segmentations.segment_tag(case, names["Lung tumor (synthetic)"], SYNTHETIC_TAG))
    assert record["seed"] == 5 and record["engine"] == "procedural" and record["lesion_type"] == "lung_tumor"
    assert record["attributes"]["size"] == [12.0, 12.0, 12.0]

    review = ReportController(scene, InlineRunner()).review(controller.preview_volume, case)
    by_status = {lesion.status: lesion for lesion in review.lesions}
    assert {"proposed", "synthetic"} <= set(by_status)  # the real tumour, as the model proposed it, and the new one
    synthetic = by_status["synthetic"]
    assert synthetic.synthetic["seed"] == 5 and synthetic.mean_probability is None
    assert synthetic.number not in review.recist["targets"] and by_status["proposed"].number in review.recist["targets"]
    assert "synthetic lesion: not chosen automatically" in synthetic.recist["reason"]

    kept = controller.apply()
    assert "synthetic lung_tumor" in kept.GetName() and case.GetName() == f"{kept.GetName()} segmentation"
    assert not controller.has_preview and case.GetScene() is scene
    lesion, _ = segmentations.labels_from_segmentation(scene, case, kept, [names["Lung tumor (synthetic)"]])
    lung, _ = segmentations.labels_from_segmentation(scene, case, kept, [names["Lung"]]) if "Lung" in names else (None, None)
    if lung is not None:  # the lesion's voxels were taken out of the organ it lies in
        assert not ((lesion.array > 0) & (lung.array > 0)).any()


def test_discard_leaves_the_scene_as_before(lung2_segmented):
    scene, ct, source = opened(lung2_segmented)
    reports = ReportController(scene, InlineRunner())
    reports.measure(ct, source)
    box = roi.add_roi(scene, RIGHT_LUNG_RAS, (32.0, 32.0, 30.0))
    before = set(node_ids(scene))
    original = volumes.volume_from_node(ct).array.copy()
    source_state = {
        name: segmentations.labels_from_segmentation(scene, source, ct, [sid])[0].array.sum()
        for name, sid in segments(source).items()
    }
    controller = SynthController(scene, InlineRunner())
    request = SynthRequest(
        ct, SynthOptions(attributes="15 mm solid lung nodule", seed=2), roi=box, source_segmentations=(source,)
    )
    outcomes = []
    controller.preview(request, on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    reports.measure(controller.preview_volume, controller.preview_segmentation)  # as the web app does: a table for the case
    assert len(set(node_ids(scene)) - before) >= 3
    controller.discard()
    assert set(node_ids(scene)) == before
    assert np.array_equal(volumes.volume_from_node(ct).array, original)
    after = {
        name: segmentations.labels_from_segmentation(scene, source, ct, [sid])[0].array.sum()
        for name, sid in segments(source).items()
    }
    assert after == source_state
