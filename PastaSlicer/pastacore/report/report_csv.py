"""The cohort table: one row per lesion of every case, for spreadsheets and statistics."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from .model import CaseReport


COLUMNS = (
    "case_id",
    "patient_id",
    "study_uid",
    "lesion",
    "name",
    "term",
    "organ",
    "side",
    "volume_ml",
    "max_diameter_3d_mm",
    "long_axis_mm",
    "short_axis_mm",
    "axis_slice",
    "major_axis_mm",
    "minor_axis_mm",
    "least_axis_mm",
    "mean_hu",
    "std_hu",
    "min_hu",
    "max_hu",
    "median_hu",
    "centroid_r_mm",
    "centroid_a_mm",
    "centroid_s_mm",
    "first_slice",
    "last_slice",
    "touches_border",
    "attributes",
    "status",
    "mean_probability",
    "max_probability",
    "recist_role",
    "recist_diameter_mm",
    "segmentation_model",
)


def lesion_rows(report: CaseReport) -> list:
    rows = []
    segmenters = [m for m in report.models if m.role in ("segmentation", "")]
    model = "; ".join(m.describe() for m in segmenters) or "unknown"
    for lesion in report.lesions:
        m = lesion.measurement
        attrs = "; ".join(f"{k}={a.value}" for k, a in lesion.attributes.items())
        rows.append(
            [
                report.case.case_id,
                report.case.patient_id,
                report.case.study_uid,
                m.index,
                m.name,
                lesion.term,
                m.organ,
                m.side,
                *(f"{v:.4f}" for v in (m.volume_ml, m.max_diameter_3d_mm, m.long_axis_mm, m.short_axis_mm)),
                m.axis_slice,
                *(f"{v:.4f}" for v in m.principal_axes_mm),
                *(f"{v:.4f}" for v in (m.mean_hu, m.std_hu, m.min_hu, m.max_hu, m.median_hu)),
                *(f"{v:.3f}" for v in m.centroid_ras_mm),
                m.slice_range[0],
                m.slice_range[1],
                int(m.touches_border),
                attrs,
                lesion.status,
                *("" if v is None else f"{v:.4f}" for v in (lesion.mean_probability, lesion.max_probability)),
                lesion.role,
                "" if "diameter_mm" not in lesion.recist else f"{lesion.recist['diameter_mm']:.1f}",
                model,
            ]
        )
    return rows


def write_cohort_csv(reports: Iterable[CaseReport], path: str | Path) -> None:
    """Write one row per lesion of each report (cases without lesions get no row)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for report in reports:
            writer.writerows(lesion_rows(report))
