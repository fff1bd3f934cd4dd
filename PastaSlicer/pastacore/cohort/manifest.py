"""The cohort manifest: one row per case in ``DIR/manifest.sqlite``.

SQLite, not Parquet: cases finish one at a time, in any order, over hours, and each must be
recorded the moment it finishes, durably, without rewriting the others; a run can die at any
point (Ctrl-C, a killed scheduler, power) and the record must stay whole. SQLite gives that
(one small transaction per case, a journal that undoes a half-written one) with the Python
standard library, so Slicer and a bare ``pasta dataset`` need no extra package, and
``pasta batch status`` can read it while a run writes. Only the process that runs the cohort
(the Dask client) writes it; workers never do, so it needs no shared-file locking beyond the
run lock. The cohort *table* (one row per lesion) is written as CSV and Parquet from it.

A case row holds: its inputs (paths, their size/mtime signature and content hashes), the
model and its SHA256, the parameters, the fingerprint of all of these, the status (pending,
done, skipped = done earlier and unchanged, failed), the one-line error of a failure, the
outputs (relative path -> size), timings, the worker that ran it (with the number of model
loads on that worker so far and its peak memory) and its rows of the cohort table.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterator


MANIFEST_NAME = "manifest.sqlite"
LOCK_NAME = "manifest.lock"
STATUSES = ("done", "skipped", "failed", "pending")
FINISHED = ("done", "skipped")
JSON_COLUMNS = ("inputs", "input_stats", "input_hashes", "params", "outputs", "timings", "rows")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY, position INTEGER, status TEXT NOT NULL, error TEXT,
    inputs TEXT, input_stats TEXT, input_hashes TEXT, model TEXT, model_sha256 TEXT, params TEXT,
    basis TEXT, fingerprint TEXT, outputs TEXT, timings TEXT, seconds REAL, worker TEXT,
    model_loads INTEGER, peak_memory_mb REAL, rows TEXT, run_id INTEGER, updated TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT, finished TEXT, kind TEXT, scheduler TEXT,
    workers INTEGER, outcome TEXT, counts TEXT);
"""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _json(value):
    return None if value is None else json.dumps(value, sort_keys=True)


class Manifest:
    """The manifest of the cohort folder ``folder`` (created on first use unless ``readonly``)."""

    def __init__(self, folder: str | Path, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        if readonly and not self.path.is_file():
            raise PastaError(
                f"{folder} holds no cohort manifest ({MANIFEST_NAME}); is it the output folder of a "
                "pasta batch or pasta dataset run?"
            )
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.db = sqlite3.connect(self.path, timeout=30)
                with self.db:
                    self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM cases").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc) -> PastaError:
        return PastaError(
            f"{self.path} cannot be used ({exc}); move it away and rerun: finished cases are found again from their files"
        )

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what the folder is for ---------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def claim(self, kind: str) -> None:
        """The folder holds cohorts of one kind (segment, report, synth, dataset); refuse another."""
        held = self.meta("kind")
        if held and held != kind:
            raise PastaError(f"{self.folder} holds a {held} cohort; write the {kind} cohort to another folder")
        if not held:
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('kind', ?)", (kind,))

    # -- reading ------------------------------------------------------------------------------
    def rows(self) -> dict:
        """case_id -> row (a dict, JSON columns decoded), in input order."""
        cursor = self.db.execute("SELECT * FROM cases ORDER BY position, case_id")
        names = [d[0] for d in cursor.description]
        rows = {}
        for values in cursor:
            row = dict(zip(names, values))
            for column in JSON_COLUMNS:
                row[column] = json.loads(row[column]) if row[column] else None
            rows[row["case_id"]] = row
        return rows

    def counts(self) -> dict:
        counts = dict.fromkeys(STATUSES, 0)
        for status, number in self.db.execute("SELECT status, count(*) FROM cases GROUP BY status"):
            counts[status] = counts.get(status, 0) + number
        return counts

    def runs(self) -> list:
        cursor = self.db.execute("SELECT * FROM runs ORDER BY run_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values), counts=json.loads(values[names.index("counts")] or "null")) for values in cursor]

    # -- writing (the process running the cohort only) ----------------------------------------
    def start_run(self, kind: str, scheduler: str, workers: int) -> int:
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (started, kind, scheduler, workers, outcome) VALUES (?, ?, ?, ?, 'running')",
                (_now(), kind, scheduler, workers),
            )
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, outcome: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, counts = ? WHERE run_id = ?",
                (_now(), outcome, _json(self.counts()), run_id),
            )

    def plan(self, run_id: int, pending: list, skipped: list) -> None:
        """One transaction: the cases about to run become pending (with what decides their
        result), the ones found done and unchanged become skipped."""
        with self.db:
            for entry in pending:
                self.db.execute(
                    "INSERT INTO cases (case_id, position, status, inputs, model, model_sha256, params, basis, run_id, "
                    "updated) VALUES (:case_id, :position, 'pending', :inputs, :model, :model_sha256, :params, :basis, "
                    ":run_id, :updated) ON CONFLICT(case_id) DO UPDATE SET position = excluded.position, "
                    "status = 'pending', error = NULL, inputs = excluded.inputs, model = excluded.model, "
                    "model_sha256 = excluded.model_sha256, params = excluded.params, basis = excluded.basis, "
                    "run_id = excluded.run_id, updated = excluded.updated",
                    dict(entry, inputs=_json(entry["inputs"]), params=_json(entry["params"]), run_id=run_id, updated=_now()),
                )
            for case_id, position in skipped:
                self.db.execute(
                    "UPDATE cases SET status = 'skipped', position = ?, run_id = ?, updated = ? WHERE case_id = ?",
                    (position, run_id, _now(), case_id),
                )

    def record(self, case_id: str, outcome: dict, run_id: int) -> None:
        """What a case's run gave (see :func:`pastacore.cohort.engine.execute_case`), committed at once."""
        with self.db:
            self.db.execute(
                "UPDATE cases SET status = ?, error = ?, input_stats = ?, input_hashes = ?, fingerprint = ?, "
                "outputs = ?, timings = ?, seconds = ?, worker = ?, model_loads = ?, peak_memory_mb = ?, rows = ?, "
                "run_id = ?, updated = ? WHERE case_id = ?",
                (
                    outcome["status"],
                    outcome.get("error"),
                    _json(outcome.get("input_stats")),
                    _json(outcome.get("input_hashes")),
                    outcome.get("fingerprint"),
                    _json(outcome.get("outputs")),
                    _json(outcome.get("timings")),
                    outcome.get("seconds"),
                    outcome.get("worker"),
                    outcome.get("model_loads"),
                    outcome.get("peak_memory_mb"),
                    _json(outcome.get("rows")),
                    run_id,
                    _now(),
                    case_id,
                ),
            )


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``DIR/manifest.lock`` while a run writes the folder: a second run is refused."""
    path = Path(folder) / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            raise PastaError(
                f"another run is writing {folder}"
                + (f" (process {holder})" if holder else "")
                + "; wait for it to end, or use another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
