"""One case of a cohort and what computes it: :class:`Case`, the :class:`CaseWork` it goes
through, the :class:`WorkerResources` a worker keeps between cases, and :func:`execute_case`,
which runs a case wherever it is called (this process, or a Dask worker) and never raises for a
bad case."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CancelledError, PastaError
from .fingerprint import content_hash, digest, outputs_present, signature

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator, Sequence


MARKER = "case.json"  # in a case folder: the fingerprint its outputs were made for


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

    def model(self, key: Hashable, load: Callable[[], object]) -> object:
        """The model ``key`` names, made by ``load()`` the first time this worker needs it."""
        if key not in self._models:
            self._models[key] = load()
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
