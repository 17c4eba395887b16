"""Parameter and multiply-accumulate counts, per node (sum them per stage or in total).

Parameters are trainable ones (BN gamma and beta count; running statistics do not).
MACs count convolutions and fully connected layers only (like the fact sheet's count).
"""

from __future__ import annotations

import math

from ..ir.graph import Graph
from ..ir.ops import OPS, OpDef, Shape

# ops that keep IROp's own rule (most: activations, concat, pooling...): nothing to count
_NO_PARAMS = frozenset(n for n, op in OPS.items() if type(op).param_shapes is OpDef.param_shapes)
_NO_MACS = frozenset(n for n, op in OPS.items() if type(op).macs is OpDef.macs)
_NO_BOUND = frozenset(n for n, op in OPS.items() if type(op).param_bound is OpDef.param_bound)


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
    seen: dict = {}  # a repeated block's copies share their attributes (ir.replay)
    for node in graph.nodes:
        if node.op in _NO_PARAMS:
            out[node.name] = 0
            continue
        ins = tuple(shapes[i] for i in node.inputs)
        key = (node.op, id(node.attrs), ins)
        got = seen.get(key)
        if got is None:
            got = seen[key] = sum(math.prod(s) for s in
                                  OPS[node.op].param_shapes(node.attrs, list(ins)).values())
        out[node.name] = got
    return out


def node_macs(graph: Graph, shapes: dict[str, Shape]) -> dict[str, int]:
    return {
        node.name: 0 if node.op in _NO_MACS else
        OPS[node.op].macs(node.attrs, [shapes[i] for i in node.inputs], shapes[node.name])
        for node in graph.nodes
    }


def params_upper_bounds(graph: Graph) -> dict[str, int]:
    """A cheap bound on each node's parameter count computed from channel counts alone
    (no spatial sizes), so that a spec asking for absurd sizes is refused before any shape
    or tensor is computed. For a linear layer after a spatial map the bound assumes the
    map was pooled (the exact count needs shapes)."""
    ch: dict[str, int] = {graph.input_name: graph.input_shape[0]}
    out: dict[str, int] = {}
    seen: dict = {}  # a repeated block's copies share their attributes (ir.replay)
    for node in graph.nodes:
        if node.op in _NO_BOUND:  # IROp's rule: no parameters, the first input's channels
            out[node.name], ch[node.name] = 0, ch.get(node.inputs[0], 0) if node.inputs else 0
            continue
        cins = tuple(ch.get(i, 0) for i in node.inputs)
        key = (node.op, id(node.attrs), cins)
        got = seen.get(key)
        if got is None:
            got = seen[key] = OPS[node.op].param_bound(node.attrs, list(cins))
        out[node.name], ch[node.name] = got
    return out


def params_upper_bound(graph: Graph, max_input_hw: int = 0) -> int:
    """The sum of `params_upper_bounds` (`max_input_hw` is unused, kept for callers)."""
    return sum(params_upper_bounds(graph).values())
