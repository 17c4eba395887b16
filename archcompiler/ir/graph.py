"""The graph IR: immutable, ordered nodes; networkx for graph algorithms.

A node's `name` is its stable, readable identity (`inception_a.0.branch2.1.conv`); it is
the prefix of its parameters' names (`...conv.weight`), the torch module path, and the
ONNX node name. Weights, when a pass needs them, travel beside the graph as a mapping
from parameter name to numpy array (see `archcompiler.weights`), never inside nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # networkx is imported where it is used: `archc validate` never needs it
    import networkx as nx

from ..errors import Location


def frozen_attrs(attrs: Mapping) -> Mapping:
    return MappingProxyType(dict(attrs))


@dataclass(frozen=True)
class Node:
    name: str
    op: str  # key in archcompiler.ir.ops.OPS
    inputs: tuple[str, ...]
    attrs: Mapping = field(default_factory=lambda: MappingProxyType({}))
    loc: Location | None = None  # the spec line this node came from
    stage: str = ""  # the network stage (or head / aux head) it belongs to

    def with_(self, **changes) -> "Node":
        if "attrs" in changes:
            changes["attrs"] = frozen_attrs(changes["attrs"])
        return replace(self, **changes)


@dataclass(frozen=True)
class Stage:
    """A top-level stage of the network, for reports and expectations."""

    name: str
    output: str  # node name of the stage's output
    loc: Location | None = None
    expect: tuple[int, ...] | None = None
    expect_loc: Location | None = None
    kind: str = "trunk"  # "trunk" | "head" | "aux"
    feature: bool = False  # marked `feature: true` in the spec (features=True returns it)


@dataclass(frozen=True)
class Graph:
    """An ordered (topologically sorted) tuple of nodes with one input tensor.

    `outputs` names the main output first, then any auxiliary (training-only) outputs.
    """

    name: str
    nodes: tuple[Node, ...]
    input_name: str
    input_shape: tuple[int, ...]  # C, H, W
    outputs: tuple[str, ...]
    stages: tuple[Stage, ...] = ()
    aux_outputs: tuple[str, ...] = ()  # outputs that exist in training only

    def __post_init__(self):
        seen = {self.input_name}
        for n in self.nodes:
            for i in n.inputs:
                if i not in seen:
                    raise ValueError(f"node {n.name} reads {i} before it is defined")
            if n.name in seen:
                raise ValueError(f"duplicate node name {n.name}")
            seen.add(n.name)

    @property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx

        g = nx.DiGraph()
        g.add_node(self.input_name, op="input")
        for n in self.nodes:
            g.add_node(n.name, op=n.op)
            for i in n.inputs:
                g.add_edge(i, n.name)
        return g

    def consumers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {self.input_name: []}
        for n in self.nodes:
            out.setdefault(n.name, [])
            for i in n.inputs:
                out.setdefault(i, []).append(n.name)
        return out

    def replace_nodes(self, nodes) -> "Graph":
        return replace(self, nodes=tuple(nodes))


def needed_nodes(graph: Graph, outputs) -> set[str]:
    """Names of the nodes that `outputs` depend on (themselves included)."""
    by_name = graph.by_name
    need, stack = set(), list(outputs)
    while stack:
        n = stack.pop()
        if n in need or n == graph.input_name:
            continue
        need.add(n)
        stack.extend(by_name[n].inputs)
    return need


def feature_outputs(graph: Graph, shapes: dict) -> tuple[str, ...]:
    """What features=True returns, in every backend: the stages marked `feature: true`,
    else the last trunk stage at each spatial size from stride 8 on (the 35x35, 17x17 and
    8x8 grids at 299x299), like timm's features_only."""
    trunk = [s for s in graph.stages if s.kind == "trunk"]
    if any(s.feature for s in trunk):
        return tuple(s.output for s in trunk if s.feature)
    limit = graph.input_shape[1] / 8
    picked = []
    for i, st in enumerate(trunk):
        shape = shapes[st.output]
        nxt = shapes[trunk[i + 1].output] if i + 1 < len(trunk) else None
        if len(shape) == 3 and shape[1] <= limit and (nxt is None or nxt[1:] != shape[1:]):
            picked.append(st.output)
    return tuple(picked)
