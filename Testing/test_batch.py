"""``pasta batch`` and the cohort engine on a Dask LocalCluster of two worker processes: a
corrupt case fails alone, a killed worker loses no case and repeats none, an interrupted
client resumes with the unfinished cases only, a finished cohort is not recomputed, and each
worker loads the model once. Small phantom CTs and a tiny model keep it quick."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import phantom_ct

from pastacore.cli.main import main
from pastacore.fileio import read_volume, write_volume

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
ROI = "--roi=-60,-10,-10,-36,10,10"  # a box in the right lung of the phantom: a few patches per case
GOOD = ("ct0", "ct1", "ct2", "ct3")


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, as a small machine's `--scheduler local` would start."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four phantom CTs (each a little different) and one truncated file."""
    folder = tmp_path_factory.mktemp("cohort")
    base = phantom_ct()
    for n, name in enumerate(GOOD):
        write_volume(base.with_array(base.array + 5 * n), folder / f"{name}.nii.gz")
    data = (folder / "ct0.nii.gz").read_bytes()
    (folder / "broken.nii.gz").write_bytes(data[: len(data) // 2])
    return folder


def manifest_rows(out) -> dict:
    with sqlite3.connect(f"file:{Path(out) / 'manifest.sqlite'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return {row["case_id"]: dict(row) for row in db.execute("SELECT * FROM cases")}


def status(out, capsys) -> dict:
    capsys.readouterr()
    assert main(["batch", "status", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def file_states(out, names) -> dict:
    """(inode, mtime) of every file of the named case folders: a recomputed case changes them."""
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for name in names for p in sorted((Path(out) / name).iterdir())}


def leftovers(folder) -> list:
    return sorted(str(p) for p in Path(folder).rglob("*") if p.name.startswith(".pasta-") or p.name.endswith(".part"))


def segment_args(cohort, out, model, *extra):
    return ["batch", "segment", str(cohort), "--out", str(out), "--model", model, ROI, *extra]


def test_a_cohort_with_a_corrupt_case_then_reruns(cluster, cohort, tiny_lung_model, tmp_path, capsys):
    out = tmp_path / "out"
    address = cluster.scheduler_address
    assert (
        main(segment_args(cohort, out, tiny_lung_model, "--scheduler", address)) == 3
    )  # one case failed: the documented exit code of failed cases
    report = status(out, capsys)
    assert report["counts"] == {"done": 4, "skipped": 0, "failed": 1, "pending": 0, "total": 5}
    broken = next(c for c in report["cases"] if c["case_id"] == "broken")
    assert broken["status"] == "failed" and "\n" not in broken["reason"]
    assert broken["reason"].startswith("cannot read broken.nii.gz: the file is corrupt or truncated"), broken["reason"]
    assert not (out / "broken").exists() and leftovers(out) == []

    # per case, the files `pasta segment` and `pasta report` write for it alone
    rows = manifest_rows(out)
    assert (
        main(["segment", str(cohort / "ct2.nii.gz"), "--out", str(tmp_path / "alone.nii.gz"), "--model", tiny_lung_model, ROI])
        == 0
    )
    alone = read_volume(tmp_path / "alone.nii.gz", is_label=True).array
    assert np.array_equal(read_volume(out / "ct2" / "segmentation.nii.gz", is_label=True).array, alone)
    assert (alone == 2).any()
    sidecar = json.loads((out / "ct2" / "segmentation.json").read_text())
    assert sidecar["voxels"] == json.loads((tmp_path / "alone.json").read_text())["voxels"]
    assert json.loads((out / "ct2" / "report.json").read_text())["lesions"]
    assert sorted(json.loads(rows["ct2"]["outputs"])) == [
        f"ct2/{n}" for n in ("report.json", "segmentation.json", "segmentation.nii.gz", "type.json")
    ]

    # the model was loaded once per worker, whatever the number of cases it ran
    loads = {}
    for row in rows.values():
        loads[row["worker"]] = max(loads.get(row["worker"], 0), row["model_loads"] or 0)
    assert len(loads) == 2 and set(loads.values()) == {1}, loads
    assert all(r["model_sha256"] and r["input_hashes"] for r in rows.values() if r["status"] == "done")

    # the cohort table: every lesion of every case, CSV and Parquet
    import pyarrow.parquet as pq

    table = pq.read_table(out / "cohort.parquet").to_pydict()
    assert sorted(set(table["case_id"])) == list(GOOD) and table["volume_ml"][0] > 0
    assert (out / "cohort.csv").read_text().count("\n") == len(table["case_id"]) + 1

    # a rerun recomputes nothing (the corrupt case is tried again and fails again)
    before = file_states(out, GOOD)
    capsys.readouterr()
    assert main(segment_args(cohort, out, tiny_lung_model, "--scheduler", address)) == 3
    assert "0 done, 4 skipped" in capsys.readouterr().out
    assert file_states(out, GOOD) == before

    # a changed input is redone; an input touched but unchanged is recognised by its content
    base = phantom_ct()
    write_volume(base.with_array(base.array + 50), cohort / "ct1.nii.gz", overwrite=True)
    os.utime(cohort / "ct3.nii.gz")
    assert main(segment_args(cohort, out, tiny_lung_model, "--scheduler", address)) == 3
    assert "1 done, 3 skipped" in capsys.readouterr().out
    after = file_states(out, GOOD)
    assert {k: v for k, v in after.items() if "/ct1/" not in k} == {k: v for k, v in before.items() if "/ct1/" not in k}
    assert all(after[k] != before[k] for k in after if "/ct1/" in k)
    assert status(out, capsys)["counts"]["done"] == 1


def logged_work(log, **options):
    """A SegmentWork that logs the start and end of each computation (with the worker's pid)."""
    from pastacore.actions.batch import SegmentWork

    class Logged(SegmentWork):
        def run(self, out_dir, case, fingerprint, resources, timer):
            with open(log, "a") as handle:
                handle.write(f"start {case.case_id} {os.getpid()}\n")
            result = super().run(out_dir, case, fingerprint, resources, timer)
            with open(log, "a") as handle:
                handle.write(f"end {case.case_id} {os.getpid()}\n")
            return result

    from pastacore.actions.segment import SegmentOptions

    return Logged(SegmentOptions(**options))


def test_a_worker_killed_mid_run_loses_no_case_and_repeats_none(cluster, cohort, tiny_lung_model, tmp_path):
    from pastacore.cohort.engine import Case, run_cohort

    client = distributed.Client(cluster)
    pids = client.run(os.getpid)
    log = tmp_path / "log.txt"
    log.touch()
    work = logged_work(log, model=str(tiny_lung_model), roi=tuple(float(v) for v in ROI.split("=")[1].split(",")))
    names = [f"case{n}" for n in range(6)]
    cases = [Case(name, {"image": str(cohort / f"{GOOD[n % 4]}.nii.gz")}, {"n": n}, n) for n, name in enumerate(names)]
    killed = []

    def kill_a_busy_worker():
        """After a first case has ended, kill (SIGKILL) a worker in the middle of its next case."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lines = [line.split() for line in log.read_text().splitlines()]
            if any(kind == "end" for kind, _, _ in lines):
                running = {}
                for kind, case_id, pid in lines:
                    running[pid] = case_id if kind == "start" else None
                busy = [int(pid) for pid, case_id in running.items() if case_id and int(pid) in pids.values()]
                if busy:
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        summary = run_cohort(work, cases, tmp_path / "out", scheduler=cluster.scheduler_address)
    finally:
        killer.join()
        client.close()
    assert killed, "no worker was busy to be killed"
    lines = [line.split() for line in log.read_text().splitlines()]
    cut = [case_id for kind, case_id, pid in lines if kind == "start" and int(pid) == killed[0]][-1]
    assert ["end", cut, str(killed[0])] not in lines  # it really died in the middle of a case ...
    ends = sorted(case_id for kind, case_id, _ in lines if kind == "end")
    assert ends == names  # ... and every case was computed to its end exactly once
    assert summary["failed"] == [] and summary["pending"] == 0
    rows = manifest_rows(tmp_path / "out")
    assert sorted(rows) == names and {r["status"] for r in rows.values()} <= {"done", "skipped"}
    for name, row in rows.items():
        outputs = json.loads(row["outputs"])
        assert all((tmp_path / "out" / path).stat().st_size == size for path, size in outputs.items())
        assert json.loads((tmp_path / "out" / name / "case.json").read_text())["fingerprint"] == row["fingerprint"]
    assert leftovers(tmp_path / "out") == []
    # the restarted worker loaded the model once too (a case it only found on disk needed none)
    assert all(r["model_loads"] == 1 for r in rows.values() if r["status"] == "done")
    assert all(r["model_loads"] in (0, 1) for r in rows.values())


def test_an_interrupted_client_resumes_with_the_unfinished_cases_only(cluster, cohort, tiny_lung_model, tmp_path, capsys):
    inputs = tmp_path / "cases.csv"
    inputs.write_text("case_id,image\n" + "".join(f"c{n},{cohort / GOOD[n % 4]}.nii.gz\n" for n in range(8)))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "PastaSlicer"))
    env.pop("PASTA_PROGRESS", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "pastacore.cli.main"] + segment_args(inputs, out, tiny_lung_model, "--workers", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            try:
                done = sum(r["status"] == "done" for r in manifest_rows(out).values())
            except sqlite3.Error:
                done = 0
            if done >= 2:
                break
        child.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted (SIGINT); unfinished outputs were removed"]
    assert "local Dask cluster: 2 worker(s)" in stdout
    rows = manifest_rows(out)
    finished = sorted(name for name, row in rows.items() if row["status"] == "done")
    unfinished = sorted(name for name, row in rows.items() if row["status"] == "pending")
    assert len(finished) >= 2 and unfinished and len(finished) + len(unfinished) == 8
    before = file_states(out, finished)

    capsys.readouterr()
    assert main(segment_args(inputs, out, tiny_lung_model, "--scheduler", cluster.scheduler_address)) == 0
    done, skipped = map(int, re.search(r"(\d+) done, (\d+) skipped", capsys.readouterr().out).groups())
    # only the unfinished cases ran (one a worker finished just after the interrupt is found on disk, not redone)
    assert skipped >= len(finished) and done + skipped == 8 and done <= len(unfinished)
    rows = manifest_rows(out)
    assert {name for name, row in rows.items() if row["status"] == "skipped"} >= set(finished)
    assert all(rows[name]["status"] in ("done", "skipped") for name in unfinished)
    assert file_states(out, finished) == before
    assert status(out, capsys)["counts"]["pending"] == 0 and leftovers(out) == []


def test_batch_synth_gives_pasta_synth_lesions_with_seeds_from_the_case_ids(cluster, cohort, tmp_path, capsys):
    inputs = tmp_path / "cases.csv"
    inputs.write_text(
        "case_id,image,box,attributes\n"
        f'a,{cohort / "ct0.nii.gz"},"-66,-12,-10,-42,12,14",2 cm round solid nodule\n'
        f"b,{cohort / 'ct2.nii.gz'},,\n"
    )
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["batch", "synth", str(inputs), "--lesion-type", "lung_tumor", "--seed", "7"]
    assert main(args + ["--out", str(first), "--scheduler", "inline"]) == 0
    assert main(args + ["--out", str(second), "--scheduler", cluster.scheduler_address]) == 0
    for name in ("a", "b"):
        for image in ("image.nii.gz", "mask.nii.gz"):
            assert np.array_equal(read_volume(first / name / image).array, read_volume(second / name / image).array)
        assert (first / name / "type.json").read_text() == (second / name / "type.json").read_text()
    seed = json.loads(manifest_rows(first)["a"]["params"])["seed"]
    assert json.loads(manifest_rows(first)["b"]["params"])["seed"] != seed
    assert (
        main(
            [
                "synth",
                str(cohort / "ct0.nii.gz"),
                "--box=-66,-12,-10,-42,12,14",
                "--attributes",
                "2 cm round solid nodule",
                "--lesion-type",
                "lung_tumor",
                "--seed",
                str(seed),
                "--out-image",
                str(tmp_path / "i.nii.gz"),
                "--out-mask",
                str(tmp_path / "m.nii.gz"),
                "--out-report",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert np.array_equal(read_volume(tmp_path / "i.nii.gz").array, read_volume(first / "a" / "image.nii.gz").array)
    import pyarrow.parquet as pq

    table = pq.read_table(first / "cohort.parquet").to_pydict()
    assert table["case_id"] == ["a", "b"] and table["lesion_type"] == ["lung_tumor"] * 2
    assert table["seed"][0] == seed and 15 <= max(table["size_x_mm"][0], table["size_y_mm"][0]) <= 25

    # the synthetic cases measured by `batch report` (a CSV of image, seg) as `pasta report` measures them
    measure = tmp_path / "measure.csv"
    measure.write_text(
        "case_id,image,seg\n" + "".join(f"{n},{first / n / 'image.nii.gz'},{first / n / 'mask.nii.gz'}\n" for n in ("a", "b"))
    )
    assert main(["batch", "report", str(measure), "--out", str(tmp_path / "reports"), "--scheduler", "inline"]) == 0
    assert (
        main(
            [
                "report",
                str(first / "a" / "image.nii.gz"),
                str(first / "a" / "mask.nii.gz"),
                "--out-dir",
                str(tmp_path / "alone"),
                "--formats",
                "json",
            ]
        )
        == 0
    )
    batch = json.loads((tmp_path / "reports" / "a" / "report.json").read_text())["lesions"]
    alone = json.loads((tmp_path / "alone" / "report.json").read_text())["lesions"]
    # each report gives its lesions new DICOM tracking UIDs; everything measured is the same
    uids = [lesion.pop("tracking_uid") for lesion in batch + alone]
    assert batch == alone and len(batch) == 1 and all(uid.startswith("1.2.") for uid in uids)


def test_dataset_runs_on_the_engine_and_resumes(cluster, cohort, tmp_path):
    from pastacore.actions.dataset import generate_dataset

    out = tmp_path / "ds"
    options = dict(
        backgrounds_dir=str(cohort / "ct0.nii.gz"),
        output_dir=str(out),
        format="nnunet",
        lesion_type="lung_tumor",
        seed=3,
        scheduler=cluster.scheduler_address,
    )
    summary = generate_dataset(count=3, **options)
    assert summary["written"] == 3 and summary["workers"] == 2 and not summary["failed"]
    rows = manifest_rows(out)
    assert sorted(rows) == ["case_0000", "case_0001", "case_0002"] and {r["status"] for r in rows.values()} == {"done"}
    first = read_volume(out / "imagesTr" / "case_0001_0000.nii.gz").array
    again = generate_dataset(count=4, **dict(options, scheduler="inline"))
    assert again["skipped"] == 3 and again["written"] == 1
    assert np.array_equal(read_volume(out / "imagesTr" / "case_0001_0000.nii.gz").array, first)
    assert (out / "cohort.csv").read_text().count("\n") == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["segment", "NOWHERE", "--out", "OUT"], "error: input NOWHERE does not exist"),
        (["segment", "bad.csv", "--out", "OUT"], "error: bad.csv needs a header row with at least an image column"),
        (["segment", "twice.csv", "--out", "OUT"], "error: two cases are named a"),
        (["segment", "cohort", "--out", "cohort/out"], "error: output folder cohort/out lies inside the input folder"),
        (["report", "cohort", "--out", "OUT"], "error: case broken has no segmentation to measure"),
        (["synth", "cohort", "--out", "OUT", "--lesion-type", "lung_tumour_x"], "error: unknown lesion type"),
        (["segment", "cohort", "--out", "OUT", "--scheduler", "nowhere"], "error: --scheduler takes local, inline"),
        (["status", "cohort"], "error: cohort holds no cohort manifest"),
    ],
)
def test_bad_usage_is_one_error_line_before_any_work(cohort, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cohort").symlink_to(cohort)
    (tmp_path / "bad.csv").write_text("path\nct0.nii.gz\n")
    (tmp_path / "twice.csv").write_text(f"case_id,image\na,{cohort / 'ct0.nii.gz'}\na,{cohort / 'ct1.nii.gz'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "pastacore.cli.main", "batch", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "PastaSlicer")),
        timeout=120,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert not (tmp_path / "OUT").exists()
