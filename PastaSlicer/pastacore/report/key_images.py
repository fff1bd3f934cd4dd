"""Key images of a lesion: the axial slice of its long axis with the contour and both RECIST
lines, and coronal and sagittal slices through its centroid (matplotlib, no screen).

One window serves the whole report (:func:`report_window`: the lung window when the lesions are
in the lungs, soft tissue otherwise), the same in all three views; every view is shown at the
scan's true voxel spacing (pixel aspect from the spacing), with a scale bar, and the coronal and
sagittal views mark the level of the axial slice where the axes were measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..geometry.volume import Volume
from .snapshots import _plane

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.figure import Figure

    from .measure import LesionMeasurement


LUNG_WINDOW = (-1350, 150)  # width 1500, level -600
SOFT_TISSUE_WINDOW = (-160, 240)  # width 400, level 40
WINDOWS = {"lung": LUNG_WINDOW, "soft tissue": SOFT_TISSUE_WINDOW}
MARGIN_MM = 25.0
SCALE_BARS_MM = (5, 10, 20, 50, 100)


def lesion_mask(labels: np.ndarray, m: LesionMeasurement) -> tuple:
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
    return WINDOWS[window_name(organ, surroundings)]


def window_name(organ: str, surroundings: np.ndarray | None = None) -> str:
    if organ:
        return "lung" if "lung" in organ.lower() else "soft tissue"
    if surroundings is not None and surroundings.size and np.median(surroundings) < -400:
        return "lung"
    return "soft tissue"


def report_window(image: Volume, measurements: Sequence[LesionMeasurement]) -> tuple:
    """``(name, (low, high) HU)``: the one window of a report, chosen by most of its lesions'
    organs (lesions without an organ by what surrounds them)."""
    votes = {}
    for m in measurements:
        name = window_name(m.organ, None if m.organ else _surroundings(image, m))
        votes[name] = votes.get(name, 0) + 1
    name = max(votes, key=lambda n: (votes[n], n == "lung")) if votes else "soft tissue"
    return name, WINDOWS[name]


def _surroundings(image: Volume, m) -> np.ndarray:
    x0, y0, x1, y1 = _field(image, m)[:4]
    return image.array[m.axis_slice, y0 : y1 + 1, x0 : x1 + 1]


def _field(image: Volume, m) -> tuple:
    """(x0, y0, x1, y1, z0, z1): the lesion's box and a margin of :data:`MARGIN_MM`, in voxels."""
    si, sj, sk = image.grid.spacing
    nk, nj, ni = image.array.shape
    lo, hi = np.asarray(m.bbox_ijk[0]), np.asarray(m.bbox_ijk[1])
    margin = np.ceil(MARGIN_MM / np.array([si, sj, sk])).astype(int)
    x0, y0, z0 = np.maximum(lo - margin, 0)
    x1, y1, z1 = np.minimum(hi + margin, [ni - 1, nj - 1, nk - 1])
    return int(x0), int(y0), int(x1), int(y1), int(z0), int(z1)


def scale_bar_mm(field_mm: float) -> int:
    """The longest round length up to a third of the field of view."""
    fitting = [b for b in SCALE_BARS_MM if b <= field_mm / 3.0]
    return fitting[-1] if fitting else SCALE_BARS_MM[0]


def _draw_scale_bar(ax, xlim, ylim, pixel_mm: float) -> None:
    width = abs(xlim[1] - xlim[0])
    length_mm = scale_bar_mm(width * pixel_mm)
    length = length_mm / pixel_mm
    x_end = max(xlim) - 0.05 * width
    y = max(ylim) - 0.06 * abs(ylim[1] - ylim[0])  # near the bottom (rows grow downwards)
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=4.5, foreground="black")]
    ax.plot([x_end - length, x_end], [y, y], color="white", lw=2.5, solid_capstyle="butt", path_effects=outline)
    ax.text(
        x_end - length / 2,
        y - 0.02 * abs(ylim[1] - ylim[0]),
        f"{length_mm} mm",
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
        path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")],
    )


def lesion_figure(
    image: Volume,
    box: tuple[slice, slice, slice],
    mask: np.ndarray,
    m: LesionMeasurement,
    title: str = "",
    window: tuple[float, float] | None = None,
    subtitle: str = "",
) -> Figure:
    """A matplotlib figure (3 panels) for one lesion; the caller saves and closes it.

    ``window``: (low, high) HU for all three views (default: :func:`window_for` the lesion)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = np.zeros(image.array.shape, bool)
    full[box] = mask
    si, sj, sk = image.grid.spacing
    nk = image.array.shape[0]
    ci, cj, _ = (int(round(c)) for c in m.centroid_ijk)
    x0, y0, x1, y1, z0, z1 = _field(image, m)
    if window is None:
        window = window_for(m.organ, image.array[m.axis_slice, y0 : y1 + 1, x0 : x1 + 1])
    axial_row = nk - 1 - m.axis_slice  # the axial slice's row in the coronal and sagittal views

    fig, axes = plt.subplots(1, 3, figsize=(11, 4.0), facecolor="black")
    panels = (  # name, axis, slice index, x limits, y limits, mm per pixel along x
        ("axial", 0, m.axis_slice, (x0 - 0.5, x1 + 0.5), (y1 + 0.5, y0 - 0.5), si),
        ("coronal", 1, cj, (x0 - 0.5, x1 + 0.5), (nk - 1 - z0 + 0.5, nk - 1 - z1 - 0.5), si),
        ("sagittal", 2, ci, (y0 - 0.5, y1 + 0.5), (nk - 1 - z0 + 0.5, nk - 1 - z1 - 0.5), sj),
    )
    for ax, (name, axis, index, xlim, ylim, pixel_mm) in zip(axes, panels):
        plane, aspect = _plane(image, image.array, axis, index)
        # reformatted views of thick slices are interpolated, as a viewer's MPR shows them
        ax.imshow(
            plane,
            cmap="gray",
            vmin=window[0],
            vmax=window[1],
            aspect=aspect,
            interpolation="nearest" if axis == 0 or aspect < 1.5 else "bilinear",
        )
        lab, _ = _plane(image, full, axis, index)
        if lab.any():
            ax.contour(lab.astype(np.uint8), levels=[0.5], colors=["#ff3030"], linewidths=1.2)
        if axis == 0:
            (a, b), (c, d) = m.long_axis_ijk, m.short_axis_ijk
            ax.plot([a[0], b[0]], [a[1], b[1]], color="#ffd030", lw=1.6, label=f"long axis {m.long_axis_mm:.1f} mm")
            ax.plot([c[0], d[0]], [c[1], d[1]], color="#30c0ff", lw=1.6, label=f"short axis {m.short_axis_mm:.1f} mm")
            ax.legend(loc="upper left", fontsize=7, facecolor="black", labelcolor="white", framealpha=0.6)
            label = f"axial, slice {index} (axes measured here)"
        else:
            ax.axhline(axial_row, color="#ffd030", lw=0.8, ls="--", alpha=0.8)
            label = f"{name}, slice {index}"
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        _draw_scale_bar(ax, xlim, ylim, pixel_mm)
        ax.set_title(label, color="white", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    if subtitle:
        fig.text(0.5, 0.015, subtitle, color="#cccccc", fontsize=7.5, ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.04 if subtitle else 0, 1, 1))
    return fig
