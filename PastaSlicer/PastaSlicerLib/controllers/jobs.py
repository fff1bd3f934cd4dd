"""Run a job for a controller: its inputs into a temporary job folder, its outputs back into
the scene on the polling thread, the folder removed whatever happens."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pastacore.errors import PastaError
from pastacore.tasks.exchange import save_volume


@dataclass
class Outcome:
    """How a controller's action ended: ``value`` on success (e.g. the new node), else ``error``
    (one line) or ``cancelled``. ``message`` is the status line a front end shows."""

    value: object = None
    error: str | None = None
    cancelled: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


def start_job(
    runner, job: str, params: dict, volumes: dict, apply, on_progress=None, on_finished=None, describe=lambda value: ""
):
    """Start ``job`` with ``volumes`` ({name: Volume}) saved in a fresh folder.

    On success ``apply(result, folder)`` turns the job's result into the action's value (it
    may raise :class:`PastaError`); ``on_finished(Outcome)`` follows. Returns the task handle.
    """
    folder = Path(tempfile.mkdtemp(prefix="pasta-job-"))

    def finished(task):
        try:
            if task.cancelled:
                outcome = Outcome(cancelled=True, message="Cancelled; nothing was added.")
            elif task.error is not None:
                outcome = Outcome(error=task.error, message=task.error)
            else:
                try:
                    value = apply(task.result, folder)
                    outcome = Outcome(value=value, message=describe(value))
                except PastaError as exc:
                    outcome = Outcome(error=str(exc), message=str(exc))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if on_finished is not None:
            on_finished(outcome)

    try:
        for name, volume in volumes.items():
            save_volume(volume, folder, name)
        return runner.start(job, params, folder, on_progress, finished)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def start_action(
    runner, action: str, options, inputs, apply, on_progress=None, on_finished=None, describe=lambda value: "", output=None
):
    """Start the user's action ``action`` (:mod:`pastacore.actions`) with its options object and
    inputs (Volumes travel through the job folder); ``apply(result, folder)`` as for :func:`start_job`,
    with ``result["volumes"]`` naming the volumes the action returned in ``folder``."""
    from pastacore.tasks.jobs import ACTION_JOB, action_params

    volumes = {}
    params = action_params(action, options, inputs, volumes, output)
    return start_job(runner, ACTION_JOB, params, volumes, apply, on_progress, on_finished, describe)


def alive(scene, node) -> bool:
    """Whether ``node`` is still in ``scene`` (not deleted, scene not closed) since it was chosen."""
    return node is not None and node.GetScene() is scene and scene.GetNodeByID(node.GetID()) is node


def require_alive(scene, node, what: str) -> None:
    if not alive(scene, node):
        raise PastaError(f"the {what} was removed from the scene while the job ran; nothing was added")
