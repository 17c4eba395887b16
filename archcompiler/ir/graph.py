"""The graph IR: immutable, ordered nodes; networkx for graph algorithms.

A node's `name` is its stable, readable identity (`inception_a.0.branch2.1.conv`); it is
the prefix of its parameters' names (`...conv.weight`), the torch module path, and the
ONNX node name. Weights, when a pass needs them, travel beside the graph as a mapping
from parameter name to numpy array (see `archcompiler.weights`), never inside nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator, Mapping

if TYPE_CHECKING:  # networkx is imported where it is used: `archc validate` never needs it
    import networkx as nx

from ..errors import Location


class FrozenAttrs(Mapping):
    """A read-only mapping of node attributes that, unlike MappingProxyType, pickles and
    deep-copies (so do the IR and the modules built from it)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping = ()):
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name, value):
        raise AttributeError("node attributes are read-only")

    def __repr__(self) -> str:
        return f"FrozenAttrs({self._data!r})"

    def __reduce__(self):
        return (FrozenAttrs, (self._data,))


_FACTORY = object()  # Node's attrs not given: a fresh empty FrozenAttrs


def frozen_attrs(attrs: Mapping) -> Mapping:
    return FrozenAttrs(attrs)


@dataclass(frozen=True)
class Scope:
    """One block instance: the nodes under `path` come from template `block`, given
    `params` (name, value pairs in declaration order) and `in_channels` entering it."""

    path: str
    block: str
    params: tuple = ()
    in_channels: int | None = None


@dataclass(frozen=True)
class Node:
    name: str
    op: str  # key in archcompiler.ops.OPS
    inputs: tuple[str, ...]
    attrs: Mapping = field(default_factory=FrozenAttrs)
    loc: Location | None = None  # the spec line this node came from
    stage: str = ""  # the network stage (or head / aux head) it belongs to
    scope: tuple = ()  # the block instances (Scope) it lies in, outermost first
    item: str = ""  # path of the spec item it was lowered from (a conv's .conv/.bn/.act)
    spec_op: str = ""  # that item's spec op (archcompiler.ops.SPEC_OPS), if an op
    # attribute -> (Expr, scaled by width) where a value came from a parameter
    # expression: the generated source writes the expression, not the number
    srcs: tuple = ()

    # The dataclass's own __init__ sets each field through object.__setattr__ (frozen):
    # 2.5x slower, and lowering makes a node per op (the dataclass keeps this one).
    def __init__(self, name, op, inputs, attrs=_FACTORY, loc=None, stage="", scope=(),
                 item="", spec_op="", srcs=()):
        object.__setattr__(self, "__dict__", {
            "name": name, "op": op, "inputs": inputs,
            "attrs": FrozenAttrs() if attrs is _FACTORY else attrs, "loc": loc, "stage": stage,
            "scope": scope, "item": item, "spec_op": spec_op, "srcs": srcs})

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
    block: str = ""  # the block template of a block stage
    repeat: int | None = None  # copies of the block (named <stage>.<i>), if repeated


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
    aux_after: tuple = ()  # (aux head name, stage it reads), in output order

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
    need = set(outputs)
    for node in reversed(graph.nodes):  # topological order: a node's readers come later
        if node.name in need:
            need.update(node.inputs)
    need.discard(graph.input_name)
    return need


def node_strides(graph: Graph) -> dict[str, int]:
    """Cumulative (vertical) stride of every node's output relative to the input."""
    stride = {graph.input_name: 1}
    for n in graph.nodes:
        s = n.attrs.get("stride", 1)
        s = s if isinstance(s, int) else s[0]
        stride[n.name] = max((stride[i] for i in n.inputs), default=1) * s
    return stride


def feature_points(graph: Graph, shapes: dict) -> list[tuple[Stage, int]]:
    """Every stride-change point: (stage, reduction) for each trunk stage with a spatial
    output that is the last one at its cumulative stride (timm's `feature_info`)."""
    stride = node_strides(graph)
    trunk = [s for s in graph.stages if s.kind == "trunk" and len(shapes[s.output]) == 3]
    return [(st, stride[st.output]) for i, st in enumerate(trunk)
            if i + 1 == len(trunk) or stride[trunk[i + 1].output] != stride[st.output]]


DEFAULT_OUT_INDICES = (-3, -2, -1)


def feature_outputs(graph: Graph, shapes: dict, out_indices=None) -> tuple[str, ...]:
    """What features=True returns, in every backend. With `out_indices`: those entries of
    `feature_points` (negative indices count from the end). Without: the stages marked
    `feature: true`, else the last three stride-change points (the 35x35, 17x17 and 8x8
    grids of the Inception networks at 299x299; fewer when a network has fewer).
    Raises ValueError when the selection is empty or an index is out of range."""
    trunk = [s for s in graph.stages if s.kind == "trunk"]
    points = feature_points(graph, shapes)
    names = ", ".join(f"{i}: {st.name} (stride {r})" for i, (st, r) in enumerate(points))
    if out_indices is None and any(s.feature for s in trunk):
        return tuple(s.output for s in trunk if s.feature)
    if out_indices is None:
        picked = [st.output for st, _ in points[-len(DEFAULT_OUT_INDICES):]]
    else:
        picked = []
        for i in out_indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -len(points) <= i < len(points):
                raise ValueError(f"{graph.name}: out_indices: {i!r} is not a feature index; "
                                 f"the feature points are {names or 'none'}")
            picked.append(points[i][0].output)
        if len(set(picked)) != len(picked):
            raise ValueError(f"{graph.name}: out_indices {tuple(out_indices)} selects a map twice")
    if not picked:
        raise ValueError(f"{graph.name}: features=True selects no feature map "
                         f"(out_indices={None if out_indices is None else tuple(out_indices)}); "
                         f"the feature points are {names or 'none: no trunk stage keeps a spatial map'}")
    return tuple(picked)
