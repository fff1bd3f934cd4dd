"""Benchmark: PASTA standardisation of a 512 x 512 x 300 CT-like volume.

Compares, in one run on the same input and target grid:
  * pastacore's ``standardize`` (separable linear resampling),
  * PASTA's reference method: ``scipy.ndimage.zoom(order=1)`` on the whole array,
  * SimpleITK's ``Resample`` (linear), numpy in and out.
Each method runs in its own subprocess (repeated, median time) so its peak memory can be read.
The input is the real pyradiomics lung2 CT interpolated to 300 slices of 1 mm and given
0.7 mm pixels: CT content at a typical size. Usage:

    .venv/bin/python Testing/Benchmarks/benchmark_standardize.py [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np

SHAPE = (300, 512, 512)
SPACING = (0.7, 0.7, 1.0)


def make_input():
    from pastacore.fileio import read_volume
    from pastacore.geometry import Grid, Volume
    from pastacore.samples import sample_paths

    ct = read_volume(sample_paths("lung2")[0]).array.astype(np.float32)
    z = np.linspace(0, ct.shape[0] - 1, SHAPE[0])
    lo = np.floor(z).astype(int).clip(0, ct.shape[0] - 2)
    w = (z - lo)[:, None, None].astype(np.float32)
    array = np.rint(ct[lo] * (1 - w) + ct[lo + 1] * w).astype(np.int16)
    return Volume(array, Grid(SHAPE, SPACING, (-179.0, -179.0, -300.0), np.eye(3)))


def method_ours(volume):
    from pastacore.geometry.standardize import standardize

    return standardize(volume, is_label=False).volume.array


def method_zoom(volume):
    from scipy import ndimage

    # PASTA's NifitiStandard: zoom by old spacing / 1 mm, order 1 because min < -10 (CT).
    zoom = np.array(volume.grid.spacing)[::-1] / 1.0
    return ndimage.zoom(volume.array.astype(np.float64), zoom, order=1)


def method_sitk(volume):
    from pastacore.geometry.resample import _resample_sitk
    from pastacore.geometry.standardize import standard_grid

    return _resample_sitk(volume, standard_grid(volume.grid), "linear", -1024.0)


METHODS = {"pastacore": method_ours, "scipy zoom (PASTA)": method_zoom, "SimpleITK": method_sitk}


def _rss_mb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def child(name, repeats):
    import gc

    volume = make_input()
    METHODS[name](volume)  # warm-up: imports and first-touch allocations
    gc.collect()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = METHODS[name](volume)
        times.append(time.perf_counter() - start)
        del result
        gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:  # Linux: reset the peak-RSS mark
        refs.write("5")
    before = _rss_mb("VmRSS")
    result = METHODS[name](volume)
    peak = _rss_mb("VmHWM")
    np.save(sys.argv[-1], result.astype(np.float32))
    print(json.dumps({"seconds": float(np.median(times)), "peak_extra_mb": peak - before, "shape": list(result.shape)}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repeats)
    import tempfile

    results, arrays = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, name in enumerate(METHODS):
            out = f"{tmp}/{index}.npy"
            proc = subprocess.run(
                [sys.executable, __file__, "--repeats", str(args.repeats), "--child", name, out],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            arrays[name] = np.load(out)
    ours, itk = arrays["pastacore"], arrays["SimpleITK"]
    zoom = arrays["scipy zoom (PASTA)"]
    common = tuple(slice(0, min(a, b)) for a, b in zip(ours.shape, zoom.shape))
    agreement = {
        "max |pastacore - SimpleITK| (HU)": float(np.abs(ours - itk).max()),
        "mean |pastacore - zoom| (HU, zoom's grid is corner-aligned, not exactly 1 mm)": float(
            np.abs(ours[common] - zoom[common]).mean()
        ),
    }
    t = {name: r["seconds"] for name, r in results.items()}
    lines = [
        f"Input {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} voxels of {SPACING} mm (int16), output 1 mm; "
        f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, median of {args.repeats}.",
        "",
        "| method | time (s) | speed-up of pastacore | extra peak memory (MB) | output shape |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['seconds'] / t['pastacore']:.1f}x | {r['peak_extra_mb']:.0f} | {tuple(r['shape'])} |"
        )
    lines.append("")
    for key, value in agreement.items():
        lines.append(f"- {key}: {value:.4f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
