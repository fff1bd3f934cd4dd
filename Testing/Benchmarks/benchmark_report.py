"""Time ``pasta report`` work for a case with 5 lesions, in all formats and per format.

The case is the real pyradiomics ``lung2`` chest CT with its tumour plus four ellipsoid
lesions (5 to 30 mm) painted into the body, so the measurement, key images and DICOM work
are those of a real-sized CT. Usage::

    python Testing/Benchmarks/benchmark_report.py [--repeats 3]

Prints a Markdown table for ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def five_lesion_case():
    from pastacore.fileio import read_volume
    from pastacore.samples import sample_paths

    image_path, label_path = sample_paths("lung2")
    image = read_volume(image_path)
    label = read_volume(label_path, is_label=True)
    labels = (label.array > 0).astype(np.uint8)
    nk, nj, ni = labels.shape
    si, sj, sk = image.grid.spacing
    k, j, i = np.ogrid[:nk, :nj, :ni]
    # centres (k, j, i) fractions and radii (mm) of four extra lesions
    for (fk, fj, fi), radius in (
        ((0.45, 0.55, 0.30), 15.0),
        ((0.60, 0.45, 0.65), 8.0),
        ((0.30, 0.60, 0.55), 5.0),
        ((0.70, 0.65, 0.40), 3.0),
    ):
        ck, cj, ci = fk * nk, fj * nj, fi * ni
        blob = (((i - ci) * si) ** 2 + ((j - cj) * sj) ** 2) / radius**2 + ((k - ck) * sk) ** 2 / (radius * 0.8) ** 2 <= 1
        labels[blob & (labels == 0)] = 1
    return image, label.with_array(labels), image_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from pastacore.report.export import case_info, make_report, write_report
    from pastacore.report.formats import format_names

    ALL_FORMATS = format_names()

    image, labels, image_path = five_lesion_case()
    runs = {"measure": [], "all formats (measure + write)": []}
    for fmt in ALL_FORMATS:
        runs[f"write {fmt}"] = []
    n_lesions = 0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            start = time.perf_counter()
            report = make_report(image, labels, case=case_info(image, image_path), lesion_labels=[1])
            measured = time.perf_counter()
            write_report(report, image, labels, Path(tmp) / f"all{repeat}", ALL_FORMATS)
            done = time.perf_counter()
            runs["measure"].append(measured - start)
            runs["all formats (measure + write)"].append(done - start)
            n_lesions = len(report.lesions)
            for fmt in ALL_FORMATS:
                report = make_report(image, labels, case=case_info(image, image_path), lesion_labels=[1])
                start = time.perf_counter()
                write_report(report, image, labels, Path(tmp) / f"{fmt}{repeat}", (fmt,))
                runs[f"write {fmt}"].append(time.perf_counter() - start)
            shutil.rmtree(Path(tmp) / f"all{repeat}")
    shape = "x".join(map(str, image.grid.size_ijk))
    print(f"case: lung2 CT {shape} voxels, {n_lesions} lesions; {platform.machine()}, median of {args.repeats}")
    print()
    print("| step | time (s) |")
    print("|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
