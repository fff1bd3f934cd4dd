"""What a Dask worker of a PASTA server does with one job: the uploaded volumes into a job folder
of its own, the action run by the same generic job code as the task process
(:func:`pastacore.tasks.jobs.run_job`) with the worker's loaded model, the outputs back as gzip
NRRD bytes (and, for a report, the files it wrote). A bad job never raises: the outcome says
``done``, ``failed`` (one line) or ``cancelled``; only a dying worker loses its job.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from ..cohort.cluster import CohortPlugin
from ..errors import CancelledError, PastaError

if TYPE_CHECKING:
    from ..progress import Cancelled, Progress

PLUGIN_NAME = "pasta-server"
PROGRESS_TOPIC = "pasta-server-progress"
CANCEL_CHECK_S = 0.5  # how often a running job asks whether it was cancelled
OUT_FOLDER = "out"


class ServerPlugin(CohortPlugin):
    """The cohort plugin's threads and resources (models loaded once per worker), plus the store
    the server chooses models from."""

    name = PLUGIN_NAME

    def __init__(self, device: str = "auto", threads: int | None = None, store: str = "") -> None:
        super().__init__(device, threads)
        self.store = store


def run_server_job(job_id: str, cancel_event: str, spec: dict, sources: dict) -> dict:
    """The Dask task of one server job. ``sources``: each uploaded volume as a file path (a local
    cluster shares the server's disk) or its bytes."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None or plugin.resources is None:
        raise RuntimeError("the pasta-server worker plugin is not set up on this worker")
    progress = _progress_sender(worker, job_id)
    progress(0.0, "started on the server")
    is_cancelled = _cancel_checker(cancel_event)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pasta-server-job-") as temp:
        try:
            outcome = _run(Path(temp), spec, sources, plugin, progress, is_cancelled)
        except CancelledError:
            outcome = {"state": "cancelled"}
        except PastaError as exc:
            outcome = {"state": "failed", "error": str(exc)}
        except MemoryError:
            outcome = {"state": "failed", "error": "out of memory on the server's worker: try a smaller region (a box)"}
        except Exception as exc:  # a bug: one line for the client, the traceback in the worker's log
            traceback.print_exc()
            first = str(exc).splitlines()[0] if str(exc) else ""
            outcome = {"state": "failed", "error": f"internal error on the server ({type(exc).__name__}: {first})"}
    outcome.update(
        worker=worker.address, seconds=round(time.perf_counter() - started, 3), model_loads=plugin.resources.model_loads
    )
    return outcome


def _run(folder: Path, spec: dict, sources: dict, plugin: ServerPlugin, progress, is_cancelled) -> dict:
    from ..actions import action
    from ..actions.options import options_from_dict
    from ..tasks.exchange import load_volume
    from ..tasks.jobs import ACTION_JOB, run_job

    for key, source in sources.items():
        _save_upload(folder, key, source, (spec.get("volumes") or {}).get(key) or {})
    name = spec["action"]
    module = action(name)
    options = options_from_dict(module.OPTIONS, spec.get("options"))
    params = {key: spec.get(key) for key in ("action", "options", "inputs")}
    if spec.get("write"):
        params["output"] = {"out_dir": str(folder / OUT_FOLDER)}
    prepared = prepare(name, options, plugin)
    result = run_job(ACTION_JOB, folder, params, progress, is_cancelled, prepared)
    volumes, meta = {}, {}
    for key, saved in (result.get("volumes") or {}).items():
        volume = load_volume(folder, saved)
        volumes[key] = _encoded(volume)
        meta[key] = volume.meta
    files = {}
    if spec.get("write"):
        out = folder / OUT_FOLDER
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        result["written"] = sorted(files)
    return {
        "state": "done",
        "result": json.loads(json.dumps(result, default=str)),
        "volumes": volumes,
        "volume_meta": meta,
        "files": files,
    }


def _save_upload(folder: Path, key: str, source: str | bytes, described: dict) -> None:
    """An uploaded volume read as any input file is (every check of the readers), saved for the job."""
    from ..fileio import read_volume
    from ..tasks.exchange import save_volume

    path = Path(source) if isinstance(source, str) else folder / upload_name(key, described.get("format", "nrrd"))
    if not isinstance(source, str):
        path.write_bytes(source)
    from ..tasks.remote_jobs import portable_meta

    volume = read_volume(path, is_label=bool(described.get("is_label")))
    volume.meta = portable_meta(described.get("meta") if isinstance(described.get("meta"), dict) else {})
    save_volume(volume, folder, key)


UPLOAD_SUFFIXES = {"nrrd": ".nrrd", "nii.gz": ".nii.gz", "nii": ".nii"}  # formats a client may upload


def upload_name(key: str, format: str) -> str:
    """The file name of an uploaded volume (its suffix tells the reader the format)."""
    return f"upload_{key}{UPLOAD_SUFFIXES[format]}"


def _encoded(volume) -> bytes:
    from ..tasks.nrrd_codec import encode_nrrd

    grid = volume.grid
    return encode_nrrd(volume.array, grid.spacing, grid.origin, grid.direction, volume.is_label)


def prepare(name: str, options: object, plugin: ServerPlugin) -> dict:
    """What the worker keeps between jobs, as keyword arguments of the action's ``run``: the
    segmentation model (chosen by name from the server's store), a synthesis backend."""
    resources = plugin.resources
    if name == "segment":
        return {"model": resources.model(("segment", options.model), lambda: _store_model(options.model, plugin.store))}
    if name == "synth":
        from ..actions import synth

        key = ("synth", json.dumps(options.backend_options(), sort_keys=True, default=str))
        return {"engine": resources.model(key, lambda: synth.backend(options))}
    return {}


def _store_model(name: str, store_root: str) -> object:
    """An installed model of the server's store by its folder (a path the client cannot choose)."""
    from ..inference.segmentation_model import resolve_segmentation_model
    from ..modelstore.store import ModelStore

    store = ModelStore(store_root or None)
    return resolve_segmentation_model(str(store.get(name).path) if name else None, store)


def _progress_sender(worker, job_id: str) -> Progress:
    last = {"percent": -1, "message": None}

    def send(fraction: float, message: str = "") -> None:
        percent = int(round(100 * min(max(float(fraction), 0.0), 1.0)))
        if percent != last["percent"] or message != last["message"]:
            last.update(percent=percent, message=message)
            with contextlib.suppress(Exception):  # progress is a courtesy: never fail a job for it
                event = {"job": job_id, "fraction": percent / 100.0, "message": str(message), "pid": os.getpid()}
                worker.log_event(PROGRESS_TOPIC, event)

    return send


def _cancel_checker(event_name: str) -> Cancelled:
    state = {"checked": 0.0, "cancelled": False, "event": None}

    def is_cancelled() -> bool:
        now = time.monotonic()
        if not state["cancelled"] and now - state["checked"] >= CANCEL_CHECK_S:
            state["checked"] = now
            from distributed import Event

            with contextlib.suppress(Exception):
                state["event"] = state["event"] or Event(event_name)
                state["cancelled"] = bool(state["event"].is_set())
        return state["cancelled"]

    return is_cancelled
