"""The cohort engine on Dask distributed: a LocalCluster sized to this machine, or a running
cluster (``tcp://host:8786``: SLURM/PBS through dask-jobqueue, Kubernetes through
dask-kubernetes; the README shows how).

Each worker runs one case at a time (one Dask thread) and gives torch, numpy and SimpleITK
the cores it owns, so a machine is not oversubscribed. A worker plugin keeps the worker's
:class:`~pastacore.cohort.case.WorkerResources`: models are loaded once per worker. With
``device`` cuda each worker owns one GPU (its ``CUDA_VISIBLE_DEVICES`` on a local cluster) and
every case asks for the worker resource ``GPU=1``, so one model sits on each GPU.

Dask is optional (``pip install 'pasta-slicer[cohort]'``); this module imports it only when
a cluster is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import TYPE_CHECKING

from ..deps import install_hint
from ..errors import PastaError, option

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path
    from types import ModuleType

    import distributed

    from ..progress import Cancelled
    from .case import Case, CaseWork


PLUGIN_NAME = "pasta-cohort"
THREADS_PER_WORKER = 4  # torch on a CPU gains little beyond this per process; more workers do better
MEMORY_PER_WORKER_GB = 4.0  # a CT, its 1 mm copy, logits and a model on a CPU worker
DASHBOARD = ":8787"
WORKER_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 20  # a scheduler that does not answer in this time is unreachable

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the cohort extra is not installed: require_dask() says so when a cluster is wanted
    WorkerPlugin = object


def require_dask() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise PastaError(
            f"running on Dask needs the cohort group (dask[distributed], pyarrow): {install_hint('cohort')}"
        ) from None
    return distributed


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_memory_gb() -> float:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (AttributeError, ValueError, OSError):
        return 16.0


def local_gpus(device: str) -> int:
    """GPUs a local cluster uses: all CUDA devices for ``cuda`` or ``auto``, none otherwise."""
    if device not in ("auto", "cuda"):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and not count:
        raise PastaError("CUDA was requested but torch sees no CUDA GPU (CPU-only torch build or driver problem)")
    return count


def local_size(cases: int, workers: int | None, gpus: int) -> tuple:
    """``(workers, threads per worker)`` for a local cluster: on GPUs one worker per GPU; on a
    CPU about ``THREADS_PER_WORKER`` cores each, as many as the memory holds, no more than
    the cases. ``workers`` (``--workers``) overrides the count; the cores are shared out."""
    cores = machine_cores()
    if workers is not None and workers < 1:
        raise PastaError(f"{option('workers')} must be at least 1")
    if workers is None:
        if gpus:
            workers = gpus
        else:
            workers = min(max(1, cores // THREADS_PER_WORKER), max(1, int(machine_memory_gb() // MEMORY_PER_WORKER_GB)))
        workers = max(1, min(workers, cases))
    return workers, max(1, cores // workers)


class CohortPlugin(WorkerPlugin):
    """Sets the worker's threads and keeps its resources (models, hashes) between cases."""

    name = PLUGIN_NAME

    def __init__(self, device: str = "auto", threads: int | None = None) -> None:
        self.device, self.threads = device, threads
        self.resources = None

    def setup(self, worker: distributed.Worker) -> None:
        from .case import WorkerResources

        if self.threads:
            limit_threads(self.threads)
        self.resources = WorkerResources(self.device)


def limit_threads(threads: int) -> None:
    """torch and SimpleITK (the resampler) use ``threads`` cores in this process."""
    os.environ.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)
    with contextlib.suppress(ImportError):
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def run_on_worker(work: CaseWork, case: Case, basis: str, out_dir: str | Path) -> dict:
    """The task of one case on a Dask worker."""
    from distributed import get_worker

    from .case import execute_case

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None or plugin.resources is None:
        raise RuntimeError("the pasta-cohort worker plugin is not set up on this worker")
    return execute_case(work, case, basis, out_dir, plugin.resources, worker.address)


