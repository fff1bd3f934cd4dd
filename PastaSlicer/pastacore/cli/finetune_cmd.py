"""``pasta finetune``: fine-tune a model on the user's own labelled cases (few-shot)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .argtypes import seed

if TYPE_CHECKING:
    import argparse

    from ..training.finetune import FinetuneSettings


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


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
        help="a CSV with columns image,label[,split] (split: train or val; "
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
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--no-amp", action="store_true", help="train in fp32 even where mixed precision is available")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50; 0: none)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished run whose checkpoint --out holds")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep --out/checkpoint after a finished run")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files of an earlier model (and an unfinished run's checkpoint) in --out",
    )
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


def _patch(text):
    from ..errors import PastaError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise PastaError(f"--patch takes N or N,N,N (voxels), got {text!r}")
    return tuple(values)


def _read_csv(path):
    import csv
    from pathlib import Path

    from ..errors import PastaError

    path = Path(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PastaError(f"cannot read {path.name}: {exc}") from None
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise PastaError(f"{path.name} needs a header with columns image,label[,split] and at least one row")
    train, val = [], []
    for n, row in enumerate(rows, start=2):
        split = (row.get("split") or "train").strip().lower()
        if split not in ("train", "val"):
            raise PastaError(f"{path.name} line {n}: split is train or val, got {split!r}")
        (train if split == "train" else val).append(((path.parent / row["image"].strip()), (path.parent / row["label"].strip())))
    return train, val


def _pairs(args):
    from pathlib import Path

    from ..errors import PastaError

    if args.cases and (args.images or args.labels):
        raise PastaError("give the cases either with --cases CSV or with --images/--labels, not both")
    if args.cases:
        train, val = _read_csv(args.cases)
    else:
        if len(args.images) != len(args.labels):
            raise PastaError(
                f"--images has {len(args.images)} file(s) and --labels {len(args.labels)}; give one label "
                "map per image, in the same order"
            )
        train, val = [(Path(i), Path(b)) for i, b in zip(args.images, args.labels)], []
    if len(args.val_images) != len(args.val_labels):
        raise PastaError(f"--val-images has {len(args.val_images)} file(s) and --val-labels {len(args.val_labels)}")
    val += [(Path(i), Path(b)) for i, b in zip(args.val_images, args.val_labels)]
    if not train:
        raise PastaError("give at least one labelled case (--images IMG --labels LAB, or --cases CSV)")
    for image, labels in train + val:
        for path in (image, labels):
            if not path.exists():
                raise PastaError(f"{path} does not exist")
    if args.folds and not 2 <= args.folds <= len(train):
        raise PastaError(f"--folds must be between 2 and the number of training cases ({len(train)}), got {args.folds}")
    return train, val


def settings_from(args: argparse.Namespace) -> FinetuneSettings:
    from ..errors import PastaError
    from ..training.finetune import EPOCH_STEPS, FEWSHOT_STEPS, FinetuneSettings

    steps = args.steps if args.steps is not None else (args.epochs * EPOCH_STEPS if args.epochs is not None else FEWSHOT_STEPS)
    if args.epochs is not None and args.epochs < 1:
        raise PastaError(f"--epochs must be at least 1, got {args.epochs}")
    settings = FinetuneSettings(
        steps=steps,
        batch_size=args.batch_size,
        learning_rate=args.lr if args.lr is not None else (1e-3 if args.optimizer == "sgd" else 3e-4),
        optimizer=args.optimizer,
        deep_supervision=not args.no_deep_supervision,
        freeze_encoder_steps=args.freeze_encoder_steps,
        synthetic_fraction=args.synthetic_fraction,
        synthetic_lesions=args.synthetic_lesions,
        patch=_patch(args.patch),
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        checkpoint_every=args.checkpoint_every,
    )
    settings.check()
    return settings


def run(args: argparse.Namespace) -> None:
    import time
    from pathlib import Path

    from .. import deps
    from ..errors import PastaError
    from ..fileio.atomic import atomic_directory, check_folder_apart, check_output_dir
    from ..training.cases import read_case
    from ..training.finetune import Checkpoints, finetune
    from ..training.model_folder import MODEL_FILES, write_model_folder
    from ..training.recipe import require_monai
    from ..training.start_model import load_start_model
    from .progress import bar

    started = time.perf_counter()
    settings = settings_from(args)
    train_pairs, val_pairs = _pairs(args)
    lesion_labels, organ_labels = _values(args.lesion_label, "--lesion-label"), _values(args.organ_label, "--organ-label")
    out = check_output_dir(args.out, args.overwrite, MODEL_FILES)
    check_folder_apart(out, [p for pair in train_pairs + val_pairs for p in pair if p.is_dir()])
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(args.out).resolve().name).strip("-.") or "finetuned"
    if not re.fullmatch(NAME_PATTERN, name) or len(name) > 100:
        raise PastaError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    checkpoints = Checkpoints(out)
    if checkpoints.exists() and not (args.resume or args.overwrite):
        raise PastaError(
            f"{out} holds the checkpoint of an unfinished run ({checkpoints.describe()}); pass --resume "
            "to continue it or --overwrite to start again"
        )
    if args.resume and not checkpoints.exists():
        raise PastaError(f"nothing to resume: {out} holds no checkpoint of an earlier run")
    require_monai()
    deps.torch_device_info(settings.device)  # an unavailable device is refused before any work
    if args.start_config and not args.start:
        raise PastaError("--start-config describes the checkpoint given with --start")
    if args.start:
        from ..families.pymic.start import start_from

        start = start_from(args.start, args.start_config, organ=args.organ)
    else:
        start = load_start_model(args.model, organ=args.organ)
    settings.train_settings(start, "cpu")  # a patch that does not fit the network is refused before any work
    options = {"lesion_labels": lesion_labels, "organ_labels": organ_labels, "organ_source": args.organ_source}
    with bar("pasta finetune") as progress:
        cases = [read_case(i, b, start, **options) for i, b in train_pairs]
        val_cases = [read_case(i, b, start, **options) for i, b in val_pairs]
        progress(0.02, "cases read")
        out.mkdir(exist_ok=True)
        result = finetune(
            cases,
            start,
            settings,
            val_cases=val_cases,
            folds=args.folds,
            checkpoints=checkpoints,
            resume=args.resume,
            progress=lambda f, m="": progress(0.02 + 0.96 * f, m),
            say=lambda text: print(text, flush=True),
        )
        with atomic_directory(out, overwrite=args.overwrite, owned=MODEL_FILES) as folder:
            description = write_model_folder(folder, name, start, settings, cases, result, time.perf_counter() - started)
    if not args.keep_checkpoint:
        checkpoints.clear()
    for row in result.validation:
        before, after = row["before"], row["after"]
        print(
            f"{row['case']}{' (' + row['fold'] + ')' if row.get('fold') else ''}: Dice "
            f"{_score(before)} -> {_score(after)}, lesions found {_found(before)} -> {_found(after)}, "
            f"false positives {_false(before)} -> {_false(after)}"
        )
    loss = description["training_loss"]
    print(
        f"wrote {args.out} ({name}: {settings.steps} steps, training loss {loss['first']} -> {loss['last']}, "
        f"{time.perf_counter() - started:.0f} s); use it with --model {args.out} or 'pasta models import {args.out}'"
    )


def _score(scores):
    return "n/a" if not scores or scores.get("dice") is None else f"{scores['dice']:.3f}"


def _found(scores):
    return "n/a" if not scores else f"{scores['found']}/{scores['lesions']}"


def _false(scores):
    return "n/a" if not scores else f"{scores['false_positive_ml']:.1f} mL"
