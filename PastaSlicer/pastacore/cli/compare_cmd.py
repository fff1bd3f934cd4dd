"""``pasta compare``: RECIST 1.1 response between two reports (baseline and follow-up)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_json_argument

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
    add_json_argument(p, "the comparison")
    p.add_argument("--baseline-image", metavar="CT", help="the baseline CT (with --followup-image: register them)")
    p.add_argument("--followup-image", metavar="CT", help="the follow-up CT")
    p.add_argument(
        "--nadir-mm",
        type=float,
        metavar="MM",
        help="the smallest sum of diameters so far, when an earlier follow-up was smaller than the baseline",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="compare reports of different patients, or a follow-up dated before its baseline (the output says so)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..actions import compare
    from ..report.followup import comparison_lines
    from .shared import options_from_args

    options = options_from_args(compare.CompareOptions, args)
    options.check()
    inputs = compare.CompareInputs(args.baseline, args.followup, args.baseline_image, args.followup_image)
    comparison = compare.run(options, inputs).comparison
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print("\n".join(comparison_lines(comparison)))
    return 0
