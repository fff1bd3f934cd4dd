"""The PASTA server (``pasta serve``) for real: a server with two Dask workers on 127.0.0.1 in a
subprocess, driven by the command line (with torch blocked), the remote runner and plain HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("distributed")

ALICE, BOB = "a" * 32, "b" * 32
ROI = "5,105,-625,35,135,-595"  # RAS mm: 30 x 30 x 30 mm around lung1's tumour
MAX_UPLOAD_MB = 4
BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Block())
from pastacore.cli.main import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """``(url, process, store)`` of a running server: two workers, tokens for alice and bob, 4 MB
    uploads, a store holding the tiny model (imported while the server starts: it reads its
    store for each request)."""
    from pastacore.modelstore.store import ModelStore

    folder = tmp_path_factory.mktemp("server")
    store = folder / "store"
    store.mkdir()
    (folder / "tokens").write_text(f"# who may use the server\nalice {ALICE}\nbob {BOB}\n")
    log = open(folder / "server.log", "w")
    command = [sys.executable, "-m", "pastacore.cli.main", "serve", "--port", "0", "--workers", "2", "--device", "cpu"]
    command += ["--store", str(store), "--tokens", str(folder / "tokens"), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=folder)
    try:
        ModelStore(store).import_file(request.getfixturevalue("tiny_lung_model"), name="tiny-lung")
        line = process.stdout.readline()
        assert line.startswith("PASTA server ready: http://127.0.0.1:"), (line, (folder / "server.log").read_text())
        yield line.split(": ", 1)[1].strip(), process, store
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def crop(tmp_path_factory, lung1):
    """A real CT: lung1 around its tumour (140 x 140 x 20 voxels), as an NRRD file."""
    from pastacore.fileio import write_volume
    from pastacore.geometry import Grid, Volume

    image = lung1[0]
    grid = image.grid
    start = np.array([150, 290, 24])  # i, j, k
    array = np.ascontiguousarray(image.array[24:44, 290:430, 150:290])
    origin = np.array(grid.origin) + np.asarray(grid.direction) @ (start * np.array(grid.spacing))
    path = tmp_path_factory.mktemp("crop") / "lung1_crop.nrrd"
    write_volume(Volume(array, Grid(array.shape, grid.spacing, tuple(origin), grid.direction)), path)
    return path


def pasta(*args, block_torch=True, env=None):
    """Run the command line in a fresh process (torch blocked: a thin client)."""
    code = BLOCK_TORCH if block_torch else "import sys; from pastacore.cli.main import main; sys.exit(main(sys.argv[1:]))"
    environment = dict(os.environ, **(env or {}))
    environment.pop("PASTA_SERVER", None)
    environment.pop("PASTA_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=environment)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (result.returncode, result.stderr)
    return lines[0]


def request(url, method, path, token=None, body=None, headers=None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, (json.loads(data) if data and data[:1] in (b"{", b"[") else data)


def start_job(url, token, image_path, options, action="segment"):
    """A remote runner's handle of ``action`` on the image file (as a controller starts it)."""
    import tempfile

    from pastacore.actions import action as action_module
    from pastacore.fileio import read_volume
    from pastacore.tasks.exchange import save_volume
    from pastacore.tasks.jobs import ACTION_JOB, action_params
    from pastacore.tasks.remote import RemoteRunner

    module = action_module(action)
    folder = tempfile.mkdtemp(prefix="pasta-test-job-")
    volumes = {}
    params = action_params(action, module.OPTIONS(**options), module.INPUTS(read_volume(image_path)), volumes)
    for name, volume in volumes.items():
        save_volume(volume, folder, name)
    return RemoteRunner(url, token, poll_interval=0.05).start(ACTION_JOB, params, folder), folder


