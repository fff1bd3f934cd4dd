"""``pasta synth``: insert one synthetic lesion described by attributes into a CT."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .remote import add_server_arguments
from .shared import (
    add_autocast_argument,
    add_ct_argument,
    add_device_argument,
    add_overwrite_argument,
    add_seed_argument,
    options_from_args,
    run_with_bar,
)

if TYPE_CHECKING:
    import argparse

    from ..actions.synth import SynthOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="insert a synthetic lesion (type + description) into a CT, in a box",
        description="Insert one synthetic lesion into a copy of IMAGE, inside the given box "
        "and organ. The description is free text ('3 cm irregular hypodense liver lesion with "
        "ill-defined margins, heterogeneous') or a JSON file of attributes (PASTA-Gen type.json "
        "accepted). Synthetic images are for research use only.",
    )
    add_ct_argument(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--box", metavar="R1,A1,S1,R2,A2,S2", help="two opposite corners of the box in RAS mm")
    where.add_argument("--box-ijk", metavar="I1,J1,K1,I2,J2,K2", help="two opposite corner voxels (0-based, inclusive)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--attributes", metavar="TEXT", help="free-text description of the lesion")
    what.add_argument("--attributes-json", metavar="FILE", help="JSON file of attributes (or a PASTA-Gen type.json)")
    p.add_argument("--lesion-type", metavar="TYPE", help="one of the 15 PASTA lesion types (default: from the description)")
    p.add_argument("--organ-mask", metavar="FILE", help="organ segmentation on the image grid (a TotalSegmentator v1 map works)")
    p.add_argument("--organ-label", type=int, metavar="N", help="the organ's value in --organ-mask")
    add_seed_argument(p, "random seed: the same seed gives the same lesion", required=True)
    p.add_argument("--out-image", required=True, metavar="OUT.nii.gz", help="the image with the lesion")
    p.add_argument(
        "--out-mask",
        required=True,
        metavar="MASK.nii.gz",
        help="PASTA-Gen labels: organ 1, lesion 2 (with --labels: the source's labels plus the lesion); MASK.json says which is synthetic",
    )
    p.add_argument("--out-report", required=True, metavar="REPORT.json", help="our report (plan, measurements, type.json)")
    p.add_argument("--out-type-json", metavar="TYPE.json", help="also write the PASTA-Gen type.json")
    add_labels_argument(p)
    add_backend_arguments(p)
    add_overwrite_argument(p)
    add_server_arguments(p)
    p.set_defaults(func=run)


def add_labels_argument(p: argparse.ArgumentParser) -> None:
    """``--labels``: the synthetic case keeps the source CT's segmentation."""
    p.add_argument(
        "--labels",
        metavar="SOURCE_SEG",
        help="the source CT's segmentation (a label map on IMAGE's grid, named by its .json sidecar or .seg.nrrd): "
        "the output mask holds its labels plus the lesion as a new label, marked synthetic in the mask's sidecar",
    )


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    from ..synthesis.backends import backend_names

    p.add_argument(
        "--backend",
        default="procedural",
        choices=backend_names(),
        help="procedural (default, CPU, about a second), lesiondiffusion (LMNet mask + LINet texture from "
        "the released checkpoints; a CUDA GPU is strongly recommended) or lesiondiffusion-hybrid "
        "(procedural mask, LINet texture)",
    )
    p.add_argument("--steps", type=int, metavar="N", help="lesiondiffusion: DDIM steps per network (default 200)")
    p.add_argument(
        "--allow-slow",
        action="store_true",
        help="lesiondiffusion: run even when the estimated time on this CPU is long (it says how long)",
    )
    add_device_argument(p, "lesiondiffusion: auto, cuda or cpu")
    add_autocast_argument(p, "lesiondiffusion", auto="fp16 for LINet as published, fp32 for LMNet")
    p.add_argument(
        "--ld-models",
        metavar="DIR",
        help="lesiondiffusion: folder with LMNet.ckpt, LINet.ckpt, VQ.ckpt (+ configs, BiomedCLIP/) instead of the model store",
    )
    p.add_argument("--text-encoder", metavar="DIR", help="lesiondiffusion: BiomedCLIP folder (open_clip format)")


def backend_options(args: argparse.Namespace) -> dict:
    """Options for a diffusion backend from the parsed arguments (none for the procedural one)."""
    return synth_options(args, check=False).backend_options()


