"""Intensity normalisations of the two PASTA regimes.

* :func:`pasta_slf` — PASTA's segmental linear function for classification and features:
  HU [-1000, -200, 200, 1000] -> [0, 0.2, 0.9, 1], constant outside.
* :func:`nnunet_ct` — nnU-Net's ``CTNormalization`` with the foreground statistics in a
  model's ``plans.json``: clip to the 0.5/99.5 percentiles, subtract the mean, divide by
  the standard deviation.
"""

from __future__ import annotations

import numpy as np

from ..errors import PastaError

SLF_HU = (-1000.0, -200.0, 200.0, 1000.0)
SLF_VALUES = (0.0, 0.2, 0.9, 1.0)


def pasta_slf(hu: np.ndarray) -> np.ndarray:
    """PASTA's piecewise-linear HU mapping, float32 in [0, 1]."""
    return np.interp(np.asarray(hu, dtype=np.float32), SLF_HU, SLF_VALUES).astype(np.float32)


def ct_statistics(plans: dict, channel: int = 0) -> dict:
    """The CT normalisation statistics of one input channel from an nnU-Net v2 ``plans.json``."""
    try:
        props = plans["foreground_intensity_properties_per_channel"][str(channel)]
        return {key: float(props[key]) for key in ("mean", "std", "percentile_00_5", "percentile_99_5")}
    except (KeyError, TypeError, ValueError) as exc:
        raise PastaError(f"plans.json lacks the CT intensity statistics of channel {channel} ({exc})") from None


def nnunet_ct(hu: np.ndarray, stats: dict) -> np.ndarray:
    """nnU-Net v2 ``CTNormalization`` (float32)."""
    out = np.clip(np.asarray(hu, dtype=np.float32), stats["percentile_00_5"], stats["percentile_99_5"])
    out -= np.float32(stats["mean"])
    out /= np.float32(max(stats["std"], 1e-8))
    return out
