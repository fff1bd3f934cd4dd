"""Run one kind of work over the cases of a cohort, and record each case as it finishes.

``run_cohort(work, cases, out_dir, scheduler=...)``:

1. takes the folder's run lock, opens its manifest (:mod:`.manifest`) and removes what an
   earlier run left half-written (our own staging folders only);
2. skips every case recorded as finished whose inputs (paths, sizes, times), model,
   parameters and work settings are unchanged and whose recorded outputs are all there;
3. runs the others, in this process (``scheduler="inline"``) or on Dask workers
   (``"local"``: a LocalCluster sized to the machine; ``"tcp://host:8786"``: a running
   cluster), each through :func:`execute_case`: hash the inputs (a worker keeps the hashes
   of what it read), skip the case if its folder already holds outputs for this fingerprint,
   else run it; any error becomes a failed row with its one line, and the case's staging
   folder goes with it;
4. records every outcome in the manifest the moment it arrives, and rewrites the cohort
   table (:mod:`.table`) now and then and at the end.

A :class:`CaseWork` says what one case is: it is sent to the workers with each case, so it
holds settings only; what a worker keeps between cases (models, hashes) lives in its
:class:`WorkerResources`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CancelledError, PastaError
from ..progress import reporter
from .case import MARKER, Case, CaseWork, Timer, WorkerResources, execute_case  # noqa: F401  (the engine's vocabulary)
from .fingerprint import digest, outputs_present, signature
from .manifest import FINISHED, Manifest, run_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..progress import Cancelled, Progress

INLINE, LOCAL = "inline", "local"


def remove_stale_staging(out_dir: Path) -> int:
    """Remove the staging folders an interrupted run left under ``out_dir`` (ours only)."""
    from ..fileio.atomic import STAGING_PREFIX, STAGING_SUFFIX

    removed = 0
    for root, dirs, _ in os.walk(out_dir):
        for name in list(dirs):
            if name.startswith(STAGING_PREFIX) and (name.endswith(STAGING_SUFFIX) or name.endswith(".old")):
                shutil.rmtree(Path(root, name), ignore_errors=True)
                dirs.remove(name)
                removed += 1
    return removed


def _basis(work: CaseWork, case: Case) -> str:
    return digest({"kind": work.kind, "settings": work.settings(), "model_sha256": work.model_sha256, "params": case.params})


def _unchanged(row, case: Case, basis: str, out_dir: Path) -> bool:
    """Recorded as finished for the same basis, inputs that look the same, outputs all there."""
    if row is None or row["status"] not in FINISHED or row["basis"] != basis or row["inputs"] != case.inputs:
        return False
    try:
        stats = {role: signature(path) for role, path in case.inputs.items()}
    except PastaError:
        return False
    return stats == row["input_stats"] and outputs_present(out_dir, row["outputs"])


def _check_cases(cases) -> None:
    seen = set()
    for case in cases:
        if case.case_id in seen:
            raise PastaError(f"case {case.case_id} appears twice; give each case its own id")
        seen.add(case.case_id)


def run_cohort(
    work: CaseWork,
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    scheduler: str = INLINE,
    workers: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    notify: Callable[[str], None] | None = None,
    table_every_s: float = 30.0,
) -> dict:
    """Run ``work`` over ``cases`` into ``out_dir``; returns a summary (see the module doc).

    ``progress(fraction, message)`` follows the cases; ``notify(line)`` receives what a user
    should read once (the dashboard link, the cluster's size); ``is_cancelled()`` is polled
    between cases. Ctrl-C / SIGTERM end the run: finished cases stay recorded, the others
    stay pending, and the next run resumes."""
    from ..fileio.atomic import check_output_dir
    from .table import CohortTable

    report = reporter(progress)
    say = notify or (lambda line: None)
    cancelled = is_cancelled or (lambda: False)
    cases = list(cases)
    _check_cases(cases)
    out_dir = check_output_dir(out_dir, overwrite=True)
    out_dir.mkdir(exist_ok=True)
    out_dir = out_dir.resolve()
    started = time.perf_counter()
    with run_lock(out_dir), Manifest(out_dir) as manifest:
        manifest.claim(work.kind)
        remove_stale_staging(out_dir)
        rows = manifest.rows()
        basis = {case.case_id: _basis(work, case) for case in cases}
        todo, skipped = [], []
        for case in cases:
            if _unchanged(rows.get(case.case_id), case, basis[case.case_id], out_dir):
                skipped.append((case.case_id, case.position))
            else:
                todo.append(case)
        counts = {"done": 0, "skipped": len(skipped), "failed": 0}
        failures = []
        table = CohortTable(out_dir, work.table_columns)
        with _executor(scheduler, work, todo, workers, device, say) as (execute, size, dashboard):
            run_id = manifest.start_run(work.kind, scheduler, size)
            manifest.plan(
                run_id,
                [
                    {
                        "case_id": c.case_id,
                        "position": c.position,
                        "inputs": c.inputs,
                        "model": None if work.model is None else str(work.model),
                        "model_sha256": work.model_sha256,
                        "params": c.params,
                        "basis": basis[c.case_id],
                    }
                    for c in todo
                ],
                skipped,
            )
            ending = "interrupted"
            try:
                report(0.0, f"{len(todo)} to run, {len(skipped)} done earlier")
                for finished, (case, outcome) in enumerate(execute(basis, out_dir, cancelled), start=1):
                    manifest.record(case.case_id, outcome, run_id)
                    counts[outcome["status"]] += 1
                    if outcome["status"] == "failed":
                        failures.append({"case_id": case.case_id, "error": outcome.get("error", "")})
                    report(finished / max(1, len(todo)), f"{case.case_id}: {outcome['status']}")
                    table.write_if_due(manifest, table_every_s)
                ending = "complete"
                remove_stale_staging(out_dir)  # every case has ended: what a killed worker left is garbage
            finally:
                if todo or not table.exists():
                    with contextlib.suppress(PastaError, OSError):
                        table.write(manifest)
                manifest.finish_run(run_id, ending)
        pending = manifest.counts()["pending"]
    return {
        "output": str(out_dir),
        "kind": work.kind,
        "requested": len(cases),
        "done": counts["done"],
        "skipped": counts["skipped"],
        "failed": failures,
        "pending": pending,
        "run_id": run_id,
        "workers": size,
        "dashboard": dashboard,
        "seconds": round(time.perf_counter() - started, 2),
    }


@contextlib.contextmanager
def _executor(scheduler, work, todo, workers, device, say):
    """``(execute(basis, out_dir, cancelled) -> iterator of (case, outcome), workers, dashboard)``."""
    if not todo:  # nothing to run: no cluster to start
        yield (lambda basis, out_dir, cancelled: iter(())), 0, None
        return
    if scheduler in (None, "", INLINE):
        resources = WorkerResources(device)

        def execute(basis, out_dir, cancelled):
            for case in todo:
                if cancelled():
                    raise CancelledError("cancelled; finished cases were kept and the next run resumes after them")
                yield case, execute_case(work, case, basis[case.case_id], out_dir, resources, f"local (pid {os.getpid()})")

        yield execute, 1, None
        return
    from .cluster import dask_cluster

    with dask_cluster(scheduler, work, len(todo), workers, device, say) as cluster:
        yield (
            (lambda basis, out_dir, cancelled: cluster.results(todo, basis, out_dir, cancelled)),
            cluster.size,
            cluster.dashboard,
        )
