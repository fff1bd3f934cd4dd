"""Key images of a lesion: the axial slice of its long axis with the contour and both RECIST
lines, and coronal and sagittal slices through its centroid (matplotlib, no screen)."""

from __future__ import annotations

import numpy as np

from ..io.volume import Volume
from .snapshots import _plane

LUNG_WINDOW = (-1350, 150)
SOFT_TISSUE_WINDOW = (-160, 240)
MARGIN_MM = 25.0


def lesion_mask(labels: np.ndarray, m) -> tuple:
    """(box, mask within box) of the lesion measured as ``m`` (a LesionMeasurement)."""
    from scipy import ndimage

    lo, hi = m.bbox_ijk
    box = (slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
    mask = labels[box] == m.label
    if m.component:
        parts, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        if count > 1:
            sizes = np.bincount(parts.ravel())[1:]
            exact = np.nonzero(sizes == m.voxel_count)[0]
            mask = parts == (exact[0] + 1 if len(exact) else int(np.argmax(sizes)) + 1)
    return box, mask


def window_for(organ: str, surroundings: np.ndarray | None = None) -> tuple:
    """Lung window for lung lesions (or, organ unknown, lesions surrounded mostly by air), else soft tissue."""
    if organ:
        return LUNG_WINDOW if "lung" in organ.lower() else SOFT_TISSUE_WINDOW
    if surroundings is not None and surroundings.size and np.median(surroundings) < -400:
        return LUNG_WINDOW
    return SOFT_TISSUE_WINDOW


def lesion_figure(image: Volume, box, mask: np.ndarray, m, title: str = ""):
    """A matplotlib figure (3 panels) for one lesion; the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = np.zeros(image.array.shape, bool)
    full[box] = mask
    si, sj, sk = image.grid.spacing
    nk, nj, ni = image.array.shape
    ci, cj, ck = (int(round(c)) for c in m.centroid_ijk)
    lo, hi = np.asarray(m.bbox_ijk[0]), np.asarray(m.bbox_ijk[1])
    margin = np.ceil(MARGIN_MM / np.array([si, sj, sk])).astype(int)
    x0, y0, z0 = np.maximum(lo - margin, 0)
    x1, y1, z1 = np.minimum(hi + margin, [ni - 1, nj - 1, nk - 1])
    window = window_for(m.organ, image.array[m.axis_slice, y0:y1 + 1, x0:x1 + 1])

    fig, axes = plt.subplots(1, 3, figsize=(11, 4.0), facecolor="black")
    panels = (
        ("axial", 0, m.axis_slice, (x0 - 0.5, x1 + 0.5), (y1 + 0.5, y0 - 0.5)),
        ("coronal", 1, cj, (x0 - 0.5, x1 + 0.5), (nk - 1 - z0 + 0.5, nk - 1 - z1 - 0.5)),
        ("sagittal", 2, ci, (y0 - 0.5, y1 + 0.5), (nk - 1 - z0 + 0.5, nk - 1 - z1 - 0.5)),
    )
    for ax, (name, axis, index, xlim, ylim) in zip(axes, panels):
        plane, aspect = _plane(image, image.array, axis, index)
        ax.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest")
        lab, _ = _plane(image, full, axis, index)
        if lab.any():
            ax.contour(lab.astype(np.uint8), levels=[0.5], colors=["#ff3030"], linewidths=1.2)
        if axis == 0:
            (a, b), (c, d) = m.long_axis_ijk, m.short_axis_ijk
            ax.plot([a[0], b[0]], [a[1], b[1]], color="#ffd030", lw=1.6, label=f"long axis {m.long_axis_mm:.1f} mm")
            ax.plot([c[0], d[0]], [c[1], d[1]], color="#30c0ff", lw=1.6, label=f"short axis {m.short_axis_mm:.1f} mm")
            ax.legend(loc="lower left", fontsize=7, facecolor="black", labelcolor="white", framealpha=0.6)
            label = f"axial, slice {index}"
        else:
            label = f"{name}, slice {index}"
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_title(label, color="white", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    return fig
