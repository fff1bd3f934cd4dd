"""MIS-FM networks (PyMIC family): speed against a plain-PyTorch implementation, and what VolF
pretraining on the available CTs changes for few-shot fine-tuning.

``speed``: FMUNet and PCT-Net (our modules, ``pastacore.families.pymic``) against the functional
reference of the tests (``Testing/pymic_reference.py``: plain ``torch.nn.functional`` over the
same state dict, textbook attention), in one run, interleaved, median of ``--repeats``: forward
(evaluation, no grad) and a training step (training mode, cross-entropy on the full-resolution
output, backward, SGD). Ours is also timed channels-last and with bf16 autocast where the CPU
has native bf16.

``fewshot``: fine-tune on ``lung1``'s real tumour (organ from the classical lung mask, as
``pasta finetune --lesion-label 1``), score ``lung2`` as ``pasta segment`` runs by default, from
(a) a randomly initialised FMUNet (a quarter of the released widths), (b) the built-in PASTA-topology model, (c) the same FMUNet
VolF-pretrained (``pasta pretrain``'s code, once, seed 0) on lung1 and lung2 without labels;
the same recipe and steps for all, one run per fine-tuning seed. Results go to ``--out`` (JSON) as they come.

    PYTHONPATH=PastaSlicer:Testing .venv/bin/python Testing/Benchmarks/benchmark_misfm.py speed --out speed.json
    PYTHONPATH=PastaSlicer:Testing .venv/bin/python Testing/Benchmarks/benchmark_misfm.py fewshot --seeds 1 2 3 \\
        --steps 40 --patch 64 --volf-steps 150 --out fewshot.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchmark_finetune import settings as finetune_settings
from timing import median_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Testing/: the reference implementation

FMUNET = {"family": "pymic", "net_type": "FMUNet", "class_num": 2, "feature_chns": [16, 32, 64, 128, 256]}
# the few-shot arms' FMUNet: a quarter of the released widths (a CPU run stays affordable)
FEWSHOT_FMUNET = {**FMUNET, "feature_chns": [8, 16, 32, 64, 128]}
PCTNET = {
    "family": "pymic",
    "net_type": "PCTNet",
    "class_num": 2,
    "input_size": [32, 64, 64],
    "feature_chns": [12, 24, 64, 128, 256],
    "resolution_mode": 1,
}


def save(path, data):
    Path(path).write_text(json.dumps(data, indent=2))


# --- speed -------------------------------------------------------------------------------------------


_median = median_seconds


def _contenders(config, x, y):
    """name -> (forward(), training step()) closures."""
    import torch
    from pymic_reference import fmunet_reference, pctnet_reference

    from pastacore.families.pymic.checkpoint import build_network
    from pastacore.families.pymic.config import check_config
    from pastacore.training.recipe import training_precision

    config = check_config(config)
    torch.manual_seed(0)
    ours = build_network(config)
    reference = fmunet_reference if config["net_type"] == "FMUNet" else pctnet_reference
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    leaves = {k: v.requires_grad_(True) for k, v in state.items() if k in dict(ours.named_parameters())}
    ref_optimizer = torch.optim.SGD(list(leaves.values()), lr=1e-3)
    optimizer = torch.optim.SGD(ours.parameters(), lr=1e-3)
    loss = torch.nn.CrossEntropyLoss()
    bf16, _ = training_precision("cpu", True)

    def ours_forward(channels_last=False, dtype=None):
        net = ours.eval().to(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
        inp = x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            net(inp)

    def ours_step(channels_last=False, dtype=None):
        net = ours.train().to(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
        inp = x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = net(inp)
        optimizer.zero_grad()
        loss(out.float(), y).backward()
        optimizer.step()

    def ref_forward():
        with torch.no_grad():
            reference(state, config, x)

    def ref_step():
        out = reference(state, config, x, training=True)[0]
        ref_optimizer.zero_grad()
        loss(out, y).backward()
        ref_optimizer.step()

    contenders = {
        "reference (plain PyTorch, fp32)": (ref_forward, ref_step),
        "ours fp32": (ours_forward, ours_step),
        "ours fp32 channels-last": (lambda: ours_forward(True), lambda: ours_step(True)),
    }
    if bf16 is not None:
        contenders["ours bf16 autocast channels-last"] = (lambda: ours_forward(True, bf16), lambda: ours_step(True, bf16))
    return contenders


def speed(args):
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": f"{platform.machine()}, {args.threads} thread(s), torch {torch.__version__}", "networks": []}
    for config in (FMUNET, PCTNET):
        size = config.get("input_size", [32, 64, 64])
        x = torch.randn(1, 1, *size)
        y = torch.randint(0, 2, (1, *size))
        contenders = _contenders(config, x, y)
        for forward, step in contenders.values():  # warm-up (oneDNN primitives, allocator)
            forward()
            step()
        times = {name: {"forward": [], "step": []} for name in contenders}
        for _ in range(args.repeats):  # interleaved, so a busy moment of the machine hits every contender
            for name, (forward, step) in contenders.items():
                times[name]["forward"].append(_median(forward, 1))
                times[name]["step"].append(_median(step, 1))
        reference = "reference (plain PyTorch, fp32)"
        ref_forward = statistics.median(times[reference]["forward"])
        ref_step = statistics.median(times[reference]["step"])
        rows = []
        for name, t in times.items():
            forward, step = statistics.median(t["forward"]), statistics.median(t["step"])
            rows.append(
                {
                    "implementation": name,
                    "forward_s": round(forward, 3),
                    "step_s": round(step, 3),
                    "forward_speedup": round(ref_forward / forward, 2),
                    "step_speedup": round(ref_step / step, 2),
                }
            )
        entry = {"network": config["net_type"], "config": config, "input": [1, 1, *size], "rows": rows}
        out["networks"].append(entry)
        save(args.out, out)
        for row in rows:
            print(config["net_type"], row, flush=True)


# --- few-shot ----------------------------------------------------------------------------------------


_finetune_settings = finetune_settings  # the fine-tuning benchmark's settings, with --threads


def _scored(model, case):
    from pastacore.inference.segment import segment_volume
    from pastacore.training.validation import score_lesions

    result = segment_volume(case.image, model, device="cpu")
    predicted = np.isin(result.labels.array, model.lesion_values)
    return {**score_lesions(predicted, case.lesion, tuple(case.image.grid.spacing)[::-1]), "seconds": round(result.seconds, 1)}


def _fmunet_start(weights, config, organ="lung"):
    from pastacore.training.start_model import load_family_start

    return load_family_start(weights, config, None, organ, "benchmark")


def _pretrained(args, folder, seed):
    """VolF-pretrain the benchmark's FMUNet (class_num 5, K = 4) on lung1 and lung2 (no labels)."""
    import torch

    from pastacore.families.pymic.checkpoint import pymic_checkpoint
    from pastacore.families.pymic.config import check_config
    from pastacore.families.pymic.prepare import prepare_cohort
    from pastacore.families.pymic.pretrain import PretrainSettings, pretrain
    from pastacore.samples import sample_paths

    config = check_config({**FEWSHOT_FMUNET, "class_num": 5})
    volumes, _ = prepare_cohort([sample_paths(n)[0] for n in ("lung1", "lung2")], folder / "prepared", config["hu_window"])
    patch = tuple(int(p) for p in args.volf_patch.split(","))
    result = pretrain(volumes, config, PretrainSettings(steps=args.volf_steps, patch=patch, seed=seed, checkpoint_every=0))
    weights = folder / f"volf_seed{seed}.pt"
    torch.save(pymic_checkpoint(result.network.state_dict(), None, args.volf_steps, result.valid_pred), weights)
    return weights, config, result


