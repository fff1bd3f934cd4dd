"""``pasta batch``: segment, report or synthesise a whole cohort on Dask, resumably.

``pasta batch segment|report|synth INPUTS --out DIR`` runs the single-case command's work
for every case (:mod:`pastacore.cohort.works`) and writes its files to ``DIR/<case id>/``,
records each case in ``DIR/manifest.sqlite`` and lists every lesion in ``DIR/cohort.csv`` and
``DIR/cohort.parquet``. Rerunning skips what is done and unchanged. ``pasta batch status
DIR`` summarises the manifest.
"""

from __future__ import annotations

import argparse
import sys

MODES = ("segment", "report", "synth")
FAILED_CASES = 3  # the exit code of a run whose every case ended but some failed (not bad usage, not a bug)


def report_failures(failures: list, more: str) -> None:
    """Each failed case with its reason on stderr (the first 20; ``more`` says where the rest are)."""
    for case, reason in failures[:20]:
        print(f"failed: {case}: {reason}", file=sys.stderr)
    if len(failures) > 20:
        print(f"failed: ... and {len(failures) - 20} more: {more}", file=sys.stderr)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="segment, report or synthesise a cohort (resumable, on Dask)",
        description="Run pasta segment, report or synth over a cohort: INPUTS is a folder of CTs "
        "(files or DICOM series folders), a glob, image files, or a CSV with one case per "
        "row (columns image, case_id, organ_mask, organ_label, seg, box, box_ijk, "
        "attributes, lesion_type, seed). Each case's files go to DIR/<case id>/; "
        "DIR/manifest.sqlite records every case and DIR/cohort.csv (.parquet) lists every "
        "lesion. A rerun skips cases whose inputs, model and parameters are unchanged; "
        "an interrupted run resumes. Research use only.",
    )
    modes = p.add_subparsers(dest="mode", metavar="MODE", parser_class=type(p))
    from .report_cmd import add_report_arguments
    from .segment_cmd import add_segment_arguments
    from .shared import add_seed_argument
    from .synth_cmd import add_backend_arguments

    segment = modes.add_parser(
        "segment",
        help="segment each CT and measure its lesions",
        description="pasta segment for every case, and pasta report on its lesions. A case's organ_mask "
        "column is its organ mask (with organ_label), its box column wins over --roi. With cuda, one "
        "worker per GPU.",
    )
    _add_common(segment)
    add_segment_arguments(segment)
    add_report_arguments(segment, default_formats="json")
    segment.set_defaults(func=run)
    report = modes.add_parser("report", help="measure and report each case's lesions (CSV with image,seg)")
    _add_common(report)
    add_report_arguments(report, default_formats="json")
    report.set_defaults(func=run)
    synth = modes.add_parser("synth", help="insert a synthetic lesion into each CT")
    _add_common(synth)
    what = synth.add_mutually_exclusive_group()
    what.add_argument("--attributes", metavar="TEXT", help="description for cases without their own attributes")
    what.add_argument("--attributes-json", metavar="FILE", help="JSON attributes for cases without their own")
    synth.add_argument("--lesion-type", metavar="TYPE", help="lesion type for cases without their own")
    add_seed_argument(synth, "cohort seed: a case's seed derives from it and its case id (a seed column wins)")
    add_backend_arguments(synth)
    synth.set_defaults(func=run)
    status = modes.add_parser("status", help="summarise a cohort folder's manifest")
    status.add_argument("folder", metavar="DIR", help="the --out folder of a pasta batch or pasta dataset run")
    status.add_argument("--json", action="store_true", help="print JSON (counts, and each case's status and reason)")
    status.set_defaults(func=run_status)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser):
    parser.print_help(sys.stderr)
    return 2


def workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, got {value}")
    return value


def _add_common(p):
    p.add_argument("inputs", nargs="+", metavar="INPUTS", help="a folder, a glob, image files, or a CSV of cases")
    p.add_argument("--out", required=True, metavar="DIR", help="cohort folder (created; a rerun resumes in it)")
    p.add_argument(
        "--scheduler",
        default="local",
        help="local (default: a Dask LocalCluster sized to this machine), inline (this process, no Dask) "
        "or a running scheduler's address, e.g. tcp://host:8786",
    )
    p.add_argument(
        "--workers",
        type=workers,
        metavar="K",
        help="local cluster: K worker processes (default: from the cores, memory and GPUs)",
    )