def synth_options(args: argparse.Namespace, check: bool = True) -> SynthOptions:
    """The SynthOptions of parsed arguments (``pasta synth``; ``pasta batch synth`` and ``pasta
    synth-dataset`` take the backend's part and set the rest per case)."""
    from ..actions.synth import SynthOptions, numbers, read_attributes_file

    attributes_json = getattr(args, "attributes_json", None)
    options = options_from_args(
        SynthOptions,
        args,
        attributes=read_attributes_file(attributes_json) if attributes_json else getattr(args, "attributes", None) or "",
        box=tuple(numbers(args.box, "--box")) if getattr(args, "box", None) else None,
        box_ijk=tuple(int(v) for v in _ijk(args.box_ijk)) if getattr(args, "box_ijk", None) else None,
    )
    if check:
        options.check()
    return options


def _ijk(text):
    from ..actions.synth import numbers
    from ..errors import PastaError

    values = numbers(text, "--box-ijk")
    if any(v != int(v) for v in values):
        raise PastaError("--box-ijk takes whole voxel indices")
    return values


def run(args: argparse.Namespace) -> int:
    from ..actions import synth
    from ..fileio.atomic import check_outputs
    from ..fileio.writers import volume_output
    from ..inference.sidecar import sidecar_path
    from .remote import server_of

    check_outputs(
        [
            volume_output(args.out_image),
            volume_output(args.out_mask),
            (args.out_report, (".json",)),
            (args.out_type_json, (".json",)),
            (str(sidecar_path(args.out_mask)), (".json",)),
        ],
        inputs=(args.image, args.organ_mask, args.attributes_json, args.labels),
        overwrite=args.overwrite,
    )
    options = synth_options(args)
    server = server_of(args)
    if server is not None:
        return _run_on_server(args, options, server)
    engine = synth.backend(options)  # unavailable or too slow: say so before any work
    case = run_with_bar("synthesising", synth.run, options, synth.SynthInputs(args.image, args.organ_mask), engine=engine)
    synth.write_synthesis(case, args.out_image, args.out_mask, args.out_report, args.out_type_json, overwrite=args.overwrite)
    result = case.result
    _say(result.not_understood, result.plan.describe(), result.report["measured"], args, case.sidecar)
    return 0


def _run_on_server(args: argparse.Namespace, options: SynthOptions, server: tuple) -> int:
    """``pasta synth --server URL``: the same files and lines, the lesion made on the server."""
    from ..actions import synth
    from ..fileio import as_volume
    from .remote import connect, run_on_server

    if options.labels:
        from ..errors import PastaError

        raise PastaError(
            "--labels is not available with --server (the source labels stay on this computer); run without --server"
        )
    client = connect(server, "synth", options)
    inputs = synth.SynthInputs(as_volume(args.image), as_volume(args.organ_mask, is_label=True) if args.organ_mask else None)
    result, volumes = run_with_bar("synthesising", run_on_server, client, "synth", options, inputs)
    report = dict(result["report"], type_json=result["type_json"], source=str(args.image))
    synth.write_synthesis_files(
        volumes["image"],
        volumes["labels"],
        report,
        result["type_json"],
        args.out_image,
        args.out_mask,
        args.out_report,
        args.out_type_json,
        overwrite=args.overwrite,
        sidecar=result.get("sidecar"),
    )
    _say(result["not_understood"], result["plan"], result["report"]["measured"], args, result.get("sidecar"))
    return 0


def _say(not_understood, plan: str, measured: dict, args: argparse.Namespace, sidecar: dict | None = None) -> None:
    from ..inference.sidecar import sidecar_path

    if not_understood:
        print(f"warning: words not understood and ignored: {', '.join(not_understood)}", file=sys.stderr)
    print(plan)
    print(
        f"measured: size {' x '.join(f'{s:.0f}' for s in measured['size_mm'])} mm, mean {measured['mean_hu']:.0f} HU, "
        f"{measured['volume_ml']:.2f} mL"
    )
    if getattr(args, "labels", None) and sidecar:
        value = next(k for k, v in sidecar["labels"].items() if v.get("synthetic"))
        print(f"the mask holds the labels of {args.labels} and the synthetic lesion as label {value}")
    print(f"wrote {args.out_image}, {args.out_mask} (+ {sidecar_path(args.out_mask).name}), {args.out_report}")
