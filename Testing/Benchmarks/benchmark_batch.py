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

Reported: seconds per case and against the plain loop; the engine's overhead within the same
run (worker-seconds from the first case's start to the last one's end, minus the work timed
inside each case, over that work: robust to a shared machine's drift; goal < 10 %),
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
    return [Case(f"case{n:02d}", {"image": str(images[n % 2])}, {"organ_label": None, "box": None}, n) for n in range(count)]


def make_work(model, device="cpu"):
    from pastacore.actions.batch import SegmentWork
    from pastacore.actions.segment import SegmentOptions

    return SegmentWork(SegmentOptions(model=model or "", device=device))


def plain_loop(work, cases, out: Path) -> list:
    """Seconds of each case, the per-case code called in a loop (warm-up case first, not counted)."""
    from pastacore.cohort.engine import Timer, WorkerResources

    resources = WorkerResources(work.options.device)
    out.mkdir()
    times = []
    for n, case in enumerate([cases[0]] + list(cases)):
        (out / str(n)).mkdir()
        started = time.perf_counter()
        work.run(out / str(n), case, "plain", resources, Timer())
        if n:
            times.append(time.perf_counter() - started)
        print(f"plain loop, case {n}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return times


def engine(work, cases, out: Path, scheduler: str) -> dict:
    """Seconds per case from the first case's start to the last one's end (warm-up run first)."""
    from pastacore.cohort.engine import run_cohort

    out.mkdir()
    run_cohort(work, cases[:1], out / "warm-up", scheduler=scheduler)
    marks = []
    summary = run_cohort(
        work, cases, out / "cohort", scheduler=scheduler, progress=lambda fraction, message="": marks.append(time.perf_counter())
    )
    assert not summary["failed"], summary["failed"]
    seconds = marks[-1] - marks[0]
    with sqlite3.connect(out / "cohort" / "manifest.sqlite") as db:
        rows = db.execute("SELECT worker, model_loads, peak_memory_mb, seconds, timings FROM cases").fetchall()
    # the work itself (model, segmentation, writing, report) as timed inside each case; the rest is the engine's
    work_s = [sum(v for k, v in json.loads(r[4]).items() if k != "hash") for r in rows]
    workers = {}
    for worker, loads, peak, _, _ in rows:
        entry = workers.setdefault(worker, {"cases": 0, "model_loads": 0, "peak_memory_mb": 0.0})
        entry["cases"] += 1
        entry["model_loads"] = max(entry["model_loads"], loads or 0)
        entry["peak_memory_mb"] = max(entry["peak_memory_mb"], peak or 0.0)
    result = {
        "per_case_s": seconds / len(cases),
        "cases_per_minute": 60 * len(cases) / seconds,
        "workers": workers,
        "work_per_case_s": statistics.mean(work_s),
    }
    if len(workers) == 1:  # with more, a worker waiting for the last case to end is no engine cost
        result["engine_overhead"] = (seconds - sum(work_s)) / sum(work_s)
    return result


def dask_engine(work, cases, out: Path, workers: int) -> dict:
    from pastacore.cohort.cluster import _local_cluster, local_gpus, local_size

    gpus = local_gpus(work.options.device) if work.options.device != "cpu" else 0
    size, threads = local_size(len(cases), workers, gpus)
    started = time.perf_counter()
    cluster = _local_cluster(size, threads, gpus)  # what `--scheduler local --workers K` starts
    start = time.perf_counter() - started
    try:
        result = engine(work, cases, out, cluster.scheduler_address)
    finally:
        started = time.perf_counter()
        cluster.close()
    result.update(threads_per_worker=threads, cluster_start_s=start, cluster_stop_s=time.perf_counter() - started)
    return result


def network_share(work, cases) -> dict:
    """Where a case's segmentation time goes: before the network (reading, standardising, the
    lung mask), the network (sliding window) and after it (post-processing, mapping back), from
    the progress marks of ``segment_volume``; the label map and report writing apart. This is
    what a GPU would and would not speed up."""
    from pastacore.actions import report, segment

    model = segment.load_model(work.options)
    split = {"before the network": [], "network": [], "after the network": [], "write + report json": []}
    for n, case in enumerate([cases[0]] + list(cases)):  # the first is a warm-up
        marks = {}

        def progress(fraction, message=""):
            marks.setdefault(message, time.perf_counter())

        started = time.perf_counter()
        segmented = segment.run(work.options, segment.SegmentInputs(case.inputs["image"]), progress, model=model)
        ended = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            labels, _ = segment.write_segmentation(segmented, Path(tmp) / "segmentation.nii.gz")
            inputs = report.ReportInputs(segmented.image, labels, image_file=case.inputs["image"])
            reported = report.run(work.report, inputs)
            report.write(reported, work.report, Path(tmp) / "report")
        if n == 0:
            continue
        split["before the network"].append(marks["running the network"] - started)
        split["network"].append(marks["post-processing"] - marks["running the network"])
        split["after the network"].append(ended - marks["post-processing"])
        split["write + report json"].append(time.perf_counter() - ended)
    return {k: statistics.mean(v) for k, v in split.items()}


def dataset_rate(count: int, out: Path, workers: int) -> dict:
    """``pasta dataset`` (procedural lung tumours in lung1 and lung2, PASTA-Gen layout): seconds
    per case after a warm-up case, timed from the first to the last case."""
    from pastacore.actions.dataset import generate_dataset
    from pastacore.samples import ensure_samples

    out.mkdir()
    out = out / "dataset"
    folder = ensure_samples()
    options = dict(
        backgrounds_dir=[folder / "lung1_image.nrrd", folder / "lung2_image.nrrd"],
        output_dir=out,
        lesion_type="lung_tumor",
        seed=1,
        workers=workers,
    )
    generate_dataset(count=1, **dict(options, workers=1))  # warm-up: imports, the backgrounds' lung masks
    marks = []
    summary = generate_dataset(count=count + 1, progress=lambda f, m="": marks.append(time.perf_counter()), **options)
    assert summary["written"] == count and not summary["failed"], summary
    seconds = marks[-1] - marks[0]
    with sqlite3.connect(out / "manifest.sqlite") as db:
        times = [
            r[0]
            for r in db.execute("SELECT seconds FROM cases WHERE status = 'done' AND run_id = (SELECT max(run_id) FROM runs)")
        ]
    # wall clock includes each fresh worker's start (imports, standardising each background once);
    # the median case is the steady state of a long run
    return {
        "per_case_s": seconds / count,
        "cases_per_minute": 60 * count / seconds,
        "median_case_s": statistics.median(times),
        "steady_cases_per_minute": 60 * workers / statistics.median(times),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--dataset-cases", type=int, default=12)
    parser.add_argument("--model", default=None, help="segmentation model (default: the built-in lung model)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: one Dask worker per GPU")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--split-only", action="store_true", help="only where a case's time goes (network or not)")
    parser.add_argument("--stages", nargs="+", help="run only these stages (names as in the table)")
    args = parser.parse_args()
    work, cases = make_work(args.model, args.device), make_cases(args.cases)
    results = {"cases": args.cases, "cores": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}
    if args.split_only:
        split = network_share(work, cases)
        total = sum(split.values())
        print("| part of a case | s | share |\n|---|---|---|")
        for name, seconds in split.items():
            print(f"| {name} | {seconds:.1f} | {100 * seconds / total:.0f} % |")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def loop_rate(folder):
            mean = statistics.mean(plain_loop(work, cases, folder))
            return {"per_case_s": mean, "cases_per_minute": 60 / mean}

        stages = [
            ("plain loop", lambda: loop_rate(tmp / "loop")),
            ("engine inline", lambda: engine(work, cases, tmp / "inline", "inline")),
            ("engine dask 1 worker", lambda: dask_engine(work, cases, tmp / "dask1", 1)),
            ("engine dask 2 workers", lambda: dask_engine(work, cases, tmp / "dask2", 2)),
            ("dataset 1 worker", lambda: dataset_rate(args.dataset_cases, tmp / "ds1", 1)),
            ("dataset 2 workers", lambda: dataset_rate(args.dataset_cases, tmp / "ds2", 2)),
            ("plain loop again", lambda: loop_rate(tmp / "loop-again")),
        ]
        for name, stage in stages:
            if args.stages and name not in args.stages:
                continue
            results[name] = stage()
            print(f"{name}: {json.dumps(results[name], default=str)}", file=sys.stderr, flush=True)
    results["load_after"] = os.getloadavg()
    if args.stages:
        print(json.dumps(results, indent=1, default=str))
        return 0
    reference = statistics.mean([results["plain loop"]["per_case_s"], results["plain loop again"]["per_case_s"]])
    print(
        f"{args.cases} cases (lung1, lung2 in turn), built-in model, {results['cores']} cores, load average "
        f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after\n"
    )
    print(
        "| run | s per case | vs plain loop | engine overhead (same run) | cases per minute | workers x threads "
        "| model loads per worker | peak memory per worker (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("plain loop", "engine inline", "engine dask 1 worker", "engine dask 2 workers", "plain loop again"):
        r = results[name]
        workers = r.get("workers") or {}
        overhead = (r["per_case_s"] - reference) / reference * 100
        shape = {
            "engine inline": "1 (this process)",
            "engine dask 1 worker": f"1 x {r.get('threads_per_worker')}",
            "engine dask 2 workers": f"2 x {r.get('threads_per_worker')}",
        }.get(name, "1 (this process)")
        own = f"{100 * r['engine_overhead']:+.1f} %" if "engine_overhead" in r else "-"
        print(
            f"| {name} | {r['per_case_s']:.2f} | {overhead:+.1f} % | {own} | {r['cases_per_minute']:.2f} | {shape} | "
            f"{', '.join(str(w['model_loads']) for w in workers.values()) or '1'} | "
            f"{', '.join('%.0f' % w['peak_memory_mb'] for w in workers.values()) or '-'} |"
        )
    for name in ("engine dask 1 worker", "engine dask 2 workers"):
        print(f"\n{name}: cluster start {results[name]['cluster_start_s']:.1f} s, stop {results[name]['cluster_stop_s']:.1f} s")
    print(
        "\n| pasta dataset (procedural lung tumours) | wall s per case | cases per minute | median case (s) "
        "| steady cases per minute |\n|---|---|---|---|---|"
    )
    for name in ("dataset 1 worker", "dataset 2 workers"):
        r = results[name]
        print(
            f"| {name} | {r['per_case_s']:.2f} | {r['cases_per_minute']:.1f} | {r['median_case_s']:.2f} | "
            f"{r['steady_cases_per_minute']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
