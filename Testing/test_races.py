"""Two runs at once on one output: exactly one writes it, the other refuses in one line naming the
first (real processes, repeated); what killed runs leave is cleared by the next run; and the rest
of "nothing lost, nothing silently wrong", round two, that the bad-input catalogue cannot show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bad_input import ROOT, _setup_base, _tiny_pasta, write_ct

ROUNDS = 2


def _env(folder: Path) -> dict:
    return dict(
        os.environ,
        PASTA_HOME=str(folder / "home"),
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "PastaSlicer")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )


def _together(folder: Path, argv: list, count: int = 2) -> list:
    """``count`` pasta processes started together in ``folder``; their (exit code, stderr)."""
    command = [sys.executable, "-m", "pastacore.cli.main", *argv]
    started = [
        subprocess.Popen(command, cwd=folder, env=_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    return [(p.wait(300), p.communicate()[1]) for p in started]


def _one_wins(outcomes: list) -> str:
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refusal = next(err for code, err in outcomes if code == 2).strip().splitlines()
    assert len(refusal) == 1 and refusal[0].startswith("error: "), refusal
    return refusal[0]


def _no_leftovers(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if p.name.startswith(".pasta-") or p.name.endswith(".pasta-claim")]
    assert not left, left


def test_two_standardize_runs_to_one_path(tmp_path):
    write_ct(tmp_path / "ct.nii.gz", np.random.default_rng(0).normal(0, 300, (60, 96, 96)).astype(np.float32))
    for n in range(ROUNDS):
        out = f"out{n}.nii.gz"
        line = _one_wins(_together(tmp_path, ["standardize", "ct.nii.gz", out, "--spacing", "0.7"]))
        assert "being written by another pasta run" in line or "already exists" in line, line
        assert (tmp_path / out).is_file()
    _no_leftovers(tmp_path)


def test_two_reports_into_one_folder(tmp_path):
    _setup_base(tmp_path)
    for n in range(ROUNDS):
        line = _one_wins(
            _together(tmp_path, ["report", "ct.nii.gz", "seg.nii.gz", "--out-dir", f"rep{n}", "--formats", "json,html"])
        )
        assert "being written by another pasta run" in line or "earlier run" in line, line
        report = json.loads((tmp_path / f"rep{n}" / "report.json").read_text())
        assert report["lesions"]
    _no_leftovers(tmp_path)


def test_two_imports_of_one_model_name(tmp_path):
    _tiny_pasta(tmp_path / "weights.pth")
    for n in range(ROUNDS):
        line = _one_wins(_together(tmp_path, ["models", "import", "weights.pth", "--name", f"mine{n}"]))
        assert "being written by another pasta run" in line or "already" in line, line
    listed = subprocess.run(
        [sys.executable, "-m", "pastacore.cli.main", "models", "list"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    ).stdout
    assert all(f"mine{n} " in listed for n in range(ROUNDS)) and "DAMAGED" not in listed
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_run_that_finished_between_the_check_and_the_claim_is_not_replaced(tmp_path, monkeypatch, kind):
    """The window the real-process race above hits now and then, made certain: another run writes
    the output after this run's existence check and releases its claim before this run claims."""
    import contextlib

    from pastacore.errors import PastaError
    from pastacore.fileio import atomic, claims

    target = tmp_path / ("out.txt" if kind == "file" else "model")
    real = claims.claimed

    @contextlib.contextmanager
    def other_run_finishes_first(*outputs, **kwargs):
        if kind == "file":
            target.write_text("the other run's")
        else:
            target.mkdir()
            (target / "weights.pth").write_text("the other run's")
        with real(*outputs, **kwargs):
            yield

    monkeypatch.setattr(claims, "claimed", other_run_finishes_first)
    writer = atomic.atomic_outputs(target) if kind == "file" else atomic.atomic_directory(target)
    with pytest.raises(PastaError, match="already"):
        with writer as staged:
            (staged if kind == "file" else staged / "weights.pth").write_text("ours")
    kept = target if kind == "file" else target / "weights.pth"
    assert kept.read_text() == "the other run's"
    _no_leftovers(tmp_path)


