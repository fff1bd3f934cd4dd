"""Lesion synthesis speed: time per lesion (10, 30, 60 mm) and dataset throughput.

Per-lesion times come from ``synthesize_lesion`` on the pyradiomics lung CT standardised to
1 mm (292 x 292 x 236 voxels, real noise), with a lung mask, a box around the deepest point
of the lung and the default procedural backend: median of ``--repeats`` runs per size and
shape, after one warm-up run. Dataset throughput runs ``generate_dataset`` (nnU-Net layout,
background standardisation, lung mask, synthesis and NIfTI writing included) with 1 and
``--workers`` processes into a temporary folder.

    .venv/bin/python Testing/Benchmarks/benchmark_synthesis.py [--repeats 5] [--cases 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np


def per_lesion(repeats: int) -> list:
    from scipy import ndimage

    from pastacore.anatomy.masks import lung_mask
    from pastacore.fileio import read_volume
    from pastacore.geometry import Volume
    from pastacore.geometry.boxes import VoxelBox
    from pastacore.geometry.standardize import standardize
    from pastacore.samples import ensure_samples
    from pastacore.synthesis import synthesize_lesion

    folder = ensure_samples()
    volume = standardize(read_volume(folder / "lung1_image.nrrd"), is_label=False).volume
    lungs = lung_mask(volume.array, volume.grid.spacing)
    depth = ndimage.distance_transform_edt(lungs[::2, ::2, ::2]) * 2
    centre = np.array(np.unravel_index(int(np.argmax(depth)), depth.shape)) * 2
    organ = Volume(lungs.astype(np.uint8), volume.grid, is_label=True)
    rows = []
    for size in (10, 30, 60):
        half = size // 2 + 3
        box = VoxelBox(tuple(int(v) for v in centre - half), tuple(int(v) for v in centre + half + 1))
        for shape, text in (
            ("round, homogeneous", f"{size} mm round solid homogeneous well-defined"),
            ("irregular, heterogeneous, spiculated", f"{size} mm irregular heterogeneous ill-defined spiculated"),
        ):
            kwargs = dict(volume=volume, organ_labels=organ, roi_box=box, lesion_type="lung_tumor", attributes=text)
            synthesize_lesion(seed=size * 1000, **kwargs)  # warm-up
            times, sizes = [], None
            for seed in range(size * 1000 + 1, size * 1000 + repeats + 1):  # fresh seeds: no cached shapes
                started = time.perf_counter()
                result = synthesize_lesion(seed=seed, **kwargs)
                times.append(time.perf_counter() - started)
                sizes = result.report["measured"]["size_mm"]
            rows.append((size, shape, statistics.median(times), max(times), sizes, result.report["render"]["crop_shape"]))
    return rows


def throughput(cases: int, workers: int) -> list:
    from pastacore.actions.dataset import generate_dataset
    from pastacore.samples import ensure_samples

    folder = ensure_samples()
    backgrounds = [str(folder / "lung1_image.nrrd"), str(folder / "lung2_image.nrrd")]
    rows = []
    from pastacore.synthesis import dataset

    for k in sorted({1, workers}):
        dataset._background.cache_clear()  # each run starts cold (forked workers would inherit warm caches)
        dataset._auto_organ.cache_clear()
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            summary = generate_dataset(
                backgrounds_dir=backgrounds,
                output_dir=out,
                count=cases,
                format="nnunet",
                lesion_type="lung_tumor",
                seed=0,
                workers=k,
            )
            seconds = time.perf_counter() - started
        rows.append((k, summary["written"], seconds, 60 * summary["written"] / seconds))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    import os

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| lesion | shape | median time (s) | max (s) | measured size (mm) | crop (voxels) |")
    print("|---|---|---|---|---|---|")
    for size, shape, median, worst, sizes, crop in per_lesion(args.repeats):
        print(
            f"| {size} mm | {shape} | {median:.2f} | {worst:.2f} | {' x '.join(f'{s:.0f}' for s in sizes)} | "
            f"{'x'.join(map(str, crop))} |"
        )
    print()
    print("| workers | cases | seconds | cases per minute |")
    print("|---|---|---|---|")
    for k, written, seconds, rate in throughput(args.cases, args.workers):
        print(f"| {k} | {written} | {seconds:.1f} | {rate:.1f} |")


if __name__ == "__main__":
    main()
