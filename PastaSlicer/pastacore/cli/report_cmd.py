"""``pasta report``: lesion measurements and a structured report in the registered formats
(:mod:`pastacore.report.formats`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..report.formats import report_formats
    from .argtypes import lesion_numbers, non_negative

    formats = report_formats()
    p = sub.add_parser(
        "report",
        help=f"measure lesions and write a report ({', '.join(f.name for f in formats)})",
        description="Measures every lesion (each connected component of the lesion labels) of SEG on IMAGE and "
        "writes the report into DIR in each format of --formats. "
        "With --cases, runs over several cases into DIR/<case>/ and writes DIR/cohort.csv. "
        "Lesions are listed most confident first with the model's confidence and whether a person edited "
        "them (from the sidecar of pasta segment), pieces under the reporting floor apart; the report names "
        "the model (or says the origin is unknown) and gives the RECIST 1.1 target lesions and their sum "
        "of diameters, or with --baseline the response since an earlier report. "
        "Research use, not for diagnosis.",
    )
    p.add_argument("image", nargs="?", help="CT as NIfTI/NRRD file or DICOM folder")
    p.add_argument("seg", nargs="?", help="label map or .seg.nrrd on the CT's grid")
    p.add_argument(
        "--out-dir",
        required=True,
        help="report folder (refused if it holds an earlier report, unless --overwrite; other files are kept)",
    )
    p.add_argument(
        "--formats", help="comma-separated, from " + "; ".join(f"{f.name}: {f.description}" for f in formats) + " (default: all)"
    )
    p.add_argument(
        "--lesion-label",
        type=int,
        action="append",
        help="label value of the lesions (repeatable; default: the labels named as lesions in a .seg.nrrd "
        "or JSON sidecar, else label 2 by the convention 1 = organ, 2 = lesion)",
    )
    p.add_argument("--organ-mask", help="organ label map (or .seg.nrrd) on the CT's grid, for each lesion's organ")
    p.add_argument("--whole-labels", action="store_true", help="one lesion per label instead of per connected component")
    p.add_argument("--cases", metavar="CSV", help="several cases: a CSV with columns image,seg[,organ_mask][,case_id]")
    floor = p.add_argument_group(
        "reporting floor",
        "lesions under any limit are listed apart, not reported as lesions "
        "(default: the model's reporting_floor in its model.json, else 3 mm and 0.03 mL)",
    )
    floor.add_argument("--min-long-axis-mm", type=non_negative, metavar="MM", help="smallest long axis reported")
    floor.add_argument("--min-volume-ml", type=non_negative, metavar="ML", help="smallest volume reported")
    floor.add_argument(
        "--min-confidence",
        type=non_negative,
        metavar="P",
        help="smallest mean lesion probability (0 to 1) of a lesion the model proposed",
    )
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.set_defaults(func=run)


def _one_case(image_path, seg_path, organ_path, args, case_id=None, progress=None, baseline=None):
    from ..casework.report import report_case

    floor = {
        "min_long_axis_mm": args.min_long_axis_mm,
        "min_volume_ml": args.min_volume_ml,
        "min_confidence": args.min_confidence,
    }
    return report_case(
        image_path,
        seg_path,
        organ_path,
        lesion_labels=args.lesion_label,
        whole_labels=args.whole_labels,
        case_id=case_id,
        progress=progress,
        floor=floor,
        targets=args.targets,
        followup=lambda image: _followup(baseline, args, image),
    )


def _followup(baseline, args, image) -> dict:
    """make_report's follow-up arguments: the baseline report, and the registration when asked."""
    if baseline is None:
        return {}
    out = {"baseline": baseline}
    if args.baseline_image:
        from ..fileio import read_volume
        from ..report.registration import register

        registration = register(read_volume(args.baseline_image), image)
        out.update(to_baseline=registration.to_baseline, registration=registration.describe())
    return out


def _read_cases(path):
    import csv
    from pathlib import Path

    from ..errors import PastaError

    folder = Path(path).resolve().parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise PastaError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error):
        raise PastaError(f"{path} is not a UTF-8 CSV file") from None
    if not rows or not {"image", "seg"} <= set(rows[0]):
        raise PastaError(f"{path} needs a header with at least the columns image,seg")

    def resolve(value):
        return str(folder / value) if value and not Path(value).is_absolute() else value

    return [(resolve(r["image"]), resolve(r["seg"]), resolve(r.get("organ_mask") or ""), r.get("case_id") or None) for r in rows]


