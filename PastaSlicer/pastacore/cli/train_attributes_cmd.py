"""``pasta train-attributes``: report-attribute heads for lung lesions, learnt from synthetic lesions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_overwrite_argument, add_seed_argument
from .train_head_cmd import add_head_output_argument, check_head_outputs

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-attribute-heads",
        aliases=["train-attributes"],
        help="train the five report-attribute heads on synthetic lung lesions",
        description="Makes synthetic lung lesions with known attributes (shape, density, heterogeneity, "
        "surface, invasion) in the real chest CT backgrounds, takes the frozen encoder's "
        "features of each lesion crop, fits one linear head per attribute and reports "
        "accuracy on held-out synthetic lesions. Writes HEAD.pt (usable with the encoder "
        "in the report panel) and HEAD.json (the scores).",
    )
    p.add_argument("--encoder", default="", help="model name, weight file or nnU-Net folder (default: the built-in model)")
    p.add_argument("--backgrounds", default="lung1,lung2", help="sample cases used as backgrounds (default lung1,lung2)")
    p.add_argument("--train", type=int, default=240, help="synthetic lesions to train on (default 240)")
    p.add_argument("--test", type=int, default=80, help="held-out synthetic lesions (default 80)")
    add_seed_argument(p)
    p.add_argument("--l2", type=float, default=1.0, help="L2 regularisation of the heads (default 1)")
    add_head_output_argument(p)
    add_overwrite_argument(p, help=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json
    import time
    from pathlib import Path

    from ..classify.heads import save_head
    from ..errors import PastaError
    from ..fileio.atomic import atomic_outputs
    from ..inference.segmentation_model import model_weights
    from ..networks.loading import load_encoder
    from ..training.attribute_heads import fit_attribute_heads, score_heads, synthetic_attribute_set
    from ..training.default_model import load_background
    from .progress import bar

    if args.train < 10 or args.test < 10:
        raise PastaError("--train and --test need at least 10 lesions each")
    report_path = check_head_outputs(args, (args.encoder,))
    names = [n for n in args.backgrounds.split(",") if n]
    if not names:
        raise PastaError("give at least one background case")
    encoder_path = Path(model_weights(args.encoder)[0])
    network = load_encoder(encoder_path).network
    started = time.perf_counter()
    with bar("pasta train-attributes") as progress:
        backgrounds = [load_background(n) for n in names]
        train = synthetic_attribute_set(backgrounds, network, args.train, args.seed, lambda f, m: progress(0.7 * f, "train " + m))
        test = synthetic_attribute_set(
            backgrounds, network, args.test, args.seed + 1000, lambda f, m: progress(0.7 + 0.25 * f, "held-out " + m)
        )
        head = fit_attribute_heads(train, args.l2, args.seed)
        scores = score_heads(head, test, train)
        progress(1.0, "done")
    result = {
        "encoder": encoder_path.name,
        "backgrounds": names,
        "n_train": len(train.targets),
        "n_test": len(test.targets),
        "seed": args.seed,
        "l2": args.l2,
        "seconds": round(time.perf_counter() - started),
        "held_out": scores,
    }
    meta = {
        "task": "lung lesion report attributes (synthetic lesions)",
        "encoder": encoder_path.name,
        "held_out_accuracy": {k: v["accuracy"] for k, v in scores.items()},
    }
    with atomic_outputs(args.out, report_path, overwrite=args.overwrite) as (head_temp, json_temp):
        save_head(head, head_temp, meta)
        json_temp.write_text(json.dumps(result, indent=2))
    for group, s in scores.items():
        print(
            f"{group}: held-out accuracy {s['accuracy']:.2f} (majority class {s['majority_baseline']:.2f}, {s['n_test']} lesions)"
        )
    print(f"wrote {args.out} and {report_path.name} ({result['n_train']} training lesions, {result['seconds']} s)")
