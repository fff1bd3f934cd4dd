"""``pasta finetune``: fine-tune a model on the user's own labelled cases (few-shot)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_overwrite_argument, add_precision_arguments, add_resume_arguments, add_seed_argument

if TYPE_CHECKING:
    import argparse

    from ..actions.finetune import FinetuneOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a segmentation model on your own labelled cases",
        description="Starts from the built-in model, an installed model, a model folder, a PASTA "
        "checkpoint or an nnU-Net result folder, and writes a model folder that works as "
        "--model and imports with 'pasta models import'. Label maps: 1 = organ, 2 = lesion "
        "(PASTA-Gen) unless --lesion-label/--organ-label or .seg.nrrd segment names say "
        "otherwise. Recipe of PASTA's few-shot trainer: SGD (Nesterov) lr 1e-3 with poly "
        "decay, Dice + cross-entropy with deep supervision, 2000 steps.",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--model",
        help="start model: installed name, weight file, model folder or nnU-Net result folder (default: the built-in model)",
    )
    start.add_argument(
        "--start",
        metavar="CKPT_OR_DIR",
        help="start from a PyMIC / MIS-FM network: a PyMIC checkpoint (with --start-config), a 'pasta pretrain' "
        "folder, or a model folder fine-tuned from one; tensors load by PyMIC's rule (same name and shape), "
        "the class-dependent output convolutions start anew",
    )
    p.add_argument(
        "--start-config",
        metavar="CFG.json",
        help='the --start checkpoint\'s network: {"family": "pymic", "net_type": "FMUNet"|"PCTNet", ...PyMIC [network] parameters}',
    )
    p.add_argument("--images", nargs="+", default=[], metavar="IMG", help="training CTs (NIfTI, NRRD or DICOM folders)")
    p.add_argument("--labels", nargs="+", default=[], metavar="LAB", help="their label maps, in the same order")
    p.add_argument(
        "--cases",
        metavar="CSV",
        help="a CSV with columns image,seg[,split] (label is read as seg; split: train or val; "
        "paths relative to the CSV) instead of --images/--labels",
    )
    p.add_argument("--val-images", nargs="+", default=[], metavar="IMG", help="held-out CTs scored before and after")
    p.add_argument("--val-labels", nargs="+", default=[], metavar="LAB", help="their label maps")
    p.add_argument("--folds", type=int, default=0, help="k-fold cross-validation over the training cases (default: none)")
    p.add_argument("--out", required=True, help="output model folder (also holds the checkpoint while training)")
    p.add_argument("--name", help="the model's name (default: the output folder's name)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps (default 2000, PASTA's few-shot trainer)")
    length.add_argument("--epochs", type=int, help="nnU-Net epochs of 250 steps each")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3 for SGD, 3e-4 for AdamW)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument(
        "--patch",
        help="training patch size N or N,N,N (default: the model's own; segmentation keeps "
        "the model's own, so a smaller one saves time and memory)",
    )
    p.add_argument("--no-deep-supervision", action="store_true", help="loss on the full-resolution output only")
    p.add_argument("--freeze-encoder-steps", type=int, default=0, help="keep the encoder fixed for the first N steps")
    p.add_argument(
        "--synthetic-fraction",
        type=float,
        default=0.0,
        help="share of patches with a synthetic lesion pasted into the cases' organ (default 0)",
    )
    p.add_argument("--synthetic-lesions", type=int, default=20, help="synthetic lesions made per case (default 20)")
    p.add_argument("--lesion-label", help="value(s) of the lesions in the label maps, e.g. 1 or 2,3")
    p.add_argument("--organ-label", help="value(s) of the organ in the label maps")
    p.add_argument(
        "--organ-source",
        choices=("auto", "labels", "classical", "model", "none"),
        default="auto",
        help="where the organ target comes from when the label maps lack it (default auto: the labels, "
        "else the classical mask of the model's organ, else the start model's own prediction)",
    )
    p.add_argument("--organ", help="the organ of a start checkpoint that names none (e.g. lung, liver)")
    add_precision_arguments(p)
    add_seed_argument(p)
    add_resume_arguments(p, checkpoint_every=50, folder="--out")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep --out/checkpoint after a finished run")
    add_overwrite_argument(p, "replace the files of an earlier model (and an unfinished run's checkpoint) in --out")
    p.set_defaults(func=run)


def _values(text, option):
    from ..errors import PastaError

    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise PastaError(f"{option} takes positive label values separated by commas, got {text!r}")
    return values


def _cases(args) -> tuple:
    """``(training cases, held-out cases)`` from --images/--labels or --cases, and --val-*."""
    from ..actions.finetune import FinetuneCase
    from ..errors import PastaError

    if args.cases and (args.images or args.labels):
        raise PastaError("give the cases either with --cases CSV or with --images/--labels, not both")
    if args.cases:
        from ..fileio.cases import read_inputs

        rows, _ = read_inputs(args.cases, need_seg=True, unique_ids=False)
        train = [FinetuneCase(r.image, r.seg) for r in rows if r.split == "train"]
        val = [FinetuneCase(r.image, r.seg) for r in rows if r.split == "val"]
    else:
        if len(args.images) != len(args.labels):
            raise PastaError(
                f"--images has {len(args.images)} file(s) and --labels {len(args.labels)}; give one label "
                "map per image, in the same order"
            )
        train, val = [FinetuneCase(i, b) for i, b in zip(args.images, args.labels)], []
    if len(args.val_images) != len(args.val_labels):
        raise PastaError(f"--val-images has {len(args.val_images)} file(s) and --val-labels {len(args.val_labels)}")
    val += [FinetuneCase(i, b) for i, b in zip(args.val_images, args.val_labels)]
    if not train:
        raise PastaError("give at least one labelled case (--images IMG --labels LAB, or --cases CSV)")
    return train, val


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    """The FinetuneOptions of parsed arguments (checked)."""
    from ..actions.finetune import FinetuneOptions
    from .shared import options_from_args, patch_size

    options = options_from_args(
        FinetuneOptions,
        args,
        learning_rate=args.lr,
        patch=patch_size(args.patch, "N,N,N"),
        deep_supervision=not args.no_deep_supervision,
        lesion_labels=_values(args.lesion_label, "--lesion-label"),
        organ_labels=_values(args.organ_label, "--organ-label"),
        amp=not args.no_amp,
    )
    options.settings()
    return options


def run(args: argparse.Namespace) -> None:
    from ..actions import finetune
    from .shared import run_training

    options = finetune_options(args)
    train, val = _cases(args)
    inputs = finetune.FinetuneInputs(train, args.out, val, args.resume, args.overwrite, args.keep_checkpoint)
    made = run_training(finetune, options, inputs, "pasta finetune")
    for row in made.result.validation:
        before, after = row["before"], row["after"]
        print(
            f"{row['case']}{' (' + row['fold'] + ')' if row.get('fold') else ''}: Dice "
            f"{_score(before)} -> {_score(after)}, lesions found {_found(before)} -> {_found(after)}, "
            f"false positives {_false(before)} -> {_false(after)}"
        )
    loss = made.description["training_loss"]
    print(
        f"wrote {args.out} ({made.name}: {made.steps} steps, training loss {loss['first']} -> {loss['last']}, "
        f"{made.seconds:.0f} s); use it with --model {args.out} or 'pasta models import {args.out}'"
    )


def _score(scores):
    return "n/a" if not scores or scores.get("dice") is None else f"{scores['dice']:.3f}"


def _found(scores):
    return "n/a" if not scores else f"{scores['found']}/{scores['lesions']}"


def _false(scores):
    return "n/a" if not scores else f"{scores['false_positive_ml']:.1f} mL"
