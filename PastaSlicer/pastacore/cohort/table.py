"""The cohort table: one row per lesion of every finished case, as CSV and Parquet.

Rewritten from the manifest (atomically, beside the manifest) as cases finish: at most every
``every_s`` seconds during a run, and at its end. Columns whose values are all numbers are
numbers in the Parquet file. Parquet needs ``pyarrow`` (the ``cohort`` extra); without it
only the CSV is written.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .manifest import FINISHED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..report.model import CaseReport
    from .manifest import Manifest


CSV_NAME, PARQUET_NAME = "cohort.csv", "cohort.parquet"


def _number(text):
    if isinstance(text, (int, float)) or text is None:
        return text
    try:
        return int(text)
    except (TypeError, ValueError):
        return float(text)


def typed_columns(columns: Sequence[str], rows: Sequence[dict]) -> dict:
    """column -> list of values; a column whose values all read as numbers holds numbers
    (identifiers, ``*_id`` and ``*_uid``, stay text)."""
    data = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        if column.endswith(("_id", "_uid")):  # identifiers stay text ("0012" is not 12)
            data[column] = ["" if v is None else str(v) for v in values]
            continue
        try:
            data[column] = [None if v in ("", None) else _number(v) for v in values]
        except (TypeError, ValueError):
            data[column] = ["" if v is None else str(v) for v in values]
    return data


def pyarrow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


class CohortTable:
    def __init__(self, folder: str | Path, columns: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.columns = tuple(columns)
        self._written = 0.0

    @property
    def paths(self) -> list:
        return [self.folder / CSV_NAME] + ([self.folder / PARQUET_NAME] if pyarrow_available() else [])

    def exists(self) -> bool:
        return all(p.is_file() for p in self.paths)

    def rows(self, manifest: Manifest) -> list:
        rows = []
        for case_id, row in manifest.rows().items():
            if row["status"] in FINISHED:
                rows += [dict(r, case_id=r.get("case_id", case_id)) for r in row["rows"] or []]
        return rows

    def write_if_due(self, manifest: Manifest, every_s: float) -> None:
        if time.monotonic() - self._written >= every_s:
            self.write(manifest)

    def write(self, manifest: Manifest) -> list:
        from ..fileio.atomic import atomic_outputs

        rows = self.rows(manifest)
        paths = self.paths
        with atomic_outputs(*paths, overwrite=True) as temps:
            temps = temps if isinstance(temps, list) else [temps]
            with open(temps[0], "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            if len(temps) > 1:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table(typed_columns(self.columns, rows)), temps[1])
        self._written = time.monotonic()
        return paths


# -- the rows of each kind of cohort ------------------------------------------------------------


def lesion_table_rows(report: CaseReport) -> list:
    """Rows of a measured case (``batch segment``, ``batch report``): the cohort.csv of ``pasta report``."""
    from ..report.report_csv import COLUMNS, lesion_rows

    return [dict(zip(COLUMNS, row)) for row in lesion_rows(report)]


def lesion_columns() -> tuple:
    from ..report.report_csv import COLUMNS

    return COLUMNS


SYNTHETIC_COLUMNS = (
    "case_id",
    "lesion_type",
    "organ",
    "seed",
    "backend",
    "center_r_mm",
    "center_a_mm",
    "center_s_mm",
    "size_x_mm",
    "size_y_mm",
    "size_z_mm",
    "volume_ml",
    "mean_hu",
    "sd_hu",
    "attributes",
    "source",
)


def synthetic_row(case_id: str, report: dict, source: str = "") -> dict:
    """The row of one synthetic lesion (``batch synth``, ``pasta dataset``) from its report.json."""
    import json

    measured = report.get("measured") or {}
    centre = (report.get("geometry") or {}).get("center_ras") or [None] * 3
    size = measured.get("size_mm") or [None] * 3
    return {
        "case_id": case_id,
        "lesion_type": report.get("lesion_type"),
        "organ": report.get("organ"),
        "seed": report.get("seed"),
        "backend": report.get("backend"),
        "center_r_mm": centre[0],
        "center_a_mm": centre[1],
        "center_s_mm": centre[2],
        "size_x_mm": size[0],
        "size_y_mm": size[1],
        "size_z_mm": size[2],
        "volume_ml": measured.get("volume_ml"),
        "mean_hu": measured.get("mean_hu"),
        "sd_hu": measured.get("sd_hu"),
        "attributes": json.dumps(report.get("attributes") or {}, sort_keys=True),
        "source": source,
    }
