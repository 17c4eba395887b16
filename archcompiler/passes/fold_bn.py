"""Fold inference-mode batch normalisation into the convolution before it.

A pure function over (graph, weights): the inputs are not modified, new nodes and a new
weights mapping are returned. For a `conv2d` whose only consumer is a `batchnorm`:

    s  = gamma / sqrt(running_var + eps)            (per output channel)
    W' = W * s                                      (scaled along the output axis)
    b' = (b - running_mean) * s + beta              (b = 0 for a conv without bias)

The folded conv keeps its name (so its weight keeps `<conv>.weight`) and gains a bias
(`<conv>.bias`); the BN node and its four tensors disappear, and everything that read
the BN (nodes, graph outputs, stage outputs) reads the conv instead. Arithmetic is done
in float64 and stored in the weights' own dtype. This is exact algebra, valid only at
inference (running statistics). It applies wherever the BN directly follows an op the
registry marks `bn_foldable` (conv2d), whether the spec attached the BN to the conv or
wrote it on its own; a BN after anything else, or after a conv whose raw output is also
used elsewhere, is left as it is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from ..ir.graph import Graph
from ..ops import OPS


def foldable_pairs(graph: Graph) -> dict[str, str]:
    """batchnorm node name -> the conv2d node name it can be folded into."""
    by_name = graph.by_name
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    pairs = {}
    for node in graph.nodes:
        if node.op != "batchnorm" or len(node.inputs) != 1:
            continue
        src = by_name.get(node.inputs[0])
        if src is None or not OPS[src.op].bn_foldable:  # the registry says which ops may take it
            continue
        # the conv's raw output must not be used anywhere else (nor be a graph output)
        if consumers.get(src.name) != [node.name] or src.name in outputs:
            continue
        pairs[node.name] = src.name
    return pairs


def fold_bn(graph: Graph, weights: Mapping[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """(graph, weights) -> (graph without foldable BN nodes, weights with folded convs)."""
    pairs = foldable_pairs(graph)
    if not pairs:
        return graph, dict(weights)
    by_name = graph.by_name
    into = {conv: bn for bn, conv in pairs.items()}
    out = dict(weights)
    nodes = []
    for node in graph.nodes:
        if node.name in pairs:
            continue  # the BN: folded into its conv
        if node.name in into:
            bn = by_name[into[node.name]]
            w = np.asarray(weights[f"{node.name}.weight"])
            gamma = np.asarray(weights[f"{bn.name}.weight"], dtype=np.float64)
            beta = np.asarray(weights[f"{bn.name}.bias"], dtype=np.float64)
            mean = np.asarray(weights[f"{bn.name}.running_mean"], dtype=np.float64)
            var = np.asarray(weights[f"{bn.name}.running_var"], dtype=np.float64)
            s = gamma / np.sqrt(var + float(bn.attrs["eps"]))
            b = (np.asarray(weights[f"{node.name}.bias"], dtype=np.float64)
                 if node.attrs["bias"] else np.zeros_like(s))
            out[f"{node.name}.weight"] = (w.astype(np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))
                                          ).astype(w.dtype)
            out[f"{node.name}.bias"] = ((b - mean) * s + beta).astype(w.dtype)
            for p in ("weight", "bias", "running_mean", "running_var"):
                out.pop(f"{bn.name}.{p}", None)
            node = node.with_(attrs={**node.attrs, "bias": True})
        if any(i in pairs for i in node.inputs):
            node = node.with_(inputs=tuple(pairs.get(i, i) for i in node.inputs))
        nodes.append(node)
    new = replace(
        graph,
        nodes=tuple(nodes),
        outputs=tuple(pairs.get(o, o) for o in graph.outputs),
        aux_outputs=tuple(pairs.get(o, o) for o in graph.aux_outputs),
        stages=tuple(replace(st, output=pairs.get(st.output, st.output)) for st in graph.stages),
    )
    return new, out
