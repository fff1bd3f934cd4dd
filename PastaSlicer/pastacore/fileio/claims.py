"""Outputs claimed by one run at a time.

Checking that an output is free and moving the result into place are two steps; between them
another ``pasta`` run (a second terminal, a cohort worker, the web app) could write the same
file, and both would report success. So a run claims each output before any work: a small
claim file beside it (``.NAME.pasta-claim``), created exclusively (``O_CREAT | O_EXCL``), naming
the process that holds it. A second run finds the claim and refuses in one line naming the
first; a claim whose process has ended (killed, crashed) is taken over. Claims are released
when the write is done, when the command ends, or at the latest when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterator

CLAIM_PREFIX, CLAIM_SUFFIX = ".", ".pasta-claim"
STALE_SECONDS = 24 * 3600  # a claim of another machine (a shared folder) is trusted this long
_HELD: dict[str, int] = {}  # claim file -> how many holders in this process
_LOCK = threading.Lock()


def claim_path(output: str | Path) -> Path:
    output = Path(os.path.abspath(output))
    return output.parent / f"{CLAIM_PREFIX}{output.name or 'output'}{CLAIM_SUFFIX}"


def _describe(record: dict) -> str:
    started = time.strftime("%H:%M:%S", time.localtime(float(record.get("started", 0))))
    where = "" if record.get("host") == socket.gethostname() else f" on {record.get('host', '?')}"
    what = f" ({record['command'][:60]})" if record.get("command") else ""
    return f"process {record.get('pid', '?')}{where}, started {started}{what}"


def _alive(record: dict) -> bool:
    """Whether the process that wrote a claim still runs (another host's: until it is old)."""
    if record.get("host") != socket.gethostname():
        return time.time() - float(record.get("started", 0)) < STALE_SECONDS
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid():
        return True
    return process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    if os.name == "nt":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _command() -> str:
    import sys

    return " ".join(os.path.basename(a) if n == 0 else a for n, a in enumerate(sys.argv[:4]))


def acquire(output: str | Path, what: str = "output") -> Path:
    """Claim ``output`` for this process (again: a no-op); PastaError when another run holds it."""
    path = claim_path(output)
    key = str(path)
    with _LOCK:
        if key in _HELD:
            _HELD[key] += 1
            return path
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": _command()}
        for _attempt in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(path)
                if holder and _alive(holder):
                    raise PastaError(
                        f"{what} {output} is being written by another pasta run ({_describe(holder)}); wait for it to "
                        f"finish or choose another {what}"
                    ) from None
                if not holder and time.time() - _mtime(path) < 2.0:  # being written this very moment
                    time.sleep(0.2)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # a claim left by a run that ended without releasing it
                continue
            except OSError:
                return path  # a folder we cannot write: the write itself says so, in its own words
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            _HELD[key] = 1
            return path
        raise PastaError(f"{what} {output} is being claimed by another pasta run; try again")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def release(output: str | Path) -> None:
    """Give up one hold on ``output``'s claim (the file goes with the last one)."""
    key = str(claim_path(output))
    with _LOCK:
        if key not in _HELD:
            return
        _HELD[key] -= 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
    with contextlib.suppress(OSError):
        Path(key).unlink()


def release_all() -> None:
    """Release every claim of this process (the command line calls this when a command ends)."""
    with _LOCK:
        held = list(_HELD)
        _HELD.clear()
    for key in held:
        with contextlib.suppress(OSError):
            Path(key).unlink()


@contextlib.contextmanager
def claimed(*outputs: str | Path, what: str = "output") -> Iterator[None]:
    """Hold the claims of ``outputs`` for the duration of the block."""
    taken = []
    try:
        for output in outputs:
            acquire(output, what)
            taken.append(output)
        yield
    finally:
        for output in taken:
            release(output)


def is_claim(name: str) -> bool:
    return name.startswith(CLAIM_PREFIX) and name.endswith(CLAIM_SUFFIX)


atexit.register(release_all)
