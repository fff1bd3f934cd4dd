"""``pasta train-head``: a few-shot classifier on PASTA features, with cross-validated metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .argtypes import seed

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
    p.add_argument("--out", required=True, metavar="HEAD.pt", help="output head file (metrics go to the .json beside it)")
    p.add_argument("--column", help="label column of LABELS.csv (default: 'label' or the only other column)")
    p.add_argument(
        "--kind",
        choices=("linear", "mlp"),
        default="linear",
        help="linear: L2 logistic regression (default); mlp: PASTA's 512-256 head",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--l2", type=float, default=1.0, help="L2 regularisation strength (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


HEAD_SUFFIXES = (".pt", ".pth")


def metrics_path(out: Path) -> Path:
    from pathlib import Path

    out = Path(out)
    return out.with_suffix(".json") if out.suffix else out.with_name(out.name + ".json")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..classify.csvio import format_metric, match_labels, read_features_csv, read_labels_csv
    from ..classify.fewshot import cross_validate, encode_labels, fit_head
    from ..classify.heads import save_head
    from ..errors import PastaError
    from ..fileio.atomic import atomic_outputs, check_outputs

    if args.l2 <= 0:
        raise PastaError("--l2 must be positive")
    report_path = metrics_path(args.out)
    check_outputs([(args.out, HEAD_SUFFIXES), report_path], inputs=(*args.features, args.labels), overwrite=args.overwrite)
    ids, features = read_features_csv(args.features)
    column, labels = read_labels_csv(args.labels, args.column)
    ids, features, values, unlabelled = match_labels(ids, features, labels)
    classes, codes = encode_labels(values)
    result = cross_validate(features, codes, classes, args.folds, args.seed, args.kind, args.l2)
    head = fit_head(features, codes, classes, args.kind, args.l2, args.seed, group_name=column, name=report_path.stem)
    result.update(
        {
            "classes": classes,
            "label_column": column,
            "feature_dim": int(features.shape[1]),
            "unlabelled_rows": len(unlabelled),
            "head_file": Path(args.out).name,
        }
    )
    meta = {
        "task": column,
        "training": {k: result[k] for k in ("n_cases", "class_counts", "folds", "seed", "l2")},
        "cv_accuracy": result["accuracy"],
        "cv_auc": result["auc"],
    }
    with atomic_outputs(args.out, report_path, overwrite=args.overwrite) as (head_temp, json_temp):
        save_head(head, head_temp, meta)
        json_temp.write_text(json.dumps(_no_nan(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if result["note"]:
        print(f"note: {result['note']}")
    if unlabelled:
        print(f"note: {len(unlabelled)} feature row(s) without a label were not used")
    counts = ", ".join(f"{c}: {n}" for c, n in result["class_counts"].items())
    print(f"{result['n_cases']} cases ({counts}); {result['folds']}-fold cross-validation, {args.kind} head")
    print(f"accuracy {format_metric(result['accuracy'])}")
    print(f"AUC      {format_metric(result['auc'])}  ({result['auc_definition']})")
    print(f"wrote {args.out} and {report_path}")
    return 0


def _no_nan(value):
    """JSON has no NaN: an undefined metric (e.g. AUC of a one-class fold) becomes null."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value
