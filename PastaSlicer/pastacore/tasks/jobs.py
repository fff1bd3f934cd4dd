"""The job the task process runs: one of the user's actions (:mod:`pastacore.actions`).

A front end saves the action's input volumes in the job folder and describes the rest as JSON
(:func:`pastacore.tasks.exchange.encode_inputs`): ``{"action": name, "options": {...},
"inputs": {...}, "output": {...}}``. :func:`run_job` rebuilds the options object and the
inputs, runs the action, saves the volumes it returns in the folder and returns its result as
JSON, with ``volumes`` naming the saved ones. ``output`` (optional) is passed to the action's
``write`` (the report folder to write, the model store to install into): what it returns is the
result's ``written``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..progress import reporter
from .exchange import decode_inputs, save_volume

if TYPE_CHECKING:
    from ..progress import Cancelled, Progress

ACTION_JOB = "action"


def action_params(name: str, options: object, inputs: object, volumes: dict, output: dict | None = None) -> dict:
    """The JSON of a job running the action ``name``; the input Volumes go into ``volumes``."""
    from ..actions.options import options_to_dict
    from .exchange import encode_inputs

    params = {"action": name, "options": options_to_dict(options), "inputs": encode_inputs(inputs, volumes)}
    if output:
        params["output"] = dict(output)
    return params


def run_job(
    name: str,
    folder: str | Path,
    params: dict,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    prepared: dict | None = None,
) -> dict:
    """Run the job ``name`` on ``folder`` (the task process calls this; so do the inline runner and
    a PASTA server's workers, which pass what they keep loaded as ``prepared``: keyword arguments
    of the action's ``run``, e.g. ``{"model": ...}``)."""
    if name != ACTION_JOB:
        raise PastaError(f"unknown job {name!r}; a job runs an action ({ACTION_JOB!r})")
    return run_action(Path(folder), dict(params), reporter(progress), is_cancelled, prepared)


def run_action(
    folder: Path,
    params: dict,
    progress: Progress,
    is_cancelled: Cancelled | None,
    prepared: dict | None = None,
) -> dict:
    from ..actions import action, inputs_from
    from ..actions.options import options_from_dict

    module = action(params.get("action", ""))
    options = options_from_dict(module.OPTIONS, params.get("options"))
    inputs = inputs_from(module, decode_inputs(params.get("inputs") or {}, folder))
    output = params.get("output")
    share = getattr(module, "WRITE_SHARE", 0.05) if output else 0.0
    result = module.run(options, inputs, lambda f, m="": progress((1 - share) * f, m), is_cancelled, **(prepared or {}))
    out = result.to_dict()
    out["volumes"] = {}
    for key, volume in result.volumes().items():
        out["volumes"][key] = save_volume(volume, folder, f"result_{key}")
    if output:
        out["written"] = module.write(result, options, **output, progress=lambda f, m="": progress(1 - share + share * f, m))
    return out
