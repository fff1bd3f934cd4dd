"""What the server accepts as a job, checked before anything is uploaded or run.

A job names an action the server runs (:data:`pastacore.tasks.remote_jobs.REMOTE_ACTIONS`), its
options (the action's options object as JSON, checked as every front end checks it), its inputs
(volumes it will upload, plain JSON otherwise: no path is read) and the volumes with their
sizes. A model is an installed model of the server's store, by name; nothing a client sends is
ever unpickled or loaded as weights.
"""

from __future__ import annotations

import re

from ..errors import PastaError
from ..tasks.jobs import ACTION_JOB
from ..tasks.remote_jobs import MODEL_OPTIONS, REMOTE_ACTIONS, inputs_problem, remote_problem, volume_keys
from .worker import UPLOAD_SUFFIXES

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class TooLarge(PastaError):
    """More bytes than the server accepts (HTTP 413)."""


def megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


def check_job(spec: object, store: object, max_bytes: int) -> tuple:
    """``(action, options object)`` of an acceptable job; PastaError (TooLarge) says why not, in one line."""
    from ..actions import action as action_module
    from ..actions.options import options_from_dict

    if not isinstance(spec, dict):
        raise PastaError("a job is a JSON object with action, options, inputs and volumes")
    name = str(spec.get("action", "")).replace("-", "_")
    if name not in REMOTE_ACTIONS:
        raise PastaError(f"this server runs {', '.join(REMOTE_ACTIONS)}, not {str(spec.get('action'))[:40]!r}")
    options_data, inputs, volumes = spec.get("options") or {}, spec.get("inputs") or {}, spec.get("volumes") or {}
    if not all(isinstance(v, dict) for v in (options_data, inputs, volumes)):
        raise PastaError("a job's options, inputs and volumes are JSON objects")
    params = {"action": name, "options": options_data, "inputs": inputs}
    if spec.get("write"):
        params["output"] = {"out_dir": "the server's folder"}
    problem = remote_problem(ACTION_JOB, params)
    if problem:
        raise PastaError(problem)
    options = options_from_dict(action_module(name).OPTIONS, options_data)
    options.check()
    _check_model(name, options, store)
    _check_volumes(name, inputs, volumes, max_bytes)
    return name, options


def _check_model(name: str, options: object, store: object) -> None:
    field = MODEL_OPTIONS.get(name)
    model = getattr(options, field, "") if field else ""
    if model:
        store.get(model)  # PastaError naming the installed models when it is not one of them


def _check_volumes(name: str, inputs: dict, volumes: dict, max_bytes: int) -> None:
    used = volume_keys(inputs)
    if set(used) != set(volumes):
        raise PastaError(f"the job's inputs use the volumes {sorted(set(used))} but it uploads {sorted(volumes)}")
    problem = inputs_problem(name, inputs, volumes)
    if problem:
        raise PastaError(problem)
    total = 0
    for key, described in volumes.items():
        if not KEY_PATTERN.match(str(key)):
            raise PastaError(f"a volume's name is 1 to 64 letters, digits, '-' or '_', not {str(key)[:70]!r}")
        if not isinstance(described, dict) or described.get("format", "nrrd") not in UPLOAD_SUFFIXES:
            raise PastaError(f"volume {key!r}: upload NRRD or NIfTI (format {', '.join(UPLOAD_SUFFIXES)})")
        size = described.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise PastaError(f"volume {key!r}: give its size in bytes")
        total += size
    if total > max_bytes:
        raise TooLarge(
            f"the job's volumes are {megabytes(total)}; this server accepts at most {megabytes(max_bytes)} per job "
            "(its --max-upload-mb): send a smaller volume or ask the server's administrator"
        )
