"""Benchmark: what the cohort engine costs per case, and how it scales, on the real lung CTs.

The work is ``pasta batch segment``'s per case (standardise, built-in lung model, label map
and sidecar, report JSON, cohort-table rows) on the pyradiomics ``lung1`` and ``lung2`` CTs,
repeated under distinct case ids. Measured, each after a warm-up case (imports, model load):

* **plain loop**: ``SegmentWork.run`` called case after case in one process, the model kept
  (what a script without the engine does, with the same per-case code);
* **engine, inline**: ``run_cohort(scheduler="inline")``: the same, plus hashing the inputs,
  the manifest row, ``case.json`` and the cohort table;
* **engine, Dask, 1 worker**: ``run_cohort`` on a LocalCluster of one worker process with
  every core (as ``pasta batch --workers 1`` starts it), timed from the first to the last
  case (the cluster start is reported apart);
* **engine, Dask, 2 workers**: the same with two worker processes sharing the cores;
* the plain loop once more at the end, to see how much the shared machine drifted;
* ``pasta dataset`` (procedural lung tumours into lung1 / lung2) in this process and on two
  Dask workers: the per-case cost of synthetic data.

Reported: seconds per case, the engine's overhead against the plain loop (goal < 10 %),
cases per minute, model loads per worker (from the manifest: goal 1) and each worker's peak
resident memory. Usage:

    .venv/bin/python Testing/Benchmarks/benchmark_batch.py [--cases 4] [--model NAME_OR_PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_cases(count: int):
    from pastacore.cohort.engine import Case
    from pastacore.samples import ensure_samples

    folder = ensure_samples()
    images = [folder / "lung1_image.nrrd", folder / "lung2_image.nrrd"]
    return [Case(f"case{n:02d}", {"image": str(images[n % 2])}, {"organ_label": None, "box": None}, n)
            for n in range(count)]


def make_work(model):
    from pastacore.cohort.fingerprint import model_sha256
    from pastacore.cohort.works import SegmentWork

    return SegmentWork(model=model, model_sha256=model_sha256(model or ""), device="cpu")


def plain_loop(work, cases, out: Path) -> list:
    """Seconds of each case, the per-case code called in a loop (warm-up case first, not counted)."""
    from pastacore.cohort.engine import Timer, WorkerResources

    resources = WorkerResources("cpu")
    out.mkdir()
    times = []
    for n, case in enumerate([cases[0]] + list(cases)):
        (out / str(n)).mkdir()
        started = time.perf_counter()
        work.run(out / str(n), case, "plain", resources, Timer())
        if n:
            times.append(time.perf_counter() - started)
    return times


def engine(work, cases, out: Path, scheduler: str) -> dict:
    """Seconds per case from the first case's start to the last one's end (warm-up run first)."""
    from pastacore.cohort.engine import run_cohort

    run_cohort(work, cases[:1], out / "warm-up", scheduler=scheduler)
    marks = []
    summary = run_cohort(work, cases, out / "cohort", scheduler=scheduler,
                         progress=lambda fraction, message="": marks.append(time.perf_counter()))
    assert not summary["failed"], summary["failed"]
    seconds = marks[-1] - marks[0]
    with sqlite3.connect(out / "cohort" / "manifest.sqlite") as db:
        rows = db.execute("SELECT worker, model_loads, peak_memory_mb, seconds FROM cases").fetchall()
    workers = {}
    for worker, loads, peak, _ in rows:
        entry = workers.setdefault(worker, {"cases": 0, "model_loads": 0, "peak_memory_mb": 0.0})
        entry["cases"] += 1
        entry["model_loads"] = max(entry["model_loads"], loads or 0)
        entry["peak_memory_mb"] = max(entry["peak_memory_mb"], peak or 0.0)
    return {"per_case_s": seconds / len(cases), "cases_per_minute": 60 * len(cases) / seconds, "workers": workers,
            "case_seconds": statistics.median(r[3] for r in rows)}


def dask_engine(work, cases, out: Path, workers: int) -> dict:
    from distributed import LocalCluster

    from pastacore.cohort.cluster import _local_cluster, local_size

    size, threads = local_size(len(cases), workers, 0)
    started = time.perf_counter()
    cluster = _local_cluster(size, threads, 0)  # what `--scheduler local --workers K` starts
    assert isinstance(cluster, LocalCluster)
    start = time.perf_counter() - started
    try:
        result = engine(work, cases, out, cluster.scheduler_address)
    finally:
        started = time.perf_counter()
        cluster.close()
    result.update(threads_per_worker=threads, cluster_start_s=start, cluster_stop_s=time.perf_counter() - started)
    return result


def dataset_rate(count: int, out: Path, workers: int) -> dict:
    """``pasta dataset`` (procedural lung tumours in lung1 and lung2, PASTA-Gen layout): seconds
    per case after a warm-up case, timed from the first to the last case."""
    from pastacore.samples import ensure_samples
    from pastacore.synthesis import generate_dataset

    folder = ensure_samples()
    options = dict(backgrounds_dir=[folder / "lung1_image.nrrd", folder / "lung2_image.nrrd"], output_dir=out,
                   lesion_type="lung_tumor", seed=1, workers=workers)
    generate_dataset(count=1, **dict(options, workers=1))  # warm-up: imports, the backgrounds' lung masks
    marks = []
    summary = generate_dataset(count=count + 1, progress=lambda f, m="": marks.append(time.perf_counter()), **options)
    assert summary["written"] == count and not summary["failed"], summary
    seconds = marks[-1] - marks[0]
    return {"per_case_s": seconds / count, "cases_per_minute": 60 * count / seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--model", default=None, help="segmentation model (default: the built-in lung model)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    work, cases = make_work(args.model), make_cases(args.cases)
    results = {"cases": args.cases, "cores": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loop = plain_loop(work, cases, tmp / "loop")
        results["plain loop"] = {"per_case_s": statistics.mean(loop), "cases_per_minute": 60 / statistics.mean(loop)}
        results["engine inline"] = engine(work, cases, tmp / "inline", "inline")
        results["engine dask 1 worker"] = dask_engine(work, cases, tmp / "dask1", 1)
        results["engine dask 2 workers"] = dask_engine(work, cases, tmp / "dask2", 2)
        results["dataset 1 worker"] = dataset_rate(2 * args.cases, tmp / "ds1", 1)
        results["dataset 2 workers"] = dataset_rate(2 * args.cases, tmp / "ds2", 2)
        loop = plain_loop(work, cases, tmp / "loop-again")
        results["plain loop again"] = {"per_case_s": statistics.mean(loop), "cases_per_minute": 60 / statistics.mean(loop)}
    results["load_after"] = os.getloadavg()
    reference = statistics.mean([results["plain loop"]["per_case_s"], results["plain loop again"]["per_case_s"]])
    print(f"{args.cases} cases (lung1, lung2 in turn), built-in model, {results['cores']} cores, load average "
          f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after\n")
    print("| run | s per case | overhead vs plain loop | cases per minute | workers x threads | model loads per worker "
          "| peak memory per worker (MB) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("plain loop", "engine inline", "engine dask 1 worker", "engine dask 2 workers", "plain loop again"):
        r = results[name]
        workers = r.get("workers") or {}
        overhead = (r["per_case_s"] - reference) / reference * 100
        shape = {"engine inline": "1 (this process)", "engine dask 1 worker": f"1 x {r.get('threads_per_worker')}",
                 "engine dask 2 workers": f"2 x {r.get('threads_per_worker')}"}.get(name, "1 (this process)")
        print(f"| {name} | {r['per_case_s']:.2f} | {overhead:+.1f} % | {r['cases_per_minute']:.2f} | {shape} | "
              f"{', '.join(str(w['model_loads']) for w in workers.values()) or '1'} | "
              f"{', '.join('%.0f' % w['peak_memory_mb'] for w in workers.values()) or '-'} |")
    for name in ("engine dask 1 worker", "engine dask 2 workers"):
        print(f"\n{name}: cluster start {results[name]['cluster_start_s']:.1f} s, stop {results[name]['cluster_stop_s']:.1f} s")
    print("\n| pasta dataset (procedural lung tumours) | s per case | cases per minute |\n|---|---|---|")
    for name in ("dataset 1 worker", "dataset 2 workers"):
        print(f"| {name} | {results[name]['per_case_s']:.2f} | {results[name]['cases_per_minute']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
