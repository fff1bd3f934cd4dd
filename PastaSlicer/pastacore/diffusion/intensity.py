"""LesionDiffusion's CT intensity map: piecewise linear, soft tissue gets 60 % of the range.

HU -1000, -200, 200, 1000 -> 0, 0.2, 0.8, 1, clipped outside; the inverse maps back the same
way (values below 0 give -1000 HU, above 1 give 1000 HU).
"""

from __future__ import annotations

import numpy as np

HU_POINTS = (-1000.0, -200.0, 200.0, 1000.0)
UNIT_POINTS = (0.0, 0.2, 0.8, 1.0)


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(hu, dtype=np.float64), HU_POINTS, UNIT_POINTS).astype(np.float32)


def unit_to_hu(unit: np.ndarray) -> np.ndarray:
    return np.interp(np.asarray(unit, dtype=np.float64), UNIT_POINTS, HU_POINTS).astype(np.float32)
