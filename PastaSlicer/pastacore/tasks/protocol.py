"""The task process's messages: one JSON object per line on its stdout.

``{"event": "progress", "fraction": 0.4, "message": "running the network"}``, then exactly one
of ``{"event": "done", "result": {...}}``, ``{"event": "error", "message": "..."}`` (one line,
as the command line prints it) or ``{"event": "cancelled"}``.
"""

from __future__ import annotations

import json

PROGRESS, DONE, ERROR, CANCELLED = "progress", "done", "error", "cancelled"
JOB_FILE = "job.json"  # {"job": name, "params": {...}} in the job folder
LOG_FILE = "task.log"  # the task process's stderr


def encode(event: str, **fields) -> str:
    return json.dumps({"event": event, **fields}, default=str) + "\n"


def decode(line: str) -> dict | None:
    """The message on ``line``, or None for anything else a library printed."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "event" in message else None
