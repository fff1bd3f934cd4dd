"""``pasta demo``: the whole workflow on a real chest CT, with a Slicer scene to open."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the workflow on a real chest CT and write a Slicer scene")
    p.add_argument("--out", default="pasta-demo", help="output folder (default: ./pasta-demo)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier demo in the folder (other files there are kept)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..demo import DEMO_STEPS, demo_files, run_demo
    from ..fileio.atomic import check_output_dir
    from .progress import steps

    check_output_dir(args.out, args.overwrite, demo_files())  # refuse early, before minutes of work
    with steps(DEMO_STEPS, "pasta demo") as advance:
        result = run_demo(args.out, overwrite=args.overwrite, advance=advance)
    f = result.facts
    print(f"PASTA demo on pyradiomics lung2 ({f['original_grid']}) in {f['seconds']} s")
    print(
        f"  standardised to {f['standard_grid']}; reference tumour {f['reference_tumour_ml']:.1f} mL; "
        f"lungs {f['lungs_litres']:.1f} L, body {f['body_litres']:.1f} L"
    )
    if "real_tumour_dice" in f:
        print(
            f"  default model: real tumour {'found' if f['real_tumour_detected'] else 'MISSED'}, "
            f"Dice {f['real_tumour_dice']:.2f} ({f['segment_seconds']} s)"
        )
    else:
        print(f"  segmentation: {f['model']}")
    targets = ", ".join(map(str, f.get("recist_targets") or [])) or "none"
    print(
        f"  report: {f['report_lesions']} lesion(s), most confident first ({f.get('report_below_floor', 0)} piece(s) "
        f"under the reporting floor listed apart); RECIST 1.1 targets {targets}, sum of diameters "
        f"{f.get('recist_sum_of_diameters_mm') or 0:.1f} mm"
    )
    print(f"  {f['report_origin']}")
    print(
        f"  synthesised '{f['synthesis_text']}': {f['synthetic_lesion_ml']:.1f} mL"
        + (
            f", found again: Dice {f['synthetic_lesion_dice']:.2f} of the lesion found there"
            if "synthetic_lesion_dice" in f
            else ""
        )
    )
    for key, path in result.files.items():
        print(f"  {key:<22} {path}")
    print("Open the .mrb in 3D Slicer (File > Add Data) to see everything.")
