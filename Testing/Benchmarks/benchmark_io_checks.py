"""What the data-safety checks cost: reading a volume with its header and data checked, writing
one with its read-back verification, against SimpleITK's plain read and write, in one run.

    PYTHONPATH=PastaSlicer python Testing/Benchmarks/benchmark_io_checks.py --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
from timing import median_seconds

_median = median_seconds


def main():
    import SimpleITK as sitk

    from pastacore.fileio import read_volume, write_volume
    from pastacore.fileio.filecheck import check_volume_file
    from pastacore.fileio.sitk_bridge import sitk_from_volume
    from pastacore.fileio.verify import verify_output
    from pastacore.geometry import Grid, Volume
    from pastacore.samples import sample_paths

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    image_path, _ = sample_paths("lung2")
    lung2 = read_volume(image_path)
    rng = np.random.default_rng(0)
    big = Volume(rng.normal(0, 300, (300, 512, 512)).round().astype(np.int16), Grid((300, 512, 512), (0.7, 0.7, 1.0)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, volume in (("lung2 512x512x61 int16", lung2), ("512x512x300 int16", big)):
            for suffix in (".nii.gz", ".nii", ".nrrd"):
                path = Path(tmp) / f"v{suffix}"
                plain = Path(tmp) / f"plain{suffix}"
                image = sitk_from_volume(volume)
                itk_write = _median(lambda: sitk.WriteImage(image, str(plain), useCompression=suffix != ".nii"), args.repeats)
                ours_write = _median(lambda: write_volume(volume, path, overwrite=True), args.repeats)
                verify = _median(lambda: verify_output(path), args.repeats)
                itk_read = _median(lambda: sitk.ReadImage(str(path)), args.repeats)
                ours_read = _median(lambda: read_volume(path), args.repeats)
                check = _median(lambda: check_volume_file(path), args.repeats)
                rows.append((name, suffix, itk_write, ours_write, verify, itk_read, ours_read, check))
    print(f"{platform.machine()}, median of {args.repeats}")
    print(
        "| volume | format | ITK write (s) | write_volume (s) | of which read-back check (s) | write ratio | "
        "ITK read (s) | read_volume (s) | of which header/data check (s) | read ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, suffix, itk_write, ours_write, verify, itk_read, ours_read, check in rows:
        print(
            f"| {name} | {suffix} | {itk_write:.2f} | {ours_write:.2f} | {verify:.2f} | {ours_write / itk_write:.2f}x | "
            f"{itk_read:.2f} | {ours_read:.2f} | {check:.2f} | {ours_read / itk_read:.2f}x |"
        )


if __name__ == "__main__":
    main()
