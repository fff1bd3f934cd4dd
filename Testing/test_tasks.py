"""Heavy work in its own process: the task process's JSON-lines protocol, progress, cancel (the
process tree ends, nothing is added), a crash, bad input; and one-click Segment of the real
lung2 CT through the process runner, as the Slicer module runs it."""

import json
import os
import time

import numpy as np
import pytest

from pastacore.tasks import InlineRunner, ProcessRunner
from pastacore.tasks.exchange import load_volume, save_volume
from pastacore.tasks.protocol import decode, encode


def test_protocol_round_trip_and_stray_lines():
    assert decode(encode("progress", fraction=0.5, message="half")) == {"event": "progress", "fraction": 0.5, "message": "half"}
    assert decode("ITK warning: something\n") is None and decode("[1, 2]") is None


def test_volumes_cross_the_job_folder_exactly(tmp_path):
    from conftest import make_volume, rotation

    volume = make_volume((5, 6, 7), (0.7, 0.9, 2.5), (3.0, -4.0, 5.0), rotation(10, 20, 30, left_handed=True))
    volume.meta["modality"] = "CT"
    save_volume(volume, tmp_path, "ct")
    back = load_volume(tmp_path, "ct")
    assert np.array_equal(back.array, volume.array) and back.array.dtype == volume.array.dtype
    assert back.grid.same_as(volume.grid, 1e-12) and back.meta["modality"] == "CT"


def lung2_job(tmp_path, sample_dir, **options):
    """The JSON of a job segmenting lung2 (its CT saved in the job folder), as a controller starts it."""
    from pastacore.actions.segment import SegmentInputs, SegmentOptions
    from pastacore.fileio import read_volume
    from pastacore.tasks.jobs import action_params

    volumes = {}
    params = action_params(
        "segment", SegmentOptions(**options), SegmentInputs(read_volume(sample_dir / "lung2_image.nrrd")), volumes
    )
    for name, volume in volumes.items():
        save_volume(volume, tmp_path, name)
    return params


MISSING = {"action": "segment", "options": {}, "inputs": {"image": {"$volume": "missing"}}}


def test_bad_input_ends_with_one_error_line(tmp_path):
    outcomes = []
    handle = ProcessRunner().start("action", MISSING, tmp_path, on_finished=outcomes.append)
    assert handle.wait(120)
    assert handle.process.returncode == 2
    assert outcomes[0].error.startswith("the job's volume 'missing' cannot be read") and "\n" not in outcomes[0].error


def test_progress_streams_and_cancel_ends_the_process_tree(tmp_path, sample_dir):
    params = lung2_job(tmp_path, sample_dir, organ="body")
    progress, outcomes = [], []
    handle = ProcessRunner().start(
        "action", params, tmp_path, on_progress=lambda f, m: progress.append((f, m)), on_finished=outcomes.append
    )
    deadline = time.monotonic() + 180
    while not any("patch" in m for _, m in progress) and time.monotonic() < deadline:
        assert handle.poll()
        time.sleep(0.05)
    assert any("standardising" in m for _, m in progress)
    handle.cancel()
    assert handle.wait(30)
    assert outcomes == [handle.outcome] and outcomes[0].cancelled and not outcomes[0].ok
    with pytest.raises(ProcessLookupError):
        os.killpg(handle.process.pid, 0)  # nothing of the job's process group is left
    assert not (tmp_path / "result_labels.npy").exists()


def test_a_crashed_task_process_is_reported(tmp_path, sample_dir):
    import signal

    outcomes = []
    handle = ProcessRunner().start("action", lung2_job(tmp_path, sample_dir), tmp_path, on_finished=outcomes.append)
    time.sleep(1.0)
    os.killpg(handle.process.pid, signal.SIGKILL)
    assert handle.wait(30)
    assert "ended unexpectedly (exit code -9)" in outcomes[0].error


def test_inline_runner_raises_bugs_and_reports_bad_input(tmp_path):
    outcomes = []
    InlineRunner().start("action", MISSING, tmp_path, on_finished=outcomes.append)
    assert outcomes[0].error.startswith("the job's volume")
    InlineRunner().start("no-such-job", {}, tmp_path, on_finished=outcomes.append)
    assert outcomes[1].error.startswith("unknown job 'no-such-job'")
    with pytest.raises(TypeError):  # a bug (inputs without the image), not bad input: the test sees the traceback
        InlineRunner().start("action", {"action": "segment", "options": {}, "inputs": {}}, tmp_path)


@pytest.mark.slow
def test_one_click_segment_of_lung2_searches_the_lungs(sample_dir, lung2):
    """The module's default: built-in model, no organ and no box given. It must search the lungs
    (the model's organ), not the whole body: the real tumour is found with at most ~60 mL of
    false positives (the whole-body search gave 213 mL)."""
    pytest.importorskip("slicer")
    from pastacore.anatomy.masks import pieces_touching
    from pastacore.mrml import segmentations, volumes
    from pastacore.mrml.scene import new_scene, node_ids
    from PastaSlicerLib.controllers import SegmentController, SegmentRequest

    image, tumour = lung2
    scene = new_scene().scene
    ct = volumes.node_from_volume(scene, image, "lung2")
    before = set(node_ids(scene))
    outcomes = []
    handle = SegmentController(scene, ProcessRunner()).start(SegmentRequest(ct), on_finished=outcomes.append)
    assert handle.wait(900)
    assert outcomes[0].ok, outcomes[0].error
    node = outcomes[0].value
    assert json.loads(node.GetAttribute("PASTA.Model"))["name"] == "pasta-lung-default"
    assert sorted(scene.GetNodeByID(i).GetClassName() for i in set(node_ids(scene)) - before) == [
        "vtkMRMLSegmentationDisplayNode",
        "vtkMRMLSegmentationNode",
    ]
    labels, ids = segmentations.labels_from_segmentation(scene, node, ct)
    names = dict(zip(range(1, len(ids) + 1), (node.GetSegmentation().GetSegment(i).GetName() for i in ids)))
    lesion = np.isin(labels.array, [v for v, n in names.items() if n == "Lung tumor"])
    real = tumour.array > 0
    voxel_ml = float(np.prod(image.grid.spacing)) / 1000
    false_positive_ml = float((lesion & ~pieces_touching(lesion, real)).sum() * voxel_ml)
    assert (lesion & real).any(), "the real tumour was missed"
    assert false_positive_ml <= 60.0, f"{false_positive_ml:.1f} mL of false positives"


def test_the_task_process_runs_below_its_front_end(tmp_path):
    """A job yields the CPU to Slicer or the web server that started it (niceness 10 by default)."""
    import os

    handle = ProcessRunner().start("action", MISSING, tmp_path)
    seen = set()
    try:
        while handle.process.poll() is None and 10 not in seen:
            try:
                seen.add(os.getpriority(os.PRIO_PROCESS, handle.process.pid) - os.getpriority(os.PRIO_PROCESS, 0))
            except ProcessLookupError:
                break
            time.sleep(0.01)
    finally:
        handle.wait(60)
    assert 10 in seen, seen