class DaskCohort:
    """A connected client, the cluster's size and dashboard; :meth:`results` runs cases."""

    def __init__(self, client: distributed.Client, work: CaseWork, size: int, gpu: bool, dashboard: str | None) -> None:
        self.client, self.work, self.size, self.gpu, self.dashboard = client, work, size, gpu, dashboard

    def results(self, todo: Sequence[Case], basis: str, out_dir: str | Path, cancelled: Cancelled) -> Iterator[tuple[Case, dict]]:
        """(case, outcome) as cases finish. A case whose worker died is run again elsewhere by
        Dask; one that kills workers again and again is recorded as failed."""
        from distributed import as_completed

        distributed = require_dask()
        killed = getattr(distributed, "KilledWorker", None)
        if killed is None:
            from distributed.scheduler import KilledWorker as killed
        run = uuid.uuid4().hex[:8]
        futures = {}
        for case in todo:
            future = self.client.submit(
                run_on_worker,
                self.work,
                case,
                basis[case.case_id],
                str(out_dir),
                key=f"pasta-{self.work.kind}-{case.case_id}-{run}",
                pure=False,
                resources={"GPU": 1} if self.gpu else None,
            )
            futures[future] = case
        try:
            for future in as_completed(list(futures)):
                case = futures.pop(future)
                try:
                    outcome = future.result()
                except killed:
                    outcome = {
                        "case_id": case.case_id,
                        "status": "failed",
                        "error": "the worker running it died each time it was tried (out of memory, or a crash in native code)",
                    }
                except Exception as exc:  # the task itself never raises: the cluster failed (a lost scheduler)
                    raise PastaError(
                        f"the Dask cluster failed ({type(exc).__name__}: {str(exc)[:200] or 'no reason'}); "
                        "finished cases are recorded: rerun the same command to resume"
                    ) from None
                future.release()
                yield case, outcome
                if cancelled():
                    from ..errors import CancelledError

                    raise CancelledError("cancelled; finished cases were kept and the next run resumes after them")
        finally:
            if futures:
                with contextlib.suppress(Exception):
                    self.client.cancel(list(futures))


def _dashboard_address():
    import importlib.util

    return DASHBOARD if importlib.util.find_spec("bokeh") else None


def _local_cluster(workers: int, threads: int, gpus: int, dashboard: bool = True):
    """A cluster on this machine, reachable from this machine only (Dask runs what it is sent, without
    asking who sends it); ``dashboard=False``: no Dask dashboard."""
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    dashboard = _dashboard_address() if dashboard else None
    if not gpus:
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard,
            silence_logs=logging.ERROR,
            env=env,
        )
    specs = {
        f"gpu-{i}": {
            "cls": Nanny,
            "options": {
                "nthreads": 1,
                "host": "127.0.0.1",
                "resources": {"GPU": 1},
                "silence_logs": logging.ERROR,
                "env": dict(env, CUDA_VISIBLE_DEVICES=str(i % gpus)),
            },
        }
        for i in range(workers)
    }
    return SpecCluster(
        workers=specs,
        scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": dashboard}},
        silence_logs=logging.ERROR,
    )


@contextlib.contextmanager
def dask_cluster(
    scheduler: str, work: CaseWork, cases: int, workers: int | None, device: str, say: Callable[[str], None]
) -> Iterator[DaskCohort]:
    """Start a local cluster (``scheduler="local"``) or connect to ``scheduler``; yields a
    :class:`DaskCohort` with the worker plugin registered."""
    require_dask()
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            gpus = local_gpus(device) if work.needs_gpu else 0
            size, threads = local_size(cases, workers, gpus)
            cluster = stack.enter_context(_local_cluster(size, threads, gpus))
            client = stack.enter_context(Client(cluster))
            say(f"local Dask cluster: {size} worker(s) x {threads} thread(s)" + (f" on {gpus} GPU(s)" if gpus else ""))
            gpu = bool(gpus)
        else:
            say(f"connecting to the Dask scheduler {scheduler} (up to {CONNECT_TIMEOUT_S} s)")
            try:
                client = stack.enter_context(Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"))
            except (OSError, TimeoutError):
                raise PastaError(
                    f"cannot reach the Dask scheduler {scheduler}: no answer within {CONNECT_TIMEOUT_S} s (is it running, "
                    "and is its address and port right?)"
                ) from None
            threads = None
            try:
                client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
            except TimeoutError:
                raise PastaError(f"the Dask scheduler {scheduler} has no worker (waited {WORKER_TIMEOUT_S} s)") from None
            infos = client.scheduler_info()["workers"].values()
            size = len(infos)
            gpu = work.needs_gpu and device in ("cuda", "auto") and any((w.get("resources") or {}).get("GPU") for w in infos)
            if work.needs_gpu and device == "cuda" and not gpu:
                raise PastaError(f"no worker of {scheduler} offers a GPU: give each the worker resource GPU=1 (one per GPU)")
            say(f"Dask cluster {scheduler}: {size} worker(s)" + (" with GPUs" if gpu else ""))
        client.register_plugin(CohortPlugin(device, threads), name=PLUGIN_NAME)
        dashboard = client.dashboard_link if (scheduler != "local" or _dashboard_address()) else None
        if dashboard:
            say(f"Dask dashboard: {dashboard}")
        yield DaskCohort(client, work, size, gpu, dashboard)
