"""Fine-tuning the built-in model: what real labels and a few labelled cases change.

``real``: fine-tune the built-in model on one sample scan's real tumour label (``--train``,
the organ from the classical lung mask, as ``pasta finetune --lesion-label 1`` does) and score
the other scan (``--score``) as ``pasta segment`` runs by default, against the built-in model
scored the same way (same tiling); one run per seed. Results are appended to ``--out`` (JSON)
as they come, so a long run can be read while it goes on.

``fewshot``: synthetic labelled cases in the half of ``lung2``'s chest without its real
tumour (one synthetic lung lesion per case, lungs from the classical mask); the built-in
model is fine-tuned on 1, 2, 4, 8 of them and scored on held-out synthetic lesions by the
lesion Dice in a 96^3 window around each (offset at random by up to 16 voxels), and on
``lung2``'s real tumour in the same way.

    PYTHONPATH=PastaSlicer .venv/bin/python Testing/Benchmarks/benchmark_finetune.py real --train lung1 \
        --score lung2 --seeds 1 2 3 --steps 40 --patch 64 --out real.json
    PYTHONPATH=PastaSlicer .venv/bin/python Testing/Benchmarks/benchmark_finetune.py fewshot --shots 1 2 4 8 \
        --steps 40 --patch 64 --out fewshot.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def settings(args, seed):
    from pastacore.training.finetune import FinetuneSettings

    return FinetuneSettings(
        steps=args.steps,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        patch=(args.patch,) * 3,
        seed=seed,
        device="cpu",
        checkpoint_every=0,
        threads=getattr(args, "threads", 2),
    )


def save(path, data):
    Path(path).write_text(json.dumps(data, indent=2))


def scored(model, case, save_as=None):
    """``validate_case``'s scores; the predicted lesion mask is kept in ``save_as`` (npz) when given."""
    from pastacore.inference.segment import segment_volume
    from pastacore.training.validation import score_lesions

    result = segment_volume(case.image, model, device="cpu")
    predicted = np.isin(result.labels.array, model.lesion_values)
    if save_as:
        np.savez_compressed(save_as, lesion=np.packbits(predicted), shape=predicted.shape)
    return {
        "case": case.name,
        **score_lesions(predicted, case.lesion, tuple(case.image.grid.spacing)[::-1]),
        "seconds": round(result.seconds, 1),
    }


def real(args):
    from pastacore.fileio import read_volume
    from pastacore.samples import sample_paths
    from pastacore.training.cases import load_case
    from pastacore.training.finetune import finetune, mean_losses
    from pastacore.training.start_model import load_start_model

    start = load_start_model(None)
    cases = {}
    for name in (args.train, args.score):
        image, labels = (read_volume(p, is_label=i == 1) for i, p in enumerate(sample_paths(name)))
        cases[name] = load_case(image, labels, start, name=name, lesion_labels=(1,))
    out = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    out.setdefault("machine", f"{platform.machine()}, 2 threads")
    out.setdefault("runs", [])
    if "baseline" not in out:
        started = time.perf_counter()
        out["baseline"] = scored(start.segmentation_model(), cases[args.score], f"{args.out}.built-in.npz")
        out["baseline"]["seconds"] = round(time.perf_counter() - started, 1)
        save(args.out, out)
        print("built-in", out["baseline"], flush=True)
    for seed in args.seeds:
        chosen = settings(args, seed)
        result = finetune([cases[args.train]], start, chosen)
        started = time.perf_counter()
        scores = scored(start.segmentation_model(result.network), cases[args.score], f"{args.out}.seed{seed}.npz")
        run = {
            "seed": seed,
            "steps": args.steps,
            "patch": args.patch,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "train_seconds": round(result.log.seconds, 1),
            "seconds_per_step": round(result.log.seconds / args.steps, 2),
            "step_seconds_probe": round(result.step_seconds, 2),
            "loss": mean_losses(result.log.losses, 10),
            "score_seconds": round(time.perf_counter() - started, 1),
            "scores": scores,
        }
        out["runs"].append(run)
        save(args.out, out)
        print(run, flush=True)


def _half_without_tumour(bg, margin=20):
    """The half of the chest (a slice along i) that holds no voxel within ``margin`` mm of the tumour."""
    columns = np.flatnonzero(bg.tumour.any(axis=(0, 1)))
    middle = bg.hu.shape[2] // 2
    if columns.min() - margin >= middle:
        return slice(0, middle)
    if columns.max() + margin < middle:
        return slice(middle, bg.hu.shape[2])
    raise SystemExit("the tumour lies in the middle of the chest")


