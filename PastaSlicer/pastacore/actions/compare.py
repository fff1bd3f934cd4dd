"""Compare: the RECIST 1.1 response between a baseline and a follow-up report.

``pasta compare`` and the report panel's Compare (through the task process) build a
:class:`CompareOptions` and call :func:`run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from ..report.followup import Comparison


@dataclass(frozen=True)
class CompareOptions:
    nadir_mm: float | None = None  # the smallest sum of diameters so far (an earlier follow-up below baseline)
    force: bool = False  # compare reports of different patients, or a follow-up dated before its baseline

    def check(self) -> None:
        if self.nadir_mm is not None and not 0.0 <= self.nadir_mm < float("inf"):
            raise PastaError(f"{option('nadir_mm')} must be a number of mm >= 0, got {self.nadir_mm}")


@dataclass
class CompareInputs:
    baseline: str | Path  # the baseline report folder (or its report.json)
    followup: str | Path  # the follow-up report folder (or its report.json)
    baseline_image: str | Path | Volume | None = None  # with followup_image: register the scans first
    followup_image: str | Path | Volume | None = None


@dataclass
class Compared(ActionResult):
    comparison: Comparison

    def to_dict(self) -> dict:
        return self.comparison.to_dict()


def run(
    options: CompareOptions, inputs: CompareInputs, progress: Progress | None = None, is_cancelled: Cancelled | None = None
) -> Compared:
    """Pair the lesions of the two reports (after registering the CTs when both are given)."""
    from ..fileio import as_volume
    from ..report.followup import compare, load_report

    options.check()
    say = reporter(progress)
    if (inputs.baseline_image is None) != (inputs.followup_image is None):
        raise PastaError(f"give both {option('baseline_image')} and {option('followup_image')} to register the scans, or neither")
    from ..report.report_check import check_time_points

    baseline, followup = load_report(inputs.baseline), load_report(inputs.followup)
    forced = check_time_points(baseline, followup, options.force)
    to_baseline, how = None, ""
    if inputs.baseline_image is not None:
        from ..report.registration import register

        registration = register(
            as_volume(inputs.baseline_image), as_volume(inputs.followup_image), lambda f, m="": say(0.9 * f, m)
        )
        to_baseline, how = registration.to_baseline, registration.describe()
    comparison = compare(baseline, followup, to_baseline, how, options.nadir_mm)
    comparison.notes[:0] = forced
    say(1.0, "compared")
    return Compared(comparison)


OPTIONS, INPUTS = CompareOptions, CompareInputs
