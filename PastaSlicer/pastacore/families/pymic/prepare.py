"""Preparing a cohort of unlabelled CTs for VolF pretraining, on the cohort engine.

Each CT becomes ``<folder>/<case>/volume.npy``: the CT on PASTA's 1 mm grid (so pretraining
sees what fine-tuning and segmentation see), cropped to the body's bounding box (as the lung
VolF demo crops LUNA to the human region) and clipped to the network's HU window, stored as
int16 HU. Cases run in this process or on Dask workers (``pasta batch``'s ``--scheduler``),
are recorded in the folder's manifest, and a rerun skips every case already prepared from
unchanged inputs and settings; a CT that cannot be read fails alone, with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...cohort.case import Case, CaseWork

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ...cohort.case import Timer, WorkerResources
    from ...progress import Cancelled, Progress

VOLUME = "volume.npy"
BODY_MARGIN_MM = 5


def prepared_hu(path: str | Path, window: Sequence[float]) -> np.ndarray:
    """The CT at ``path`` as int16 HU on PASTA's 1 mm grid, cropped to the body (plus a few mm),
    clipped to ``window``."""
    from ...anatomy.masks import body_mask
    from ...fileio.readers import check_ct, read_volume
    from ...geometry.standardize import standardize

    volume = check_ct(read_volume(path), Path(str(path)).name)
    hu = standardize(volume, is_label=False).volume.array
    body = body_mask(hu)
    where = np.argwhere(body)
    low = np.maximum(where.min(0) - BODY_MARGIN_MM, 0)
    high = np.minimum(where.max(0) + 1 + BODY_MARGIN_MM, hu.shape)
    crop = hu[tuple(slice(a, b) for a, b in zip(low, high))]
    return np.round(np.clip(crop, window[0], window[1])).astype(np.int16)


class VolfPrepareWork(CaseWork):
    """One CT of a pretraining cohort -> ``volume.npy`` (see the module notes)."""

    kind = "volf-prepare"
    table_columns = ("case_id", "depth", "height", "width")
    owned = (VOLUME,)

    def __init__(self, hu_window: Sequence[float]) -> None:
        self.hu_window = [float(hu_window[0]), float(hu_window[1])]

    def settings(self) -> dict:
        return {"hu_window": self.hu_window, "grid": "pasta 1 mm", "crop": f"body + {BODY_MARGIN_MM} mm", "dtype": "int16"}

    def run(self, out_dir: Path, case: Case, fingerprint: str, resources: WorkerResources, timer: Timer) -> dict:
        with timer("prepare"):
            hu = prepared_hu(case.inputs["image"], self.hu_window)
        with self.case_directory(out_dir, case) as staging:
            with timer("write"):
                np.save(staging / VOLUME, hu)
            row = {"case_id": case.case_id, "depth": hu.shape[0], "height": hu.shape[1], "width": hu.shape[2]}
            return self.finish(out_dir, case, staging, fingerprint, [row])


def prepare_cohort(
    images: Sequence[str | Path],
    folder: str | Path,
    hu_window: Sequence[float],
    *,
    scheduler: str = "inline",
    workers: int | None = None,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple:
    """``(prepared volume paths in the images' order, the engine's summary)``; the cases that
    failed are in the summary (with their one line) and left out of the paths."""
    from ...cohort.engine import run_cohort
    from ...fileio.cases import read_inputs

    rows, _ignored = read_inputs([str(i) for i in images])
    cases = [Case(r.case_id, {"image": r.image}, {}, position=n) for n, r in enumerate(rows)]
    summary = run_cohort(
        VolfPrepareWork(hu_window),
        cases,
        folder,
        scheduler=scheduler,
        workers=workers,
        device="cpu",
        progress=progress,
        is_cancelled=is_cancelled,
        notify=notify,
    )
    failed = {f["case_id"] for f in summary["failed"]}
    paths = [Path(folder) / c.case_id / VOLUME for c in cases if c.case_id not in failed]
    return [p for p in paths if p.is_file()], summary
