"""``pasta report``: lesion measurements and a structured report in the registered formats
(:mod:`pastacore.report.formats`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .remote import add_server_arguments
from .shared import add_ct_argument, add_overwrite_argument, add_whole_labels_argument, options_from_args, run_with_bar

if TYPE_CHECKING:
    import argparse

    from ..actions.report import ReportOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..report.formats import report_formats
    from .argtypes import lesion_numbers

    p = sub.add_parser(
        "report",
        help=f"measure lesions and write a report ({', '.join(f.name for f in report_formats())})",
        description="Measures every lesion (each connected component of the lesion labels) of SEG on IMAGE and "
        "writes the report into DIR in each format of --formats. "
        "With --cases, runs over several cases into DIR/<case>/ and writes DIR/cohort.csv. "
        "Lesions are listed most confident first with the model's confidence and whether a person edited "
        "them (from the sidecar of pasta segment), pieces under the reporting floor apart; the report names "
        "the model (or says the origin is unknown) and gives the RECIST 1.1 target lesions and their sum "
        "of diameters, or with --baseline the response since an earlier report. "
        "Research use, not for diagnosis.",
    )
    add_ct_argument(p, optional=True)
    p.add_argument("seg", nargs="?", help="label map or .seg.nrrd on the CT's grid")
    p.add_argument(
        "--out-dir",
        required=True,
        help="report folder (refused if it holds an earlier report, unless --overwrite; other files are kept)",
    )
    p.add_argument("--organ-mask", help="organ label map (or .seg.nrrd) on the CT's grid, for each lesion's organ")
    p.add_argument("--cases", metavar="CSV", help="several cases: a CSV with columns image,seg[,organ_mask][,case_id]")
    add_report_arguments(p, default_formats="all")
    recist = p.add_argument_group("RECIST 1.1")
    recist.add_argument(
        "--targets",
        type=lesion_numbers,
        metavar="N,N",
        help="the target lesions (lesion numbers of this report; default: the largest measurable, 2 per organ, 5 in all)",
    )
    recist.add_argument(
        "--baseline", metavar="DIR", help="an earlier report folder: this report is the follow-up, with the response"
    )
    recist.add_argument(
        "--baseline-image",
        metavar="CT",
        help="the baseline CT: register IMAGE to it (SimpleITK rigid then affine) before pairing the "
        "lesions (default: the scans are taken as aligned)",
    )
    recist.add_argument(
        "--force",
        action="store_true",
        help="use a baseline report of another patient, or dated after this scan (the report says so)",
    )
    add_overwrite_argument(p, "replace an existing report folder")
    add_server_arguments(p)
    p.set_defaults(func=run)


# The limits of the reporting floor (ReportOptions' min_*): each a number >= 0 or, left out, the model's.
FLOOR_LIMITS = (
    ("--min-long-axis-mm", "MM", "smallest long axis reported"),
    ("--min-volume-ml", "ML", "smallest volume reported"),
    ("--min-confidence", "P", "smallest mean lesion probability (0 to 1) of a lesion the model proposed"),
)


def add_report_arguments(p: argparse.ArgumentParser, default_formats: str) -> None:
    """The options of a report (:class:`~pastacore.actions.report.ReportOptions`) that ``pasta
    report`` and ``pasta batch report|segment`` share, worded once."""
    from ..report.formats import report_formats
    from .argtypes import non_negative

    p.add_argument(
        "--formats",
        default=None if default_formats == "all" else default_formats,
        help="comma-separated, from "
        + "; ".join(f"{f.name}: {f.description}" for f in report_formats())
        + f" (default: {default_formats})",
    )
    p.add_argument(
        "--lesion-label",
        type=int,
        action="append",
        help="label value of the lesions (repeatable; default: the labels named as lesions in a .seg.nrrd "
        "or JSON sidecar, else label 2 by the convention 1 = organ, 2 = lesion)",
    )
    add_whole_labels_argument(p)
    p.add_argument(
        "--allow-organ-lesions",
        action="store_true",
        help="measure a --lesion-label that the segmentation names as an organ (refused otherwise)",
    )
    floor = p.add_argument_group(
        "reporting floor",
        "lesions under any limit are listed apart, not reported as lesions "
        "(default: the model's reporting_floor in its model.json, else 3 mm and 0.03 mL)",
    )
    for flag, metavar, text in FLOOR_LIMITS:
        floor.add_argument(flag, type=non_negative, metavar=metavar, help=text)


def report_options(args: argparse.Namespace) -> ReportOptions:
    """The ReportOptions of parsed arguments (checked)."""
    from ..actions.report import ReportOptions

    options = options_from_args(
        ReportOptions,
        args,
        formats=tuple(f.strip() for f in args.formats.split(",")) if args.formats is not None else (),
        lesion_labels=tuple(args.lesion_label) if args.lesion_label else None,
        targets=tuple(args.targets) if getattr(args, "targets", None) else None,
    )
    options.check()
    options.format_names()
    return options


def _cohort_files(names) -> tuple:
    """What a cohort run writes: cohort.csv and one report folder per case."""
    import glob

    from ..report.formats import report_files

    return ("cohort.csv",) + tuple(f"{glob.escape(name)}/{pattern}" for name in names for pattern in report_files())


def run(args: argparse.Namespace) -> int:
    from ..errors import PastaError
    from .remote import server_of

    options = report_options(args)
    if server_of(args) is not None and args.cases:
        raise PastaError("--cases runs on this computer; a cohort on a cluster is 'pasta batch report --scheduler'")
    if args.cases:
        return _run_cases(args, options)
    if not (args.image and args.seg):
        raise PastaError("give IMAGE and SEG (or --cases CSV)")
    if args.baseline_image and not args.baseline:
        raise PastaError("--baseline-image needs --baseline (the baseline report folder)")
    return _run_one(args, options)


def _run_one(args, options) -> int:
    from pathlib import Path

    from ..actions import report
    from ..errors import PastaError
    from ..fileio.atomic import check_folder_apart
    from ..report.export import check_out_dir
    from .progress import bar
    from .remote import server_of

    check_out_dir(args.out_dir, args.overwrite)
    _check_inputs(args.image, args.seg, args.organ_mask, args.baseline_image)
    check_folder_apart(args.out_dir, (args.image, args.seg, args.organ_mask))
    if args.baseline and Path(args.baseline).resolve() == Path(args.out_dir).resolve():
        raise PastaError("the follow-up report needs its own folder: --out-dir is the baseline report's folder")
    server = server_of(args)
    if server is not None:
        return _run_on_server(args, options, server)
    report.load_baseline(options)  # a damaged baseline report: before any work
    inputs = report.ReportInputs(args.image, args.seg, args.organ_mask, args.baseline_image)
    with bar("pasta report") as progress:
        case = report.run(options, inputs, lambda f, m="": progress(0.3 * f, m))
        written = report.write(case, options, args.out_dir, args.overwrite, lambda f, m="": progress(0.3 + 0.7 * f, m))
    _say(args.out_dir, case.to_dict(), written)
    return 0


def _run_on_server(args, options, server) -> int:
    """``pasta report --server URL``: the files read here (with the segmentation's sidecar), the report
    measured and written on the server, its files moved into DIR here."""
    from ..actions import report
    from .remote import connect, run_on_server

    client = connect(server, "report", options)
    inputs = report.portable_inputs(report.ReportInputs(args.image, args.seg, args.organ_mask, args.baseline_image))
    output = {"out_dir": str(args.out_dir), "overwrite": bool(args.overwrite)}
    result, _ = run_with_bar("pasta report", run_on_server, client, "report", options, inputs, output=output)
    _say(args.out_dir, result, result["written"])
    return 0


def _say(out_dir, result: dict, written: list) -> None:
    """What a report run prints (``result``: the report action's result as JSON)."""
    flagged = result.get("touching_border") or []
    print(
        f"wrote {out_dir}: {result['lesions']} lesions, {len(written)} files"
        + (f"; lesion {', '.join(map(str, flagged))} touches the volume border (may be cut)" if flagged else "")
    )
    print(result["lesion_labels"]["reason"])
    print(result["origin"])
    recist = result.get("recist") or {}
    if result.get("comparison"):
        print(f"RECIST 1.1 response: {result['comparison']['rule']}")
    elif recist.get("targets"):
        print(
            f"RECIST 1.1 target lesions {', '.join(map(str, recist['targets']))}: sum of diameters "
            f"{recist['sum_of_diameters_mm']:.1f} mm"
        )


def _run_cases(args, options) -> int:
    from pathlib import Path

    from ..actions import report
    from ..errors import PastaError
    from ..fileio.atomic import atomic_directory, check_folder_apart, check_output_dir
    from ..fileio.cases import read_inputs
    from ..report.report_csv import write_cohort_csv
    from .progress import bar

    if args.image or args.seg:
        raise PastaError("give either IMAGE SEG or --cases, not both")
    if args.baseline or args.targets:
        raise PastaError("--baseline and --targets apply to one case, not to --cases")
    rows, _ = read_inputs(args.cases, need_seg=True)
    owned = _cohort_files([r.case_id for r in rows])
    check_output_dir(args.out_dir, args.overwrite, owned)
    for row in rows:
        _check_inputs(row.image, row.seg, row.organ_mask)
        check_folder_apart(args.out_dir, (row.image, row.seg, row.organ_mask))
    reports = []
    with atomic_directory(args.out_dir, overwrite=args.overwrite, owned=owned) as temp:
        for row in rows:
            inputs = report.ReportInputs(row.image, row.seg, row.organ_mask, case_id=row.case_id)
            with bar(f"pasta report {row.case_id}") as progress:
                case = report.run(options, inputs, progress)
                report.write(case, options, Path(temp) / row.case_id)
            reports.append(case.report)
        write_cohort_csv(reports, Path(temp) / "cohort.csv")
    total = sum(len(r.lesions) for r in reports)
    print(f"wrote {args.out_dir}: {len(reports)} cases, {total} lesions, cohort.csv")
    return 0


def _check_inputs(*paths) -> None:
    """Every input exists before any work (a report folder is no input of its own)."""
    from pathlib import Path

    from ..errors import PastaError

    for path in paths:
        if path and not Path(path).exists():
            raise PastaError(f"{path} does not exist")
