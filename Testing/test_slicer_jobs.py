"""The Slicer modules on a fresh Slicer: nothing of their setup or controllers needs torch, every
action says which packages it needs, no error loses its log, no exception while adding a result
leaves the GUI waiting, a stale model falls back, a cancel ends the launcher and what it started,
and the RECIST controls change the exported report (controllers on slicer-core MRML)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# As on a fresh Slicer without the PyTorch extension: importing torch fails, find_spec finds none.
BLOCK_TORCH = "import sys\nsys.modules['torch'] = None\n"


def test_controllers_and_engine_choices_need_no_torch():
    script = BLOCK_TORCH + textwrap.dedent(
        """
        import importlib.util, pkgutil, PastaSlicerLib.controllers as c
        for m in pkgutil.iter_modules(c.__path__):
            __import__(f"PastaSlicerLib.controllers.{m.name}")
        import pastacore.actions, pastacore.families
        pastacore.actions.action_names()
        from PastaSlicerLib.controllers import HubController, SynthController
        hub = HubController()
        rows = hub.dependency_rows()
        engines = SynthController.backends(allow_slow=True)
        assert sys.modules.get("torch") is None, "torch was imported"
        print(len(rows), [(e["name"], e["available"]) for e in engines])
        print(engines[1]["reason"])
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "PastaSlicer"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "('procedural', True)" in result.stdout and "('lesiondiffusion', False)" in result.stdout
    assert "needs PyTorch" in result.stdout


def test_each_action_names_its_requirement_groups():
    from pastacore import deps

    assert deps.groups_for_action("finetune") == ["train"]
    assert deps.groups_for_action("synth") == []
    assert deps.groups_for_action("synth", backend="lesiondiffusion") == ["diffusion"]
    assert "cohort" in deps.groups_for_action("dataset", workers=4)
    assert deps.groups_for_action("segment", groups=["gcis"]) == ["gcis"]  # what the chosen model's family needs
    group = deps.requirement_group("train")
    assert group.requirements[0][0] == "monai" and "finetune" in group.actions
    assert deps.install_hint("train") == "pip install 'pasta-slicer[train]'"
    extras = (ROOT / "pyproject.toml").read_text()
    for name in deps.requirement_groups():
        assert f'optional-dependencies.{name} = {{file = ["Resources/requirements-{name}.txt"]}}' in extras


def test_a_crashing_job_names_a_log_that_holds_the_traceback(tmp_path):
    from pastacore.tasks import ProcessRunner

    outcomes = []
    runner = ProcessRunner(log_dir=tmp_path / "logs")
    bug = {"action": "segment", "options": {}, "inputs": {}}  # no image: a TypeError in the task process
    (tmp_path / "job").mkdir()
    handle = runner.start("action", bug, tmp_path / "job", on_finished=outcomes.append)
    assert handle.wait(120)
    error = outcomes[0].error
    assert "internal error (TypeError" in error and "see the task log " in error
    log = Path(error.split("see the task log ", 1)[1])
    assert log.is_file() and log.parent == tmp_path / "logs" and "Traceback" in log.read_text()
    assert outcomes[0].log == str(log)


def test_only_the_recent_task_logs_are_kept(tmp_path):
    from pastacore.tasks.runners import KEEP_LOGS, new_log

    made = []
    for n in range(KEEP_LOGS + 5):
        path = new_log(tmp_path, f"job{n}")
        path.write_text(str(n))
        made.append(path)
        time.sleep(0.002)
    left = sorted(tmp_path.glob("*.log"))
    assert len(left) == KEEP_LOGS and made[-1] in left and made[0] not in left


def test_the_task_process_is_started_without_a_console_on_windows():
    from pastacore.tasks.runners import popen_options

    assert popen_options("posix") == {"start_new_session": True}
    flags = popen_options("nt")["creationflags"]
    assert flags & 0x08000000 and flags & 0x00000200  # CREATE_NO_WINDOW, CREATE_NEW_PROCESS_GROUP


