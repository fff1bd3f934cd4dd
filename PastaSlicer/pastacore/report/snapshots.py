"""Key images: orthogonal slices of a CT with label contours, as PNG (matplotlib, no screen)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..geometry.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Sequence


def _plane(volume: Volume, array: np.ndarray, axis: int, index: int) -> tuple:
    """The slice and its pixel aspect, oriented the way radiologists view it."""
    si, sj, sk = volume.grid.spacing
    if axis == 0:  # axial: rows = j (posterior down), columns = i; LPS i->left shows patient left on the right
        return array[index], sj / si
    if axis == 1:  # coronal: rows = k (superior up)
        return array[:, index, :][::-1], sk / si
    return array[:, :, index][::-1], sk / sj  # sagittal


def save_orthogonal_views(
    image: Volume,
    path: str | Path,
    labels: Volume | None = None,
    center: Sequence[int] | None = None,
    title: str = "",
    window: tuple[float, float] = (-1000, 400),
) -> Path:
    """Write axial, coronal and sagittal slices through ``center`` (voxel k, j, i) with contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio.atomic import atomic_outputs

    if center is None:
        if labels is not None and np.any(labels.array):
            center = [int(np.median(ax)) for ax in np.nonzero(labels.array)]
        else:
            center = [n // 2 for n in image.array.shape]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), facecolor="black")
    for axis, ax, name in zip(range(3), axes, ("axial", "coronal", "sagittal")):
        plane, aspect = _plane(image, image.array, axis, center[axis])
        ax.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest")
        if labels is not None:
            lab, _ = _plane(image, labels.array, axis, center[axis])
            for value, color in zip(sorted(set(np.unique(lab)) - {0}), ("#ff3030", "#30c0ff", "#ffd030", "#60ff60")):
                ax.contour(lab == value, levels=[0.5], colors=[color], linewidths=1.0)
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=11)
    fig.tight_layout()
    with atomic_outputs(path, overwrite=True) as temp:
        fig.savefig(temp, dpi=90, facecolor="black")
    plt.close(fig)
    return Path(path)