def fewshot(args):
    import torch

    from pastacore.fileio import read_volume
    from pastacore.samples import sample_paths
    from pastacore.training.cases import load_case
    from pastacore.training.finetune import finetune, mean_losses
    from pastacore.training.start_model import load_start_model

    torch.set_num_threads(args.threads)
    folder = Path(args.out).with_suffix("")
    folder.mkdir(exist_ok=True)
    out = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    out.setdefault("machine", f"{platform.machine()}, {args.threads} thread(s)")
    out.setdefault("recipe", dict(vars(args)) | {"fmunet": FEWSHOT_FMUNET["feature_chns"]})
    out.setdefault("runs", [])
    done = {(r["arm"], r["seed"]) for r in out["runs"]}
    built_in = load_start_model(None)
    images = {n: [read_volume(p, is_label=i == 1) for i, p in enumerate(sample_paths(n))] for n in ("lung1", "lung2")}
    for seed in args.seeds:
        starts = {"built-in PASTA model": lambda: built_in}
        starts["FMUNet, random init"] = lambda: _random_fmunet(folder, seed)
        starts["FMUNet, VolF-pretrained"] = lambda: _fmunet_start(*_pretrained_once(args, folder, out))
        for arm, make in starts.items():
            if (arm, seed) in done:
                continue
            start = make()
            train = load_case(*images["lung1"], start, name="lung1", lesion_labels=(1,))
            score = load_case(*images["lung2"], start, name="lung2", lesion_labels=(1,))
            result = finetune([train], start, _finetune_settings(args, seed))
            started = time.perf_counter()
            scores = _scored(start.segmentation_model(result.network), score)
            run = {
                "arm": arm,
                "seed": seed,
                "train_seconds": round(result.log.seconds, 1),
                "seconds_per_step": round(result.log.seconds / args.steps, 2),
                "loss": mean_losses(result.log.losses, 10),
                "score_seconds": round(time.perf_counter() - started, 1),
                "scores": scores,
            }
            out["runs"].append(run)
            save(args.out, out)
            print(run, flush=True)