# -- running a cohort ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import time

    from ..cohort.engine import run_cohort
    from ..cohort.table import CSV_NAME
    from ..fileio.atomic import check_folder_apart, check_output_dir
    from ..fileio.cases import read_inputs
    from .progress import bar
    from .shared import say_now

    rows, ignored = read_inputs(args.inputs, need_seg=args.mode == "report")
    check_output_dir(args.out, overwrite=True)
    check_folder_apart(args.out, list(args.inputs) + [p for r in rows for p in (r.image, r.organ_mask, r.seg)])
    if args.scheduler not in ("inline", "local") and "://" not in args.scheduler:
        from ..errors import PastaError

        raise PastaError(
            f"--scheduler takes local, inline or a scheduler address such as tcp://host:8786, got {args.scheduler!r}"
        )
    if args.scheduler != "inline":
        from ..cohort.cluster import require_dask

        require_dask()
    work, cases = _WORKS[args.mode](args, rows)
    if ignored:
        print(f"note: columns ignored: {', '.join(ignored)}", flush=True)
    started = time.perf_counter()
    with bar(f"pasta batch {args.mode}") as progress:
        summary = run_cohort(
            work,
            cases,
            args.out,
            scheduler=args.scheduler,
            workers=args.workers,
            device=getattr(args, "device", "auto") if args.mode == "segment" else "auto",
            progress=progress,
            notify=say_now,
        )
    minutes = (time.perf_counter() - started) / 60
    rate = summary["done"] / minutes if minutes > 0 else 0.0
    failed = summary["failed"]
    print(
        f"{args.out}: {summary['done']} done, {summary['skipped']} skipped (done earlier, unchanged), "
        f"{len(failed)} failed ({rate:.1f} cases per minute); every lesion in {CSV_NAME}"
    )
    report_failures([(f["case_id"], f["error"]) for f in failed], f"pasta batch status {args.out}")
    return FAILED_CASES if failed else 0


def _absolute(path):
    from pathlib import Path

    return str(Path(path).resolve()) if path else None


def _inputs(row, *roles) -> dict:
    return {role: _absolute(getattr(row, role)) for role in roles if getattr(row, role)}


def _segment_cases(args, rows):
    from dataclasses import replace
    from pathlib import Path

    from ..actions.batch import SegmentWork
    from ..cohort.engine import Case
    from ..deps import torch_device_info
    from .report_cmd import report_options
    from .segment_cmd import segment_options

    options = segment_options(args)
    torch_device_info(options.device)  # an unknown or missing device: say so before any work
    if options.model and Path(options.model).exists():  # a path: the workers may start elsewhere
        options = replace(options, model=_absolute(options.model))
    if options.model_config:
        options = replace(options, model_config=_absolute(options.model_config))
    work = SegmentWork(options, report_options(args))
    cases = [
        Case(r.case_id, _inputs(r, "image", "organ_mask"), {"organ_label": r.organ_label, "box": r.box}, n)
        for n, r in enumerate(rows)
    ]
    return work, cases


def _report_cases(args, rows):
    from ..actions.batch import ReportWork
    from ..cohort.engine import Case
    from .report_cmd import report_options

    work = ReportWork(report_options(args))
    return work, [Case(r.case_id, _inputs(r, "image", "seg", "organ_mask"), {}, n) for n, r in enumerate(rows)]


def _synth_cases(args, rows):
    from ..actions import synth
    from ..actions.batch import SynthWork, case_seed
    from ..cohort.engine import Case
    from ..errors import PastaError
    from ..synthesis.engine import read_attributes
    from .synth_cmd import synth_options

    options = synth_options(args, check=False)
    synth.backend(options)  # unavailable or too slow: say so before any work
    if options.lesion_type or options.attributes:  # what the command line says for every case: checked first
        read_attributes(options.attributes or None, options.lesion_type or None)
    cases = []
    for n, r in enumerate(rows):
        case_attributes = r.attributes if r.attributes is not None else options.attributes or None
        lesion_type = r.lesion_type or options.lesion_type or None
        if case_attributes is None and lesion_type is None:
            raise PastaError(
                f"case {r.case_id} has neither attributes nor a lesion type: give --attributes or "
                "--lesion-type, or those columns in the CSV"
            )
        try:
            read_attributes(case_attributes, lesion_type)  # a contradiction or an unknown type: known before any work
            problem = None
        except PastaError as exc:  # ... and it fails this case alone, as a bad box does
            problem = str(exc)
        params = {
            "seed": r.seed if r.seed is not None else case_seed(options.seed, r.case_id),
            "attributes": case_attributes,
            "lesion_type": lesion_type,
            "box": r.box,
            "box_ijk": r.box_ijk,
            "organ_label": r.organ_label,
        }
        if problem:
            params["problem"] = problem
        cases.append(Case(r.case_id, _inputs(r, "image", "organ_mask", "seg"), params, n))
    return SynthWork(options), cases


_WORKS = {"segment": _segment_cases, "report": _report_cases, "synth": _synth_cases}


# -- status ----------------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    import json

    from ..cohort.status import cohort_status, describe_status

    status = cohort_status(args.folder)
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print(describe_status(status))
    return 0
