"""Run jobs on a PASTA server: :class:`RemoteRunner`, with the runner protocol of
:mod:`.runners` (``start`` -> a handle with ``poll``, ``cancel``, ``wait``, ``outcome``), so the
controllers, the web app and the command line use a server as they use the task process.

The handle reads the job's volumes from the job folder, sends them as gzip NRRD, follows the
job and writes the returned volumes back into the folder under the names the result gives, as
the task process would have. Its work is done in small steps inside ``poll()`` (a piece of an
upload, one status request), on the caller's thread: no thread is started (Slicer's Python
starves threads), and each ``poll()`` returns within about ``SLICE_S``. Importing this module
imports neither torch nor SimpleITK: a Slicer without PyTorch can use a server.

Jobs the server does not run (:func:`.remote_jobs.remote_problem`: fine-tuning, a comparison of
report folders...) go to the ``local`` runner when one is given.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from .remote_jobs import portable_meta, remote_problem, volume_keys
from .runners import Finished, TaskHandle, TaskOutcome, write_job
from .server_client import JobGone, ServerClient

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..geometry.volume import Volume
    from ..progress import Progress

POLL_INTERVAL_S = 0.2  # between two status requests
SLICE_S = 0.05  # one poll() works this long at most (plus one network step)
LOST_AFTER_S = 30.0  # a server that does not answer for this long while a job runs has lost it
FINAL_STATES = ("done", "failed", "cancelled")


class RemoteRunner:
    """Runs jobs on the PASTA server at ``url`` (``token``: None = ``PASTA_TOKEN``); jobs a server
    does not run go to ``local`` (e.g. a :class:`~pastacore.tasks.runners.ProcessRunner`), or
    are refused in one line without one."""

    def __init__(
        self, url: str, token: str | None = None, local: object | None = None, poll_interval: float = POLL_INTERVAL_S
    ) -> None:
        self.client = ServerClient(url, token)
        self.local = local
        self.poll_interval = poll_interval

    @property
    def url(self) -> str:
        return self.client.url

    def start(
        self, job: str, params: dict, folder: str | Path, on_progress: Progress | None = None, on_finished: Finished | None = None
    ) -> TaskHandle:
        problem = remote_problem(job, params)
        if problem is not None:
            if self.local is not None:
                return self.local.start(job, params, folder, on_progress, on_finished)
            raise PastaError(f"{problem}: this cannot run on the PASTA server at {self.url}")
        write_job(folder, job, params)
        return RemoteHandle(self.client, params, folder, on_progress, on_finished, self.poll_interval)


class RemoteHandle(TaskHandle):
    """A job on a server. ``upload_bytes`` / ``download_bytes``: the volumes and files sent and
    fetched; ``job_id``: the server's id of it."""

    def __init__(
        self,
        client: ServerClient,
        params: dict,
        folder: str | Path,
        on_progress: Progress | None = None,
        on_finished: Finished | None = None,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> None:
        super().__init__(on_progress, on_finished)
        self.client, self.params, self.folder = client, params, Path(folder)
        self.poll_interval = poll_interval
        self.job_id: str | None = None
        self.upload_bytes = self.download_bytes = 0
        self._cancel = False
        self._wake = 0.0
        self._steps = self._run()

    def poll(self) -> bool:
        if self.outcome is not None:
            return False
        if time.monotonic() < self._wake:
            return True
        deadline = time.monotonic() + SLICE_S
        try:
            while self.outcome is None and time.monotonic() < deadline:
                pause = next(self._steps)
                if pause:
                    self._wake = time.monotonic() + pause
                    break
        except StopIteration:
            pass
        except PastaError as exc:
            self._forget()
            self._finish(TaskOutcome(error=str(exc)))
        except Exception as exc:  # a bug: one line, as the task process says it
            self._forget()
            first = str(exc).splitlines()[0] if str(exc) else ""
            self._finish(TaskOutcome(error=f"internal error ({type(exc).__name__}: {first})"))
        return self.outcome is None

    def cancel(self) -> None:
        if self.outcome is None:
            self._cancel = True
            self._wake = 0.0

    # -- the steps ----------------------------------------------------------------------------
    def _run(self) -> Iterator[float | None]:
        spec, payloads = yield from self._encode()
        if self._cancel:
            return self._finish(TaskOutcome(cancelled=True))
        self.job_id = self.client.create_job(spec)["id"]
        for key, data in payloads.items():
            for _ in self.client.upload_steps(self.job_id, key, data):
                if self._cancel:
                    return self._cancelled()
                yield None
            self.upload_bytes += len(data)
        status = yield from self._follow()
        if status["state"] == "cancelled" or self._cancel:
            return self._cancelled()
        if status["state"] == "failed":
            self._forget()
            reason = str(status.get("error") or "the job failed")
            return self._finish(TaskOutcome(error=f"{reason} (on the PASTA server at {self.client.url})"))
        result = dict(status.get("result") or {})
        yield from self._fetch_volumes(result, status.get("volume_meta") or {})
        if status.get("files"):
            result["written"] = yield from self._fetch_files(status["files"])
        self._forget()
        self._finish(TaskOutcome(result=result))

    def _encode(self) -> Iterator[None]:
        """The job's description for the server and its volumes as gzip NRRD bytes."""
        from .exchange import load_volume
        from .nrrd_codec import encode_nrrd

        payloads, described = {}, {}
        for key in dict.fromkeys(volume_keys(self.params.get("inputs") or {})):
            volume = load_volume(self.folder, key)
            grid = volume.grid
            payloads[key] = encode_nrrd(volume.array, grid.spacing, grid.origin, grid.direction, volume.is_label)
            described[key] = {"bytes": len(payloads[key]), "format": "nrrd", "is_label": bool(volume.is_label)}
            described[key]["meta"] = portable_meta(volume.meta)
            yield None
        spec = {key: self.params.get(key) for key in ("action", "options", "inputs")}
        spec.update(volumes=described, write=bool(self.params.get("output")))
        return spec, payloads

    def _follow(self) -> Iterator[float | None]:
        """Status requests until the job ends; progress goes to ``on_progress``."""
        last, silent_since = None, None
        while True:
            if self._cancel:
                return {"state": "cancelled"}
            try:
                status = self.client.status(self.job_id)
                silent_since = None
            except JobGone:
                raise
            except PastaError:  # a restart under way, or the network: wait a while
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > LOST_AFTER_S:
                    raise PastaError(
                        f"the PASTA server at {self.client.url} stopped answering while the job ran (for {LOST_AFTER_S:.0f} s): "
                        "it was stopped or restarted; run the job again once it answers"
                    ) from None
                yield self.poll_interval
                continue
            seen = (status.get("fraction"), status.get("message"))
            if status.get("state") in ("queued", "running") and seen != last:
                last = seen
                self._progress(status.get("fraction") or 0.0, status.get("message") or "")
            if status.get("state") in FINAL_STATES:
                return status
            yield self.poll_interval

    def _fetch_volumes(self, result: dict, meta: dict) -> Iterator[None]:
        from .exchange import save_volume

        for key, name in (result.get("volumes") or {}).items():
            pieces = []
            yield from self.client.download_steps(f"/jobs/{self.job_id}/volumes/{key}", pieces, self.job_id)
            self.download_bytes += sum(map(len, pieces))
            volume = self._volume(b"".join(pieces), meta.get(key) or {})
            save_volume(volume, self.folder, name)

    def _volume(self, data: bytes, meta: dict) -> Volume:
        """A returned volume; on an input's grid (exactly) when it lies there."""
        from ..geometry import Grid, Volume
        from .nrrd_codec import NrrdError, decode_nrrd

        try:
            array, spacing, origin, direction, is_label = decode_nrrd(data)
        except NrrdError as exc:
            raise PastaError(f"the PASTA server at {self.client.url} sent a damaged volume ({exc})") from None
        grid = Grid(array.shape, spacing, origin, direction)
        for key in volume_keys(self.params.get("inputs") or {}):
            from .exchange import load_volume

            own = load_volume(self.folder, key).grid
            if own.shape == grid.shape and _same_place(own, grid):
                grid = own
                break
        return Volume(array, grid, is_label=is_label, meta=meta)

    def _fetch_files(self, files: list) -> Iterator[None]:
        """The files the job wrote, moved into the output folder the job names (only those files)."""
        import glob

        from ..fileio.atomic import atomic_directory

        output = self.params.get("output") or {}
        out_dir = Path(output["out_dir"])
        names = [str(name) for name in files]
        for name in names:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise PastaError(f"the PASTA server at {self.client.url} named an output file outside its folder ({name})")
        with atomic_directory(out_dir, overwrite=bool(output.get("overwrite")), owned=[glob.escape(n) for n in names]) as temp:
            for name in names:
                pieces = []
                yield from self.client.download_steps(f"/jobs/{self.job_id}/files/{name}", pieces, self.job_id)
                self.download_bytes += sum(map(len, pieces))
                target = Path(temp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"".join(pieces))
        return [str(out_dir / name) for name in names]

    def _cancelled(self) -> None:
        try:
            self.client.cancel(self.job_id)
        except PastaError:
            pass  # the server is gone: so is the job
        self._forget()
        self._finish(TaskOutcome(cancelled=True))

    def _forget(self) -> None:
        """Ask the server to delete the job and its results (it also does so on its own, later)."""
        if self.job_id is not None:
            try:
                self.client.delete(self.job_id)
            except PastaError:
                pass


def _same_place(a, b, tolerance: float = 1e-6) -> bool:
    return (
        np.allclose(a.spacing, b.spacing, atol=tolerance)
        and np.allclose(a.origin, b.origin, atol=tolerance)
        and np.allclose(np.asarray(a.direction), np.asarray(b.direction), atol=tolerance)
    )


def run_remote_action(
    client_url: str,
    token: str | None,
    action: str,
    options: object,
    inputs: object,
    output: dict | None = None,
    progress: Progress | None = None,
) -> tuple:
    """Run ``action`` on a server and wait: ``(result, {name: Volume})`` (the command line's way).

    Raises PastaError with the server's one line when the job fails; KeyboardInterrupt cancels
    the job on the server before it is raised again."""
    from .exchange import load_volume, save_volume
    from .jobs import ACTION_JOB, action_params

    folder = Path(tempfile.mkdtemp(prefix="pasta-remote-"))
    try:
        volumes = {}
        params = action_params(action, options, inputs, volumes, output)
        for name, volume in volumes.items():
            save_volume(volume, folder, name)
        handle = RemoteRunner(client_url, token).start(ACTION_JOB, params, folder, progress)
        try:
            handle.wait(interval=0.02)
        except KeyboardInterrupt:
            handle.cancel()
            handle.wait(timeout=10)
            raise
        outcome = handle.outcome
        if outcome.cancelled:
            raise PastaError("the job was cancelled on the server")
        if outcome.error:
            raise PastaError(outcome.error)
        result = outcome.result
        loaded = {key: load_volume(folder, name) for key, name in (result.get("volumes") or {}).items()}
        result["upload_bytes"] = handle.upload_bytes
        return result, loaded
    finally:
        shutil.rmtree(folder, ignore_errors=True)