def _random_fmunet(folder, seed):
    import torch

    from pastacore.families.pymic.checkpoint import build_network, pymic_checkpoint
    from pastacore.families.pymic.config import check_config

    config = check_config({**FEWSHOT_FMUNET, "class_num": 3})
    torch.manual_seed(seed)
    weights = folder / f"random_seed{seed}.pt"
    torch.save(pymic_checkpoint(build_network(config).state_dict(), None, 0, 0.0), weights)
    return _fmunet_start(weights, config)


def _pretrained_once(args, folder, out, seed=0):
    """The VolF weights (pretrained once, with ``seed``, for every fine-tuning seed; kept in the run's folder)."""
    from pastacore.families.pymic.config import check_config

    weights = folder / f"volf_seed{seed}.pt"
    config = check_config({**FEWSHOT_FMUNET, "class_num": 5})
    if not weights.is_file():
        weights, config, result = _pretrained(args, folder, seed)
        out.setdefault("volf", []).append(
            {
                "seed": seed,
                "steps": args.volf_steps,
                "patch": args.volf_patch,
                "seconds": round(result.seconds, 1),
                "loss_first_last": [round(float(np.mean(result.losses[:10])), 3), round(float(np.mean(result.losses[-10:])), 3)],
                "dice_last": round(result.valid_pred, 3),
            }
        )
        save(args.out, out)
    return weights, config


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True)
    f = sub.add_parser("fewshot")
    f.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    f.add_argument("--steps", type=int, default=40)
    f.add_argument("--patch", type=int, default=64)
    f.add_argument("--optimizer", default="adamw")
    f.add_argument("--lr", type=float, default=3e-4)
    f.add_argument("--volf-steps", type=int, default=150)
    f.add_argument("--volf-patch", default="32,64,64")
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--out", required=True)
    args = parser.parse_args()
    {"speed": speed, "fewshot": fewshot}[args.what](args)


if __name__ == "__main__":
    main()
