"""CPU latency of our ONNX graphs vs `torch.onnx.export` of timm's models, in onnxruntime.

    python benchmarks/onnx_cpu.py [--models inception_v4 ...] [--batches 1 8] [--runs 20]

For each timm-compatible spec: a timm model gets the randomised weights of the test
suite (conv/fc N(0, 1/fan_in), biases N(0, 1), BN gamma U[.5, 1.5], beta N(0, 1),
running mean N(0, .1), running var U[.5, 1.5]) and is saved as safetensors; our graph is
built from that very file (`archcompiler.build(spec, backend="onnx", weights=path)`:
the default build, dynamic batch and spatial size, BatchNormalization nodes; and the
`--optimize` build, BN folded), timm's is exported with torch.onnx.export (the
TorchScript exporter, dynamo=False: the dynamo exporter needs onnxscript; opset 18,
dynamic batch). All sessions live in this one process with the same SessionOptions
(intra_op_num_threads=2 by default, inter_op 1, sequential, ORT_ENABLE_ALL, CPU EP);
runs are interleaved (every session once per round, the order rotating each round)
after warm-up, and the table shows medians and the ratio ours/timm (< 1: ours faster).
A second, independent session of timm's graph ("control") shows the noise floor: its
ratio to the first would be 1.000 on a quiet machine. Outputs are checked equal (max abs
diff) before timing, and the graphs onnxruntime actually runs (after its ORT_ENABLE_ALL
rewrites: BN and residual-scale folding, NCHWc conv fusions) are compared node by node.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter

import numpy as np


def randomize(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = math.prod(mod.weight.shape[1:])
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / fan_in ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


def export_timm(model, size: int, opset: int) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buf, dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
    return buf.getvalue()


def session_options(threads: int, level: str = "all"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    return so


def make_session(data: bytes, threads: int, level: str = "all"):
    import onnxruntime as ort

    t = time.perf_counter()
    sess = ort.InferenceSession(data, session_options(threads, level),
                                providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - t


def optimized_ops(data: bytes, threads: int, directory: str, tag: str) -> list[tuple]:
    """(op type, attributes) of each node of the graph onnxruntime runs, in its order."""
    import onnx
    import onnxruntime as ort

    so = session_options(threads)
    so.optimized_model_filepath = os.path.join(directory, f"{tag}.optimized.onnx")
    so.log_severity_level = 3  # the NCHWc "hardware specific" notice
    ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    model = onnx.load(so.optimized_model_filepath)
    skip = {"dilations"}  # torch writes the default dilations=[1, 1] of MaxPool explicitly
    return [(n.domain, n.op_type, tuple(sorted((a.name, str(onnx.helper.get_attribute_value(a)))
                                              for a in n.attribute if a.name not in skip)))
            for n in model.graph.node]


def interleaved(sessions: dict, x: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per run of each session, interleaved round by round."""
    names = list(sessions)
    for name in names:
        for _ in range(warmup):
            sessions[name].run(None, {"input": x})
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t = time.perf_counter()
            sessions[name].run(None, {"input": x})
            times[name].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["inception_v4", "inception_resnet_v2", "inception_v3"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--runs", type=int, default=20, help="timed runs per session and batch")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--size", type=int, default=299)
    p.add_argument("--bn-study", action="store_true",
                   help="also: BN vs folded with ORT_DISABLE_ALL, session creation times, sizes")
    args = p.parse_args(argv)

    import onnxruntime as ort
    import timm
    import torch

    import archcompiler as ac

    torch.set_num_threads(args.threads)
    print(f"onnxruntime {ort.__version__} (CPU EP), torch {torch.__version__}, timm {timm.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"intra_op_num_threads={args.threads}, ORT_ENABLE_ALL, {args.runs} interleaved runs "
          f"after {args.warmup} warm-up, medians; input {args.size}x{args.size}")
    rows, study = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ref = timm.create_model(name, pretrained=False).eval()
            randomize(ref, seed=0)
            path = os.path.join(tmp, f"{name}.safetensors")
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
            spec = ac.load_spec(name)
            blobs = {
                "timm": export_timm(ref, args.size, args.opset),
                "ours": ac.build(spec, backend="onnx", weights=path, opset=args.opset).SerializeToString(),
                "ours_opt": ac.build(spec, backend="onnx", weights=path, opset=args.opset,
                                     optimize=True).SerializeToString(),
            }
            sessions, created = {}, {}
            for k, blob in blobs.items():
                sessions[k], created[k] = make_session(blob, args.threads)
            sessions["control"], _ = make_session(blobs["timm"], args.threads)
            ran = {k: optimized_ops(blobs[k], args.threads, tmp, f"{name}.{k}") for k in blobs}
            same = {k: ran[k] == ran["timm"] for k in ("ours", "ours_opt")}
            for k in ("ours", "ours_opt"):
                if same[k]:
                    verdict = "identical to timm's, node for node"
                else:
                    ops = lambda r: Counter(op for _, op, _ in r)  # noqa: E731
                    more, fewer = ops(ran[k]) - ops(ran["timm"]), ops(ran["timm"]) - ops(ran[k])
                    verdict = (f"differs from timm's: {dict(more)} more, {dict(fewer)} fewer"
                               if more or fewer else "same ops, order or attributes differ")
                print(f"{name}: graph onnxruntime runs for {k} ({len(ran[k])} nodes, timm's "
                      f"{len(ran['timm'])}): {verdict}")
            x = np.random.default_rng(0).standard_normal((2, 3, args.size, args.size)).astype(np.float32)
            with torch.no_grad():
                want = ref(torch.from_numpy(x)).numpy()
            diffs = {k: float(np.abs(s.run(None, {"input": x})[0] - want).max()) for k, s in sessions.items()}
            print(f"{name}: max |ORT - timm eager| " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
            for b in args.batches:
                xb = np.random.default_rng(b).standard_normal((b, 3, args.size, args.size)).astype(np.float32)
                med = interleaved(sessions, xb, args.runs, args.warmup)
                rows.append((name, b, med["timm"], med["ours"], med["ours_opt"], med["control"]))
                print(f"  batch {b}: timm {med['timm'] * 1e3:.1f} ms, ours {med['ours'] * 1e3:.1f} ms, "
                      f"ours --optimize {med['ours_opt'] * 1e3:.1f} ms, control (timm again) "
                      f"{med['control'] * 1e3:.1f} ms", flush=True)
            if args.bn_study:
                raw = {}
                for k in ("ours", "ours_opt"):
                    raw[k], _ = make_session(blobs[k], args.threads, "none")
                med = interleaved(raw, np.random.default_rng(1).standard_normal(
                    (1, 3, args.size, args.size)).astype(np.float32), args.runs, args.warmup)
                nodes = {k: len(__import__("onnx").load_from_string(v).graph.node) for k, v in blobs.items()}
                study.append((name, med["ours"], med["ours_opt"], created, nodes,
                              {k: len(v) for k, v in blobs.items()}))
            del sessions

    print()
    print("| model | batch | timm export (ms) | ours (ms) | ours/timm | ours --optimize (ms) "
          "| ours --optimize/timm | control/timm (noise) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, b, t, o, oo, c in rows:
        print(f"| {name} | {b} | {t * 1e3:.1f} | {o * 1e3:.1f} | {o / t:.3f} | {oo * 1e3:.1f} "
              f"| {oo / t:.3f} | {c / t:.3f} |")
    if study:
        print()
        print("BN study (batch 1): latency with ORT_DISABLE_ALL (no fusion at all), session creation "
              "with ORT_ENABLE_ALL, node count, serialized size")
        print("| model | BN nodes, no ORT opt (ms) | folded, no ORT opt (ms) | session init BN / folded / timm (s) "
              "| nodes BN / folded / timm | MB BN / folded / timm |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, bn, fo, created, nodes, size in study:
            print(f"| {name} | {bn * 1e3:.1f} | {fo * 1e3:.1f} | {created['ours']:.2f} / "
                  f"{created['ours_opt']:.2f} / {created['timm']:.2f} | {nodes['ours']} / "
                  f"{nodes['ours_opt']} / {nodes['timm']} | {size['ours'] / 1e6:.1f} / "
                  f"{size['ours_opt'] / 1e6:.1f} / {size['timm'] / 1e6:.1f} |")
    # "slower" = beyond the noise this very run measured (control vs timm), and 3%
    slower = [(n, b) for n, b, t, o, _, c in rows if o / t > max(1.03, c / t + 0.02)]
    if slower:
        print(f"\nours slower than timm's export beyond this run's noise: {slower}", file=sys.stderr)
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
