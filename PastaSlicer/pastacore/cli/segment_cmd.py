"""``pasta segment``: organ and lesion labels for a CT, on the CT's own grid."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..deps import DEVICES
from .remote import add_server_arguments
from .shared import add_ct_argument, add_device_argument, add_overwrite_argument, options_from_args, run_with_bar

if TYPE_CHECKING:
    import argparse

    from ..actions.segment import SegmentOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment organs and lesions in a CT",
        description="Writes a label map on the input's grid (PASTA models: 1 = organ, 2 = lesion) "
        "and OUT.json beside it with the label names, the model used (name, version, "
        "SHA256) and each lesion candidate with the model's confidence in it.",
    )
    add_ct_argument(p)
    p.add_argument("--out", required=True, help="output label map (.nii.gz, .nii or .nrrd)")
    p.add_argument("--organ-mask", help="label map restricting the search (e.g. TotalSegmentator output)")
    p.add_argument("--organ-label", type=int, help="label value of the organ in --organ-mask (default: any non-zero)")
    add_segment_arguments(p)
    add_overwrite_argument(p)
    add_server_arguments(p)
    p.set_defaults(func=run)


def add_segment_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a segmentation (:class:`~pastacore.actions.segment.SegmentOptions`), worded
    once for ``pasta segment`` and ``pasta batch segment``."""
    p.add_argument(
        "--model",
        help="installed model name, weight file, nnU-Net result folder, or a folder with "
        "model.json as `pasta train-default --out` writes (default: built-in model)",
    )
    p.add_argument(
        "--model-config",
        metavar="CFG.json",
        help="the config of a model family's weight file given with --model (its 'family' key names the "
        "family, e.g. gcis); installed models carry theirs",
    )
    p.add_argument("--prompt", help="what to segment, for models that take text prompts (e.g. 'liver tumor')")
    p.add_argument(
        "--organ",
        help="organ to restrict the search to: 'lungs' (the built-in classical lung mask) or 'body' (the whole "
        "body); with an organ mask, the organ's name in it (TotalSegmentator ids or segment names). "
        "Default: the model's own organ (the lungs for the built-in lung model), else the body",
    )
    p.add_argument(
        "--totalsegmentator-version",
        type=int,
        choices=(1, 2),
        default=2,
        help="label numbering of a TotalSegmentator organ mask (default 2)",
    )
    p.add_argument(
        "--roi", help="box R1,A1,S1,R2,A2,S2 in RAS mm restricting the search (write --roi=-10,... for negative numbers)"
    )
    add_device_argument(p, f"{', '.join(DEVICES)}: where the network runs (default auto: CUDA, MPS, else CPU)")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (8x slower, more accurate)")
    p.add_argument("--overlap", type=float, default=0.5, help="patch overlap in [0, 1) (default 0.5)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32"),
        default="auto",
        help="auto: bf16/fp16 where the device supports it (default); fp32: full precision",
    )
    p.add_argument("--min-lesion-mm3", type=float, default=0.0, help="drop lesion pieces smaller than this")


def segment_options(args: argparse.Namespace) -> SegmentOptions:
    """The SegmentOptions of parsed arguments (checked)."""
    from ..actions.segment import SegmentOptions, parse_box

    options = options_from_args(SegmentOptions, args, roi=tuple(parse_box(args.roi)) if args.roi else None)
    options.check()
    return options


def run(args: argparse.Namespace) -> None:
    from ..actions import segment
    from ..fileio.atomic import check_outputs
    from ..fileio.writers import volume_output
    from ..inference.sidecar import sidecar_path
    from .remote import server_of

    options = segment_options(args)
    server = server_of(args)
    check_outputs(
        [volume_output(args.out), sidecar_path(args.out)],
        inputs=(args.image, args.organ_mask, args.model if server is None else None, args.model_config),
        overwrite=args.overwrite,
    )
    if server is not None:
        return _run_on_server(args, options, server)
    case = run_with_bar("pasta segment", segment.run, options, segment.SegmentInputs(args.image, args.organ_mask))
    _, sidecar = segment.write_segmentation(case, args.out, overwrite=args.overwrite)
    result, description = case.result, case.description
    print(
        f"wrote {args.out} and {sidecar.name}: {description['voxels']} voxels per label in {result.seconds:.1f} s "
        f"on {result.device} ({result.tiles_run} of {result.tiles_total} patches run)"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _run_on_server(args: argparse.Namespace, options: SegmentOptions, server: tuple) -> None:
    """``pasta segment --server URL``: the same outputs and lines, the network run on the server."""
    from ..actions.segment import SegmentInputs
    from ..fileio import as_volume, write_volume
    from ..fileio.atomic import atomic_outputs
    from ..inference.sidecar import sidecar_path, write_sidecar
    from .remote import connect, run_on_server

    client = connect(server, "segment", options)
    inputs = SegmentInputs(as_volume(args.image), as_volume(args.organ_mask, is_label=True) if args.organ_mask else None)
    result, volumes = run_with_bar("pasta segment", run_on_server, client, "segment", options, inputs)
    sidecar = sidecar_path(args.out)
    description = result["sidecar"]
    with atomic_outputs(args.out, sidecar, overwrite=args.overwrite) as (labels_temp, sidecar_temp):
        write_volume(volumes["labels"], labels_temp)
        write_sidecar(sidecar_temp, description)
    print(
        f"wrote {args.out} and {sidecar.name}: {description['voxels']} voxels per label in {description['seconds']:.1f} s "
        f"on {description['device']} of the PASTA server {client.url} ({description['patches_run']} of "
        f"{description['patches_total']} patches run)"
    )
    for warning in description.get("warnings") or ():
        print(f"warning: {warning}", file=sys.stderr)
