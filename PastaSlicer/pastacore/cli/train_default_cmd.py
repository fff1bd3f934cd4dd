"""``pasta train-default``: reproduce the built-in default model (synthetic lung lesions only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_overwrite_argument, add_seed_argument, options_from_args, run_with_bar

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-default",
        help="train the built-in lung-lesion model on synthetic lesions (CPU)",
        description="Backgrounds are real chest CTs; every lesion is synthetic; the real tumours "
        "are excluded from training. With --evaluate-on, scores Dice, detection and "
        "false-positive volume on that scan's real tumour.",
    )
    p.add_argument("--backgrounds", default="lung1,lung2", help="sample cases used as backgrounds (default lung1,lung2)")
    p.add_argument("--evaluate-on", default="", help="sample cases whose real tumours are scored after training")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lesions", type=int, default=80, help="synthetic lesions per background")
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--base-features", type=int, default=8)
    p.add_argument(
        "--spatial-augmentation",
        type=float,
        default=0.5,
        help="share of training patches randomly rotated and scaled (default 0.5)",
    )
    p.add_argument(
        "--elastic-mm",
        type=float,
        default=0.0,
        help="smooth random warp (mm, standard deviation) of the rotated and scaled patches (default 0)",
    )
    p.add_argument(
        "--pleura-mm",
        type=int,
        default=0,
        help="how far (mm) lesions against the wall may reach past the air-based lung mask, filling "
        "the partial-volume rim up to the wall (default 0: clipped at the air boundary, as the "
        "built-in model; 2 measured no better, see Testing/Benchmarks/RESULTS.md)",
    )
    p.add_argument(
        "--hard-negative-steps",
        type=int,
        default=0,
        help="a second stage of this many steps in which about 40 %% of the lesion-free patches are centred on "
        "the first stage's own false positives in the backgrounds (default 0: none)",
    )
    p.add_argument(
        "--zone-mm",
        type=int,
        default=None,
        help="no training patch or synthetic lesion comes within this many mm of a real tumour's box "
        "(default: half a patch + 10 mm, as the built-in model)",
    )
    add_seed_argument(p)
    p.add_argument("--out", required=True, help="output folder for the model (weights, model.json, metrics)")
    add_overwrite_argument(p, "replace the files of an earlier model in --out (other files there are kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..actions import train_default

    options = options_from_args(
        train_default.TrainDefaultOptions,
        args,
        backgrounds=tuple(n for n in args.backgrounds.split(",") if n),
        evaluate_on=tuple(n for n in args.evaluate_on.split(",") if n),
    )
    inputs = train_default.TrainDefaultInputs(args.out, args.overwrite)
    metrics = run_with_bar("pasta train-default", train_default.run, options, inputs).metrics
    for s in metrics["evaluation"]:
        print(
            f"{s['case']}{' (TTA)' if s['tta'] else ''}: Dice {s['dice']:.3f}, real tumour {'detected' if s['detected'] else 'MISSED'}, "
            f"false positives {s['false_positive_ml']:.1f} mL (tumour {s['tumour_ml']:.1f} mL)"
        )
    for t in metrics["evaluation_tilings"]:
        print(
            f"{t['case']} over {len(t['dice'])} tile offsets: Dice {t['dice_mean']:.3f} ({t['dice_min']:.3f}-{t['dice_max']:.3f}), "
            f"detected {t['detected']} of {len(t['dice'])}"
        )
    second = f" + {args.hard_negative_steps} on hard negatives" if args.hard_negative_steps else ""
    print(
        f"wrote {args.out} ({metrics['synthetic_lesions']} synthetic lesions, {args.steps} steps{second}, {metrics['total_seconds']} s)"
    )
