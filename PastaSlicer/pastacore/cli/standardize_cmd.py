"""``pasta standardize``: resample to PASTA's 1 mm canonical grid, or map a result back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_overwrite_argument

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "standardize",
        help="resample a CT or label map to PASTA's 1 mm LPS grid (or back)",
        description="Resample to 1 mm isotropic voxels in PASTA's canonical orientation "
        "(ITK identity direction: i->left, j->posterior, k->superior). "
        "Linear interpolation for images, nearest neighbour for labels (--label).",
    )
    p.add_argument("input", help="NIfTI/NRRD file or DICOM folder")
    p.add_argument("output", help="output .nii.gz/.nii/.nrrd")
    p.add_argument("--label", action="store_true", help="the input is a label map (nearest-neighbour, integer output)")
    p.add_argument("--onto", metavar="ORIGINAL", help="instead map INPUT (on the standard grid) back onto ORIGINAL's grid")
    p.add_argument("--spacing", type=float, default=1.0, help="target spacing in mm (PASTA: 1.0)")
    p.add_argument("--volume-index", type=int, help="which volume of a 4D input to use")
    p.add_argument("--series", help="SeriesInstanceUID to read from a DICOM folder holding several series")
    add_overwrite_argument(p, "replace OUTPUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..fileio import read_volume, write_volume
    from ..fileio.atomic import check_outputs
    from ..fileio.writers import volume_output
    from ..geometry.resample import resample
    from ..geometry.standardize import standard_grid, standardize

    check_outputs([volume_output(args.output)], inputs=(args.input, args.onto), overwrite=args.overwrite)
    volume = read_volume(args.input, is_label=args.label, volume_index=args.volume_index, series_uid=args.series)
    if args.onto:
        original = read_volume(args.onto)
        expected = standard_grid(original.grid, args.spacing)
        if not expected.same_as(volume.grid, tol=1e-3):
            from ..errors import PastaError

            raise PastaError(f"{args.input} is not on the standard grid of {args.onto} ({expected.describe()})")
        result = resample(volume, original.grid)
    else:
        result = standardize(volume, is_label=args.label, spacing=args.spacing).volume
    write_volume(result, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output}: {result.grid.describe()}")
