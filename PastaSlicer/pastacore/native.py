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


SHOW = {"native": False}  # ``pasta --debug`` sets it: then nothing is kept aside


def show_native_output(show: bool = True) -> None:
    """Let native output through (for debugging) instead of keeping it aside."""
    SHOW["native"] = bool(show)


class Captured:
    """The text native code wrote while captured (filled in when the block ends)."""

    text = ""


@contextlib.contextmanager
def captured_stderr():
    """Redirect descriptor 2 into a temporary file; yields a :class:`Captured`."""
    captured = Captured()
    if SHOW["native"]:
        yield captured
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (some embedded interpreters): nothing to keep aside
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
