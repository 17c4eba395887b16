"""Weights as numpy arrays: names, fresh initialisation, and the state a backend starts from.

Names are ours (`<node>.<param>`, e.g. `inception_a.0.branch2.1.conv.weight`). Reading
checkpoints and other libraries' names: archcompiler.checkpoints (re-exported here).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .checkpoints import (  # noqa: F401 - the checkpoint API, re-exported
    OURS, CheckpointError, LoadReport, UnusableTensor, compile_rules, match_checkpoint,
    names_in_format, read_checkpoint, save_safetensors, to_format, write_checkpoint,
)
from .ir.graph import Graph
from .ops import OPS
from .spec.loader import Spec


@dataclass(frozen=True)
class Entry:
    name: str
    node: str
    shape: tuple
    trainable: bool
    op: str
    param: str  # weight | bias | running_mean | running_var


def state_entries(graph: Graph, shapes: dict) -> list[Entry]:
    """Every tensor a model of this graph holds, in graph order."""
    out = []
    for node in graph.nodes:
        op = OPS[node.op]
        ins = [shapes[i] for i in node.inputs]
        for pname, shape in op.param_shapes(node.attrs, ins).items():
            out.append(Entry(f"{node.name}.{pname}", node.name, tuple(shape), True, node.op, pname))
        for pname, shape in op.buffer_shapes(node.attrs, ins).items():
            out.append(Entry(f"{node.name}.{pname}", node.name, tuple(shape), False, node.op, pname))
    return out


# --- fresh weights -----------------------------------------------------------------------

def _fan_in(shape: tuple) -> int:
    return int(math.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def init_weights(spec: Spec, graph: Graph, shapes: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic fresh weights, as the spec's reference code initialises them.

    An op may fix its own (BatchNorm: gamma 1, beta 0, running mean 0, running var 1);
    the others follow the spec's `init.scheme`. torch_default: PyTorch's layer defaults
    (timm's inception_v4 / inception_resnet_v2 keep them): weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with a=sqrt(5)). trunc_normal
    (torchvision's Inception3 and GoogLeNet): conv/linear weights N(0, std) truncated to
    [-2, 2], per-node `overrides`, biases 0. kaiming_normal (torchvision's ResNet):
    conv weights N(0, 2/fan_out) (fan_out = out channels x kernel area), conv biases 0,
    linear layers as torch_default."""
    rng = np.random.Generator(np.random.PCG64(seed))
    entries = state_entries(graph, shapes)
    weight_shape = {e.node: e.shape for e in entries if e.param == "weight"}
    init = spec.init
    out: dict[str, np.ndarray] = {}
    for e in entries:
        value = OPS[e.op].init(e.param, e.shape, init, rng, e.node)
        if value is None and hasattr(OPS[e.op], "init_from_attrs"):  # e.g. layer_scale's init
            value = OPS[e.op].init_from_attrs(graph.by_name[e.node].attrs, e.param, e.shape)
        if value is not None:
            pass
        elif init.scheme == "trunc_normal":
            if e.param == "bias":
                value = np.zeros(e.shape)
            else:
                std = next((s for p, s in init.overrides.items()
                            if e.node == p or e.node.startswith(p + ".")), init.std)
                value = _trunc_normal(rng, e.shape, float(std))
        elif init.scheme == "kaiming_normal" and len(weight_shape.get(e.node, ())) == 4:
            w = weight_shape[e.node]
            fan_out = w[0] * int(math.prod(w[2:]))
            value = (rng.normal(0.0, math.sqrt(2.0 / fan_out), e.shape) if e.param == "weight"
                     else np.zeros(e.shape))
        else:
            bound = 1.0 / math.sqrt(_fan_in(weight_shape[e.node]))
            value = rng.uniform(-bound, bound, e.shape)
        out[e.name] = value.astype(np.float32)
    return out


def _trunc_normal(rng, shape, std: float, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    x = rng.normal(0.0, std, shape)
    bad = (x < lo) | (x > hi)
    while bad.any():
        x[bad] = rng.normal(0.0, std, int(bad.sum()))
        bad = (x < lo) | (x > hi)
    return x


# --- the state a backend starts from --------------------------------------------------

def resolve_state(net, weights, seed: int = 0) -> tuple[dict[str, np.ndarray], Optional["LoadReport"], list[str]]:
    """Our-named numpy state of the whole network `net` (archcompiler.network.Network:
    head and aux heads included), which each backend narrows to the tensors its graph
    needs (features, no aux, ...): fresh (init_weights, seeded), or from a checkpoint
    path (other libraries' names detected) or a dict (ours or a known naming). Aux-head
    tensors are optional in a checkpoint; with a different number of classes the
    classifier is kept fresh. Returns (state, report, notes for the user)."""
    spec, graph, shapes = net.spec, net.graph, net.shapes
    state = init_weights(spec, graph, shapes, seed)
    if weights is None:
        return state, None, []
    entries = state_entries(graph, shapes)
    stage_of = {n.name: n.stage for n in graph.nodes}
    aux_stages = {st.name for st in graph.stages if st.kind == "aux"}
    aux_names = {e.name for e in entries if stage_of[e.node] in aux_stages}
    replaceable = set(aux_names)
    if net.classes != spec.classes:
        heads = {st.name for st in graph.stages if st.kind == "head"}
        replaceable |= {e.name for e in entries if e.op == "linear" and stage_of[e.node] in heads}
    if isinstance(weights, (str, bytes)) or hasattr(weights, "__fspath__"):
        path = os.fsdecode(weights)
        ckpt = read_checkpoint(path)
    elif isinstance(weights, dict):
        path, ckpt = "<weights dict>", {k: np.asarray(v) for k, v in weights.items()}
    else:
        raise TypeError("weights: expected None, a checkpoint path or a dict of arrays, got "
                        f"{type(weights).__name__}")
    loaded, report = match_checkpoint(spec, entries, ckpt, path, replaceable)
    state.update(loaded)
    fresh = [n for n in report.skipped if n not in aux_names]
    notes = []
    if fresh:
        notes.append(f"{spec.name}: kept fresh (not loaded from the checkpoint, num_classes="
                     f"{net.classes}): {', '.join(fresh)}")
    return state, report, notes


def narrow_report(report, names) -> Optional["LoadReport"]:
    """The load report of one configuration: only the tensors it holds (a model built
    without its aux head does not report the aux tensors as kept fresh)."""
    if report is None:
        return None
    skipped = [n for n in report.skipped if n in names]
    notes = [f"kept fresh (not loaded from the checkpoint): {', '.join(skipped)}"] if skipped else []
    return LoadReport(report.format, sum(1 for n in names if n not in skipped), skipped, notes)
