"""The server's jobs: who owns each, where its files are, how far it is, and when it is forgotten.

A job lives in a folder of its own under the server's work folder (its uploads, then its
results). Its id is 128 random bits. Results are deleted once every output was downloaded, when
its owner deletes the job, or ``keep_seconds`` after it ended; a job whose uploads never
finish is forgotten after the same time. Everything here is guarded by one lock: the web
handlers and the Dask callbacks run on different threads.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

UPLOADING, QUEUED, RUNNING, DONE, FAILED, CANCELLED = "uploading", "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    id: str
    owner: str  # the name of the token that made it ("" on a server without tokens)
    action: str
    spec: dict  # action, options, inputs, volumes (declared sizes), write
    folder: Path
    created: float = field(default_factory=time.monotonic)
    state: str = UPLOADING
    fraction: float = 0.0
    message: str = ""
    error: str | None = None
    result: dict | None = None
    volume_meta: dict = field(default_factory=dict)
    uploaded: set = field(default_factory=set)
    outputs: dict = field(default_factory=dict)  # "volumes/KEY" or "files/PATH" -> file in the folder
    downloaded: set = field(default_factory=set)
    ended: float | None = None
    seconds: float | None = None  # from queued to the end
    queued_at: float | None = None
    handle: object = None  # the engine's handle of the running job
    worker_pid: int | None = None  # the process of the worker running it (an administrator's clue)

    def to_dict(self) -> dict:
        """What the job's owner sees."""
        data = {"id": self.id, "action": self.action, "state": self.state, "fraction": round(self.fraction, 4)}
        data.update(message=self.message, error=self.error)
        if self.state == DONE:
            data.update(result=self.result, volume_meta=self.volume_meta)
            data["files"] = sorted(name.split("/", 1)[1] for name in self.outputs if name.startswith("files/"))
        if self.state == RUNNING:
            data["worker_pid"] = self.worker_pid
        if self.state == UPLOADING:
            data["missing"] = sorted(set(self.spec.get("volumes") or {}) - self.uploaded)
        return data


class JobBook:
    def __init__(self, root: str | Path, keep_seconds: float = 3600.0) -> None:
        self.root = Path(root)
        self.keep_seconds = keep_seconds
        self.lock = threading.RLock()
        self._jobs: dict = {}

    def new(self, owner: str, action: str, spec: dict) -> Job:
        with self.lock:
            job_id = secrets.token_urlsafe(16)
            folder = self.root / job_id
            folder.mkdir(parents=True)
            job = Job(job_id, owner, action, spec, folder)
            self._jobs[job_id] = job
            return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job, only for its owner (anyone else gets None, as for a job that does not exist)."""
        with self.lock:
            job = self._jobs.get(job_id)
            return job if job is not None and secrets.compare_digest(job.owner, owner) else None

    def jobs(self) -> list:
        with self.lock:
            return list(self._jobs.values())

    def finish(self, job: Job, state: str, **values) -> bool:
        """Mark ``job`` ended (once: a later call changes nothing and returns False)."""
        with self.lock:
            if job.state in FINAL:
                return False
            job.state = state
            for name, value in values.items():
                setattr(job, name, value)
            job.ended = time.monotonic()
            job.seconds = round(job.ended - (job.queued_at or job.created), 3)
            if state != DONE:
                self._drop_files(job)
            return True

    def downloaded(self, job: Job, output: str) -> None:
        """Note a download; when every output was fetched, the results are deleted."""
        with self.lock:
            job.downloaded.add(output)
            if job.state == DONE and job.outputs and set(job.outputs) <= job.downloaded:
                self._drop_files(job)

    def forget(self, job: Job) -> None:
        with self.lock:
            self._jobs.pop(job.id, None)
            self._drop_files(job)

    def sweep(self, now: float | None = None) -> list:
        """Forget the jobs that ended (or stalled in their upload) more than ``keep_seconds`` ago."""
        now = time.monotonic() if now is None else now
        with self.lock:
            old = [
                job
                for job in self._jobs.values()
                if (job.ended is not None and now - job.ended > self.keep_seconds)
                or (job.state == UPLOADING and now - job.created > self.keep_seconds)
            ]
            for job in old:
                self.forget(job)
            return old

    def _drop_files(self, job: Job) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)
        job.outputs = {name: None for name in job.outputs}

    def close(self) -> None:
        with self.lock:
            for job in list(self._jobs.values()):
                self.forget(job)
