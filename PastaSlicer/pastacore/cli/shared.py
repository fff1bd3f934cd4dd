"""What the subcommands share, written once: the flags several commands take with one meaning,
an action's options built from the parsed arguments, and the run of an action behind a progress
bar with its lines printed as they come."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

from ..deps import DEVICES
from .argtypes import seed

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

T = TypeVar("T")

DEVICE_CHOICES = f"{', '.join(DEVICES[:-1])} or {DEVICES[-1]}"  # "auto, cuda, mps or cpu"


def add_overwrite_argument(p: argparse.ArgumentParser, help: str | None = "replace existing outputs") -> None:
    """``--overwrite``: without it no output that exists is replaced (:mod:`pastacore.fileio.atomic`)."""
    p.add_argument("--overwrite", action="store_true", help=help)


def add_ct_argument(p: argparse.ArgumentParser, optional: bool = False) -> None:
    """The CT a command reads, ``IMAGE`` (``optional``: where ``--cases`` may stand instead)."""
    p.add_argument("image", nargs="?" if optional else None, help="CT as NIfTI/NRRD file or DICOM folder")


def add_json_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--json``: print ``what`` as JSON instead of lines for people."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_whole_labels_argument(p: argparse.ArgumentParser) -> None:
    """``--whole-labels``: a lesion label's every voxel is one lesion, however many pieces it has."""
    p.add_argument("--whole-labels", action="store_true", help="one lesion per label instead of per connected component")


def add_device_argument(p: argparse.ArgumentParser, help: str = DEVICE_CHOICES) -> None:
    """``--device`` (default auto): where the networks run; ``help`` says what it means for the command."""
    p.add_argument("--device", default="auto", help=help)


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--no-amp`` of a training command."""
    add_device_argument(p)
    p.add_argument("--no-amp", action="store_true", help="train in fp32 even where mixed precision is available")


def add_autocast_argument(p: argparse.ArgumentParser, network: str, auto: str) -> None:
    """``--precision`` of a ``network`` run under CUDA autocast (``auto``: what auto picks)."""
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help=f"{network}: CUDA autocast (auto: {auto})",
    )


def add_seed_argument(p: argparse.ArgumentParser, help: str | None = None, required: bool = False) -> None:
    """``--seed``: a whole number from 0 to 2^32 - 1 (:func:`.argtypes.seed`), 0 unless required."""
    p.add_argument("--seed", type=seed, required=required, default=None if required else 0, help=help)


def add_resume_arguments(p: argparse.ArgumentParser, checkpoint_every: int, folder: str) -> None:
    """``--checkpoint-every N`` and ``--resume`` of a training that checkpoints into ``folder`` (as
    its help names the output folder)."""
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=checkpoint_every,
        help=f"steps between checkpoints (default {checkpoint_every}; 0: none)",
    )
    p.add_argument("--resume", action="store_true", help=f"continue the unfinished run whose checkpoint {folder} holds")


def add_listen_arguments(p: argparse.ArgumentParser, port: int) -> None:
    """``--host`` and ``--port`` of a command that serves (``pasta serve``, ``pasta web``)."""
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port}; 0 picks a free one)")


def add_upload_limit_argument(p: argparse.ArgumentParser) -> None:
    """``--max-upload-mb`` of a command that serves; :func:`check_upload_limit` checks it."""
    p.add_argument("--max-upload-mb", type=float, default=2048.0, help="largest upload accepted, in MB (default 2048)")


def check_upload_limit(args: argparse.Namespace) -> None:
    """Refuse a ``--max-upload-mb`` that is not positive."""
    if args.max_upload_mb <= 0:
        from ..errors import PastaError

        raise PastaError("--max-upload-mb must be positive")


def options_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """An options dataclass ``cls`` from parsed arguments: each field takes the argument of its own
    name (``--model`` gives ``model``); an argument the command lacks, or left out (None), leaves the
    field's default. ``values``: the fields whose value is not an argument as parsed (converted or
    renamed ones); they win."""
    for field in dataclasses.fields(cls):
        given = getattr(args, field.name, None)
        if field.init and field.name not in values and given is not None:
            values[field.name] = given
    return cls(**values)


def patch_size(text: str | None, form: str) -> tuple | None:
    """``--patch N`` or ``--patch A,B,C`` as three voxel counts (None when not given); ``form`` is
    how the command names the three values in its error line (``N,N,N`` or ``D,H,W``)."""
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
        raise PastaError(f"--patch takes N or {form} (voxels), got {text!r}")
    return tuple(values)


def say_now(text: str) -> None:
    """A line of a long run on stdout, at once (not when the buffer fills)."""
    print(text, flush=True)


def run_with_bar(title: str, run: Callable[..., T], *arguments: Any, **keywords: Any) -> T:
    """``run(*arguments, progress, **keywords)`` behind a progress bar titled ``title`` (an action's
    ``run(options, inputs, progress)``)."""
    from .progress import bar

    with bar(title) as progress:
        return run(*arguments, progress, **keywords)


def run_training(action: Any, options: object, inputs: object, title: str) -> Any:
    """A training action (``pastacore.actions.finetune`` or ``.pretrain``): refused by its ``check``
    before any work, then run behind a progress bar, its lines printed as they come. Returns what its
    ``run`` made."""
    action.check(options, inputs)
    return run_with_bar(title, action.run, options, inputs, say=say_now)
