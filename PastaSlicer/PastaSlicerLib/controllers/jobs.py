"""Run a job for a controller: its inputs into a temporary job folder, its outputs back into
the scene on the polling thread, the folder removed whatever happens."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pastacore.errors import PastaError
from pastacore.tasks.exchange import save_volume

JOB_PREFIX = "pasta-job-"
JOB_FOLDERS: set = set()  # job folders of this application not yet removed


@dataclass
class Outcome:
    """How a controller's action ended: ``value`` on success (e.g. the new node), else ``error``
    (one line) or ``cancelled``. ``message`` is the status line a front end shows."""

    value: object = None
    error: str | None = None
    cancelled: bool = False
    message: str = ""
    log: str | None = None  # the task process's log, kept after the job (its last lines explain a failure)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


def start_job(
    runner,
    job: str,
    params: dict,
    volumes: dict,
    apply,
    on_progress=None,
    on_finished=None,
    describe=lambda value: "",
    prepare=None,
):
    """Start ``job`` with ``volumes`` ({name: Volume}) saved in a fresh folder (and whatever else
    ``prepare(folder)`` writes there, e.g. an RGB image array).

    On success ``apply(result, folder)`` turns the job's result into the action's value (it
    may raise :class:`PastaError`); ``on_finished(Outcome)`` follows. Returns the task handle.
    """
    folder = Path(tempfile.mkdtemp(prefix=JOB_PREFIX))
    JOB_FOLDERS.add(folder)

    def finished(task):
        try:
            outcome = _outcome(task, apply, describe, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            JOB_FOLDERS.discard(folder)
        if on_finished is not None:
            on_finished(outcome)

    try:
        for name, volume in volumes.items():
            save_volume(volume, folder, name)
        if prepare is not None:
            prepare(folder)
        return runner.start(job, params, folder, on_progress, finished)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        JOB_FOLDERS.discard(folder)
        raise


def _outcome(task, apply, describe, folder) -> Outcome:
    """How the action ended; an exception while adding the result ends it with an error (a bug:
    its traceback goes to the log) instead of escaping into the GUI toolkit."""
    log = getattr(task, "log", None)
    if task.cancelled:
        return Outcome(cancelled=True, message="Cancelled; nothing was added.", log=log)
    if task.error is not None:
        return Outcome(error=task.error, message=task.error, log=log)
    try:
        value = apply(task.result, folder)
        return Outcome(value=value, message=describe(value), log=log)
    except PastaError as exc:
        return Outcome(error=str(exc), message=str(exc), log=log)
    except Exception as exc:
        logging.getLogger("pasta").exception("adding the result of a PASTA job failed")
        first = str(exc).splitlines()[0] if str(exc) else ""
        error = f"internal error while adding the result ({type(exc).__name__}: {first}); see the Python log"
        return Outcome(error=error, message=error, log=log)


def remove_job_folders() -> None:
    """Remove the job folders of this application (at exit: a cancelled job's CT copy must not stay)."""
    for folder in list(JOB_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)
        JOB_FOLDERS.discard(folder)


def start_action(
    runner,
    action: str,
    options,
    inputs,
    apply,
    on_progress=None,
    on_finished=None,
    describe=lambda value: "",
    output=None,
    prepare=None,
):
    """Start the user's action ``action`` (:mod:`pastacore.actions`) with its options object and
    inputs (Volumes travel through the job folder; ``prepare(folder)`` may put more there, named in
    the inputs with :func:`pastacore.tasks.exchange.in_job_folder`); ``apply(result, folder)`` as for
    :func:`start_job`, with ``result["volumes"]`` naming the volumes the action returned in ``folder``."""
    from pastacore.tasks.jobs import ACTION_JOB, action_params

    volumes = {}
    params = action_params(action, options, inputs, volumes, output)
    return start_job(runner, ACTION_JOB, params, volumes, apply, on_progress, on_finished, describe, prepare)


def alive(scene, node) -> bool:
    """Whether ``node`` is still in ``scene`` (not deleted, scene not closed) since it was chosen."""
    return node is not None and node.GetScene() is scene and scene.GetNodeByID(node.GetID()) is node


def require_alive(scene, node, what: str) -> None:
    if not alive(scene, node):
        raise PastaError(f"the {what} was removed from the scene while the job ran; nothing was added")


atexit.register(remove_job_folders)
