"""``pasta pretrain``: self-supervised pretraining on the user's own unlabelled CTs (VolF)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .argtypes import seed
from .batch_cmd import workers

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
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--no-amp", action="store_true", help="train in fp32 even where mixed precision is available")
    p.add_argument(
        "--scheduler",
        default="inline",
        help="where the CTs are prepared: inline (this process, default), local (a Dask cluster on this machine) "
        "or a running scheduler's address, e.g. tcp://host:8786",
    )
    p.add_argument("--workers", type=workers, help="Dask workers for --scheduler local")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100; 0: none)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished run whose checkpoint DIR holds")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result (and an unfinished run's checkpoint)")
    p.set_defaults(func=run)


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
        raise PastaError(f"--patch takes N or D,H,W (voxels), got {text!r}")
    return tuple(values)


def options_from(args: argparse.Namespace) -> PretrainOptions:
    from ..actions.pretrain import PretrainOptions

    options = PretrainOptions(
        method=args.method,
        steps=args.steps,
        config=args.config or "",
        patch=_patch(args.patch),
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        save_examples=args.save_examples,
        device=args.device,
        precision="fp32" if args.no_amp else "auto",
        scheduler=args.scheduler,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
    )
    options.check()
    return options


def run(args: argparse.Namespace) -> None:
    from ..actions import pretrain
    from .progress import bar

    options = options_from(args)
    inputs = pretrain.PretrainInputs(list(args.images), args.out, args.resume, args.overwrite)
    pretrain.check(options, inputs)  # refused before any work
    with bar("pasta pretrain") as progress:
        made = pretrain.run(options, inputs, progress, say=lambda text: print(text, flush=True))
    log, loss = made.log, made.log["loss"]
    print(
        f"wrote {args.out} ({log['network']}; {len(log['images'])} CT(s), {options.steps} steps, loss {loss[0]:.3f} -> "
        f"{loss[-1]:.3f}, foreground Dice {log['valid_pred']:.3f}, {log['seconds']:.0f} s); fine-tune from it with "
        f"pasta finetune --start {args.out}"
    )