def test_a_claim_of_a_killed_run_is_taken_over_and_its_staging_removed(tmp_path):
    from pastacore.fileio import claims
    from pastacore.fileio.atomic import STAGING_PREFIX, STAGING_SUFFIX

    _setup_base(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": os.uname().nodename, "started": time.time(), "command": "pasta standardize"}
    claims.claim_path(tmp_path / "o.nii.gz").write_text(json.dumps(record))
    (tmp_path / f"{STAGING_PREFIX}{dead.pid}-abcd{STAGING_SUFFIX}").mkdir()
    (tmp_path / f"{STAGING_PREFIX}{dead.pid}-abcd{STAGING_SUFFIX}" / "o.nii.gz").write_bytes(b"half")
    result = subprocess.run(
        [sys.executable, "-m", "pastacore.cli.main", "standardize", "ct.nii.gz", "o.nii.gz"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    _no_leftovers(tmp_path)


def test_a_live_claim_names_the_run_that_holds_it(tmp_path):
    from pastacore.errors import PastaError
    from pastacore.fileio import claims

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = {"pid": holder.pid, "host": os.uname().nodename, "started": time.time(), "command": "pasta report x"}
        claims.claim_path(tmp_path / "rep").write_text(json.dumps(record))
        with pytest.raises(PastaError, match=rf"process {holder.pid}, started .*pasta report x"):
            claims.acquire(tmp_path / "rep", "output folder")
    finally:
        holder.kill()
        holder.wait()


def test_a_very_long_output_path_gives_a_short_message(tmp_path):
    _setup_base(tmp_path)
    deep = "/".join(["d" * 200] * 22)  # 4,400 characters
    result = subprocess.run(
        [sys.executable, "-m", "pastacore.cli.main", "standardize", "ct.nii.gz", f"{deep}/o.nii.gz"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and len(lines[0]) < 400, result.stderr[:300]


def test_an_unreachable_scheduler_fails_in_time_naming_it(monkeypatch):
    pytest.importorskip("distributed")
    from pastacore.cohort import cluster
    from pastacore.cohort.case import CaseWork
    from pastacore.errors import PastaError

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)
    said, started = [], time.monotonic()
    with pytest.raises(PastaError, match=r"cannot reach the Dask scheduler tcp://127.0.0.1:1: no answer within 2 s"):
        with cluster.dask_cluster("tcp://127.0.0.1:1", CaseWork(), 1, None, "cpu", said.append):
            pass
    assert time.monotonic() - started < 30 and "tcp://127.0.0.1:1" in said[0]


def test_a_port_in_use_and_an_unknown_host_are_one_line():
    import socket

    from pastacore.errors import PastaError
    from pastacore.listening import check_listen

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PastaError, match=f"port {port} on 127.0.0.1 is in use"):
            check_listen("127.0.0.1", port)
    with pytest.raises(PastaError, match="does not resolve"):
        check_listen("no-such-host.invalid", 8080)
    check_listen("127.0.0.1", 0)


def test_a_layered_segmentation_reads_with_its_overlaps(tmp_path):
    import SimpleITK as sitk

    from pastacore.fileio import read_volume

    layers = np.zeros((8, 9, 10, 2), np.uint8)
    layers[2:6, 2:6, 2:6, 0] = 1  # "Lung" in layer 0
    layers[3:5, 3:5, 3:5, 1] = 1  # "Lung tumor" overlapping it, in layer 1
    image = sitk.GetImageFromArray(layers, isVector=True)
    for n, (name, layer) in enumerate([("Lung", 0), ("Lung tumor", 1)]):
        for key, value in (("ID", f"S{n}"), ("Name", name), ("LabelValue", "1"), ("Layer", str(layer))):
            image.SetMetaData(f"Segment{n}_{key}", value)
    sitk.WriteImage(image, str(tmp_path / "two.seg.nrrd"))
    volume = read_volume(tmp_path / "two.seg.nrrd", is_label=True)
    assert volume.array.shape == (8, 9, 10)
    assert [s["name"] for s in volume.meta["segments"]] == ["Lung", "Lung tumor"]
    assert volume.array[4, 4, 4] == 2 and volume.array[2, 2, 2] == 1 and volume.array[0, 0, 0] == 0


def test_the_model_made_labels_are_proposed_by_the_model_whatever_their_value(tmp_path):
    from pastacore.actions import report

    _setup_base(tmp_path)
    sidecar = {"labels": {"1": "Lung", "2": "Lung tumor"}, "model": {"name": "m"}, "candidates": {"2": []}}
    (tmp_path / "seg.json").write_text(json.dumps(sidecar))
    options = report.ReportOptions(lesion_labels=(1,), allow_organ_lesions=True, min_long_axis_mm=0.0, min_volume_ml=0.0)
    case = report.run(options, report.ReportInputs(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz"))
    assert case.report.lesions and {lesion.status for lesion in case.report.lesions} == {"proposed"}


def test_compare_with_force_says_what_it_did(tmp_path, capsys):
    from bad_input import _reports

    from pastacore.cli.main import main

    _reports({"patient_id": "P1", "study_date": "20260301"}, {"patient_id": "P2", "study_date": "20251201"})(tmp_path)
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "follow"), "--force", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert any("different patients (P1 and P2)" in n and "forced" in n for n in out["notes"])
    assert any("dated before its baseline (2026-03-01)" in n for n in out["notes"])


def test_a_bad_lesion_type_in_a_batch_csv_fails_its_row_only(tmp_path, capsys):
    from conftest import phantom_ct

    from pastacore.cli.main import main
    from pastacore.fileio import write_volume

    write_volume(phantom_ct(), tmp_path / "ct.nii.gz")
    (tmp_path / "cases.csv").write_text(  # a box in the phantom's left lung (voxels i 50-62, j 32-48, k 8-16)
        "case_id,image,lesion_type,box_ijk\n"
        'good,ct.nii.gz,lung_tumor,"50,32,8,62,48,16"\n'
        'typo,ct.nii.gz,lung_tumour_x,"50,32,8,62,48,16"\n'
    )
    code = main(["batch", "synth", str(tmp_path / "cases.csv"), "--out", str(tmp_path / "out"), "--scheduler", "inline"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "failed: typo: unknown lesion type" in err and "good" not in err
    assert (tmp_path / "out" / "good" / "image.nii.gz").is_file() and not (tmp_path / "out" / "typo").exists()


def test_models_inspect_reads_every_kind_of_folder_import_takes(tiny_lung_model, capsys):
    from pastacore.cli.main import main

    code = main(["models", "inspect", str(tiny_lung_model), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    info = json.loads(out.out)
    assert info["num_classes"] == 3 and info["base_features"] == 4 and not info["tensors_mismatched"]
