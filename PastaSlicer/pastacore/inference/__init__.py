"""Segmentation: where to look (body, lungs, organ, box), sliding-window inference, post-processing.

The main entry point is :func:`pastacore.inference.segment.segment_volume`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .segment import SegmentationResult


def segment_volume(*args, **kwargs) -> SegmentationResult:
    """See :func:`pastacore.inference.segment.segment_volume` (imported lazily: torch is heavy)."""
    from .segment import segment_volume as run

    return run(*args, **kwargs)
