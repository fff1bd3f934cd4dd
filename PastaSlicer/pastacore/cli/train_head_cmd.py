"""``pasta train-head``: a few-shot classifier on PASTA features, with cross-validated metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_overwrite_argument, add_seed_argument

if TYPE_CHECKING:
    import argparse
    from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-classifier",
        aliases=["train-head"],
        help="train a classifier head on PASTA features (cross-validated)",
        description="Trains a head (logistic regression, or PASTA's MLP head shape) on the rows of FEATURES.csv that "
        "have a label in LABELS.csv (columns id,label), reports accuracy and ROC AUC as mean +- SD over "
        "stratified k-fold cross-validation, then trains on all cases and writes HEAD.pt (a weights-only "
        "state dict with classes, feature size and feature normalisation) and HEAD.json (the metrics).",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser, source: str = "'pasta features'") -> None:
    """The arguments of a head training (shared with ``pasta patches train-head``)."""
    p.add_argument("features", nargs="+", metavar="FEATURES.csv", help=f"one or more files written by {source}")
    p.add_argument("labels", metavar="LABELS.csv", help="CSV with an id column and a label column")
    add_head_output_argument(p)
    p.add_argument("--column", help="label column of LABELS.csv (default: 'label' or the only other column)")
    p.add_argument(
        "--kind",
        choices=("linear", "mlp"),
        default="linear",
        help="linear: L2 logistic regression (default); mlp: PASTA's 512-256 head",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    add_seed_argument(p, "seed of the fold assignment (default 0)")
    p.add_argument("--l2", type=float, default=1.0, help="L2 regularisation strength (default 1)")
    add_overwrite_argument(p)


def add_head_output_argument(p: argparse.ArgumentParser) -> None:
    """``--out HEAD.pt``: a trained head, its metrics in HEAD.json beside it (:func:`check_head_outputs`)."""
    p.add_argument("--out", required=True, metavar="HEAD.pt", help="output head file (metrics go to the .json beside it)")


def check_head_outputs(args: argparse.Namespace, inputs: tuple) -> Path:
    """Refuse ``--out`` and its metrics file before any work (an input among them, one there without
    ``--overwrite``); returns the metrics file's path."""
    from ..classify.headfile import HEAD_SUFFIXES, metrics_path
    from ..fileio.atomic import check_outputs

    report_path = metrics_path(args.out)
    check_outputs([(args.out, HEAD_SUFFIXES), report_path], inputs=inputs, overwrite=args.overwrite)
    return report_path


def run(args: argparse.Namespace) -> int:
    from ..classify.csvio import format_metric, read_features_csv, read_labels_csv
    from ..classify.headfile import train_head, write_head
    from ..errors import PastaError

    if args.l2 <= 0:
        raise PastaError("--l2 must be positive")
    report_path = check_head_outputs(args, (*args.features, args.labels))
    ids, features = read_features_csv(args.features)
    column, labels = read_labels_csv(args.labels, args.column)
    trained = train_head(ids, features, labels, column, args.out, args.kind, args.folds, args.seed, args.l2)
    write_head(trained, args.out, args.overwrite)
    result = trained.result
    if result["note"]:
        print(f"note: {result['note']}")
    if trained.unlabelled:
        print(f"note: {len(trained.unlabelled)} feature row(s) without a label were not used")
    counts = ", ".join(f"{c}: {n}" for c, n in result["class_counts"].items())
    print(f"{result['n_cases']} cases ({counts}); {result['folds']}-fold cross-validation, {args.kind} head")
    print(f"accuracy {format_metric(result['accuracy'])}")
    print(f"AUC      {format_metric(result['auc'])}  ({result['auc_definition']})")
    print(f"wrote {args.out} and {report_path}")
    return 0