def wait_running(url, token, handle, timeout=60):
    """The job's status once the server runs it (handle polled meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle.poll()
        if handle.job_id is not None:
            status = request(url, "GET", f"/jobs/{handle.job_id}", token)[1]
            if status.get("state") == "running" and status.get("worker_pid"):
                return status
        assert handle.outcome is None, handle.outcome
        time.sleep(0.05)
    raise AssertionError("the job did not start")


# -- the wire format ---------------------------------------------------------------------------


def test_nrrd_codec_round_trip_is_exact_and_itk_reads_it(tmp_path):
    import SimpleITK as sitk
    from conftest import rotation

    from pastacore.tasks.nrrd_codec import decode_nrrd, encode_nrrd

    array = np.random.default_rng(3).integers(-1024, 3000, (7, 9, 11)).astype(np.int16)
    direction = rotation(10, 20, 30)
    data = encode_nrrd(array, (0.7, 0.8, 2.5), (-10.25, 3.0, 7.5), direction, is_label=False)
    back, spacing, origin, back_direction, is_label = decode_nrrd(data)
    assert np.array_equal(back, array) and back.dtype == np.int16 and not is_label
    assert spacing == (0.7, 0.8, 2.5) and origin == (-10.25, 3.0, 7.5) and np.array_equal(back_direction, direction)
    (tmp_path / "v.nrrd").write_bytes(data)
    image = sitk.ReadImage(str(tmp_path / "v.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    assert np.allclose(image.GetSpacing(), (0.7, 0.8, 2.5)) and np.allclose(image.GetOrigin(), (-10.25, 3.0, 7.5))
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), direction)


# -- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote_labels(server, crop, tmp_path_factory):
    """``pasta segment ... --server`` of the crop with torch blocked: the label map (+ its sidecar)."""
    url = server[0]
    out = tmp_path_factory.mktemp("remote") / "remote.nii.gz"
    result = pasta("segment", crop, "--out", out, "--model", "tiny-lung", f"--roi={ROI}", "--server", url, "--token", ALICE)
    assert result.returncode == 0, result.stderr
    assert f"of the PASTA server {url}" in result.stdout
    return out


def test_remote_segment_with_torch_blocked_equals_local(server, crop, remote_labels):
    from pastacore.actions import segment
    from pastacore.fileio import read_volume

    options = segment.SegmentOptions(model=str(server[2] / "tiny-lung"), roi=tuple(float(v) for v in ROI.split(",")))
    local = segment.run(options, segment.SegmentInputs(crop))
    remote = read_volume(remote_labels, is_label=True)
    assert remote.grid.same_as(local.result.labels.grid)
    assert np.array_equal(remote.array, local.result.labels.array)
    assert len(np.unique(remote.array)) > 1  # the network really labelled something
    sidecar = json.loads(remote_labels.with_suffix("").with_suffix(".json").read_text())
    assert sidecar["labels"] == local.description["labels"] and sidecar["voxels"] == local.description["voxels"]
    assert sidecar["model"]["name"] == "tiny-lung"


def test_remote_report_files_equal_local(server, crop, remote_labels, tmp_path):
    from pastacore.actions import report

    options = report.ReportOptions(formats=("json",))
    local = report.run(options, report.ReportInputs(crop, remote_labels))
    report.write(local, options, tmp_path / "local")
    result = pasta(
        "report",
        crop,
        remote_labels,
        "--out-dir",
        tmp_path / "remote",
        "--formats",
        "json",
        "--server",
        server[0],
        "--token",
        BOB,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())
    ours, theirs = (json.loads((tmp_path / side / "report.json").read_text()) for side in ("local", "remote"))
    for data in (ours, theirs):
        data.pop("created", None)
        for lesion in data["lesions"]:
            lesion.pop("tracking_uid", None)
    assert ours == theirs and ours["lesions"]  # the same lesions, labels, model, case, from the sidecar read here


def test_client_failures_are_one_line(server, crop, lung1, sample_dir, tmp_path):
    url = server[0]
    common = ("--model", "tiny-lung", f"--roi={ROI}", "--server", url)
    line = one_error_line(pasta("segment", crop, "--out", tmp_path / "a.nii.gz", *common, "--token", "c" * 32))
    assert "refused the token" in line and url in line
    big = sample_dir / "lung1_image.nrrd"  # 12 MB as gzip NRRD: over the server's 4 MB
    line = one_error_line(pasta("segment", big, "--out", tmp_path / "a.nii.gz", *common, "--token", ALICE))
    assert "refused the upload" in line and f"at most {MAX_UPLOAD_MB:.1f} MB" in line
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    line = one_error_line(pasta("segment", crop, "--out", tmp_path / "a.nii.gz", "--server", closed, "--token", ALICE))
    assert line.startswith(f"error: cannot reach the PASTA server at {closed}")
    line = one_error_line(
        pasta("segment", crop, "--out", tmp_path / "a.nii.gz", "--model", "other", "--server", url, "--token", BOB)
    )
    assert "has no model named 'other'" in line and "tiny-lung" in line
    assert not list(tmp_path.iterdir())  # nothing written


# -- security over plain HTTP ------------------------------------------------------------------


def test_tokens_jobs_models_and_upload_limits_over_http(server):
    url = server[0]
    assert request(url, "GET", "/health")[0] == 200  # no token needed
    assert request(url, "GET", "/models")[0] == 401
    assert request(url, "GET", "/models", "x" * 32)[0] == 401
    status, models = request(url, "GET", "/models", ALICE)
    assert status == 200 and "tiny-lung" in [m["name"] for m in models["models"]]
    job = {"action": "segment", "options": {"model": "tiny-lung"}, "inputs": {"image": {"$volume": "ct"}}}
    job["volumes"] = {"ct": {"bytes": 1000, "format": "nrrd"}}
    status, created = request(url, "POST", "/jobs", ALICE, json.dumps(job))
    assert status == 201 and len(created["id"]) >= 22  # 128 random bits
    path = f"/jobs/{created['id']}"
    assert request(url, "GET", path, BOB)[0] == 404  # another token's job does not exist for bob
    assert request(url, "POST", path + "/cancel", BOB)[0] == 404
    assert request(url, "GET", path, ALICE)[1]["state"] == "uploading"
    # an upload announcing more than the job said is refused before a byte of it is read
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("PUT", path + "/volumes/ct")
    connection.putheader("Authorization", f"Bearer {ALICE}")
    connection.putheader("Content-Length", str(50 << 20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    for bad in (
        dict(job, options={"model": "/etc/passwd"}),  # a path, not a model of the store
        dict(job, options={"model": "not-installed"}),
        dict(job, inputs={"image": "/etc/passwd"}),  # a path where a volume goes
        dict(job, action="finetune"),
    ):
        status, answer = request(url, "POST", "/jobs", ALICE, json.dumps(bad))
        assert status == 400 and "\n" not in answer["detail"], answer
    too_big = dict(job, volumes={"ct": {"bytes": (MAX_UPLOAD_MB + 1) << 20, "format": "nrrd"}})
    assert request(url, "POST", "/jobs", ALICE, json.dumps(too_big))[0] == 413
    assert request(url, "DELETE", path, ALICE)[0] == 204
    assert request(url, "GET", path, ALICE)[0] == 404


# -- several clients, cancel, a dying worker ---------------------------------------------------


def test_two_clients_at_once_both_finish_and_results_are_deleted(server, crop):
    from pastacore.tasks.exchange import load_volume

    url = server[0]
    options = {"model": "tiny-lung", "roi": tuple(float(v) for v in ROI.split(","))}
    (first, folder1), (second, folder2) = start_job(url, ALICE, crop, options), start_job(url, BOB, crop, options)
    deadline = time.monotonic() + 120
    while (first.poll() | second.poll()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.outcome.ok and second.outcome.ok, (first.outcome, second.outcome)
    labels = [load_volume(f, h.outcome.result["volumes"]["labels"]).array for f, h in ((folder1, first), (folder2, second))]
    assert np.array_equal(labels[0], labels[1])
    assert first.upload_bytes > 0
    for handle, token in ((first, ALICE), (second, BOB)):  # downloaded: the server forgot the job and its results
        assert request(url, "GET", f"/jobs/{handle.job_id}", token)[0] == 404


def long_ct(tmp_path):
    """A 200 mm cube of body at 1 mm: segmenting all of it takes minutes with any model."""
    from pastacore.fileio import write_volume
    from pastacore.geometry import Grid, Volume

    array = np.full((200, 200, 200), -1000, np.int16)
    array[:, 20:180, 20:180] = 40
    array[60:140, 60:100, 40:90] = -850
    path = tmp_path / "long.nrrd"
    write_volume(Volume(array, Grid(array.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))), path)
    return path


def test_cancel_ends_the_server_job(server, tmp_path):
    url = server[0]
    handle, _ = start_job(url, ALICE, long_ct(tmp_path), {"model": "tiny-lung", "organ": "body"})
    wait_running(url, ALICE, handle)
    handle.cancel()
    assert handle.wait(timeout=30) and handle.outcome.cancelled
    deadline = time.monotonic() + 20
    while request(url, "GET", "/health")[1]["busy"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert request(url, "GET", "/health")[1]["busy"] == 0  # the worker stopped, long before the job would have ended


def test_a_job_the_server_forgot_is_one_line(server, tmp_path):
    """What a client sees when the server was restarted under it: the job is unknown there."""
    url = server[0]
    handle, _ = start_job(url, ALICE, long_ct(tmp_path), {"model": "tiny-lung", "organ": "body"})
    wait_running(url, ALICE, handle)
    assert request(url, "DELETE", f"/jobs/{handle.job_id}", ALICE)[0] == 204  # as a restart forgets it
    assert handle.wait(timeout=30) and "no longer knows job" in handle.outcome.error
    assert "restarted" in handle.outcome.error and "\n" not in handle.outcome.error


def test_a_dying_worker_fails_only_its_job(server, crop, tmp_path):
    url = server[0]
    doomed, _ = start_job(url, ALICE, long_ct(tmp_path), {"model": "tiny-lung", "organ": "body"})
    killed = wait_running(url, ALICE, doomed)
    other, _ = start_job(url, BOB, crop, {"model": "tiny-lung", "organ": "body"})
    running = wait_running(url, BOB, other)
    assert running["worker_pid"] != killed["worker_pid"]
    os.kill(killed["worker_pid"], signal.SIGKILL)
    assert doomed.wait(timeout=60) and other.wait(timeout=120)
    assert doomed.outcome.error and "worker running the job died" in doomed.outcome.error
    assert "\n" not in doomed.outcome.error
    assert other.outcome.ok, other.outcome
    again, _ = start_job(url, ALICE, crop, {"model": "tiny-lung", "roi": tuple(float(v) for v in ROI.split(","))})
    assert again.wait(timeout=120) and again.outcome.ok, again.outcome  # the server keeps serving


# -- the controllers behind Slicer and the web app ---------------------------------------------


def test_controllers_segment_on_the_server_as_on_this_computer(server, crop):
    pytest.importorskip("slicer")
    from pastacore.actions.segment import SegmentOptions
    from pastacore.fileio import read_volume
    from pastacore.mrml import roi, segmentations, volumes
    from pastacore.mrml.scene import new_scene
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import HubController, SegmentController, SegmentRequest
    from PastaSlicerLib.controllers.compute import SERVER, ComputeRunner, ComputeSetting

    url, _, store = server
    setting = ComputeSetting(SERVER, url, ALICE)
    assert "tiny-lung" in [m.name for m in HubController(compute=lambda: setting).models(task="segmentation")]
    scene = new_scene().scene
    ct = volumes.node_from_volume(scene, read_volume(crop), "lung1 crop")
    box = roi.add_roi(scene, (20.0, 120.0, -610.0), (30.0, 30.0, 30.0), name="search box")
    labels = []
    for runner, model in (
        (ComputeRunner(InlineRunner(), lambda: setting), "tiny-lung"),
        (InlineRunner(), str(store / "tiny-lung")),
    ):
        outcomes = []
        handle = SegmentController(scene, runner).start(
            SegmentRequest(ct, SegmentOptions(model=model), roi=box), on_finished=outcomes.append
        )
        assert handle.wait(timeout=120) and outcomes[0].ok, outcomes[0].error
        labels.append(segmentations.labels_from_segmentation(scene, outcomes[0].value, ct)[0].array)
    assert np.array_equal(labels[0], labels[1]) and labels[0].any()


def test_web_server_option_checks_the_server_first(server):
    import argparse

    pytest.importorskip("trame_slicer")
    from pastacore.errors import PastaError
    from pastacore.tasks.remote import RemoteRunner
    from PastaSlicerLib.controllers.compute import use_setting_source
    from pastaweb.cli import compute_runner

    try:
        runner = compute_runner(argparse.Namespace(server=server[0], server_token=BOB))
        assert isinstance(runner.runner(), RemoteRunner) and runner.runner().url == server[0]
        with pytest.raises(PastaError, match="refused the token"):
            compute_runner(argparse.Namespace(server=server[0], server_token="d" * 32))
    finally:
        from PastaSlicerLib.controllers.compute import ComputeSetting

        use_setting_source(lambda: ComputeSetting())
