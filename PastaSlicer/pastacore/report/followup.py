"""RECIST 1.1 follow-up: the same lesions at two time points, and the response.

Works on two reports as ``report.json`` holds them (:func:`pastacore.report.report_json.report_dict`),
so ``pasta compare`` reads two report folders and ``pasta report --baseline`` compares the report
it is making with an earlier one.

* **Pairing**: each follow-up lesion's centroid is brought into the baseline scan's space (by
  a registration of the follow-up CT to the baseline CT, :mod:`.registration`, or taken as is
  when the scans are aligned), then lesions are paired one to one by the smallest total
  distance (Hungarian assignment) among pairs closer than :data:`PAIR_MM` plus half the larger
  long axis. A follow-up lesion near a baseline piece that was under the reporting floor is
  not new; any other unpaired follow-up lesion is new.
* **Target response** (sum of diameters, SoD: long axes, short axes for lymph nodes; a target
  not found at follow-up counts 0 mm): CR when every target has disappeared (lymph nodes
  under 10 mm short axis); PD when the SoD grew by at least 20 % *and* at least 5 mm over the
  smallest sum so far (the nadir: the baseline unless given); PR when it fell by at least 30 %
  from baseline; SD otherwise. Checked in that order, so PD wins over PR.
* **Non-target response**: CR when every non-target lesion has disappeared (nodes under 10 mm),
  else non-CR/non-PD. Unequivocal progression of non-target disease is a reader's judgement
  and is not decided here.
* **Overall response**: RECIST 1.1 table 1 (table 2 without target lesions); any new lesion
  is PD, and the report asks a reader to confirm that it is unequivocal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


PAIR_MM = 10.0
PR_DECREASE = 30.0
PD_INCREASE = 20.0
PD_ABSOLUTE_MM = 5.0
NODE_NORMAL_MM = 10.0
_EPS = 1e-9


@dataclass
class PairedLesion:
    role: str  # "target", "non-target" (baseline role) or "new"
    baseline: int = 0  # lesion numbers (0: none)
    followup: int = 0
    target_number: int = 0
    is_node: bool = False
    baseline_mm: float | None = None  # the diameter RECIST counts (long axis; short axis for a node)
    followup_mm: float | None = None  # 0 when a baseline lesion is not found at follow-up
    change_mm: float | None = None
    change_percent: float | None = None
    distance_mm: float | None = None  # centroid distance after registration
    state: str = ""  # "present", "disappeared", "new", "seen below the floor at baseline"
    organ: str = ""


@dataclass
class Comparison:
    baseline_case: str
    followup_case: str
    registration: str  # how the scans were brought together
    pairs: list  # PairedLesion
    sum_baseline_mm: float
    sum_followup_mm: float
    nadir_mm: float
    target_response: str  # CR, PR, SD, PD or "none" (no target lesion at baseline)
    non_target_response: str  # CR, non-CR/non-PD or "none"
    new_lesions: list  # follow-up lesion numbers
    overall_response: str  # CR, PR, SD, PD, non-CR/non-PD
    rule: str  # the sentence that decided the overall response
    notes: list = field(default_factory=list)

    @property
    def sum_change_mm(self) -> float:
        return round(self.sum_followup_mm - self.sum_baseline_mm, 1)

    @property
    def sum_change_percent(self) -> float | None:
        return None if not self.sum_baseline_mm else round(100.0 * self.sum_change_mm / self.sum_baseline_mm, 1)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(sum_change_mm=self.sum_change_mm, sum_change_percent=self.sum_change_percent, criteria="RECIST 1.1")
        return data


# --- pairing ------------------------------------------------------------------------------


def _centres(lesions) -> np.ndarray:
    return np.array([lesion["centroid_lps_mm"] for lesion in lesions], float).reshape(-1, 3)


def _size(lesion) -> float:
    return float(lesion.get("long_axis_mm") or 0.0)


def pair(baseline_lesions: list, followup_lesions: list, to_baseline: Callable[[np.ndarray], np.ndarray] | None = None) -> list:
    """``[(baseline index, follow-up index, distance mm)]``: one-to-one pairs (indices into the lists)."""
    from scipy.optimize import linear_sum_assignment

    if not baseline_lesions or not followup_lesions:
        return []
    a = _centres(baseline_lesions)
    b = _centres(followup_lesions)
    if to_baseline is not None:
        b = np.asarray(to_baseline(b), float).reshape(-1, 3)
    distance = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    gate = PAIR_MM + 0.5 * np.maximum.outer([_size(x) for x in baseline_lesions], [_size(x) for x in followup_lesions])
    cost = np.where(distance <= gate, distance, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c), float(distance[r, c])) for r, c in zip(rows, cols) if cost[r, c] < 1e6]


def _near_below_floor(baseline: dict, lesion: dict, to_baseline) -> bool:
    """Whether a follow-up lesion lies where the baseline had a piece under the reporting floor."""
    records = baseline.get("below_floor") or []
    if not records:
        return False
    centre = np.asarray(lesion["centroid_lps_mm"], float)[None]
    if to_baseline is not None:
        centre = np.asarray(to_baseline(centre), float)
    for record in records:
        lps = np.asarray(record["centroid_ras_mm"], float) * [-1, -1, 1]
        if np.linalg.norm(lps - centre[0]) <= PAIR_MM + 0.5 * _size(lesion):
            return True
    return False


# --- response -----------------------------------------------------------------------------


def _diameter(lesion: dict) -> float:
    recist = lesion.get("recist") or {}
    if recist.get("is_node"):
        return float(lesion.get("short_axis_mm") or 0.0)
    return float(lesion.get("long_axis_mm") or 0.0)


def _gone(pair_: PairedLesion) -> bool:
    """Disappeared, or a lymph node back under 10 mm short axis."""
    if pair_.followup_mm is None or pair_.followup_mm == 0:
        return True
    return pair_.is_node and pair_.followup_mm < NODE_NORMAL_MM - _EPS


def target_response(targets: list, sum_baseline: float, sum_followup: float, nadir: float) -> tuple:
    """(category, sentence) for the target lesions."""
    if not targets:
        return "none", "no target lesion at baseline"
    grown = sum_followup - nadir
    grown_percent = 100.0 * grown / nadir if nadir > 0 else (np.inf if grown > 0 else 0.0)
    change = 100.0 * (sum_followup - sum_baseline) / sum_baseline if sum_baseline > 0 else 0.0
    sums = f"sum of diameters {sum_baseline:.1f} -> {sum_followup:.1f} mm"
    if all(_gone(p) for p in targets):
        return "CR", f"{sums}: every target lesion has disappeared (lymph nodes under {NODE_NORMAL_MM:g} mm short axis)"
    if grown_percent >= PD_INCREASE - _EPS and grown >= PD_ABSOLUTE_MM - _EPS:
        return "PD", (
            f"{sums}: {grown:+.1f} mm ({grown_percent:+.1f} %) over the nadir {nadir:.1f} mm, at least "
            f"{PD_INCREASE:g} % and {PD_ABSOLUTE_MM:g} mm"
        )
    if change <= -PR_DECREASE + _EPS:
        return "PR", f"{sums} ({change:+.1f} %): a decrease of at least {PR_DECREASE:g} % from baseline"
    return "SD", (
        f"{sums} ({change:+.1f} % from baseline, {grown:+.1f} mm from the nadir {nadir:.1f} mm): neither a "
        f"{PR_DECREASE:g} % decrease nor a {PD_INCREASE:g} % and {PD_ABSOLUTE_MM:g} mm increase"
    )


def non_target_response(non_targets: list) -> str:
    if not non_targets:
        return "none"
    return "CR" if all(_gone(p) for p in non_targets) else "non-CR/non-PD"


def overall_response(target: str, non_target: str, new: list, target_rule: str) -> tuple:
    """RECIST 1.1 tables 1 and 2: (category, the rule that decided it)."""
    if new:
        listed = ", ".join(f"lesion {n}" for n in new)
        return "PD", (
            f"new lesion at follow-up ({listed}): any unequivocal new lesion is progression; a reader must "
            "confirm it is a new lesion and not a finding the model missed at baseline"
        )
    if target == "PD":
        return "PD", target_rule
    if target == "none":
        if non_target == "CR":
            return "CR", "every non-target lesion has disappeared and there is no new lesion (no target lesions)"
        return "non-CR/non-PD", "non-target lesions persist, no new lesion (no target lesions)"
    if target == "CR":
        if non_target in ("CR", "none"):
            return "CR", target_rule + "; so have the non-target lesions; no new lesion"
        return "PR", target_rule + ", but non-target lesions persist (target CR with non-target non-CR/non-PD is PR)"
    return target, target_rule + "; no new lesion"


def compare(
    baseline: dict,
    followup: dict,
    to_baseline: Callable[[np.ndarray], np.ndarray] | None = None,
    registration: str = "",
    nadir_mm: float | None = None,
) -> Comparison:
    """Compare two reports (``report.json`` dicts); ``to_baseline`` maps follow-up LPS points
    (N x 3) into the baseline scan (None: the scans are aligned)."""
    base_lesions = list(baseline.get("lesions") or [])
    follow_lesions = list(followup.get("lesions") or [])
    if not (baseline.get("recist") or {}).get("lesions") and base_lesions:
        raise PastaError("the baseline report has no RECIST 1.1 baseline (made by an older PASTA?); make it again")
    pairs_found = {b: (f, d) for b, f, d in pair(base_lesions, follow_lesions, to_baseline)}
    paired_followups = {f for f, _ in pairs_found.values()}
    rows = []
    for index, lesion in enumerate(base_lesions):
        recist = lesion.get("recist") or {}
        role = recist.get("role", "")
        if role not in ("target", "non-target"):
            continue
        row = PairedLesion(
            role,
            baseline=int(lesion["number"]),
            target_number=int(recist.get("target_number") or 0),
            is_node=bool(recist.get("is_node")),
            baseline_mm=round(_diameter(lesion), 1),
            organ=lesion.get("organ") or "",
        )
        if index in pairs_found:
            f, distance = pairs_found[index]
            later = follow_lesions[f]
            row.followup, row.distance_mm = int(later["number"]), round(distance, 1)
            row.followup_mm = round(float(later.get("short_axis_mm" if row.is_node else "long_axis_mm") or 0.0), 1)
            row.state = "present"
        else:
            row.followup_mm, row.state = 0.0, "disappeared"
        row.change_mm = round(row.followup_mm - row.baseline_mm, 1)
        row.change_percent = round(100.0 * row.change_mm / row.baseline_mm, 1) if row.baseline_mm else None
        rows.append(row)
    new, notes = [], []
    for f, lesion in enumerate(follow_lesions):
        if f in paired_followups:
            continue
        state = "seen below the floor at baseline" if _near_below_floor(baseline, lesion, to_baseline) else "new"
        rows.append(
            PairedLesion(
                "new" if state == "new" else "non-target",
                followup=int(lesion["number"]),
                followup_mm=round(float(lesion.get("long_axis_mm") or 0.0), 1),
                state=state,
                organ=lesion.get("organ") or "",
            )
        )
        if state == "new":
            new.append(int(lesion["number"]))
        else:
            notes.append(
                f"Follow-up lesion {lesion['number']} lies where the baseline had a piece under the reporting "
                "floor: not counted as new."
            )
    targets = sorted((r for r in rows if r.role == "target"), key=lambda r: r.target_number)
    non_targets = [r for r in rows if r.role == "non-target" and r.baseline]
    sum_baseline = round(sum(r.baseline_mm for r in targets), 1)
    sum_followup = round(sum(r.followup_mm for r in targets), 1)
    nadir = round(min(sum_baseline, nadir_mm) if nadir_mm is not None else sum_baseline, 1)
    t_response, t_rule = target_response(targets, sum_baseline, sum_followup, nadir)
    n_response = non_target_response(non_targets)
    overall, rule = overall_response(t_response, n_response, new, t_rule)
    if any(r.state == "disappeared" for r in rows):
        notes.append("A lesion not found at follow-up counts as disappeared (0 mm); check that the segmentation did not miss it.")
    return Comparison(
        str((baseline.get("case") or {}).get("case_id", "")),
        str((followup.get("case") or {}).get("case_id", "")),
        registration or "none: the scans were taken as aligned (centroid distance in patient coordinates)",
        targets + non_targets + [r for r in rows if r not in targets and r not in non_targets],
        sum_baseline,
        sum_followup,
        nadir,
        t_response,
        n_response,
        new,
        overall,
        f"{overall}: {rule}.",
        notes,
    )


def roles_at_followup(comparison: Comparison) -> dict:
    """``{follow-up lesion number: (role, baseline number, target number)}`` from a comparison."""
    out = {}
    for row in comparison.pairs:
        if row.followup:
            out[row.followup] = (
                row.role if row.state != "seen below the floor at baseline" else "non-target",
                row.baseline,
                row.target_number,
            )
    return out


def comparison_lines(c: Comparison) -> list:
    """The comparison as text lines (``pasta compare`` without ``--json``)."""
    lines = [f"RECIST 1.1: {c.baseline_case} (baseline) -> {c.followup_case} (follow-up)", f"registration: {c.registration}", ""]
    header = f"{'role':<11} {'baseline':>9} {'follow-up':>10} {'mm then':>8} {'mm now':>7} {'change':>15}  state"
    lines.append(header)
    for r in c.pairs:
        role = f"target {r.target_number}" if r.role == "target" else r.role
        change = (
            ""
            if r.change_mm is None
            else f"{r.change_mm:+.1f} mm" + (f" {r.change_percent:+.0f}%" if r.change_percent is not None else "")
        )
        lines.append(
            f"{role:<11} {r.baseline or '-':>9} {r.followup or '-':>10} "
            f"{'' if r.baseline_mm is None else f'{r.baseline_mm:.1f}':>8} "
            f"{'' if r.followup_mm is None else f'{r.followup_mm:.1f}':>7} {change:>15}  {r.state}"
        )
    percent = "" if c.sum_change_percent is None else f" ({c.sum_change_percent:+.1f} %)"
    lines += [
        "",
        f"sum of diameters: {c.sum_baseline_mm:.1f} -> {c.sum_followup_mm:.1f} mm{percent}; nadir {c.nadir_mm:.1f} mm",
        f"target response: {c.target_response}; non-target: {c.non_target_response}; "
        f"new lesions: {', '.join(map(str, c.new_lesions)) or 'none'}",
        f"overall response: {c.rule}",
    ]
    lines += c.notes
    return lines


def load_report(path: str | Path) -> dict:
    """A report as ``report.json`` holds it, from a report folder or the file itself."""
    import json
    from pathlib import Path

    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise PastaError(f"{path} is not a report: it holds no report.json")
    from ..fileio.readers import require_regular_file

    require_regular_file(file, "report")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PastaError(f"cannot read {file.name}: {str(exc)[:80]}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("pasta-report/"):
        raise PastaError(f"{file} is not a PASTA report.json")
    if "recist" not in data:
        raise PastaError(f"{file} was written by an older PASTA without RECIST 1.1; write the report again")
    from .report_check import check_report

    return check_report(data, file)
