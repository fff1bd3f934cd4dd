"""What native libraries print on the process's own stderr (file descriptor 2), kept aside.

ITK, the NIfTI library, VTK and others write warnings straight to descriptor 2, where Python
cannot filter them: ``** ERROR: NWAD: wrote only 0 of ... bytes``, ``pixdim[1,2,3] should be
non-zero``, ``WARNING: In .../itkNiftiImageIO.cxx``. :func:`captured_stderr` points
descriptor 2 at a temporary file for a while and hands back what was written there, so a
failure can be explained in one line of our own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


SHOW = {"native": False}  # ``pasta --debug`` sets it: then nothing is kept aside


def show_native_output(show: bool = True) -> None:
    """Let native output through (for debugging) instead of keeping it aside."""
    SHOW["native"] = bool(show)


class Captured:
    """The text native code wrote while captured (filled in when the block ends)."""

    text = ""


_LOCK = threading.Lock()
_STATE = {"users": 0, "saved": None, "sink": None}


@contextlib.contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect descriptor 2 into a temporary file; yields a :class:`Captured`.

    Descriptor 2 belongs to the whole process: blocks that overlap (nested, or in several
    threads) share one redirection, made by the first and undone by the last, so that
    descriptor 2 always comes back to where it pointed before."""
    captured = Captured()
    if SHOW["native"]:
        yield captured
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    with _LOCK:
        if _STATE["users"] == 0:
            try:
                saved = os.dup(2)
            except OSError:  # no descriptor 2 (some embedded interpreters): nothing to keep aside
                saved = None
            if saved is not None:
                sink = tempfile.TemporaryFile()
                os.dup2(sink.fileno(), 2)
                _STATE.update(saved=saved, sink=sink)
        _STATE["users"] += 1
        sink = _STATE["sink"]
        start = sink.seek(0, os.SEEK_END) if sink is not None else 0
    try:
        yield captured
    finally:
        with _LOCK:
            if sink is not None:
                sink.seek(start)
                captured.text = sink.read().decode("utf-8", "replace")
            _STATE["users"] -= 1
            if _STATE["users"] == 0 and _STATE["saved"] is not None:
                os.dup2(_STATE["saved"], 2)
                os.close(_STATE["saved"])
                _STATE["sink"].close()
                _STATE.update(saved=None, sink=None)


@contextlib.contextmanager
def stderr_shown() -> Iterator[None]:
    """Descriptor 2 back where it pointed before any capture, for as long as the block runs: a
    long-running server's processes (its Dask workers) must be heard by its administrator, and
    must not fill a temporary file for weeks."""
    with _LOCK:
        saved, sink = _STATE["saved"], _STATE["sink"]
        if saved is not None:
            os.dup2(saved, 2)
    try:
        yield
    finally:
        with _LOCK:
            if saved is not None and _STATE["sink"] is sink:
                os.dup2(sink.fileno(), 2)
