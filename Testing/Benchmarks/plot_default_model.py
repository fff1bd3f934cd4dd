"""Picture of the built-in model on a real tumour: the scan's reference mask and what the model finds.

Runs the product path (``segment_volume`` with the classical lung mask as the organ) on a
pyradiomics sample scan and draws an axial and a coronal slice through the real tumour, plus a
projection of every lesion found (false positives included). Several ``--model`` give one row
each (e.g. training runs that differ only by their seed). Usage:

    .venv/bin/python Testing/Benchmarks/plot_default_model.py [--case lung2] [--model NAME|FILE ...] --out FILE.png
"""

from __future__ import annotations

import argparse

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="lung2")
    parser.add_argument(
        "--model", action="append", help="model name or weight file (repeat to compare; default: the built-in model)"
    )
    parser.add_argument("--label", action="append", help="a row title per --model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pastacore.geometry.volume import Volume
    from pastacore.inference.segment import segment_volume
    from pastacore.training.default_model import load_background

    bg = load_background(args.case)
    volume = Volume(bg.hu, bg.grid)
    tumour = bg.tumour
    k, j, _ = np.argwhere(tumour).mean(0).astype(int)
    models = args.model or [None]
    labels = args.label or [m or "built-in model" for m in models]
    if len(labels) != len(models):
        parser.error("give one --label per --model, or none")
    fig, rows = plt.subplots(len(models), 3, figsize=(15, 5.4 * len(models)), squeeze=False, layout="constrained")
    scores = []
    for model, label, axes in zip(models, labels, rows):
        result = segment_volume(
            volume, model, organ_mask=volume.with_array(bg.lung.astype(np.uint8), is_label=True), min_lesion_mm3=100.0
        )
        found = result.labels.array == 2
        dice = 2 * (found & tumour).sum() / max(found.sum() + tumour.sum(), 1)
        scores.append(f"{label}: Dice {dice:.3f}")
        views = [
            (bg.hu[k], tumour[k], found[k], bg.lung[k], f"axial, slice {k}"),
            (bg.hu[:, j], tumour[:, j], found[:, j], bg.lung[:, j], f"coronal, row {j}"),
        ]
        for ax, (image, truth, pred, lung, title) in zip(axes, views):
            ax.imshow(image, cmap="gray", vmin=-1000, vmax=400, origin="lower" if "coronal" in title else "upper")
            ax.contour(lung, [0.5], colors="yellow", linewidths=0.5)
            ax.contour(truth, [0.5], colors="lime", linewidths=1.2)
            if pred.any():
                ax.contour(pred, [0.5], colors="red", linewidths=1.2)
            ax.set_title(f"{label}: {title}" if len(models) > 1 else title)
            ax.axis("off")
        projection = found.max(axis=0).astype(int) * 2 + tumour.max(axis=0)
        axes[2].imshow(projection, cmap="magma", vmin=0, vmax=3)
        axes[2].set_title(
            f"projection: Dice {dice:.2f}, {found.sum() / 1000:.1f} mL found\nred: found only, purple: missed, yellow: both"
        )
        axes[2].axis("off")
    fig.suptitle(f"{args.case}: reference tumour (green), found by the model (red), lung mask (yellow)")
    fig.savefig(args.out, dpi=60)
    print(f"wrote {args.out}: " + "; ".join(scores))


if __name__ == "__main__":
    main()
