"""``pasta pretrain``: self-supervised pretraining on the user's own unlabelled CTs (VolF)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .batch_cmd import workers
from .shared import add_overwrite_argument, add_precision_arguments, add_resume_arguments, add_seed_argument

if TYPE_CHECKING:
    import argparse

    from ..actions.pretrain import PretrainOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a segmentation network on your own unlabelled CTs (VolF), as a start for pasta finetune",
        description="MIS-FM's Volume Fusion (VolF) as PyMIC does it with the lung demo's settings: pairs of "
        "augmented crops of a CT fused block by block (K = class_num - 1 fusion classes), the network learns "
        "to segment the fusion map (Dice + cross-entropy, Adam 1e-3). The CTs are prepared as a cohort "
        "(resumable; --scheduler as in pasta batch); training checkpoints and resumes with --resume. "
        "OUT receives model.pt (a PyMIC checkpoint), config.json, log.json and examples/*.npz.",
    )
    p.add_argument("--method", required=True, choices=("volf",), help="the self-supervised method (volf)")
    p.add_argument("--images", nargs="+", required=True, metavar="CT", help="CT files, folders, globs or a cohort CSV")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also holds the prepared CTs and the checkpoint)")
    p.add_argument("--steps", type=int, required=True, help="training steps (the lung demo trains 80000)")
    p.add_argument("--patch", help="training patch N or D,H,W (default: PCT-Net's input_size, else 64,128,128)")
    p.add_argument("--save-examples", type=int, default=0, metavar="K", help="keep K VolF samples as examples/*.npz")
    p.add_argument(
        "--config",
        metavar="CFG.json",
        help='the network: {"family": "pymic", "net_type": "FMUNet"|"PCTNet", ...PyMIC [network] parameters} '
        "(default: the lung demo's FMUNet, class_num 5)",
    )
    add_seed_argument(p)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    add_precision_arguments(p)
    p.add_argument(
        "--scheduler",
        default="inline",
        help="where the CTs are prepared: inline (this process, default), local (a Dask cluster on this machine) "
        "or a running scheduler's address, e.g. tcp://host:8786",
    )
    p.add_argument("--workers", type=workers, help="Dask workers for --scheduler local")
    add_resume_arguments(p, checkpoint_every=100, folder="DIR")
    add_overwrite_argument(p, "replace an earlier result (and an unfinished run's checkpoint)")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> PretrainOptions:
    """The PretrainOptions of parsed arguments (checked)."""
    from ..actions.pretrain import PretrainOptions
    from .shared import options_from_args, patch_size

    options = options_from_args(
        PretrainOptions,
        args,
        patch=patch_size(args.patch, "D,H,W"),
        learning_rate=args.lr,
        precision="fp32" if args.no_amp else "auto",
    )
    options.check()
    return options


def run(args: argparse.Namespace) -> None:
    from ..actions import pretrain
    from .shared import run_training

    options = options_from(args)
    inputs = pretrain.PretrainInputs(list(args.images), args.out, args.resume, args.overwrite)
    made = run_training(pretrain, options, inputs, "pasta pretrain")
    log, loss = made.log, made.log["loss"]
    print(
        f"wrote {args.out} ({log['network']}; {len(log['images'])} CT(s), {options.steps} steps, loss {loss[0]:.3f} -> "
        f"{loss[-1]:.3f}, foreground Dice {log['valid_pred']:.3f}, {log['seconds']:.0f} s); fine-tune from it with "
        f"pasta finetune --start {args.out}"
    )
