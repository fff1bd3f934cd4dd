"""``pasta features``: PASTA encoder features of each organ or lesion of a mask, as CSV."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_ct_argument, add_device_argument, add_overwrite_argument, add_whole_labels_argument

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="PASTA encoder features per organ or lesion (CSV)",
        description="Standardises IMAGE and MASK to 1 mm, cuts PASTA's crops (organ: box +-32 voxels resized to 128^3; "
        "lesion: 96^3 centred on each connected component), applies PASTA's HU normalisation and writes the "
        "globally pooled encoder output (1024 values for PASTA) as one CSV row per organ or lesion: "
        "id,f0,...,f{C-1}. Row ids: CASE for a single organ label, CASE:labelN for several, "
        "CASE:lesionK for lesions (numbered as in 'pasta report').",
    )
    add_ct_argument(p)
    p.add_argument("--mask", required=True, help="label map (or .seg.nrrd) on the CT's grid")
    p.add_argument("--label", type=int, action="append", help="mask value to use (repeatable; default: every label)")
    p.add_argument("--crop", required=True, choices=("organ", "lesion"), help="organ (128^3) or lesion (96^3) crops")
    p.add_argument("--model", required=True, help="PASTA weight file (e.g. PASTA_final.pth) or nnU-Net result folder")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--case", help="case name used in the row ids (default: the image file name without extension)")
    add_whole_labels_argument(p)
    p.add_argument(
        "--no-flip",
        action="store_true",
        help="feed crops in the standardised [S,P,L] order instead of PASTA's classifier order [S,A,L]",
    )
    p.add_argument("--batch-size", type=int, default=2, help="crops per forward pass (default 2)")
    add_device_argument(p)
    add_overwrite_argument(p, "replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import deps
    from ..classify.csvio import write_features_csv
    from ..classify.features import compute_features
    from ..fileio import read_volume
    from ..fileio.atomic import atomic_outputs, check_outputs
    from ..fileio.readers import image_stem
    from ..networks.loading import load_encoder
    from .progress import bar

    check_outputs([(args.out, (".csv",))], inputs=(args.image, args.mask, args.model), overwrite=args.overwrite)
    device = deps.torch_device_info(args.device).kind
    image = read_volume(args.image)
    mask = read_volume(args.mask, is_label=True)
    image.check_matches(mask, "mask")
    from ..classify.features import item_masks

    item_masks(mask.array, args.crop, args.label, not args.whole_labels)  # bad labels fail before the model loads
    loaded = load_encoder(args.model, device=device)
    case = args.case or image_stem(args.image)
    with bar("pasta features") as progress:
        table = compute_features(
            image,
            mask,
            loaded.network,
            args.crop,
            args.label,
            not args.whole_labels,
            case,
            args.batch_size,
            device,
            flip_ap=not args.no_flip,
            progress=progress,
        )
    with atomic_outputs(args.out, overwrite=args.overwrite) as temp:
        write_features_csv(temp, table.ids, table.features)
    print(f"wrote {args.out}: {len(table.ids)} {args.crop}(s) x {table.features.shape[1]} features")
    return 0
