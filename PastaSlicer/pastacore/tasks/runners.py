"""Start a job and hear how it goes: :class:`ProcessRunner` (a separate process) and
:class:`InlineRunner` (this process, synchronously), behind one small protocol.

``runner.start(job, params, folder, on_progress, on_finished)`` returns a :class:`TaskHandle`.
``on_progress(fraction, message)`` and ``on_finished(outcome)`` are called on the thread that
calls ``handle.poll()`` (a Qt timer in Slicer, the event loop of the web app, a loop in a
script: ``handle.wait()``), never on another thread. ``on_finished`` comes exactly once.
The inline runner calls both before ``start`` returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CancelledError, PastaError
from . import protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..progress import Progress


CANCEL_GRACE_SECONDS = 5.0  # after SIGTERM, how long a job may clean up before it is killed
KEEP_LOGS = 20  # the task logs of this many recent jobs are kept (the evidence of a failure)
SEE_LOG = "see the task log"  # how the task process refers to its log, which only the runner can name
NICENESS = 10  # the job yields the CPU to the front end (views answer while it runs); 0: no change
NICENESS_VARIABLE = "PASTA_TASK_NICENESS"


@dataclass
class TaskOutcome:
    result: dict | None = None
    error: str | None = None  # one line, as the command line would print it
    cancelled: bool = False
    log: str | None = None  # the task process's log (its stderr, with any traceback), kept after the job

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled and self.result is not None


Finished = Callable[[TaskOutcome], None]  # called once with a job's outcome


class TaskHandle:
    """A started job. ``poll()`` delivers what happened since the last call."""

    def __init__(self, on_progress: Progress | None = None, on_finished: Finished | None = None) -> None:
        self._on_progress = on_progress
        self._on_finished = on_finished
        self.outcome: TaskOutcome | None = None

    @property
    def running(self) -> bool:
        return self.outcome is None

    def poll(self) -> bool:
        """Deliver progress and the outcome; True while the job is still running."""
        return self.running

    def cancel(self) -> None:
        """Ask the job to stop; ``on_finished`` still comes (with ``cancelled``)."""

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until the job ends (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True

    def _progress(self, fraction, message=""):
        if self._on_progress is not None:
            self._on_progress(float(fraction), str(message))

    def _finish(self, outcome: TaskOutcome):
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self._on_finished is not None:
            self._on_finished(outcome)


def write_job(folder: str | Path, job: str, params: dict) -> Path:
    folder = Path(folder)
    (folder / protocol.JOB_FILE).write_text(json.dumps({"job": job, "params": params}, default=str), encoding="utf-8")
    return folder


# -- in this process ---------------------------------------------------------------------------


class InlineRunner:
    """Runs the job in this process before ``start`` returns (tests, scripts). A bug is raised."""

    def start(
        self, job: str, params: dict, folder: str | Path, on_progress: Progress | None = None, on_finished: Finished | None = None
    ) -> TaskHandle:
        from .jobs import run_job

        write_job(folder, job, params)
        handle = TaskHandle(on_progress, on_finished)
        try:
            result = run_job(job, folder, params, handle._progress)
        except CancelledError:
            handle._finish(TaskOutcome(cancelled=True))
        except PastaError as exc:
            handle._finish(TaskOutcome(error=str(exc)))
        else:
            handle._finish(TaskOutcome(result=json.loads(json.dumps(result, default=str))))
        return handle


# -- in a separate process ---------------------------------------------------------------------


class ProcessRunner:
    """Runs ``python -m pastacore.tasks FOLDER``; cancel ends the process tree.

    ``python``: the interpreter (in Slicer, ``PythonSlicer``); the folder holding ``pastacore``
    is put first on the child's ``PYTHONPATH`` so it imports the same code.
    """

    def __init__(
        self, python: str | None = None, env: dict | None = None, niceness: int = NICENESS, log_dir: str | Path | None = None
    ) -> None:
        self.python = python or sys.executable
        self.env = env
        self.niceness = niceness
        self.log_dir = Path(log_dir) if log_dir is not None else None

    def start(
        self, job: str, params: dict, folder: str | Path, on_progress: Progress | None = None, on_finished: Finished | None = None
    ) -> TaskHandle:
        write_job(folder, job, params)
        log = new_log(self.log_dir, str(params.get("action") or job))
        return ProcessHandle(self._command(folder), folder, self._environment(), on_progress, on_finished, log)

    def _command(self, folder) -> list:
        return [self.python, "-m", "pastacore.tasks", str(folder)]

    def _environment(self) -> dict:
        env = dict(os.environ if self.env is None else self.env)
        here = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[NICENESS_VARIABLE] = str(int(self.niceness))
        return env


def log_folder(folder: str | Path | None = None) -> Path:
    """Where task logs are kept (default: ``task-logs`` in the per-user cache folder)."""
    if folder is not None:
        return Path(folder)
    from ..samples import cache_dir

    return cache_dir() / "task-logs"


def new_log(folder: str | Path | None, job: str) -> Path:
    """A fresh log file for a job, the oldest logs beyond :data:`KEEP_LOGS` removed."""
    import re
    import uuid

    folder = log_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.log"))
    for stale in old[: max(0, len(old) - (KEEP_LOGS - 1))]:
        stale.unlink(missing_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", job)[:40] or "job"
    return folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:8]}.log"


def popen_options(os_name: str = os.name) -> dict:
    """How the task process is started: in a process group of its own (so a cancel reaches the
    PythonSlicer launcher and the interpreter it starts), and on Windows without a console window."""
    if os_name == "posix":
        return {"start_new_session": True}
    create_group = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
    no_window = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
    return {"creationflags": create_group | no_window}


class ProcessHandle(TaskHandle):
    def __init__(
        self,
        command: Sequence[str],
        folder: str | Path,
        env: dict,
        on_progress: Progress | None = None,
        on_finished: Finished | None = None,
        log: str | Path | None = None,
    ) -> None:
        super().__init__(on_progress, on_finished)
        self.folder = Path(folder)
        self.log_path = Path(log) if log is not None else self.folder / protocol.LOG_FILE
        self._buffer = b""
        self._last = None  # the last outcome message
        self._cancel_sent = None  # monotonic time of the SIGTERM
        self._log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env, **popen_options()
            )
        except OSError as exc:
            self._log.close()
            raise PastaError(f"cannot start the task process {command[0]}: {exc.strerror or exc}") from None
        self.group = self.process.pid  # its process group (POSIX): the launcher and whatever it started
        self._reader = _PipeReader(self.process.stdout)
        RUNNING.add(self)

    def poll(self) -> bool:
        if self.outcome is not None:
            return False
        self._read(self._reader.read())
        code = self.process.poll()
        if code is None:
            if self._cancel_sent is not None and time.monotonic() - self._cancel_sent > CANCEL_GRACE_SECONDS:
                _end_tree(self.process, force=True)
            return True
        self._read(self._reader.read(final=True))
        self._log.close()
        if self._cancel_sent is not None:
            _end_group(self.group, self.process)  # the launcher ended: nothing it started may live on
        RUNNING.discard(self)
        self._finish(self._outcome(code))
        return False

    def cancel(self) -> None:
        if self.outcome is None and self._cancel_sent is None:
            self._cancel_sent = time.monotonic()
            _end_tree(self.process, force=False)

    def stop(self, timeout: float = CANCEL_GRACE_SECONDS) -> None:
        """Cancel and wait (at most ``timeout`` seconds, then kill): for an application that quits."""
        self.cancel()
        if not self.wait(timeout):
            _end_tree(self.process, force=True)
            _end_group(self.group, self.process)
            self.wait(2.0)

    def _read(self, data: bytes):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        latest = None
        for raw in lines:
            message = protocol.decode(raw.decode("utf-8", "replace"))
            if message is None:
                continue
            if message["event"] == protocol.PROGRESS:
                latest = message
            else:
                self._last = message
        if latest is not None:
            self._progress(latest.get("fraction", 0.0), latest.get("message", ""))

    def _outcome(self, code) -> TaskOutcome:
        last = self._last or {}
        log = str(self.log_path)
        if self._cancel_sent is not None or last.get("event") == protocol.CANCELLED:
            return TaskOutcome(cancelled=True, log=log)
        if last.get("event") == protocol.DONE:
            return TaskOutcome(result=last.get("result") or {}, log=log)
        if last.get("event") == protocol.ERROR:
            message = str(last.get("message", "the task failed")).replace(SEE_LOG, f"{SEE_LOG} {log}")
            return TaskOutcome(error=message, log=log)
        return TaskOutcome(
            error=f"the task process ended unexpectedly (exit code {code}){self._log_tail()}; {SEE_LOG} {log}", log=log
        )

    def _log_tail(self) -> str:
        lines = log_tail(self.log_path, 1)
        return f": {lines[-1][:200]}" if lines else ""


def log_tail(path: str | Path, count: int = 20) -> list:
    """The last ``count`` non-empty lines of a task log (what an error box shows)."""
    try:
        lines = [line for line in Path(path).read_text("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return []
    return lines[-count:]


RUNNING: set = set()  # the task processes of this application still running


def stop_all(timeout: float = CANCEL_GRACE_SECONDS) -> None:
    """End every running task process (the application is quitting or its scene closing)."""
    for handle in list(RUNNING):
        handle.stop(timeout)
        RUNNING.discard(handle)


class _PipeReader:
    """Non-blocking reads of a pipe without a thread (a thread would starve in Slicer's process)."""

    def __init__(self, pipe):
        self.pipe = pipe
        os.set_blocking(pipe.fileno(), False)

    def read(self, final: bool = False) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self.pipe.fileno(), 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if final:
            self.pipe.close()
        return b"".join(chunks)


def _end_group(group: int, process) -> None:
    """SIGKILL what is left of the task's process group (POSIX; on Windows taskkill /T did it)."""
    if os.name != "posix":
        return
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _end_tree(process, force: bool) -> None:
    """SIGTERM (or SIGKILL with ``force``) to the job and everything it started."""
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        elif force:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        else:
            process.send_signal(signal.CTRL_BREAK_EVENT)
    except (ProcessLookupError, PermissionError, OSError):
        pass
