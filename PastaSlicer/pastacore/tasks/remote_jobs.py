"""Which jobs a PASTA server runs, and what of them crosses the network: the rules its clients
(:mod:`.remote`) and the server (:mod:`pastacore.server.policy`) share.

A remote job is an action (:mod:`pastacore.actions`) whose inputs are volumes, sent as
compressed NRRD, plus plain JSON. Nothing that names a file travels: the server reads no path a
client gives it, and models are chosen by name from the server's own store. An action's
``write`` runs on the server into a folder of its own, whose files come back (a report).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .exchange import IN_FOLDER_KEY, VOLUME_KEY
from .jobs import ACTION_JOB

REMOTE_ACTIONS = ("segment", "synth", "report")  # what a server runs; any other action stays on the client
WRITE_ACTIONS = ("report",)  # actions whose write(out_dir=...) runs on the server, the files coming back
# Options naming files on the client's computer, which a server cannot read: (action, option) -> why.
LOCAL_OPTIONS = {
    ("segment", "model_config"): "a model config file is on this computer; a server uses the models installed on it",
    ("synth", "ld_models"): "a LesionDiffusion checkpoint folder is on this computer; a server uses its own models",
    ("synth", "text_encoder"): "a text encoder folder is on this computer; a server uses its own models",
    ("report", "baseline"): "a follow-up report reads the baseline report folder on this computer",
}
MODEL_OPTIONS = {"segment": "model"}  # options naming a model: an installed name on the server
# What of a volume's metadata travels with it: the segment names of a .seg.nrrd (an organ mask named
# by its segments) and the DICOM slice thickness (RECIST). Nothing else: no patient identifiers
# (a report's case travels in its inputs, as the report prints it) and no file paths (the DICOM
# files of a series are on the client; a server reads no path it is sent).
PORTABLE_META = ("segments", "slice_thickness")


def portable_meta(meta: dict | None) -> dict:
    """The part of a volume's metadata that goes to (and is accepted by) a server."""
    import json

    out = {}
    for key in PORTABLE_META:
        if key in (meta or {}):
            try:
                out[key] = json.loads(json.dumps(meta[key]))
            except (TypeError, ValueError):
                continue
    return out


def volume_fields(action: str) -> tuple:
    """The input fields of ``action`` that hold a volume (a path or a Volume on the client)."""
    from ..actions import action as action_module

    return tuple(f.name for f in fields(action_module(action).INPUTS) if "Volume" in str(f.type))


def remote_problem(job: str, params: dict) -> str | None:
    """Why the job cannot run on a server (one line), or None. The server checks the same and more."""
    action = str(params.get("action", "")).replace("-", "_")
    if job != ACTION_JOB or action not in REMOTE_ACTIONS:
        return f"a PASTA server runs {', '.join(REMOTE_ACTIONS)}; {action or job!r} runs on this computer"
    options = params.get("options") or {}
    for (name, option), why in LOCAL_OPTIONS.items():
        if name == action and options.get(option):
            return why
    model = options.get(MODEL_OPTIONS.get(action, ""), "")
    if model and (any(sep in str(model) for sep in ("/", "\\")) or Path(str(model)).exists()):
        return f"the model {model} is a file or folder on this computer; a server uses the models installed on it (by name)"
    output = params.get("output")
    if output and (action not in WRITE_ACTIONS or set(output) - {"out_dir", "overwrite"}):
        return f"the {action} job writes into {', '.join(sorted(map(str, output)))} on this computer"
    return inputs_problem(action, params.get("inputs") or {})


def inputs_problem(action: str, inputs: dict, volumes: dict | None = None) -> str | None:
    """Every volume field of the inputs is a volume of the job (in ``volumes`` when given) or
    empty, and nothing names a path inside a job folder."""
    if _mentions(inputs, IN_FOLDER_KEY):
        return "the job names a path inside its folder, which a server does not read"
    for name in volume_fields(action):
        value = inputs.get(name)
        if value is None:
            continue
        if not (isinstance(value, dict) and set(value) == {VOLUME_KEY}):
            return f"the {action} input {name!r} must be an uploaded volume, not {str(value)[:60]!r}"
        if volumes is not None and value[VOLUME_KEY] not in volumes:
            return f"the {action} input {name!r} names the volume {value[VOLUME_KEY]!r}, which the job does not upload"
    return None


def volume_keys(inputs: object) -> list:
    """The names of the volumes a job's inputs refer to, in order."""
    if isinstance(inputs, dict):
        if set(inputs) == {VOLUME_KEY}:
            return [inputs[VOLUME_KEY]]
        return [key for value in inputs.values() for key in volume_keys(value)]
    if isinstance(inputs, list):
        return [key for value in inputs for key in volume_keys(value)]
    return []


def _mentions(value: object, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_mentions(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, key) for v in value)
    return False
