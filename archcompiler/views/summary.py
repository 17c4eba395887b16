"""`archc summary`: a torchinfo-like table of a spec, from its analysis (no torch).

Rows form a tree over the graph's node names: depth 1 is a stage (the head, an aux head),
depth 2 what the stage holds (the copies of a repeated block, a block's items and
branches), deeper rows further name segments, down to the IR ops. A row's numbers are the
sums over its subtree; its shape is that of the subtree's last node in graph order (for a
stage: the stage's output, as `archc validate` reports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ops import fmt_shape

from . import DEFAULT_SUMMARY_DEPTH as DEFAULT_DEPTH

# the node a container item ends with (its name's last segment), and what it makes it
_CONTAINER_OPS = {("concat", "concat"): "concat", ("add", "scale_add"): "residual",
                  ("add", "add"): "add", ("mul", "mul"): "multiply"}


@dataclass(frozen=True)
class Row:
    name: str
    depth: int
    kind: str
    shape: tuple
    params: int
    macs: int

    def to_json(self) -> dict:
        return {"name": self.name, "depth": self.depth, "kind": self.kind,
                "shape": list(self.shape), "params": self.params, "macs": self.macs}


@dataclass(frozen=True)
class Summary:
    name: str
    path: str
    input_shape: tuple
    output_shape: tuple
    depth: int
    rows: tuple  # of Row, in graph order (a parent before its children)
    totals: dict  # params, macs, layers: the numbers `archc validate` reports
    repeats: tuple = ()  # (stage name, copies) of the repeated stages, for the text table

    def to_json(self) -> dict:
        return {"spec": self.path, "name": self.name, "input": list(self.input_shape),
                "output": list(self.output_shape), "depth": self.depth,
                "rows": [r.to_json() for r in self.rows], "totals": dict(self.totals)}

    def __str__(self) -> str:
        return format_summary(self)


def summarize(analysis, depth: int = DEFAULT_DEPTH) -> Summary:
    """The summary of an `Analysis` down to `depth` (1: stages only)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer of 1 or more, got {depth!r}")
    graph, shapes = analysis.graph, analysis.shapes
    index = _Index(graph, shapes)
    rows = []
    for st in graph.stages:
        nodes = [n for n in graph.nodes if n.stage == st.name]
        rows.append(Row(st.name, 1, _stage_kind(st, index, analysis.spec), tuple(shapes[st.output]),
                        sum(analysis.node_params[n.name] for n in nodes),
                        sum(analysis.node_macs[n.name] for n in nodes)))
        if depth > 1:
            rows.extend(_subtree_rows(st.name, nodes, depth, index, analysis))
    totals = {"params": analysis.params, "macs": analysis.macs, "layers": analysis.layers}
    spec = analysis.spec
    repeats = tuple((st.name, st.repeat) for st in graph.stages if st.repeat)
    return Summary(spec.name, spec.path, tuple(analysis.input_shape), tuple(analysis.output_shape),
                   depth, tuple(rows), totals, repeats)


class _Index:
    """What a name prefix is: a block instance, a spec item, an IR node, or a container."""

    def __init__(self, graph, shapes):
        self.nodes = graph.by_name
        self.shapes = shapes
        self.scopes = {s.path: s for n in graph.nodes for s in n.scope}
        self.items: dict = {}
        for n in graph.nodes:  # an item's first node with a kernel describes it best
            if n.item and (n.item not in self.items or
                           ("kernel" in n.attrs and "kernel" not in self.items[n.item].attrs)):
                self.items[n.item] = n

    def kind(self, prefix: str) -> str:
        if prefix in self.scopes:
            return self.scopes[prefix].block
        if prefix in self.items:
            return _op_text(self.items[prefix], self.shapes)
        if prefix in self.nodes:
            return self.nodes[prefix].op
        container = self.container(prefix)
        if container:
            return container
        parent = prefix.rpartition(".")[0]
        return "branch" if parent and self.container(parent) else "seq"

    def container(self, prefix: str) -> str:
        for (segment, op), what in _CONTAINER_OPS.items():
            node = self.nodes.get(f"{prefix}.{segment}")
            if node is not None and node.op == op:
                return what
        return ""


def _stage_kind(st, index: _Index, spec) -> str:
    if st.kind == "head":
        return "head"
    if st.kind == "aux":
        after = next((a.after for a in spec.aux if a.name == st.name), "")
        return f"aux head after {after} (training only)" if after else "aux head (training only)"
    if st.block and st.repeat:
        return f"{st.block} x{st.repeat}"
    return st.block or index.kind(st.name)


def _op_text(node, shapes) -> str:
    """A spec item as its op string would begin: `conv 3x3/2`, `maxpool 3x3/2`, `linear`."""
    op = node.spec_op or node.op
    kernel = node.attrs.get("kernel")
    if not isinstance(kernel, tuple) or len(kernel) != 2:
        return op
    text = f"{op} {kernel[0]}x{kernel[1]}"
    stride = node.attrs.get("stride", (1, 1))
    if isinstance(stride, tuple) and stride != (1, 1):
        text += f"/{stride[0]}" if stride[0] == stride[1] else f"/{stride[0]}x{stride[1]}"
    groups = node.attrs.get("groups", 1)
    if isinstance(groups, int) and groups > 1:
        cin = shapes.get(node.inputs[0], (0,))[0] if node.inputs else 0
        text += " dw" if groups == cin else f" groups={groups}"
    return text


