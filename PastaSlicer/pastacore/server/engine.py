"""The server's jobs on Dask distributed: a local cluster sized to this machine (one worker per
GPU), or a running scheduler whose workers hold the GPUs (``tcp://host:8786``).

Each worker runs one job at a time and keeps its models loaded (the cohort engine's worker
plugin, :class:`~pastacore.server.worker.ServerPlugin`); with GPUs every job asks for the worker
resource ``GPU=1``, so N GPUs serve N jobs at once and the others wait in Dask's queue. Progress
comes back as Dask events (``log_event`` on the worker, ``subscribe_topic`` here); a cancel is a
Dask ``Event`` the running job checks. A worker that dies fails the job it ran (Dask is told
not to retry it elsewhere: ``allowed-failures`` 0 on the local cluster), and its nanny starts a
new one.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cohort.cluster import CONNECT_TIMEOUT_S, WORKER_TIMEOUT_S, require_dask
from ..errors import PastaError
from .worker import PLUGIN_NAME, PROGRESS_TOPIC, ServerPlugin, run_server_job

if TYPE_CHECKING:
    from collections.abc import Callable

LOCAL = "local"
WORKER_DIED = (
    "the server's worker running the job died (out of memory, or a crash in native code); the server goes on: "
    "run the job again, with a smaller region (a box) if it happens again"
)
# One job per worker thread, and no second try of a job whose worker died (it may be what killed it).
LOCAL_CONFIG = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}


@dataclass
class Running:
    """A job on the cluster: its future and the name of its cancel event."""

    future: object
    cancel_event: str


class Engine:
    """Start with :meth:`start`; :meth:`submit` a job; :meth:`close` at the end."""

    def __init__(self, scheduler: str = LOCAL, workers: int | None = None, device: str = "auto", store: str = "") -> None:
        self.scheduler, self.workers, self.device, self.store = scheduler, workers, device, store
        self.client = None
        self._cluster = None
        self._progress_handlers: dict = {}
        self._lock = threading.Lock()
        self.gpu = False
        self.size = 0
        self.device_text = "unknown"

    # -- life ---------------------------------------------------------------------------------
    def start(self, say: Callable[[str], None] = print) -> None:
        require_dask()
        import dask
        from distributed import Client

        threads = None
        if self.scheduler == LOCAL:
            from ..cohort.cluster import _local_cluster, local_gpus, local_size

            gpus = local_gpus(self.device)
            self.size, threads = local_size(10**6, self.workers, gpus)
            with dask.config.set(LOCAL_CONFIG):
                self._cluster = _local_cluster(self.size, threads, gpus, dashboard=False)
            self.client = Client(self._cluster)
            self.gpu = bool(gpus)
            say(f"local Dask cluster: {self.size} worker(s) x {threads} thread(s)" + (f" on {gpus} GPU(s)" if gpus else ""))
        else:
            say(f"connecting to the Dask scheduler {self.scheduler} (up to {CONNECT_TIMEOUT_S} s)")
            try:
                self.client = Client(self.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError):
                raise PastaError(
                    f"cannot reach the Dask scheduler {self.scheduler}: no answer within {CONNECT_TIMEOUT_S} s "
                    "(is it running, and is its address and port right?)"
                ) from None
            try:
                self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
            except TimeoutError:
                raise PastaError(f"the Dask scheduler {self.scheduler} has no worker (waited {WORKER_TIMEOUT_S} s)") from None
            infos = self.client.scheduler_info()["workers"].values()
            self.size = len(infos)
            self.gpu = self.device in ("cuda", "auto") and any((w.get("resources") or {}).get("GPU") for w in infos)
            say(f"Dask cluster {self.scheduler}: {self.size} worker(s)" + (" with GPUs" if self.gpu else ""))
        self.client.register_plugin(ServerPlugin(self.device, threads, self.store), name=PLUGIN_NAME)
        self.client.subscribe_topic(PROGRESS_TOPIC, self._on_progress)
        self.device_text = self._describe_devices()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close()
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close()

    @property
    def local(self) -> bool:
        return self.scheduler == LOCAL

    def workers_now(self) -> int:
        with contextlib.suppress(Exception):
            return len(self.client.scheduler_info()["workers"])
        return 0

    def busy(self) -> int:
        """Jobs the workers are running now (a cancelled job counts until it has really stopped)."""
        with contextlib.suppress(Exception):
            return sum(len(keys) for keys in self.client.processing().values())
        return 0

    def _describe_devices(self) -> str:
        """The workers' devices in words (``2 x cuda (NVIDIA H100 ...)``)."""
        try:
            texts = list(self.client.run(_device_of_worker, self.device, wait=True).values())
        except Exception:
            return "unknown"
        counts = {text: texts.count(text) for text in dict.fromkeys(texts)}
        return ", ".join(f"{n} x {text}" if n > 1 else text for text, n in counts.items()) or "no worker"

    # -- jobs ---------------------------------------------------------------------------------
    def submit(
        self,
        job_id: str,
        spec: dict,
        sources: dict,
        on_progress: Callable[[dict], None],
        on_done: Callable[[dict], None],
    ) -> Running:
        """Queue the job; ``on_progress({"fraction", "message", "pid"})`` and ``on_done(outcome)`` are
        called on Dask's threads. ``sources``: each volume's file (local cluster) or bytes."""
        if not self.local:
            sources = {
                key: self.client.scatter(value if isinstance(value, bytes) else _read(value)) for key, value in sources.items()
            }
        cancel_event = f"pasta-server-cancel-{secrets.token_hex(8)}"
        with self._lock:
            self._progress_handlers[job_id] = on_progress
        future = self.client.submit(
            run_server_job,
            job_id,
            cancel_event,
            spec,
            sources,
            key=f"pasta-server-job-{secrets.token_hex(8)}",
            pure=False,
            resources={"GPU": 1} if self.gpu else None,
        )
        future.add_done_callback(lambda done: self._done(job_id, cancel_event, done, on_done))
        return Running(future, cancel_event)

    def cancel(self, running: Running, started: bool) -> None:
        """Stop the job: told to stop at its next check; one not ``started`` is also taken off the
        queue (a started one keeps its worker until it stops, so Dask does not give the worker a
        second job meanwhile)."""
        from distributed import Event

        with contextlib.suppress(Exception):
            Event(running.cancel_event, client=self.client).set()
        if not started:
            with contextlib.suppress(Exception):
                running.future.cancel()

    def _on_progress(self, event) -> None:
        _, message = event
        with self._lock:
            handler = self._progress_handlers.get(message.get("job"))
        if handler is not None:
            handler(message)

    def _done(self, job_id: str, cancel_event: str, future, on_done: Callable[[dict], None]) -> None:
        with self._lock:
            self._progress_handlers.pop(job_id, None)
        outcome = _outcome_of(future)
        with contextlib.suppress(Exception):
            from distributed import Event

            Event(cancel_event, client=self.client).clear()
        on_done(outcome)


def _outcome_of(future) -> dict:
    import distributed

    killed = getattr(distributed, "KilledWorker", None)
    if killed is None:
        from distributed.scheduler import KilledWorker as killed

    if future.status == "cancelled":
        return {"state": "cancelled"}
    try:
        return future.result()
    except killed:
        return {"state": "failed", "error": WORKER_DIED}
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return {"state": "failed", "error": f"the server's Dask cluster failed ({type(exc).__name__}: {first[:200]})"}


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _device_of_worker(device: str) -> str:
    from ..deps import torch_device_info

    try:
        return torch_device_info(device).describe()
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"