def synthetic_cases(count, seed):
    """``(background, pool)``: lung2's tumour-free half chest and ``count`` synthetic lesions in it."""
    from dataclasses import replace

    from pastacore.training.default_model import load_background, make_lesion_pool

    bg = load_background("lung2", (96, 96, 96))
    half = _half_without_tumour(bg)
    cut = (slice(None), slice(None), half)
    corner = bg.grid.index_to_lps(np.array([[half.start, 0, 0]], float))[0]
    grid = replace(bg.grid, shape=bg.hu[cut].shape, origin=tuple(float(c) for c in corner))
    part = replace(
        bg,
        hu=np.ascontiguousarray(bg.hu[cut]),
        lung=np.ascontiguousarray(bg.lung[cut]),
        forbidden=np.zeros(bg.hu[cut].shape, bool),
        tumour=np.zeros(bg.hu[cut].shape, bool),
        grid=grid,
        centres=None,
    )
    return bg, part, make_lesion_pool([part], count, seed)


def labelled(part, item, n):
    """A labelled case: the half chest with one pooled lesion pasted in (lungs 1, lesion 2)."""
    from pastacore.geometry.volume import Volume
    from pastacore.training.cases import LabelledCase

    hu, targets = part.hu.copy(), part.lung.astype(np.uint8)
    hu[item.box] = item.image
    targets[item.box][item.lesion] = 2
    image = Volume(hu, part.grid)
    return LabelledCase(
        f"synthetic {n}", image, targets == 2, hu, targets, part.lung, part.grid, "classical", part.slice_positions, part.slice_mm
    )


def window_dice(model, hu, truth, centre, rng, size=96):
    """Lesion Dice of ``model`` in a ``size``^3 window around ``centre`` (offset by up to 16 voxels)."""
    import torch

    shape = np.array(hu.shape)
    start = np.clip(np.array(centre) + rng.integers(-16, 17, 3) - size // 2, 0, np.maximum(shape - size, 0))
    window = tuple(slice(int(a), int(a + size)) for a in start)
    x = torch.from_numpy(model.normalize(hu[window])[None, None])
    with torch.no_grad():
        predicted = model.network(x).argmax(1)[0].numpy() == 2
    t = truth[window]
    return float(2 * (predicted & t).sum() / max(predicted.sum() + t.sum(), 1))


def fewshot(args):
    from pastacore.training.finetune import finetune, mean_losses
    from pastacore.training.start_model import load_start_model

    start = load_start_model(None)
    most = max(args.shots)
    bg, part, pool = synthetic_cases(most + args.test, seed=11)
    if len(pool) < most + args.test:
        raise SystemExit(f"only {len(pool)} synthetic lesions could be placed")
    train_items, test_items = pool[:most], pool[most : most + args.test]
    cases = [labelled(part, item, n) for n, item in enumerate(train_items)]
    tests = []
    for item in test_items:
        case = labelled(part, item, 0)
        tests.append((case.hu, case.targets == 2, [(s.start + s.stop) // 2 for s in item.box]))
    tumour_centre = np.argwhere(bg.tumour).mean(0).astype(int)
    out = {
        "machine": f"{platform.machine()}, 2 threads",
        "steps": args.steps,
        "patch": args.patch,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "test_lesions": len(tests),
        "lesion_ml": [round(float(i.lesion.sum()) / 1000, 1) for i in pool[: most + args.test]],
        "runs": [],
    }

    def score(model, label, extra):
        rng = np.random.default_rng(5)
        synthetic = [window_dice(model, hu, truth, centre, rng) for hu, truth, centre in tests]
        real = [window_dice(model, bg.hu, bg.tumour, tumour_centre, rng) for _ in range(3)]
        row = {
            "shots": label,
            **extra,
            "synthetic_dice": [round(d, 3) for d in synthetic],
            "synthetic_mean": round(float(np.mean(synthetic)), 3),
            "real_tumour_dice": [round(d, 3) for d in real],
            "real_tumour_mean": round(float(np.mean(real)), 3),
        }
        out["runs"].append(row)
        save(args.out, out)
        print(row, flush=True)

    score(start.segmentation_model(), 0, {})
    for shots in args.shots:
        result = finetune(cases[:shots], start, settings(args, args.seed))
        score(
            start.segmentation_model(result.network),
            shots,
            {"train_seconds": round(result.log.seconds, 1), "loss": mean_losses(result.log.losses, 10)},
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("real", "fewshot"):
        p = sub.add_parser(name)
        p.add_argument("--steps", type=int, default=40)
        p.add_argument("--patch", type=int, default=64)
        p.add_argument("--optimizer", default="adamw")
        p.add_argument("--lr", type=float, default=3e-4)
        p.add_argument("--out", required=True)
    sub.choices["real"].add_argument("--train", default="lung1")
    sub.choices["real"].add_argument("--score", default="lung2")
    sub.choices["real"].add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    sub.choices["fewshot"].add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8])
    sub.choices["fewshot"].add_argument("--test", type=int, default=6)
    sub.choices["fewshot"].add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    {"real": real, "fewshot": fewshot}[args.what](args)


if __name__ == "__main__":
    main()
