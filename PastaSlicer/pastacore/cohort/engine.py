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
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CancelledError, PastaError
from .fingerprint import content_hash, digest, outputs_present, signature
from .manifest import FINISHED, Manifest, run_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from ..inference.segmentation_model import SegmentationModel


MARKER = "case.json"  # in a case folder: the fingerprint its outputs were made for
INLINE, LOCAL = "inline", "local"


@dataclass
class Case:
    case_id: str
    inputs: dict  # role -> path of each file or folder the case reads
    params: dict = field(default_factory=dict)  # JSON: what else of the case decides its result
    position: int = 0  # order in the cohort (the table follows it)


class CaseWork:
    """What one case of a cohort is. Subclasses set ``kind``, ``table_columns`` and implement
    :meth:`run`; the instance travels to the workers, so it holds plain settings only."""

    kind = ""
    table_columns: tuple = ()
    owned: tuple = ()  # the files of a case folder (patterns); others there are kept
    model = None  # the segmentation model the work loads (name or path), if any
    model_sha256 = None
    needs_gpu = False

    def settings(self) -> dict:
        """Work-wide settings that decide a case's result (part of every case's fingerprint)."""
        return {}

    def case_folder(self, out_dir: Path, case: Case) -> Path:
        return out_dir / case.case_id

    def found(self, out_dir: Path, case: Case, fingerprint: str) -> dict | None:
        """The case's outputs when its folder already holds them for ``fingerprint`` (read
        from its ``case.json``), else None."""
        folder = self.case_folder(out_dir, case)
        try:
            marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(marker, dict) or marker.get("fingerprint") != fingerprint:
            return None
        outputs = marker.get("outputs") or {}
        if not outputs_present(folder, outputs):
            return None
        prefix = folder.relative_to(out_dir).as_posix()
        return {"outputs": {f"{prefix}/{k}": v for k, v in outputs.items()}, "rows": marker.get("rows") or []}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        """Compute the case and write its outputs; returns ``{"outputs": {path relative to
        out_dir: size}, "rows": [cohort table rows]}``. Raise PastaError for a bad case."""
        raise NotImplementedError

    @contextlib.contextmanager
    def case_directory(self, out_dir: Path, case: Case) -> Iterator[Path]:
        """A staging folder for the case's files, moved into ``out_dir/<case>`` on success
        (replacing only this work's own files there)."""
        from ..fileio.atomic import atomic_directory

        with atomic_directory(self.case_folder(out_dir, case), overwrite=True, owned=self.owned + (MARKER,)) as temp:
            yield Path(temp)

    def finish(self, out_dir: Path, case: Case, staging: Path, fingerprint: str, rows: list) -> dict:
        """Write the case's ``case.json`` (last, in its staging folder) and return its outcome."""
        from .fingerprint import output_sizes

        outputs = output_sizes(staging)
        marker = {
            "case_id": case.case_id,
            "kind": self.kind,
            "fingerprint": fingerprint,
            "inputs": case.inputs,
            "params": case.params,
            "model_sha256": self.model_sha256,
            "outputs": outputs,
            "rows": rows,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1, default=str), encoding="utf-8")
        prefix = self.case_folder(out_dir, case).relative_to(out_dir).as_posix()
        return {"outputs": {f"{prefix}/{k}": v for k, v in outputs.items()}, "rows": rows}


class Timer:
    """Seconds spent per phase of a case (``with timer("compute"): ...``)."""

    def __init__(self) -> None:
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


class WorkerResources:
    """What one worker process keeps between cases: loaded models (each loaded once, and
    counted), content hashes of the files it read, synthesis backends."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self.model_loads = 0
        self._models = {}
        self._hashes = {}

    def segmentation_model(self, model: str | Path | None) -> SegmentationModel:
        from ..inference.segmentation_model import resolve_segmentation_model

        key = str(model or "")
        if key not in self._models:
            self._models[key] = resolve_segmentation_model(model or None)
            self.model_loads += 1
        return self._models[key]

    def content_hash(self, path: str | Path, stat: Sequence[int]) -> str:
        key = (os.path.realpath(path), tuple(stat))
        if key not in self._hashes:
            self._hashes[key] = content_hash(path)
        return self._hashes[key]


def peak_memory_mb() -> float | None:
    """This process's peak resident memory so far, in MiB (Linux: VmHWM, which starts afresh
    in a new program; ``ru_maxrss`` would carry the peak of the process that spawned it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def execute_case(
    work: CaseWork, case: Case, basis: str, out_dir: str | Path, resources: WorkerResources, worker: str = ""
) -> dict:
    """Run one case where this is called (a worker, or this process); never raises for a bad
    case: the outcome says ``done``, ``skipped`` (its outputs were already there) or
    ``failed`` with one line."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    timer = Timer()
    outcome = {"case_id": case.case_id, "worker": worker}
    try:
        for role, path in case.inputs.items():
            if not Path(path).exists():
                raise PastaError(f"{role} {path} does not exist")
        with timer("hash"):
            stats = {role: signature(path) for role, path in case.inputs.items()}
            hashes = {role: resources.content_hash(path, stats[role]) for role, path in case.inputs.items()}
        fingerprint = digest({"basis": basis, "inputs": hashes})
        outcome.update(input_stats=stats, input_hashes=hashes, fingerprint=fingerprint)
        result = work.found(out_dir, case, fingerprint)
        outcome["status"] = "skipped" if result is not None else "done"
        if result is None:
            result = work.run(out_dir, case, fingerprint, resources, timer)
        outcome.update(outputs=result["outputs"], rows=result.get("rows") or [])
    except CancelledError:
        raise
    except PastaError as exc:
        outcome.update(status="failed", error=str(exc))
    except MemoryError:
        outcome.update(status="failed", error="out of memory: give the workers more memory, or fewer workers per machine")
    except Exception as exc:  # a bug or a library's failure on this case: recorded, the others go on
        outcome.update(status="failed", error=f"internal error ({type(exc).__name__}: {_one_line(exc)})")
    outcome.update(
        seconds=round(time.perf_counter() - started, 3),
        timings={k: round(v, 3) for k, v in timer.seconds.items()},
        model_loads=resources.model_loads,
        peak_memory_mb=peak_memory_mb(),
    )
    return outcome


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
    progress: Callable[[float, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
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

    report = progress or (lambda fraction, message="": None)
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