def _subtree_rows(stage: str, nodes: list, depth: int, index: _Index, analysis) -> list:
    """Rows of depth 2..depth under one stage, a parent before its children (the order
    in which each name prefix first appears in the graph)."""
    acc: dict = {}  # prefix -> [depth, params, macs, last node]
    for n in nodes:
        rel = n.name[len(stage) + 1:] if n.name.startswith(stage + ".") else n.name
        if rel == n.name and n.name == stage:
            continue  # a one-op stage: the stage row is the op
        segments = rel.split(".")
        for d in range(1, min(depth - 1, len(segments)) + 1):
            prefix = f"{stage}.{'.'.join(segments[:d])}"
            entry = acc.setdefault(prefix, [d + 1, 0, 0, n.name])
            entry[1] += analysis.node_params[n.name]
            entry[2] += analysis.node_macs[n.name]
            entry[3] = n.name
    return [Row(prefix, d, index.kind(prefix), tuple(index.shapes[last]), p, m)
            for prefix, (d, p, m, last) in acc.items()]


# --- the text table ----------------------------------------------------------------------

def _collapse(summary: Summary, rows: list) -> list:
    """Runs of identical copies of a repeated stage (same subtree, name for name) as one
    row each, `inception_resnet_b.1-19  inception_resnet_b x19`, whose numbers are the
    run's sums: 20 equal rows say less than one. The JSON keeps every copy."""
    out, i = [], 0
    repeated = {name for name, _ in summary.repeats}
    while i < len(rows):
        r = rows[i]
        stage, _, rest = r.name.partition(".")
        if r.depth != 2 or stage not in repeated or not rest.isdigit():
            out.append(r)
            i += 1
            continue
        group = _copy_rows(rows, i)
        out.extend(group)
        j, run = i + len(group), []
        while j < len(rows) and _same_copy(group, _copy_rows(rows, j)):
            run.append(rows[j])
            j += len(group)
        if len(run) >= 2:
            first, last = run[0].name.rpartition(".")[2], run[-1].name.rpartition(".")[2]
            out.append(Row(f"{stage}.{first}-{last}", 2, f"{r.kind} x{len(run)}, same as .{rest}",
                           run[-1].shape, sum(x.params for x in run), sum(x.macs for x in run)))
        elif run:
            out.extend(rows[i + len(group):j])
        i = j
    return out


def _copy_rows(rows: list, i: int) -> list:
    """The row at i and its descendants."""
    j = i + 1
    while j < len(rows) and rows[j].depth > rows[i].depth:
        j += 1
    return rows[i:j]


def _same_copy(a: list, b: list) -> bool:
    if not b or b[0].depth != a[0].depth or b[0].name.partition(".")[0] != a[0].name.partition(".")[0]:
        return False
    if not b[0].name.rpartition(".")[2].isdigit() or len(a) != len(b):
        return False
    pa, pb = len(a[0].name), len(b[0].name)
    return all((x.name[pa:], x.kind, x.shape, x.params, x.macs) ==
               (y.name[pb:], y.kind, y.shape, y.params, y.macs) for x, y in zip(a, b))


def format_summary(summary: Summary, expand: bool = False) -> str:
    """The table: name (indented by depth), kind, output shape, params, MACs; totals."""
    rows = list(summary.rows) if expand else _collapse(summary, list(summary.rows))
    table = [("  " * (r.depth - 1) + r.name, r.kind, fmt_shape(r.shape), f"{r.params:,}",
              f"{r.macs:,}") for r in rows]
    t = summary.totals
    total = ("total", f"layers {t['layers']}", fmt_shape(summary.output_shape), f"{t['params']:,}",
             f"{t['macs']:,}")
    head = ("name", "kind", "output", "params", "MACs")
    widths = [max(len(row[k]) for row in [head, total, *table]) for k in range(5)]

    def line(cells) -> str:
        left = f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}"
        right = "  ".join(f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:]))
        return f"{left}  {right}".rstrip()

    rule = "-" * len(line(head))
    who = summary.name if summary.path == summary.name else f"{summary.path}: {summary.name}"
    title = (f"{who}   input {fmt_shape(summary.input_shape)} -> "
             f"{fmt_shape(summary.output_shape)}   depth {summary.depth}")
    return "\n".join([title, line(head), rule, *(line(c) for c in table), rule, line(total)])


def summary(spec_or_path, depth: int = DEFAULT_DEPTH, input_size: Optional[tuple] = None,
            root: Optional[str] = None) -> Summary:
    """The summary of a spec (a `Spec`, a path, or a shipped spec's name)."""
    from .. import load_spec
    from ..analysis import analyze
    from ..spec.loader import Spec

    if isinstance(spec_or_path, Spec):  # a Spec given is not changed: its analysis stays
        analysis = getattr(spec_or_path, "analysis", None)
        if analysis is None or input_size is not None:
            analysis = analyze(spec_or_path, input_size)
    else:
        analysis = load_spec(spec_or_path, root=root, input_size=input_size).analysis
    return summarize(analysis, depth)
