"""Picture of how far down each sample chest CT reaches: lung area per slice from the apex, and
a sagittal slice through the left lung base of each scan, with lung2's real tumour marked.

lung1's field of view ends with half of its largest lung slice still in the lowest one, so a
model trained on lung1 alone never sees the lowest parts of the lung bases, where lung2's
lungs taper into the costophrenic recesses. Usage:

    .venv/bin/python Testing/Benchmarks/plot_fields_of_view.py --out FILE.png
"""

from __future__ import annotations

import argparse

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pastacore.training.default_model import load_background

    scans = {name: load_background(name) for name in ("lung1", "lung2")}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    for (name, bg), colour in zip(scans.items(), ("tab:blue", "tab:orange")):
        area = bg.lung.sum(axis=(1, 2)) * float(np.prod(bg.spacing[:2])) / 100.0  # cm^2 per 1 mm slice (k = superior)
        bottom, top = np.flatnonzero(area)[[0, -1]]
        below_apex = top - np.arange(len(area))
        axes[0].plot(below_apex, area, color=colour, label=f"{name}: lowest slice {area[bottom]:.0f} cm$^2$ of lung")
        if bg.tumour.any():
            ks = np.flatnonzero(bg.tumour.any(axis=(1, 2)))
            axes[0].axvspan(top - ks[-1], top - ks[0], alpha=0.2, color=colour, label=f"{name}'s tumour")
    axes[0].set_xlabel("mm below the lung apex")
    axes[0].set_ylabel("lung area in the slice (cm$^2$)")
    axes[0].set_title("where each scan's field of view ends")
    axes[0].legend(fontsize=8)
    tumour = scans["lung2"].tumour
    i_left = int(np.argwhere(tumour).mean(0)[2])
    for ax, (name, bg) in zip(axes[1:], scans.items()):
        lung = bg.lung
        cols = np.flatnonzero(lung.any(axis=(0, 1)))
        i = i_left if name == "lung2" else int(cols[-1] - 0.25 * (cols[-1] - cols[0]))  # i grows to the left (LPS)
        ax.imshow(bg.hu[:, :, i], cmap="gray", vmin=-1000, vmax=400, origin="lower", aspect="equal")
        ax.contour(lung[:, :, i], [0.5], colors="yellow", linewidths=0.6)
        if bg.tumour[:, :, i].any():
            ax.contour(bg.tumour[:, :, i], [0.5], colors="lime", linewidths=1.2)
        ax.set_title(f"{name}: sagittal, left lung (column {i}); lung mask yellow, tumour green", fontsize=9)
        ax.set_xlabel("anterior <- j -> posterior")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