def _case_names(cases, csv_path) -> list:
    from ..errors import PastaError
    from ..fileio.readers import image_stem

    names = []
    for image_path, _, _, case_id in cases:
        name = case_id or image_stem(image_path)
        if name in names:
            raise PastaError(f"case {name} appears twice in {csv_path}; give distinct case_id values")
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise PastaError(f"case name {name!r} in {csv_path} cannot be a folder name; give a plain case_id")
        names.append(name)
    return names


def _cohort_files(names) -> tuple:
    """What a cohort run writes: cohort.csv and one report folder per case."""
    import glob

    from ..report.formats import report_files

    return ("cohort.csv",) + tuple(f"{glob.escape(name)}/{pattern}" for name in names for pattern in report_files())


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import PastaError
    from ..fileio.atomic import atomic_directory, check_folder_apart, check_output_dir
    from ..report.export import check_out_dir, parse_formats, write_report
    from ..report.formats import format_names
    from ..report.report_csv import write_cohort_csv
    from .progress import bar

    formats = parse_formats(args.formats or ",".join(format_names()))
    if args.cases:
        if args.image or args.seg:
            raise PastaError("give either IMAGE SEG or --cases, not both")
        cases = _read_cases(args.cases)
        names = _case_names(cases, args.cases)
        owned = _cohort_files(names)
        check_output_dir(args.out_dir, args.overwrite, owned)
        for image_path, seg_path, organ_path, _ in cases:
            _check_inputs(image_path, seg_path, organ_path)
            check_folder_apart(args.out_dir, (image_path, seg_path, organ_path))
        if args.baseline or args.targets:
            raise PastaError("--baseline and --targets apply to one case, not to --cases")
        reports = []
        with atomic_directory(args.out_dir, overwrite=args.overwrite, owned=owned) as temp:
            for (image_path, seg_path, organ_path, _), name in zip(cases, names):
                with bar(f"pasta report {name}") as progress:
                    report, image, labels = _one_case(image_path, seg_path, organ_path, args, name, progress)
                    write_report(report, image, labels, Path(temp) / name, formats)
                reports.append(report)
            write_cohort_csv(reports, Path(temp) / "cohort.csv")
        total = sum(len(r.lesions) for r in reports)
        print(f"wrote {args.out_dir}: {len(reports)} cases, {total} lesions, cohort.csv")
        return 0
    if not (args.image and args.seg):
        raise PastaError("give IMAGE and SEG (or --cases CSV)")
    check_out_dir(args.out_dir, args.overwrite)
    _check_inputs(args.image, args.seg, args.organ_mask, args.baseline_image)
    check_folder_apart(args.out_dir, (args.image, args.seg, args.organ_mask))
    baseline = _baseline(args)
    with bar("pasta report") as progress:
        report, image, labels = _one_case(
            args.image, args.seg, args.organ_mask, args, None, lambda f, m="": progress(0.3 * f, m), baseline
        )
        written = write_report(
            report,
            image,
            labels,
            args.out_dir,
            formats,
            overwrite=args.overwrite,
            progress=lambda f, m="": progress(0.3 + 0.7 * f, m),
            baseline_dir=args.baseline,
        )
    flagged = [m.measurement.index for m in report.lesions if m.measurement.touches_border]
    print(
        f"wrote {args.out_dir}: {len(report.lesions)} lesions, {len(written)} files"
        + (f"; lesion {', '.join(map(str, flagged))} touches the volume border (may be cut)" if flagged else "")
    )
    print(report.lesion_labels["reason"])
    print(report.origin)
    if report.comparison:
        print(f"RECIST 1.1 response: {report.comparison['rule']}")
    elif report.recist.get("targets"):
        print(
            f"RECIST 1.1 target lesions {', '.join(map(str, report.recist['targets']))}: sum of diameters "
            f"{report.recist['sum_of_diameters_mm']:.1f} mm"
        )
    return 0


def _baseline(args):
    """The baseline report (its report.json) of a follow-up, checked before any work."""
    from ..errors import PastaError

    if args.baseline_image and not args.baseline:
        raise PastaError("--baseline-image needs --baseline (the baseline report folder)")
    if args.baseline and args.targets:
        raise PastaError("target lesions are chosen at baseline: --targets cannot go with --baseline")
    if not args.baseline:
        return None
    from pathlib import Path

    from ..report.followup import load_report

    if Path(args.baseline).resolve() == Path(args.out_dir).resolve():
        raise PastaError("the follow-up report needs its own folder: --out-dir is the baseline report's folder")

    return load_report(args.baseline)


def _check_inputs(*paths) -> None:
    """Every input exists before any work (a report folder is no input of its own)."""
    from pathlib import Path

    from ..errors import PastaError

    for path in paths:
        if path and not Path(path).exists():
            raise PastaError(f"{path} does not exist")
