"""``python -m pastacore.tasks JOB_FOLDER``: run the job described in ``JOB_FOLDER/job.json``.

Progress and the outcome go to stdout as JSON lines (:mod:`.protocol`); everything else a
library prints goes to stderr. SIGTERM (a cancel) ends the job like Ctrl-C, so the core's
atomic writers remove what they had started. Exit codes as the command line: 0 done, 2 bad
input, 130 cancelled, 1 a bug.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def _channel():
    """The real stdout for messages; fd 1 is pointed at stderr so stray prints cannot corrupt it."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return channel


def _throttled(send):
    last = {"percent": -1, "message": None}

    def progress(fraction, message=""):
        percent = int(round(100 * min(max(float(fraction), 0.0), 1.0)))
        if percent != last["percent"] or message != last["message"]:
            last.update(percent=percent, message=message)
            send(percent / 100.0, message)

    return progress


def _lower_priority():
    """Run below the front end that started us, so its views keep answering (see the runner)."""
    from .runners import NICENESS_VARIABLE

    niceness = int(os.environ.get(NICENESS_VARIABLE, "0") or 0)
    if niceness > 0 and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import CancelledError, PastaError
    from . import protocol
    from .jobs import run_job

    argv = sys.argv[1:] if argv is None else argv
    channel = _channel()

    def send(event, **fields):
        channel.write(protocol.encode(event, **fields))
        channel.flush()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    _lower_priority()
    try:
        folder = Path(argv[0])
        spec = json.loads((folder / protocol.JOB_FILE).read_text(encoding="utf-8"))
        progress = _throttled(lambda f, m: send(protocol.PROGRESS, fraction=f, message=m))
        result = run_job(spec["job"], folder, spec.get("params", {}), progress)
    except (KeyboardInterrupt, CancelledError):
        send(protocol.CANCELLED)
        return 130
    except PastaError as exc:
        send(protocol.ERROR, message=str(exc))
        return 2
    except Exception as exc:  # a bug: one line for the user, the traceback in the log
        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        send(protocol.ERROR, message=f"internal error ({type(exc).__name__}: {first}); see the task log")
        return 1
    send(protocol.DONE, result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
