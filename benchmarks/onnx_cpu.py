"""CPU latency of our ONNX graphs vs `torch.onnx.export` of timm's models, in onnxruntime.

    python benchmarks/onnx_cpu.py [--models inception_v4 ...] [--batches 1 8] [--runs 16]

For each timm-compatible spec, a timm model gets the test suite's randomised weights
(conv/fc N(0, 1/fan_in), biases N(0, 1), BN gamma U[.5, 1.5], beta N(0, 1), running mean
N(0, .1), running var U[.5, 1.5]) and is saved as safetensors; our graphs are built from
that very file (`archcompiler.build(spec, backend="onnx", weights=path)`), timm's is
exported with torch.onnx.export (the TorchScript exporter, dynamo=False: the dynamo
exporter needs onnxscript, which is not installed; opset 18). Two like-for-like settings:

- fixed:   ours with input_size=(S, S) (and the same with --optimize: the inference
           passes) vs timm exported at SxS with a dynamic batch (the usual export);
- dynamic: our default build (dynamic batch, height, width) vs timm exported with
           dynamic batch, height and width.

All sessions live in this one process with the same SessionOptions (intra_op_num_threads
2 by default, inter_op 1, sequential, ORT_ENABLE_ALL, CPU EP). Each comparison is a pair
of sessions run alternately (A B, B A, ...) after warm-up, twice with fresh sessions;
the table shows the median latency of each and the median over round pairs of the ratio
ours/timm (< 1: ours faster; a round pair's ratio is the geometric mean of its A B and
B A rounds, which cancels the position effect and slow phases of a shared machine). A control pair (timm's graph in two
sessions) shows this run's noise floor. Outputs are checked against timm eager first,
and the graphs onnxruntime actually runs (after its rewrites: BN and residual-scale
folding, NCHWc conv fusions) are compared node by node.
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


def export_timm(model, size: int, opset: int, dynamic_spatial: bool = False) -> bytes:
    import torch

    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_spatial else {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), buf, dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": axes, "logits": {0: "batch"}},
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
    so.log_severity_level = 3
    return so


def make_session(data: bytes, threads: int, level: str = "all"):
    import onnxruntime as ort

    t = time.perf_counter()
    sess = ort.InferenceSession(data, session_options(threads, level),
                                providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - t


def optimized_ops(data: bytes, threads: int, directory: str, tag: str) -> list[tuple]:
    """(domain, op type, attributes) of each node of the graph onnxruntime runs, in order."""
    import onnx
    import onnxruntime as ort

    so = session_options(threads)
    so.optimized_model_filepath = os.path.join(directory, f"{tag}.optimized.onnx")
    ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    model = onnx.load(so.optimized_model_filepath)
    skip = {"dilations"}  # torch writes MaxPool's default dilations=[1, 1] explicitly
    return [(n.domain, n.op_type, tuple(sorted((a.name, str(onnx.helper.get_attribute_value(a)))
                                              for a in n.attribute if a.name not in skip)))
            for n in model.graph.node]


def compare_graphs(ran: list[tuple], ref: list[tuple]) -> str:
    if ran == ref:
        return "identical to timm's, node for node"
    ops = lambda r: Counter(op for _, op, _ in r)  # noqa: E731
    more, fewer = ops(ran) - ops(ref), ops(ref) - ops(ran)
    if more or fewer:
        return f"differs from timm's: {dict(more)} more, {dict(fewer)} fewer"
    return "same ops as timm's, order or attributes differ"


def paired(a: bytes, b: bytes, x: np.ndarray, runs: int, warmup: int, threads: int,
           sets: int = 2, level: str = "all") -> tuple[float, float, float]:
    """Alternate two graphs, each in a session of its own: rounds A B, then B A, ...;
    `sets` times with fresh sessions (where a session's memory lands moves its speed by
    a few per cent). The ratio of a round pair (A B, B A) is the geometric mean of its
    two ratios, which cancels the position effect (the run right after the other
    session's is slower) and any slow phase longer than four runs. Returns (median s
    of a, median s of b, median over round pairs of the ratio b/a)."""
    feed = {"input": x}
    ta, tb, pair_ratios = [], [], []
    per_set = max(2, 2 * round(runs / sets / 2))
    for _ in range(sets):
        sa, sb = make_session(a, threads, level)[0], make_session(b, threads, level)[0]
        for s in (sa, sb):
            for _ in range(warmup):
                s.run(None, feed)
        ratios = []
        for r in range(per_set):
            order = ((sa, ta), (sb, tb)) if r % 2 == 0 else ((sb, tb), (sa, ta))
            for s, acc in order:
                t = time.perf_counter()
                s.run(None, feed)
                acc.append(time.perf_counter() - t)
            ratios.append(tb[-1] / ta[-1])
            if r % 2 == 1:
                pair_ratios.append(math.sqrt(ratios[-1] * ratios[-2]))
        del sa, sb
    return statistics.median(ta), statistics.median(tb), statistics.median(pair_ratios)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["inception_v4", "inception_resnet_v2", "inception_v3"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--runs", type=int, default=16, help="timed rounds per pair and batch")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--size", type=int, default=299)
    p.add_argument("--bn-study", action="store_true",
                   help="also: BN nodes vs folded with ORT_DISABLE_ALL, session creation, sizes")
    args = p.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import timm
    import torch
    from safetensors.torch import save_file

    import archcompiler as ac

    torch.set_num_threads(args.threads)
    S = args.size
    print(f"onnxruntime {ort.__version__} (CPUExecutionProvider), torch {torch.__version__}, timm "
          f"{timm.__version__}, {platform.machine()}, {os.cpu_count()} CPUs visible; "
          f"intra_op_num_threads={args.threads}, ORT_ENABLE_ALL; {args.runs} alternating rounds per "
          f"pair after {args.warmup} warm-up runs; input {S}x{S}; no GPU used; load average "
          f"{os.getloadavg()[0]:.2f} at start (other work on the machine shows in the control pair)")
    rows, study = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ref = timm.create_model(name, pretrained=False).eval()
            randomize(ref, seed=0)
            path = os.path.join(tmp, f"{name}.safetensors")
            save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
            spec = ac.load_spec(name)

            def ours(**kw):
                return ac.build(spec, backend="onnx", weights=path, opset=args.opset, **kw
                                ).SerializeToString()

            blobs = {
                "timm": export_timm(ref, S, args.opset),
                "ours": ours(input_size=(S, S)),
                "ours_opt": ours(input_size=(S, S), optimize=True),
                "timm_dyn": export_timm(ref, S, args.opset, dynamic_spatial=True),
                "ours_dyn": ours(),
            }
            if args.bn_study:
                blobs["ours_fold"] = ours(input_size=(S, S), optimize=("fold_bn",))
            for k, ref_k in (("ours", "timm"), ("ours_opt", "timm"), ("ours_dyn", "timm_dyn")):
                verdict = compare_graphs(optimized_ops(blobs[k], args.threads, tmp, f"{name}.{k}"),
                                         optimized_ops(blobs[ref_k], args.threads, tmp, f"{name}.{ref_k}"))
                print(f"{name}: the graph onnxruntime runs for {k}: {verdict}")
            blobs["control"] = blobs["timm"]
            sessions, created = {}, {}
            for k, blob in blobs.items():
                sessions[k], created[k] = make_session(blob, args.threads)
            x = np.random.default_rng(0).standard_normal((2, 3, S, S)).astype(np.float32)
            with torch.no_grad():
                want = ref(torch.from_numpy(x)).numpy()
            diffs = {k: float(np.abs(s.run(None, {"input": x})[0] - want).max())
                     for k, s in sessions.items()}
            del sessions
            print(f"{name}: max |onnxruntime - timm eager| " +
                  ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
            for b in args.batches:
                xb = np.random.default_rng(b).standard_normal((b, 3, S, S)).astype(np.float32)
                res = {}
                for key, (a_, b_) in {"control": ("timm", "control"), "fixed": ("timm", "ours"),
                                      "opt": ("timm", "ours_opt"),
                                      "dynamic": ("timm_dyn", "ours_dyn")}.items():
                    res[key] = paired(blobs[a_], blobs[b_], xb, args.runs, args.warmup, args.threads)
                    print(f"  batch {b} {key:8s}: {a_} {res[key][0] * 1e3:.1f} ms, {b_} "
                          f"{res[key][1] * 1e3:.1f} ms, ratio {res[key][2]:.3f}", flush=True)
                rows.append((name, b, res))
            if args.bn_study:
                x1 = np.random.default_rng(1).standard_normal((1, 3, S, S)).astype(np.float32)
                bn, folded, ratio = paired(blobs["ours"], blobs["ours_fold"], x1, args.runs,
                                           args.warmup, args.threads, level="none")
                created["ours_fold"] = make_session(blobs["ours_fold"], args.threads)[1]
                nodes = {k: len(onnx.load_from_string(blobs[k]).graph.node) for k in blobs}
                study.append((name, bn, folded, ratio, created, nodes,
                              {k: len(v) for k, v in blobs.items()}))

    print()
    print("| model | batch | timm export, fixed (ms) | ours --input-size (ms) | ours/timm "
          "| ours --input-size --optimize (ms) | /timm | timm export, dynamic HxW (ms) "
          "| ours default, dynamic HxW (ms) | ours/timm | control: timm/timm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, b, r in rows:
        f, o, d, c = r["fixed"], r["opt"], r["dynamic"], r["control"]
        print(f"| {name} | {b} | {f[0] * 1e3:.1f} | {f[1] * 1e3:.1f} | {f[2]:.3f} | {o[1] * 1e3:.1f} "
              f"| {o[2]:.3f} | {d[0] * 1e3:.1f} | {d[1] * 1e3:.1f} | {d[2]:.3f} | {c[2]:.3f} |")
    if study:
        print()
        print("BN study, batch 1, fixed size: latency with ORT_DISABLE_ALL (no onnxruntime fusion "
              "at all), session creation with ORT_ENABLE_ALL, node count, serialized size")
        print("| model | BN nodes, no ORT opt (ms) | folded, no ORT opt (ms) | folded/BN "
              "| session init BN / folded / timm (s) | nodes BN / folded / timm | MB BN / folded / timm |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, bn, fo, ratio, created, nodes, size in study:
            print(f"| {name} | {bn * 1e3:.1f} | {fo * 1e3:.1f} | {ratio:.3f} | {created['ours']:.2f} / "
                  f"{created['ours_fold']:.2f} / {created['timm']:.2f} | {nodes['ours']} / "
                  f"{nodes['ours_fold']} / {nodes['timm']} | {size['ours'] / 1e6:.1f} / "
                  f"{size['ours_fold'] / 1e6:.1f} / {size['timm'] / 1e6:.1f} |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    # slower = beyond 3% and beyond this run's own noise (the control pair)
    slower = [(n, b, k) for n, b, r in rows for k in ("fixed", "dynamic")
              if r[k][2] > max(1.03, r["control"][2] + 0.02)]
    if slower:
        print(f"\nours slower than timm's export beyond this run's noise: {slower}", file=sys.stderr)
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
