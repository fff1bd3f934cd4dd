"""Seconds per step of the released-size LesionDiffusion networks, measured and estimated.

No checkpoint is needed: the networks are built from the released configs (the model
manifest) with random weights, which cost the same time as the real ones. For each network
the script times ``--repeats`` calls (after one warm-up call on CUDA) on ``--device`` with the
backend's precision, and prints it next to the backend's own estimate (FLOP count x measured
rates), plus seconds per lesion at ``--steps`` DDIM steps. Usage::

    python Testing/Benchmarks/benchmark_lesiondiffusion.py [--device cuda] [--networks lmnet,linet,vq]
                                                           [--repeats 1] [--steps 200]

Prints a Markdown table for ``RESULTS.md``. On a 2-core CPU one LMNet step takes about a
minute, one LINet step two to five minutes and the VQ round trip several minutes.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def main():
    from pastacore.diffusion.config import load_config
    from pastacore.diffusion.estimate import rates, unet_cost, vq_cost
    from pastacore.diffusion.precision import autocast, resolve_device, resolve_precision
    from pastacore.diffusion.sources import released_config
    from pastacore.diffusion.unet import DiffusionUNet
    from pastacore.diffusion.vq import VQModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--networks", default="lmnet,linet,vq")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = resolve_device(args.device)
    lm, li = load_config(released_config("lmnet")), load_config(released_config("linet"))
    measured_rates = rates(device.type)
    rows = []

    def timed(run):
        if device.type == "cuda":
            run()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.repeats):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        return (time.perf_counter() - start) / args.repeats, memory

    for name in args.networks.split(","):
        if name in ("lmnet", "linet"):
            spec = lm if name == "lmnet" else li
            precision = resolve_precision("auto", device, spec.unet.use_fp16)
            net = DiffusionUNet(spec.unet).eval().to(device)
            x = torch.randn(1, spec.unet.in_channels, *spec.image_size, device=device)
            t = torch.tensor([500], device=device)
            context = torch.randn(1, 7 if name == "lmnet" else 10, spec.unet.context_dim, device=device)

            def run(net=net, x=x, t=t, context=context, precision=precision):
                with torch.inference_mode(), autocast(device, precision):
                    net(x, t, context)

            seconds, memory = timed(run)
            estimate = unet_cost(spec.unet, tuple(spec.image_size), context.shape[1]).seconds(measured_rates)
            rows.append((f"{name} step {tuple(spec.image_size)}", precision, seconds, estimate, seconds * args.steps, memory))
            del net
        elif name == "vq":
            spec = li.first_stage
            precision = resolve_precision("auto", device, True)
            vq = VQModel(spec).eval().to(device)
            size = tuple(n * spec.factor for n in li.image_size)
            x = torch.rand(1, 1, *size, device=device)

            def run(vq=vq, x=x, precision=precision):
                with torch.inference_mode(), autocast(device, precision):
                    vq.decode(vq.encode(x))

            seconds, memory = timed(run)
            rows.append(
                (f"VQ encode+decode {size}", precision, seconds, vq_cost(spec, size).seconds(measured_rates), seconds, memory)
            )
            del vq
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"{platform.machine()}, {torch.get_num_threads()} threads"
    print(f"Device: {name}; torch {torch.__version__}; mean of {args.repeats} call(s)\n")
    print(
        f"| network | precision | measured (s) | estimated (s) | per lesion at {args.steps} steps (s) | peak GPU memory (GiB) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.0f} | {row[5]:.2f} |")


if __name__ == "__main__":
    main()
