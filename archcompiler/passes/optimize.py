"""Inference optimizations: small transforms of (graph, weights) that keep the function.

Each pass is a pure function `(graph, weights) -> (graph, weights)`: nodes are immutable,
new ones are made; the input mapping is not modified. Weights are numpy arrays in our
naming, so the torch and ONNX backends share the passes (and the ONNX path needs no
torch). `optimize_for_inference` runs them in order:

1. drop_dropout       dropout is the identity at inference
2. fold_bn            conv -> BN (running statistics) becomes one conv with a bias
3. commute_pool_conv  avgpool -> 1x1 conv becomes 1x1 conv (no bias) -> avgpool -> +bias,
                      exact for both pool kinds (the bias must come after the pool when
                      padded zeros count), so the conv reads the block input and can join
                      its siblings
4. fold_residual_scale  x + s * conv(r) becomes x + conv'(r) with W' = s W, b' = s b
5. fuse_siblings      convolutions reading the same tensor with the same kernel, stride and
                      padding become one convolution whose output channels are sliced
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

import numpy as np

from ..ir.graph import Graph, Node
from .fold_bn import fold_bn

Weights = Mapping[str, np.ndarray]


def _rewire(graph: Graph, nodes: list[Node], renamed: dict[str, str], keep=frozenset()) -> Graph:
    """A graph with `nodes`, where every reference to a key of `renamed` reads its value
    (except inside the nodes named in `keep`)."""
    def r(name):
        while name in renamed:
            name = renamed[name]
        return name

    nodes = [n.with_(inputs=tuple(r(i) for i in n.inputs))
             if n.name not in keep and any(i in renamed for i in n.inputs) else n for n in nodes]
    return replace(graph, nodes=tuple(nodes), outputs=tuple(r(o) for o in graph.outputs),
                   aux_outputs=tuple(r(o) for o in graph.aux_outputs),
                   stages=tuple(replace(s, output=r(s.output)) for s in graph.stages))


def drop_dropout(graph: Graph, weights: Weights) -> tuple[Graph, dict]:
    renamed = {n.name: n.inputs[0] for n in graph.nodes if n.op in ("dropout", "drop_path")}
    return _rewire(graph, [n for n in graph.nodes if n.name not in renamed], renamed), dict(weights)


def commute_pool_conv(graph: Graph, weights: Weights) -> tuple[Graph, dict]:
    """avgpool (stride 1, any padding) -> 1x1 conv  ==>  1x1 conv (no bias) -> avgpool -> +bias."""
    consumers = graph.consumers()
    by_name = graph.by_name
    swaps = {}  # pool name -> conv node
    for node in graph.nodes:
        if node.op != "conv2d" or tuple(node.attrs["kernel"]) != (1, 1) or node.attrs["groups"] != 1 \
                or tuple(node.attrs["stride"]) != (1, 1) or tuple(node.attrs["padding"]) != (0, 0):
            continue
        pool = by_name.get(node.inputs[0])
        if pool is None or pool.op != "avgpool" or consumers[pool.name] != [node.name] \
                or pool.name in graph.outputs:
            continue
        swaps[pool.name] = node
    if not swaps:
        return graph, dict(weights)
    out = dict(weights)
    moved = {conv.name for conv in swaps.values()}
    nodes, result_of = [], {}
    for node in graph.nodes:
        if node.name in moved:
            continue
        if node.name not in swaps:
            nodes.append(node)
            continue
        conv = swaps[node.name]
        nodes.append(conv.with_(inputs=node.inputs, attrs={**conv.attrs, "bias": False}))
        nodes.append(node.with_(inputs=(conv.name,)))  # the pool now reads the conv
        result_of[conv.name] = node.name
        if conv.attrs["bias"]:
            bias = Node(f"{conv.name}_bias", "bias_add", (node.name,), {}, conv.loc, conv.stage)
            out[f"{bias.name}.bias"] = out.pop(f"{conv.name}.bias")
            nodes.append(bias.with_(attrs={}))
            result_of[conv.name] = bias.name
    # whatever read the conv's output reads the end of the new chain
    return _rewire(graph, nodes, result_of, keep=set(swaps)), out


def fold_residual_scale(graph: Graph, weights: Weights) -> tuple[Graph, dict]:
    consumers = graph.consumers()
    by_name = graph.by_name
    out = dict(weights)
    nodes = list(graph.nodes)
    for i, node in enumerate(graph.nodes):
        if node.op != "scale_add" or node.attrs["scale"] == 1.0:
            continue
        proj = by_name[node.inputs[1]]
        if proj.op != "conv2d" or consumers[proj.name] != [node.name]:
            continue
        s = float(node.attrs["scale"])
        for p in ("weight", "bias") if proj.attrs["bias"] else ("weight",):
            w = out[f"{proj.name}.{p}"]
            out[f"{proj.name}.{p}"] = (w.astype(np.float64) * s).astype(w.dtype)
        nodes[i] = node.with_(attrs={**node.attrs, "scale": 1.0})
    return replace(graph, nodes=tuple(nodes)), out


def fuse_siblings(graph: Graph, weights: Weights) -> tuple[Graph, dict]:
    """Convolutions that read the same tensor with the same window become one."""
    groups: dict[tuple, list[Node]] = {}
    consumers, by_name = graph.consumers(), graph.by_name
    for node in graph.nodes:
        if node.op == "conv2d" and node.attrs["groups"] == 1:
            a = node.attrs
            # the whole window must agree: kernel, stride, padding (incl. tf_same), dilation;
            # and the activation that follows: no fusion across different activations
            after = [by_name[c] for c in consumers.get(node.name, [])]
            act = tuple((c.op, tuple(sorted(c.attrs.items()))) for c in after if c.op != "conv2d")
            key = (node.inputs[0], tuple(a["kernel"]), tuple(a["stride"]),
                   a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"]),
                   tuple(a.get("dilation", (1, 1))), act if len(after) == 1 else ("many",))
            groups.setdefault(key, []).append(node)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return graph, dict(weights)
    out = dict(weights)
    first_of: dict[str, tuple] = {}
    members: set[str] = set()
    for key, convs in groups.items():
        first_of[convs[0].name] = key
        members |= {c.name for c in convs}
    nodes: list[Node] = []
    count: dict[str, int] = {}
    for node in graph.nodes:
        if node.name in first_of:
            convs = groups[first_of[node.name]]
            prefix = _common_prefix([c.name for c in convs])
            count[prefix] = count.get(prefix, -1) + 1
            name = f"{prefix}.fused{count[prefix]}" if prefix else f"fused{count[prefix]}"
            ws = [out.pop(f"{c.name}.weight") for c in convs]
            bs = [out.pop(f"{c.name}.bias") if c.attrs["bias"] else np.zeros(w.shape[0], w.dtype)
                  for c, w in zip(convs, ws)]
            has_bias = any(c.attrs["bias"] for c in convs)
            out[f"{name}.weight"] = np.concatenate(ws, 0)
            if has_bias:
                out[f"{name}.bias"] = np.concatenate(bs, 0)
            total = sum(w.shape[0] for w in ws)
            nodes.append(node.with_(name=name, attrs={**node.attrs, "out_channels": total,
                                                       "bias": has_bias}))
            start = 0
            for c, w in zip(convs, ws):
                stop = start + w.shape[0]
                nodes.append(Node(c.name, "slice_channels", (name,), {}, c.loc, c.stage)
                             .with_(attrs={"start": start, "stop": stop}))
                start = stop
            continue
        if node.name in members:
            continue  # replaced by its slice, emitted with the fused conv
        nodes.append(node)
    return replace(graph, nodes=tuple(nodes)), out


def _common_prefix(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for seg in zip(*parts):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    return ".".join(common)


PASSES: dict[str, Callable] = {
    "drop_dropout": drop_dropout,
    "fold_bn": fold_bn,
    "commute_pool_conv": commute_pool_conv,
    "fold_residual_scale": fold_residual_scale,
    "fuse_siblings": fuse_siblings,
}


def optimize_for_inference(graph: Graph, weights: Weights, shapes=None,
                           passes: tuple[str, ...] = tuple(PASSES)) -> tuple[Graph, dict]:
    """Run the named passes in order (all by default)."""
    out = dict(weights)
    for name in passes:
        graph, out = PASSES[name](graph, out)
    return graph, out
