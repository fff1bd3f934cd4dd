"""A report read back as an input (``pasta compare``, ``pasta report --baseline``) is checked
before it is used: a damaged report.json is refused in one line naming the file and the field,
never turned into a response; two reports of different patients, or a follow-up dated before
its baseline, are refused unless the user insists."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import PastaError, option


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fail(file: Path, where: str, problem: str) -> PastaError:
    return PastaError(f"{file}: {where} {problem}; the report is damaged (write it again with pasta report)")


def _lesion(file: Path, n: int, lesion: object) -> None:
    where = f"lesion {n}"
    if not isinstance(lesion, dict):
        raise _fail(file, where, "is not an object")
    number = lesion.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise _fail(file, f"{where} field 'number'", f"must be a whole number from 1 (got {str(number)[:20]!r})")
    where = f"lesion {number}"
    for key in ("long_axis_mm", "short_axis_mm"):
        if key not in lesion or lesion[key] is None:
            raise _fail(file, f"{where} field '{key}'", "is missing")
        if not _finite(lesion[key]) or lesion[key] < 0:
            raise _fail(file, f"{where} field '{key}'", f"must be a finite number >= 0 (got {str(lesion[key])[:20]!r})")
    centre = lesion.get("centroid_lps_mm")
    if not (isinstance(centre, list) and len(centre) == 3 and all(_finite(v) for v in centre)):
        raise _fail(file, f"{where} field 'centroid_lps_mm'", f"must be three finite numbers (got {str(centre)[:30]!r})")
    recist = lesion.get("recist", {})
    if not isinstance(recist, dict):
        raise _fail(file, f"{where} field 'recist'", "must be an object")
    if "target_number" in recist and recist["target_number"] is not None and not isinstance(recist["target_number"], int):
        raise _fail(file, f"{where} field 'recist.target_number'", "must be a whole number")


def check_report(data: object, file: Path) -> dict:
    """``data`` (a parsed report.json) when every field a comparison reads is there with its type."""
    if not isinstance(data, dict):
        raise PastaError(f"{file} is not a PASTA report.json")
    for key, kind in (("case", dict), ("recist", dict), ("lesions", list)):
        if key in data and not isinstance(data[key], kind):
            raise _fail(
                file, f"field '{key}'", f"must be a {'list' if kind is list else 'JSON object'} (got {str(data[key])[:20]!r})"
            )
    for n, lesion in enumerate(data.get("lesions") or [], start=1):
        _lesion(file, n, lesion)
    for n, piece in enumerate(data.get("below_floor") or [], start=1):
        centre = piece.get("centroid_ras_mm") if isinstance(piece, dict) else None
        if not (isinstance(centre, list) and len(centre) == 3 and all(_finite(v) for v in centre)):
            raise _fail(file, f"below_floor entry {n} field 'centroid_ras_mm'", "must be three finite numbers")
    return data


def time_point_problems(baseline: dict, followup: dict) -> list[str]:
    """Why two reports cannot be a baseline and its follow-up: another patient, or dated before."""
    a, b = baseline.get("case") or {}, followup.get("case") or {}
    problems = []
    first, second = str(a.get("patient_id") or ""), str(b.get("patient_id") or "")
    if first and second and first != second:
        problems.append(f"the reports are of different patients ({first} and {second})")
    before, after = str(a.get("study_date") or ""), str(b.get("study_date") or "")
    if before and after and after < before:
        problems.append(f"the follow-up ({_date(after)}) is dated before its baseline ({_date(before)})")
    return problems


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def check_time_points(baseline: dict, followup: dict, force: bool = False) -> list[str]:
    """Refuse a comparison of reports that cannot be a baseline and its follow-up, unless
    ``force``; then the notes that say what was compared anyway."""
    problems = time_point_problems(baseline, followup)
    if problems and not force:
        raise PastaError(f"{'; '.join(problems)}; pass {option('force')} to compare them anyway")
    return [f"Compared although {p} (forced by the user)." for p in problems]