def test_cancel_ends_the_launcher_and_what_it_started(tmp_path):
    """PythonSlicer is a launcher that starts the real interpreter as its child: a cancel must
    end both, even when the launcher exits first."""
    from pastacore.tasks import ProcessRunner

    launcher = tmp_path / "launcher.sh"
    launcher.write_text(f'#!/bin/sh\n"{sys.executable}" "$@" &\nwait\n')  # the child is not exec'd
    launcher.chmod(0o755)
    job = tmp_path / "job"
    job.mkdir()
    params = {
        "action": "train_default",
        "options": {"steps": 100000, "backgrounds": ["lung1"]},
        "inputs": {"out": str(tmp_path / "m")},
    }
    handle = ProcessRunner(str(launcher), log_dir=tmp_path / "logs").start("action", params, job)
    deadline = time.monotonic() + 60
    children = []
    while time.monotonic() < deadline and not children:
        children = subprocess.run(["pgrep", "-P", str(handle.process.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.1)
    assert children, "the launcher started no interpreter"
    handle.cancel()
    assert handle.wait(60) and handle.outcome.cancelled
    time.sleep(0.2)
    for pid in children:  # gone, or a zombie ("Z", "ZN" when niced) waiting for its parent to reap it
        state = subprocess.run(["ps", "-p", pid, "-o", "stat="], capture_output=True, text=True).stdout.strip()
        assert state == "" or state.startswith("Z"), (pid, state)


def test_job_folders_go_when_the_application_quits(tmp_path):
    from pastacore.geometry import Grid, Volume
    from PastaSlicerLib.controllers.jobs import JOB_FOLDERS, remove_job_folders, start_job

    class NeverEnds:
        def start(self, job, params, folder, on_progress=None, on_finished=None):
            self.folder = Path(folder)
            return object()

    runner = NeverEnds()
    start_job(runner, "action", {}, {"image": Volume(np.zeros((3, 4, 5), np.int16), Grid((3, 4, 5)))}, lambda r, f: r)
    assert runner.folder.is_dir() and runner.folder in JOB_FOLDERS
    remove_job_folders()
    assert not runner.folder.exists() and runner.folder not in JOB_FOLDERS


def test_an_exception_while_adding_a_result_ends_the_action_with_an_error(tmp_path):
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers.jobs import start_job

    def apply(result, folder):
        raise ValueError("a bug while adding the result")

    outcomes = []
    params = {"action": "compare", "options": {}, "inputs": {"baseline": "x", "followup": "y"}}
    start_job(InlineRunner(), "action", params, {}, lambda r, f: r, on_finished=outcomes.append)
    assert outcomes and outcomes[0].error  # bad input (no report x): an error, not an exception
    outcomes.clear()

    class Done:
        def start(self, job, params, folder, on_progress=None, on_finished=None):
            from pastacore.tasks.runners import TaskOutcome

            on_finished(TaskOutcome(result={"ok": True}))
            return object()

    start_job(Done(), "action", {}, {}, apply, on_finished=outcomes.append)
    assert len(outcomes) == 1 and "internal error while adding the result (ValueError" in outcomes[0].error


def test_a_stale_model_name_falls_back_to_the_default(tmp_path):
    from pastacore.modelstore.store import ModelStore
    from PastaSlicerLib.controllers import HubController

    hub = HubController(ModelStore(tmp_path / "store"))
    default = hub.models(task="segmentation")[0].name
    assert hub.usable_model(default) == (default, "")
    name, note = hub.usable_model("removed-on-this-machine")
    assert name == default and "'removed-on-this-machine' is not installed here" in note
    assert hub.usable_model("") == (default, "")


@pytest.fixture()
def segmented_phantom():
    pytest.importorskip("slicer")
    from conftest import phantom_ct

    from pastacore.mrml import segmentations, volumes
    from pastacore.mrml.scene import new_scene
    from pastacore.terminology import segment_info

    scene = new_scene().scene
    image = phantom_ct()
    ct = volumes.node_from_volume(scene, image, "phantom")
    labels = np.zeros(image.array.shape, np.uint8)
    labels[image.array == -850] = 1
    labels[10:15, 36:44, 20:28] = 2  # 15 x 24 x 24 mm in the right lung
    labels[11:13, 38:41, 54:57] = 2  # 6 x 9 x 9 mm in the left lung
    terms = {1: segment_info("lung"), 2: segment_info("tumor@lung")}
    segmentation, _ = segmentations.add_labels_to_segmentation(scene, image.with_array(labels, is_label=True), terms, ct)
    return scene, ct, segmentation


def test_a_second_volume_gets_its_own_segmentation(segmented_phantom):
    from pastacore.mrml import volumes
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import SegmentController, SegmentRequest

    scene, ct, segmentation = segmented_phantom
    other = volumes.node_from_volume(scene, volumes.volume_from_node(ct), "another CT")
    controller = SegmentController(scene, InlineRunner())
    assert controller.output_for(SegmentRequest(ct, output=segmentation)) is segmentation
    assert controller.output_for(SegmentRequest(other, output=segmentation)) is None


def test_the_recist_controls_change_the_exported_report(segmented_phantom, tmp_path):
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import ReportController

    scene, ct, segmentation = segmented_phantom
    controller = ReportController(scene, InlineRunner())
    before = controller.review(ct, segmentation)
    assert [lesion.number for lesion in before.lesions] == [1, 2]
    small = next(lesion for lesion in before.lesions if lesion.measurement.volume_ml < 1.0)
    after = controller.reject(ct, segmentation, [small.number])
    assert len(after.lesions) == 1 and after.below_floor[0]["status"] == "rejected"
    floor = {"min_long_axis_mm": 40.0}  # the remaining lesion (34 mm across) falls under the user's floor
    assert controller.review(ct, segmentation, floor=floor).lesions == []
    outcomes = []
    controller.export(ct, segmentation, tmp_path / "rep", ["json"], targets=[1], on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(report["lesions"]) == 1 and report["recist"]["targets"] == [1]
    assert [piece["reasons"] for piece in report["below_floor"]] == [["rejected by a person: not a lesion"]]
    controller.confirm(ct, segmentation, [1])  # confirming ends nothing of the rejection of lesion 2
    assert len(controller.review(ct, segmentation).lesions) == 1


def test_the_quick_measurement_equals_the_exported_one(segmented_phantom):
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import ReportController

    scene, ct, segmentation = segmented_phantom
    controller = ReportController(scene, InlineRunner())
    quick = controller.review(ct, segmentation)
    again = controller.review(ct, segmentation)  # from the kept measurements
    full = controller.review(ct, segmentation, quick=False)
    as_dicts = [[lesion.measurement.to_dict() for lesion in r.lesions] for r in (quick, again, full)]
    assert as_dicts[0] == as_dicts[1] == as_dicts[2] and as_dicts[0]
