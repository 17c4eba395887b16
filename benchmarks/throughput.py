"""Throughput of our built modules vs timm's hand-written ones, in the same process.

    python benchmarks/throughput.py                   # GPU if present, else CPU (2 threads)
    python benchmarks/throughput.py --device cuda --batch 256 --dtypes fp32 bf16 --modes eager compile

Same weights on both sides (ours -> timm names through the spec's rename rules), eval
mode, channels_last, runs interleaved (ours, timm, ours, ...), median seconds per batch.
Prints images/s and the ratio ours/timm. No assertions: numbers are for reading.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

import archcompiler as ac
from archcompiler.backends.torch import build
from archcompiler.weights import to_format

SPECS = ["inception_v4", "inception_resnet_v2", "inception_v3"]


def timm_twin(spec, ours):
    import timm

    ref = timm.create_model(spec.name, pretrained=False)
    state = {k: v for k, v in ours.state_dict().items()}
    ref.load_state_dict(to_format(spec, state, "timm"), strict=True)
    return ref


def make_variant(model, device, dtype, mode):
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    if mode == "compile":
        model = torch.compile(model)
    elif mode == "compile-freeze":
        import torch._inductor.config as cfg

        cfg.freezing = True
        model = torch.compile(model)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(variants: dict, x, iters: int, warmup: int, device) -> dict:
    times = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():
            for _ in range(warmup):
                fn(x)
        sync(device)
        for _ in range(iters):
            for name, fn in variants.items():  # interleaved
                sync(device)
                t0 = time.perf_counter()
                fn(x)
                sync(device)
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--dtypes", nargs="+", default=None)
    p.add_argument("--modes", nargs="+", default=None, help="eager compile compile-freeze")
    p.add_argument("--specs", nargs="+", default=SPECS)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimized", action="store_true", help="also our --optimize build")
    args = p.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    torch.set_num_threads(args.threads)
    batch = args.batch or (256 if gpu else 2)
    dtypes = args.dtypes or (["fp32", "bf16"] if gpu else ["fp32"])
    modes = args.modes or (["eager", "compile"] if gpu else ["eager"])
    iters = args.iters or (20 if gpu else 5)
    where = torch.cuda.get_device_name(device) if gpu else f"CPU, {args.threads} threads"
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}; {where}; torch {torch.__version__}; batch "
          f"{batch}; 3x299x299; channels_last; median of {iters} interleaved runs; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'model':<22} {'dtype':<5} {'mode':<15} {'variant':<10} {'images/s':>10} {'vs timm':>8}")
    for name in args.specs:
        spec = ac.load_spec(name)
        ours = build(spec, seed=0)
        ref = timm_twin(spec, ours)
        opt = build(spec, seed=0, optimize=True) if args.optimized else None
        for dtype in dtypes:
            for mode in modes:
                torch._dynamo.reset()
                # the control: a second copy of timm's model, measured like the others;
                # its ratio to timm is the noise every other ratio carries
                variants = {"timm": make_variant(ref, device, dtype, mode),
                            "control": make_variant(copy.deepcopy(ref), device, dtype, mode),
                            "ours": make_variant(ours, device, dtype, mode)}
                if opt is not None:
                    variants["ours-opt"] = make_variant(opt, device, dtype, mode)
                x = torch.randn(batch, 3, 299, 299, device=device).to(memory_format=torch.channels_last)
                if dtype == "bf16":
                    x = x.to(torch.bfloat16)
                med = bench(variants, x, iters, warmup=3 if gpu else 1, device=device)
                for k, t in med.items():
                    print(f"{name:<22} {dtype:<5} {mode:<15} {k:<10} {batch / t:>10.2f} "
                          f"{med['timm'] / t:>7.3f}x")
                print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
