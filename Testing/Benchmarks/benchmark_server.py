"""Benchmark: a PASTA server on the same machine against a local run, on the real lung1 CT.

Measured in one run, with the same model and search box both ways:

- ``pasta segment lung1`` on this machine (a new process: imports, model load, segmentation,
  writing), against ``pasta segment lung1 --server URL`` (read here, upload as gzip NRRD, the
  server's warm worker segments, download, write here): wall time of each command, and the ratio
  (goal <= 1.15x); the first remote run (the worker loads the model) is reported apart;
- what travels: the CT's bytes on disk, the gzip NRRD upload, the labels downloaded;
- throughput: a small cohort of jobs sent at once to a server with 2 workers (jobs per minute,
  each worker keeping its model), against the same jobs one after the other on 1 worker.

Usage: .venv/bin/python Testing/Benchmarks/benchmark_server.py [--model NAME_OR_DIR] [--roi R1,A1,S1,R2,A2,S2]
       [--cohort 4] [--device cpu]
Prints a Markdown table for Testing/Benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROI = "-10,90,-640,50,150,-580"  # RAS mm: a 60 mm cube around lung1's tumour


def start_server(workers: int, device: str, store: str | None):
    command = [sys.executable, "-m", "pastacore.cli.main", "serve", "--port", "0", "--workers", str(workers), "--device", device]
    if store:
        command += ["--store", store]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if not line.startswith("PASTA server ready:"):
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split(": ", 1)[1].strip(), time.perf_counter() - started


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def timed_segment(ct: Path, out: Path, model: str, roi: str, device: str, server: str | None = None) -> float:
    command = [sys.executable, "-m", "pastacore.cli.main", "segment", str(ct), "--out", str(out), f"--roi={roi}", "--overwrite"]
    command += ["--device", device] + (["--model", model] if model else [])
    if server:
        command += ["--server", server]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started


def cohort_rate(url: str, ct: Path, model: str, roi: str, device: str, count: int, at_once: bool) -> tuple:
    """``(jobs per minute, bytes uploaded per job, bytes downloaded per job)``: ``count`` segmentations
    sent at once (or one after the other)."""
    from pastacore.actions.segment import SegmentInputs, SegmentOptions
    from pastacore.fileio import read_volume
    from pastacore.tasks.exchange import save_volume
    from pastacore.tasks.jobs import ACTION_JOB, action_params
    from pastacore.tasks.remote import RemoteRunner

    options = SegmentOptions(model=model, roi=tuple(float(v) for v in roi.split(",")), device=device)
    image = read_volume(ct)
    runner = RemoteRunner(url)

    def start():
        folder = tempfile.mkdtemp(prefix="pasta-bench-")
        volumes = {}
        params = action_params("segment", options, SegmentInputs(image), volumes)
        for name, volume in volumes.items():
            save_volume(volume, folder, name)
        return runner.start(ACTION_JOB, params, folder)

    started = time.perf_counter()
    if at_once:
        handles = [start() for _ in range(count)]
        while any([h.poll() for h in handles]):
            time.sleep(0.02)
    else:
        handles = []
        for _ in range(count):
            handles.append(start())
            handles[-1].wait(interval=0.02)
    seconds = time.perf_counter() - started
    assert all(h.outcome.ok for h in handles), [h.outcome.error for h in handles]
    return 60.0 * count / seconds, handles[0].upload_bytes, handles[0].download_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="installed name or model folder (default: the built-in model)")
    parser.add_argument("--roi", default=ROI)
    parser.add_argument("--cohort", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from pastacore.fileio import read_volume
    from pastacore.modelstore.store import ModelStore
    from pastacore.samples import ensure_samples

    ct = ensure_samples() / "lung1_image.nrrd"
    work = Path(tempfile.mkdtemp(prefix="pasta-server-bench-"))
    store, model = None, args.model
    if args.model and Path(args.model).is_dir():  # a model folder: the server's store gets it by name
        store = str(work / "store")
        model = ModelStore(store).import_file(args.model).name
    local_model = args.model

    server, url, start_seconds = start_server(1, args.device, store)
    try:
        cold = timed_segment(ct, work / "remote_cold.nii.gz", model, args.roi, args.device, url)
        remote = min(timed_segment(ct, work / "remote.nii.gz", model, args.roi, args.device, url) for _ in range(2))
        local = min(timed_segment(ct, work / "local.nii.gz", local_model, args.roi, args.device) for _ in range(2))
        one_worker, upload, download = cohort_rate(url, ct, model, args.roi, args.device, args.cohort, at_once=False)
    finally:
        stop(server)
    server, url, _ = start_server(2, args.device, store)
    try:
        cohort_rate(url, ct, model, args.roi, args.device, 2, at_once=True)  # each worker loads the model
        two_workers, _, _ = cohort_rate(url, ct, model, args.roi, args.device, args.cohort, at_once=True)
    finally:
        stop(server)
    same = read_volume(work / "remote.nii.gz", is_label=True).array

    print("| measure | value | goal |\n|---|---|---|")
    print(f"| server start to ready line (1 worker) | {start_seconds:.1f} s | |")
    print(f"| `pasta segment` lung1 here (best of 2) | {local:.1f} s | |")
    print(f"| `pasta segment --server` lung1, first (worker loads the model) | {cold:.1f} s | |")
    print(f"| `pasta segment --server` lung1 (best of 2) | {remote:.1f} s | |")
    print(f"| remote / local | {remote / local:.2f}x | <= 1.15x |")
    inside = {side: json.loads((work / f"{side}.json").read_text())["seconds"] for side in ("local", "remote")}
    print(
        f"| segmentation itself (sidecar seconds), here / on the server | {inside['local']:.1f} s / {inside['remote']:.1f} s | |"
    )
    print(f"| around it: here (start, imports, model load, read, write) | {local - inside['local']:.1f} s | |")
    print(f"| around it: remote (start, read, upload, queue, download, write) | {remote - inside['remote']:.1f} s | |")
    print(
        f"| lung1 on disk (gzip NRRD) / uploaded (gzip NRRD, level 1) | {ct.stat().st_size / 2**20:.1f} MB / {upload / 2**20:.1f} MB | |"
    )
    print(f"| labels downloaded (gzip NRRD) | {download / 2**10:.0f} KB | |")
    print(f"| cohort of {args.cohort}, 1 worker, one after the other | {one_worker:.1f} jobs/min | |")
    print(f"| cohort of {args.cohort}, 2 workers, all at once | {two_workers:.1f} jobs/min | |")
    same_labels = bool((read_volume(work / "local.nii.gz", is_label=True).array == same).all())
    print(f"\nremote labels equal local labels: {same_labels}")


if __name__ == "__main__":
    main()
