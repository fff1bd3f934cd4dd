"""``pasta patches``: pathology patches with PatchTCGA's pretrained encoders.

``features`` (CSV of encoder features), ``train-head`` (a few-shot head, as ``pasta train-classifier``),
``classify`` (CSV of predicted classes and probabilities) and ``heatmap`` (tile probabilities painted
on the image's own grid, for Slicer to overlay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_device_argument, add_overwrite_argument, run_with_bar

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

HEATMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
DEFAULT_TILE = 224
DEFAULT_BATCH = 16


def add_parser(sub: argparse._SubParsersAction) -> None:
    from . import train_head_cmd

    p = sub.add_parser("patches", help="pathology patches with PatchTCGA encoders (features, heads, classify, heat maps)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    feat = _encoder_command(
        actions,
        "features",
        run_features,
        help="encoder features of image patches (CSV)",
        description="Reads each image as 8-bit RGB, scales it to [0, 1], normalises it with the config's mean/std "
        "(no resize, no crop) and writes one row per image: id,f0,...,f{C-1} (id: the file name without its extension), "
        "every value at full precision.",
    )
    feat.add_argument("--out", required=True, metavar="FEATURES.csv", help="output CSV")

    head = actions.add_parser(
        "train-head",
        help="train a few-shot head on patch features (cross-validated), as 'pasta train-classifier'",
        description="Trains a head on the rows of FEATURES.csv that have a label in LABELS.csv (columns id,label) and "
        "writes HEAD.pt and HEAD.json (cross-validated accuracy and AUC), exactly as 'pasta train-classifier'.",
    )
    train_head_cmd.add_arguments(head, "'pasta patches features'")
    head.set_defaults(func=train_head_cmd.run)

    cls = _encoder_command(
        actions,
        "classify",
        run_classify,
        with_head=True,
        help="predicted class and class probabilities of image patches (CSV)",
        description="Encoder features of each image (as 'pasta patches features'), then the head: one row per image, "
        "id,label,p_<class>... (probabilities at full precision).",
    )
    cls.add_argument("--out", required=True, metavar="PREDICTIONS.csv", help="output CSV")

    heat = _encoder_command(
        actions,
        "heatmap",
        run_heatmap,
        with_head=True,
        one_region=True,
        help="class probability of each tile of an image, painted on the image's grid",
        description="Cuts IMAGE into non-overlapping tiles from its top-left pixel, classifies each tile as 'classify' "
        "classifies the same crop, and writes the probability of --class on every pixel of its tile, on the image's "
        "own grid as SimpleITK (and Slicer) reads it; a right or bottom strip narrower than a tile stays 0.",
    )
    heat.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"tile size in pixels (default {DEFAULT_TILE})")
    heat.add_argument("--class", dest="class_name", metavar="NAME", help="class to map (default: the second of two)")
    heat.add_argument("--out", required=True, metavar="HEAT.nii.gz", help="output image (.nii.gz, .nii, .nrrd, .mha)")
    heat.add_argument("--tiles-csv", metavar="TILES.csv", help="also write each tile's prediction, as 'classify' does")


def _encoder_command(
    actions: argparse._SubParsersAction,
    name: str,
    run: Callable[[argparse.Namespace], int],
    with_head: bool = False,
    one_region: bool = False,
    **texts: str,
) -> argparse.ArgumentParser:
    """A subcommand that runs the encoder on images (``texts``: its help and description): its
    parser with the images (patches, or ``one_region`` image to tile), the encoder's options and,
    where a head classifies the features, ``--head``."""
    p = actions.add_parser(name, **texts)
    if one_region:
        p.add_argument("image", metavar="IMAGE", help="a region image (PNG, TIFF...)")
    else:
        p.add_argument("images", nargs="+", metavar="IMAGE", help="patch images (PNG, TIFF, JPEG...)")
    _encoder_options(p)
    if with_head:
        p.add_argument("--head", required=True, metavar="HEAD.pt", help="a head from 'pasta patches train-head'")
    p.set_defaults(func=run)
    return p


def _encoder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder",
        required=True,
        metavar="CKPT",
        help="a PatchTCGA checkpoint (any of the five layouts), or the name of one imported with 'pasta models import --config'",
    )
    parser.add_argument(
        "--config",
        metavar="CFG.json",
        help='model config: {"family": "patchtcga", "method": ...} (an installed encoder has its own)',
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help=f"patches per forward pass (default {DEFAULT_BATCH})"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="fp32 (default, full precision), bf16, or auto"
    )
    add_overwrite_argument(parser)


def _open_encoder(args: argparse.Namespace):
    from .. import deps
    from ..errors import PastaError
    from ..families.patchtcga.patches import open_encoder, resolve_encoder

    if args.batch_size < 1:
        raise PastaError("--batch-size must be at least 1")
    checkpoint, config = resolve_encoder(args.encoder, args.config)
    device = deps.torch_device_info(args.device).kind
    return open_encoder(checkpoint, config, device, args.precision)


def _check_images(paths) -> None:
    """Every image exists, and no two share an id (their file name without its extension)."""
    from pathlib import Path

    from ..errors import PastaError
    from ..families.patchtcga.images import check_unique_ids

    for path in paths:
        if not Path(path).is_file():
            raise PastaError(f"image {path} does not exist")
    check_unique_ids(paths)


def run_features(args: argparse.Namespace) -> int:
    from ..families.patchtcga.patches import image_features, write_features_csv
    from ..fileio.atomic import atomic_outputs, check_outputs

    check_outputs([(args.out, (".csv",))], inputs=(*args.images, args.encoder, args.config), overwrite=args.overwrite)
    _check_images(args.images)
    encoder = _open_encoder(args)
    ids, features = run_with_bar("pasta patches features", image_features, args.images, encoder, args.batch_size)
    with atomic_outputs(args.out, overwrite=args.overwrite) as temp:
        write_features_csv(temp, ids, features)
    print(f"wrote {args.out}: {len(ids)} image(s) x {features.shape[1]} features ({encoder.loaded.found.layout} encoder)")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from ..classify.heads import load_head
    from ..families.patchtcga.patches import check_head_fits, image_features, predict, write_predictions_csv
    from ..fileio.atomic import atomic_outputs, check_outputs

    inputs = (*args.images, args.encoder, args.config, args.head)
    check_outputs([(args.out, (".csv",))], inputs=inputs, overwrite=args.overwrite)
    _check_images(args.images)
    head = load_head(args.head)
    encoder = _open_encoder(args)
    check_head_fits(head, encoder)
    ids, features = run_with_bar("pasta patches classify", image_features, args.images, encoder, args.batch_size)
    classes, labels, probabilities = predict(head, features)
    with atomic_outputs(args.out, overwrite=args.overwrite) as temp:
        write_predictions_csv(temp, ids, classes, labels, probabilities)
    counts = ", ".join(f"{c}: {labels.count(c)}" for c in classes)
    print(f"wrote {args.out}: {len(ids)} image(s) ({counts})")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import deps
    from ..actions import patch_heatmap
    from ..families.patchtcga.heatmap import heatmap_image
    from ..families.patchtcga.images import image_id, pixel_grid
    from ..families.patchtcga.patches import write_predictions_csv
    from ..fileio.atomic import atomic_outputs, check_outputs

    outputs = [(args.out, HEATMAP_SUFFIXES), (args.tiles_csv, (".csv",))]
    check_outputs(outputs, inputs=(args.image, args.encoder, args.config, args.head), overwrite=args.overwrite)
    options = patch_heatmap.PatchHeatmapOptions(
        encoder=str(args.encoder), head=str(args.head), config=str(args.config or ""), tile=args.tile,
        class_name=args.class_name or "", batch_size=args.batch_size, device=deps.check_device(args.device),
        precision=args.precision,
    )  # fmt: skip
    heat = run_with_bar("pasta patches heatmap", patch_heatmap.run, options, patch_heatmap.PatchHeatmapInputs(args.image)).heat
    height, width = heat.values.shape
    grid = pixel_grid(args.image, width, height)
    written = [args.out] + ([args.tiles_csv] if args.tiles_csv else [])
    with atomic_outputs(*written, overwrite=args.overwrite) as temps:
        temps = temps if isinstance(temps, list) else [temps]
        _write_image(heatmap_image(heat, grid), temps[0])
        if args.tiles_csv:
            stem = image_id(args.image)
            ids = [f"{stem}_x{x}_y{y}" for x, y, _p in heat.tiles]
            probabilities = [p for _x, _y, p in heat.tiles]
            labels = [heat.classes[int(p.argmax())] for p in probabilities]
            write_predictions_csv(temps[1], ids, heat.classes, labels, probabilities)
    note = "" if grid.from_file else " (on the plain pixel grid: SimpleITK does not read this file as a 2-D image)"
    print(f"wrote {Path(args.out)}: {heat.describe()}{note}")
    return 0


def _write_image(image, path) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(image, str(path), True)
