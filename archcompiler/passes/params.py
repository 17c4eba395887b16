"""Parameter and multiply-accumulate counts, per node (sum them per stage or in total).

Parameters are trainable ones (BN gamma and beta count; running statistics do not).
MACs count convolutions and fully connected layers only (like the fact sheet's count).
"""

from __future__ import annotations

import math

from ..ir.graph import Graph
from ..ir.ops import OPS, Shape


def param_shapes(graph: Graph, shapes: dict[str, Shape]) -> dict[str, Shape]:
    """`<node>.<param>` -> shape, trainable parameters only."""
    out: dict[str, Shape] = {}
    for node in graph.nodes:
        ins = [shapes[i] for i in node.inputs]
        for pname, shape in OPS[node.op].param_shapes(node.attrs, ins).items():
            out[f"{node.name}.{pname}"] = tuple(shape)
    return out


def buffer_shapes(graph: Graph, shapes: dict[str, Shape]) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for node in graph.nodes:
        ins = [shapes[i] for i in node.inputs]
        for pname, shape in OPS[node.op].buffer_shapes(node.attrs, ins).items():
            out[f"{node.name}.{pname}"] = tuple(shape)
    return out


def node_params(graph: Graph, shapes: dict[str, Shape]) -> dict[str, int]:
    out = {}
    for node in graph.nodes:
        ins = [shapes[i] for i in node.inputs]
        out[node.name] = sum(math.prod(s) for s in OPS[node.op].param_shapes(node.attrs, ins).values())
    return out


def node_macs(graph: Graph, shapes: dict[str, Shape]) -> dict[str, int]:
    return {
        node.name: OPS[node.op].macs(node.attrs, [shapes[i] for i in node.inputs], shapes[node.name])
        for node in graph.nodes
    }


def params_upper_bound(graph: Graph, max_input_hw: int) -> int:
    """A cheap bound on the parameter count computed from channel counts alone, so that a
    spec asking for absurd sizes is refused before any shape or tensor is computed."""
    # Channels flow: track an upper bound of channels per node without spatial sizes.
    ch: dict[str, int] = {graph.input_name: graph.input_shape[0]}
    total = 0
    for node in graph.nodes:
        cin = [ch.get(i, 0) for i in node.inputs]
        a = node.attrs
        if node.op == "conv2d":
            kh, kw = a["kernel"]
            total += a["out_channels"] * cin[0] * kh * kw + a["out_channels"]
            ch[node.name] = a["out_channels"]
        elif node.op == "linear":
            total += a["out_features"] * (cin[0] + 1)
            ch[node.name] = a["out_features"]
        elif node.op == "concat":
            ch[node.name] = sum(cin)
        elif node.op == "batchnorm":
            total += 2 * cin[0]
            ch[node.name] = cin[0]
        else:
            ch[node.name] = max(cin) if cin else 0
    return total
