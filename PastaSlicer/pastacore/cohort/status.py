"""``pasta batch status``: what a cohort folder's manifest says, as JSON or a few lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .manifest import STATUSES, Manifest

if TYPE_CHECKING:
    from pathlib import Path


def cohort_status(folder: str | Path) -> dict:
    """``{"folder", "kind", "counts": {done, skipped, failed, pending, total}, "cases": [...],
    "runs": [...]}``; each case: case_id, status, reason (the error of a failed case),
    seconds, worker, outputs."""
    with Manifest(folder, readonly=True) as manifest:
        rows = manifest.rows()
        counts = manifest.counts()
        runs = manifest.runs()
        kind = manifest.meta("kind")
    counts = {status: counts.get(status, 0) for status in STATUSES}
    counts["total"] = len(rows)
    cases = [
        {
            "case_id": case_id,
            "status": row["status"],
            "reason": row["error"] or "",
            "seconds": row["seconds"],
            "worker": row["worker"],
            "outputs": sorted(row["outputs"] or {}),
        }
        for case_id, row in rows.items()
    ]
    return {"folder": str(folder), "kind": kind, "counts": counts, "cases": cases, "runs": runs}


def describe_status(status: dict) -> str:
    counts = status["counts"]
    lines = [
        f"{status['folder']}: {status['kind'] or 'cohort'} of {counts['total']} cases: {counts['done']} done, "
        f"{counts['skipped']} skipped (done earlier, unchanged), {counts['failed']} failed, "
        f"{counts['pending']} pending"
    ]
    failed = [c for c in status["cases"] if c["status"] == "failed"]
    if failed:
        lines.append("failed:")
        lines += [f"  {c['case_id']}: {c['reason']}" for c in failed]
    if status["runs"]:
        last = status["runs"][-1]
        lines.append(
            f"last run ({last['run_id']}): {last['outcome']}, started {last['started']}"
            + (f", ended {last['finished']}" if last["finished"] else "")
            + f", {last['workers']} worker(s) on {last['scheduler']}"
        )
    return "\n".join(lines)
