"""Start the server: the Dask engine, the job book in a private work folder, the FastAPI app on
uvicorn (TLS with its key and certificate options), and the ready line once ``/health`` answers."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Callable

READY = "PASTA server ready:"


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 2048.0
    workers: int | None = None
    scheduler: str = "local"
    store: str = ""  # "" = the default model store of the user running the server
    device: str = "auto"
    keep_minutes: float = 60.0
    ssl_keyfile: str = ""
    ssl_certfile: str = ""
    work_dir: str = ""  # where job folders live ("" = a private temporary folder)


def require_server_extra() -> None:
    missing = []
    for name in ("fastapi", "uvicorn", "distributed"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise PastaError(
            f"pasta serve needs the 'server' extra ({', '.join(missing)} missing): pip install 'pasta-slicer[server]'"
        )


def serve(settings: ServerSettings, tokens: object, say: Callable[[str], None], on_ready: Callable[[str], None]) -> None:
    """Run until interrupted; ``on_ready(url)`` once the server answers."""
    import uvicorn

    from ..modelstore.store import ModelStore
    from .app import create_app
    from .book import JobBook
    from .engine import Engine
    from .service import Service

    store = ModelStore(settings.store or None)
    work = Path(settings.work_dir) if settings.work_dir else Path(tempfile.mkdtemp(prefix="pasta-server-"))
    engine = Engine(settings.scheduler, settings.workers, settings.device, str(store.root) if settings.store else "")
    try:
        engine.start(say)
        service = Service(
            engine, JobBook(work / "jobs", settings.keep_minutes * 60.0), store, int(settings.max_upload_mb * 2**20), say
        )
        app = create_app(service, tokens)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            ssl_keyfile=settings.ssl_keyfile or None,
            ssl_certfile=settings.ssl_certfile or None,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        threading.Thread(target=_announce, args=(server, settings, on_ready), daemon=True).start()
        sweeper = threading.Thread(target=_sweep, args=(server, service), daemon=True)
        sweeper.start()
        server.run()
        service.close()
    finally:
        engine.close()
        if not settings.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def _announce(server, settings: ServerSettings, on_ready: Callable[[str], None]) -> None:
    """Wait until uvicorn listens, check that ``/health`` answers, then call ``on_ready(url)``."""
    from ..tasks.server_client import ServerClient

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else settings.port
    scheme = "https" if settings.ssl_certfile else "http"
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{port}"
    for _ in range(100):
        try:
            ServerClient(url, timeout=5).health()
            break
        except PastaError:
            if scheme == "https":
                break  # a certificate for the host name, not for the address: uvicorn answers anyway
            time.sleep(0.1)
    on_ready(url)


def _sweep(server, service, every: float = 30.0) -> None:
    """Forget expired jobs now and then, also while no request comes."""
    last = time.monotonic()
    while not server.should_exit:
        time.sleep(0.5)
        if time.monotonic() - last >= every:
            last = time.monotonic()
            for job in service.book.sweep():
                service.say(f"job {job.id[:8]} ({job.action}, {job.owner or 'local'}): results expired and deleted")


def print_ready(url: str, generated_token: str | None, host: str) -> None:
    print(f"{READY} {url}", flush=True)
    if generated_token:
        print(
            f"token (give it to the server's users; pass --token or --tokens to choose your own): {generated_token}",
            file=sys.stderr,
            flush=True,
        )
