"""``pasta compare``: RECIST 1.1 response between two reports (baseline and follow-up)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="RECIST 1.1 response between a baseline and a follow-up report",
        description="Pairs the lesions of two report folders (written by 'pasta report'), gives each target lesion's "
        "change, the change of the sum of diameters, new lesions and the response (CR, PR, SD, PD) with "
        "the rule that decided it. With both CTs, the follow-up CT is registered to the baseline CT "
        "(SimpleITK, rigid then affine) before pairing; otherwise the scans are taken as aligned. "
        "Research use, not for diagnosis.",
    )
    p.add_argument("baseline", help="baseline report folder (or its report.json)")
    p.add_argument("followup", help="follow-up report folder (or its report.json)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--baseline-image", metavar="CT", help="the baseline CT (with --followup-image: register them)")
    p.add_argument("--followup-image", metavar="CT", help="the follow-up CT")
    p.add_argument(
        "--nadir-mm",
        type=float,
        metavar="MM",
        help="the smallest sum of diameters so far, when an earlier follow-up was smaller than the baseline",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import PastaError
    from ..report.followup import compare, comparison_lines, load_report

    if bool(args.baseline_image) != bool(args.followup_image):
        raise PastaError("give both --baseline-image and --followup-image to register the scans, or neither")
    if args.nadir_mm is not None and not args.nadir_mm >= 0:
        raise PastaError(f"--nadir-mm must be a number of mm >= 0, got {args.nadir_mm}")
    baseline, followup = load_report(args.baseline), load_report(args.followup)
    to_baseline, how = None, ""
    if args.baseline_image:
        from ..fileio import read_volume
        from ..report.registration import register

        registration = register(read_volume(args.baseline_image), read_volume(args.followup_image))
        to_baseline, how = registration.to_baseline, registration.describe()
    comparison = compare(baseline, followup, to_baseline, how, args.nadir_mm)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print("\n".join(comparison_lines(comparison)))
    return 0
