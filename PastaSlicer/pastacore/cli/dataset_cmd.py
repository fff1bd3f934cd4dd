"""``pasta dataset``: a synthetic lesion dataset (PASTA-Gen-30K or nnU-Net raw layout)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_seed_argument

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth-dataset",
        aliases=["dataset"],
        help="write a synthetic lesion dataset from background CTs",
        description="Insert synthetic lesions into background CTs (resampled to PASTA's 1 mm grid) and "
        "write them as PASTA-Gen-30K ({Organ}/{Lesion}/{id}/img.nii.gz, label.nii.gz, "
        "total.nii.gz, type.json) or nnU-Net raw data (imagesTr/, labelsTr/, dataset.json). "
        "Each case has its own seed derived from --seed; DIR/manifest.sqlite records every "
        "case and DIR/cohort.csv (.parquet) lists the lesions; finished cases are skipped, so "
        "an interrupted run resumes. Synthetic images are for research use only.",
    )
    p.add_argument(
        "--backgrounds",
        nargs="+",
        required=True,
        metavar="FILES_OR_DIR",
        help="background CT files, or folders of them (files named *label*, *_seg, *_mask are left out)",
    )
    p.add_argument(
        "--organ-masks",
        nargs="+",
        metavar="FILES_OR_DIR",
        help="organ segmentations matched to the backgrounds by name (same stem, or stem_seg/_total/_organs); "
        "TotalSegmentator v1 maps work. Lung lesions need none",
    )
    p.add_argument("--organ-label", type=int, metavar="N", help="the organ's value in the organ masks")
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of cases")
    p.add_argument("--types", nargs="+", metavar="TYPE", help="lesion types, used in turn (default: all that the masks allow)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--attributes", metavar="TEXT", help="one description for every case (default: varied per case)")
    what.add_argument("--attributes-json", metavar="FILE", help="JSON file of attributes for every case")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; existing cases are kept)")
    p.add_argument("--format", choices=("pasta-gen", "nnunet"), default="pasta-gen", help="dataset layout")
    add_seed_argument(p, "dataset seed (case n uses a seed derived from it and n)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="worker processes: 1 (default) runs in this process; more start a local Dask cluster "
        "(lesiondiffusion: each worker loads the networks; keep 1 per GPU)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask cluster: local, or a running scheduler's address such as tcp://host:8786",
    )
    from .synth_cmd import add_backend_arguments

    add_backend_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ..actions import dataset
    from .shared import run_with_bar, say_now
    from .synth_cmd import synth_options

    options = dataset.dataset_options(
        synth_options(args, check=False),
        count=args.n,
        format=args.format,
        lesion_types=tuple(args.types or ()),
        organ_label=args.organ_label,
        workers=args.workers,
        scheduler=args.scheduler or "",
    )
    options.check()
    started = time.perf_counter()
    inputs = dataset.DatasetInputs(args.backgrounds, args.out, args.organ_masks)
    summary = run_with_bar("dataset", dataset.run, options, inputs, notify=say_now).summary
    minutes = (time.perf_counter() - started) / 60
    rate = summary["written"] / minutes if minutes > 0 else 0.0
    print(
        f"{summary['output']}: {summary['written']} written, "
        f"{summary['skipped']} already there, {len(summary['failed'])} failed ({rate:.1f} cases per minute)"
    )
    from .batch_cmd import FAILED_CASES, report_failures

    report_failures([(f"case {f['index']}", f["error"]) for f in summary["failed"]], f"pasta batch status {summary['output']}")
    return FAILED_CASES if summary["failed"] else 0
