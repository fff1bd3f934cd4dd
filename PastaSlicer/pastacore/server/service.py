"""What the server does for a request, without the web framework: accept a job, take its uploads,
queue it, follow it, hand out its results and forget it (:mod:`.app` maps HTTP onto this)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import PastaError
from .book import CANCELLED, DONE, FAILED, FINAL, QUEUED, RUNNING, UPLOADING, Job, JobBook
from .policy import check_job
from .worker import upload_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from .engine import Engine

RESULTS = "results"  # a job folder's subfolder of outputs
MAX_OPEN_JOBS = 16  # unfinished jobs one token may have at once (uploading, queued or running)


class Conflict(PastaError):
    """A request that does not fit the job's state (HTTP 409)."""


class TooMany(PastaError):
    """A token with too many unfinished jobs (HTTP 429)."""


class Service:
    def __init__(
        self,
        engine: Engine,
        book: JobBook,
        store: object,
        max_bytes: int,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.engine, self.book, self.store, self.max_bytes = engine, book, store, max_bytes
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.started = time.time()

    # -- facts ----------------------------------------------------------------------------------
    def health(self) -> dict:
        jobs = self.book.jobs()
        return {
            "service": "pasta",
            "version": __version__,
            "device": self.engine.device_text,
            "workers": self.engine.workers_now(),
            "busy": self.engine.busy(),
            "models": len([m for m in self.store.list() if not m.damaged]),
            "max_upload_mb": round(self.max_bytes / 2**20, 1),
            "jobs": {state: sum(j.state == state for j in jobs) for state in (UPLOADING, QUEUED, RUNNING)},
        }

    def models(self) -> list:
        return [
            {"name": m.name, "version": m.version, "task": m.task, "builtin": m.builtin, "family": m.family}
            for m in self.store.list()
            if not m.damaged
        ]

    # -- a job's life ---------------------------------------------------------------------------
    def create(self, owner: str, spec: object) -> Job:
        self.book.sweep()
        name, _options = check_job(spec, self.store, self.max_bytes)
        open_jobs = sum(1 for j in self.book.jobs() if j.owner == owner and j.state not in FINAL)
        if open_jobs >= MAX_OPEN_JOBS:
            raise TooMany(
                f"this token has {open_jobs} unfinished jobs on the server; wait for some to end (at most {MAX_OPEN_JOBS})"
            )
        job = self.book.new(owner, name, spec)
        return job

    def upload_path(self, job: Job, key: str) -> tuple:
        """``(file the upload goes to, its announced size)``; Conflict when the job takes no such upload."""
        declared = (job.spec.get("volumes") or {}).get(key)
        if job.state != UPLOADING or declared is None or key in job.uploaded:
            raise Conflict(f"job {job.id[:8]}... takes no upload named {key!r} now (state {job.state})")
        return job.folder / upload_name(key, declared.get("format", "nrrd")), int(declared["bytes"])

    def uploaded(self, job: Job, key: str) -> None:
        """Note a complete upload; the last one queues the job."""
        with self.book.lock:
            job.uploaded.add(key)
            ready = job.state == UPLOADING and job.uploaded >= set(job.spec.get("volumes") or {})
            if ready:
                job.state, job.queued_at = QUEUED, time.monotonic()
        if ready:
            self._queue(job)

    def _queue(self, job: Job) -> None:
        sources = {key: str(job.folder / upload_name(key, d.get("format", "nrrd"))) for key, d in job.spec["volumes"].items()}
        spec = {key: job.spec.get(key) for key in ("action", "options", "inputs", "volumes", "write")}
        self.say(f"job {job.id[:8]} ({job.action}, {job.owner or 'local'}): queued")
        try:
            job.handle = self.engine.submit(
                job.id, spec, sources, lambda event: self._progress(job, event), lambda o: self._done(job, o)
            )
        except Exception as exc:
            self.book.finish(job, FAILED, error=f"the server could not queue the job ({type(exc).__name__}: {exc})")

    def _progress(self, job: Job, event: dict) -> None:
        with self.book.lock:
            if job.state in (QUEUED, RUNNING):
                job.state, job.worker_pid = RUNNING, event.get("pid")
                job.fraction, job.message = float(event.get("fraction", 0.0)), str(event.get("message", ""))

    def _done(self, job: Job, outcome: dict) -> None:
        state = outcome.get("state")
        if state == DONE:
            outputs = self._store_results(job, outcome)
            ended = self.book.finish(
                job,
                DONE,
                result=outcome.get("result"),
                volume_meta=outcome.get("volume_meta") or {},
                outputs=outputs,
                fraction=1.0,
            )
            if not ended:  # cancelled or forgotten meanwhile
                shutil.rmtree(job.folder / RESULTS, ignore_errors=True)
        elif state == CANCELLED:
            ended = self.book.finish(job, CANCELLED)
        else:
            ended = self.book.finish(job, FAILED, error=str(outcome.get("error") or "the job failed"))
        if ended:
            seconds = f" in {job.seconds:.1f} s" if job.seconds is not None else ""
            reason = f": {job.error}" if job.state == FAILED else ""
            self.say(f"job {job.id[:8]} ({job.action}, {job.owner or 'local'}): {job.state}{seconds}{reason}")
        self._remove_uploads(job)

    def _store_results(self, job: Job, outcome: dict) -> dict:
        folder = job.folder / RESULTS
        outputs = {}
        try:
            folder.mkdir()  # not its parents: a job forgotten meanwhile has no folder any more
            for key, data in (outcome.get("volumes") or {}).items():
                path = folder / "volumes" / f"{key}.nrrd"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                outputs[f"volumes/{key}"] = path
            for name, data in (outcome.get("files") or {}).items():
                path = folder / "files" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                outputs[f"files/{name}"] = path
        except OSError:
            return {}  # the job was forgotten meanwhile (its folder is gone)
        return outputs

    def _remove_uploads(self, job: Job) -> None:
        for key, described in (job.spec.get("volumes") or {}).items():
            (job.folder / upload_name(key, described.get("format", "nrrd"))).unlink(missing_ok=True)

    def cancel(self, job: Job) -> None:
        with self.book.lock:
            state, handle = job.state, job.handle
        if state in FINAL:
            return
        if handle is not None:
            self.engine.cancel(handle, started=state == RUNNING)
        if self.book.finish(job, CANCELLED):
            self.say(f"job {job.id[:8]} ({job.action}, {job.owner or 'local'}): cancelled")

    def output(self, job: Job, kind: str, name: str) -> Path:
        """The file of an output (``kind`` volumes or files); PastaError when there is none (any more)."""
        path = job.outputs.get(f"{kind}/{name}") if job.state == DONE else None
        if path is None or not Path(path).is_file():
            raise Conflict(f"job {job.id[:8]}... has no output {kind}/{name} (not done, or already downloaded and deleted)")
        return Path(path)

    def forget(self, job: Job) -> None:
        if job.state not in FINAL:
            self.cancel(job)
        self.book.forget(job)

    def close(self) -> None:
        for job in self.book.jobs():
            if job.state not in FINAL:
                self.cancel(job)
        self.book.close()
