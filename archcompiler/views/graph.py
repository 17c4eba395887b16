"""`archc graph`: a picture of a spec's structure (Graphviz DOT, Mermaid; SVG in graph_svg).

The spec is turned into a small tree first: `Op` leaves, `Seq` (items one after the
other), `Par` (parallel branches meeting at a merge node: concat, add, multiply, residual
add) and `Box` (a stage, a block used inside a block, a named group, a `when:` item). The
tree is series-parallel, so every writer is a short recursion over it.

What is drawn is the spec's own text (templates, `$n` values), once per stage: a repeated
stage is one box marked `x4`. Where the spec decides something per instance (`when:`,
`add_when:`, a `$scale` or `$act`), the analysis' graph says what was built: node names
follow docs/spec-language.md section 13, so an item's IR nodes are found under its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .labels import op_label, value_text  # noqa: F401 - op_label re-exported: tests use it

FORMATS = ("dot", "mermaid", "svg")


@dataclass(frozen=True)
class Op:
    label: str
    notes: tuple = ()  # more label lines (a collapsed box: its notes)


@dataclass(frozen=True)
class Seq:
    items: tuple  # an empty Seq is the identity: its input passes through


@dataclass(frozen=True)
class Par:
    kind: str  # concat | add | multiply | residual
    branches: tuple  # of Seq
    merge: str  # the merge node's label


@dataclass(frozen=True)
class Box:
    kind: str  # network | stage | block | group | cond | head | aux
    title: str
    notes: tuple
    body: Seq
    key: str = ""  # a stage's name (aux heads are drawn from their `after` stage)


@dataclass(frozen=True)
class Network:
    box: Box  # input, the stages, the head
    aux: tuple = ()  # (after-stage name, Box) of the aux heads the analysis built


# --- the tree ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ctx:
    spec: object
    copies: tuple  # the stage's instance paths: ("inception_a.0", ...) or ("mixed_6a",)
    prefixes: frozenset  # every prefix of every IR node name
    nodes: dict  # IR node name -> node
    depth: int  # box nesting level of what is being built (a stage is 1)
    max_depth: Optional[int]


def _prefixes(names) -> frozenset:
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return frozenset(out)


def _built(ctx: _Ctx, rel: str) -> str:
    """Which instances of the item at `rel` the lowering built (nodes under its path)."""
    on = [i for i, c in enumerate(ctx.copies) if c + rel in ctx.prefixes]
    n = len(ctx.copies)
    if n == 1:
        return "built" if on else "not built (identity)"
    if len(on) == n:
        return f"built in all {n}"
    if not on:
        return f"not built in any of {n} (identity)"
    which = ", ".join(map(str, on)) if len(on) <= 4 else f"{len(on)} of them"
    return f"built in cop{'y' if len(on) == 1 else 'ies'} {which} of {n}"


def _ir_values(ctx: _Ctx, rel: str, get) -> list:
    """`get(node)` for the IR node at `rel` in each instance that has one, in order."""
    out = []
    for c in ctx.copies:
        node = ctx.nodes.get(c + rel)
        if node is not None and get(node) not in out:
            out.append(get(node))
    return out


def _item(it, rel: str, ctx: _Ctx):
    from ..spec import model as m

    when = getattr(it, "when", None)
    if isinstance(it, m.ConcatItem):
        node = Par("concat", _branches(it.concat, rel, ctx), "concat")
    elif isinstance(it, m.AddItem):
        node = Par("add", _branches(it.add, rel, ctx), "add")
    elif isinstance(it, m.MultiplyItem):
        node = Par("multiply", _branches(it.multiply, rel, ctx), "multiply")
    elif isinstance(it, m.SeqItem):
        node = _seq(it.seq, rel, ctx)
    elif isinstance(it, m.ResidualItem):
        node = _residual(it.residual, rel, ctx)
    elif isinstance(it, m.BlockRef):
        title = it.block if not it.name or it.name == it.block else f"{it.name}: {it.block}"
        node = _block(it.block, it.with_, title, rel, ctx)
    else:
        node = Op(op_label(it))
    if it.name and not isinstance(it, m.BlockRef) and not isinstance(node, Op):
        node = Box("group", it.name, (), _as_seq(node))
    if when is not None:  # what the analysis built, instance by instance
        node = Box("cond", f"when {value_text(when)}", (_built(ctx, rel),), _as_seq(node))
    return node


def _as_seq(node) -> Seq:
    return node if isinstance(node, Seq) else Seq((node,))


def _seq(items, rel: str, ctx: _Ctx) -> Seq:
    out = []
    for j, it in enumerate(items):
        node = _item(it, f"{rel}.{getattr(it, 'name', None) or j}", ctx)
        out.extend(node.items if isinstance(node, Seq) else (node,))
    return Seq(tuple(out))


def _branch(br, rel: str, ctx: _Ctx) -> Seq:
    from ..spec import model as m

    return _as_seq(_item(br, rel, ctx)) if isinstance(br, m.SeqItem) else _seq(br, rel, ctx)


def _branches(branches, rel: str, ctx: _Ctx) -> tuple:
    from ..spec import model as m

    return tuple(_branch(br, f"{rel}.{(br.name if isinstance(br, m.SeqItem) else None) or f'branch{i}'}",
                         ctx) for i, br in enumerate(branches))


def _residual(body, rel: str, ctx: _Ctx) -> Seq:
    if body.concat is not None:
        main = [Par("concat", _branches(body.concat, rel, ctx), "concat")]
    else:
        main = list(_seq(body.seq, rel, ctx).items)
    if body.project is not None:
        main.extend(_as_seq(_item(body.project, f"{rel}.project", ctx)).items)
    shortcut = _branch(body.shortcut, f"{rel}.shortcut", ctx) if body.shortcut is not None else Seq(())
    scales = _ir_values(ctx, f"{rel}.add", lambda n: n.attrs.get("scale"))
    scale = "/".join(f"{s:g}" for s in scales) if scales else value_text(body.scale)
    merge = f"residual add, scale {scale}"
    if body.add_when is not None:
        merge += f"\nwhen {value_text(body.add_when)}: {_built(ctx, rel + '.add')}"
    acts = _ir_values(ctx, f"{rel}.act", lambda n: n.op)
    tail = (Op("/".join(acts)),) if acts else ()
    return Seq((Par("residual", (shortcut, Seq(tuple(main))), merge), *tail))


def _with_text(with_: dict) -> str:
    return " ".join(f"{k}={value_text(v)}" for k, v in with_.items())


def _block(name: str, with_: dict, title: str, rel: str, ctx: _Ctx, notes=()) -> object:
    blk = ctx.spec.blocks[name]
    notes = tuple(notes) or tuple(x for x in (blk.figure, _with_text(with_)) if x)
    if ctx.max_depth is not None and ctx.depth >= ctx.max_depth:
        return Op(title, notes)
    inner = _Ctx(ctx.spec, ctx.copies, ctx.prefixes, ctx.nodes, ctx.depth + 1, ctx.max_depth)
    if blk.seq is not None:
        body = _seq(blk.seq, rel, inner)
    elif blk.concat is not None:
        body = Seq((Par("concat", _branches(blk.concat, rel, inner), "concat"),))
    else:
        body = _residual(blk.residual, rel, inner)
    return Box("block", title, notes, body)


def _stage(st, shapes: dict, ctx: _Ctx) -> object:
    from ..ops import fmt_shape

    name = st.stage_name
    copies = (name,)
    if st.block is not None and st.repeat is not None:
        n = 0
        while f"{name}.{n}" in ctx.prefixes:
            n += 1
        copies = tuple(f"{name}.{i}" for i in range(n))
    sctx = _Ctx(ctx.spec, copies, ctx.prefixes, ctx.nodes, 1, ctx.max_depth)
    title = name + (f" ({st.block})" if st.block and st.block != name else "")
    title += f" x{len(copies)}" if st.repeat is not None else ""
    shape = ("→ " + fmt_shape(shapes[name]),) if name in shapes else ()
    if st.block is not None:
        blk = ctx.spec.blocks[st.block]
        notes = tuple(x for x in (blk.figure, _with_text(st.with_)) if x) + shape
        box = _block(st.block, st.with_, title, "", sctx, notes)
        return Box("stage", box.title, box.notes, box.body, name) if isinstance(box, Box) else box
    if st.op is not None:
        body = _as_seq(_item(st.op, "", sctx))
    elif st.seq is not None:
        body = _seq(st.seq, "", sctx)
    elif st.concat is not None:
        body = Seq((Par("concat", _branches(st.concat, "", sctx), "concat"),))
    else:
        body = _residual(st.residual, "", sctx)
    if ctx.max_depth == 1:
        return Op(title, shape)
    return Box("stage", title, shape, body, name)


def build_tree(spec, depth: Optional[int] = None) -> Network:
    """The structure tree of a loaded spec (`spec.analysis` is used for what was built
    and for the stage shapes). `depth`: 1 draws each stage as one node, 2 also collapses
    blocks used inside blocks, None draws everything."""
    from ..ops import fmt_shape

    a = spec.analysis
    shapes = {s.name: s.shape for s in a.stages}
    nodes = {n.name: n for n in a.graph.nodes}
    ctx = _Ctx(spec, ("",), _prefixes(nodes), nodes, 1, depth)
    items = [Op(f"input {fmt_shape(a.input_shape)}")]
    items += [_stage(st, shapes, ctx) for st in spec.network]
    if spec.head:
        hctx = _Ctx(spec, ("head",), ctx.prefixes, nodes, 1, depth)
        shape = ("→ " + fmt_shape(shapes["head"]),) if "head" in shapes else ()
        items.append(Op("head", shape) if depth == 1 else
                     Box("head", "head", shape, _seq(spec.head, "", hctx), "head"))
    aux = []
    for head in spec.aux:
        if head.name not in shapes:  # not enabled: the analysis built nothing
            continue
        actx = _Ctx(spec, (head.name,), ctx.prefixes, nodes, 1, depth)
        notes = (f"training only, from {head.after}", "→ " + fmt_shape(shapes[head.name]))
        aux.append((head.after, Box("aux", head.name, notes, _seq(head.seq, "", actx), head.name)))
    title = spec.name + (f": {spec.title}" if spec.title and spec.title != spec.name else "")
    notes = (f"layers {a.layers} · params {a.params:,}",)
    return Network(Box("network", title, notes, Seq(tuple(items))), tuple(aux))


# --- DOT and Mermaid -----------------------------------------------------------------------

class _Writer:
    """One walk over the tree for both text formats: nodes and clusters as they nest,
    edges collected and written last (so each writer only says how a thing is spelt)."""

    def __init__(self, fmt: str):
        self.fmt, self.lines, self.edges, self.n, self.exits = fmt, [], [], 0, {}

    def new(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def node(self, label: str, kind: str, indent: str) -> str:
        nid = self.new("n")
        if self.fmt == "dot":
            shape = ('shape=box, style="rounded,filled", fillcolor="#ffffff"' if kind == "op" else
                     f'shape=ellipse, style=filled, fillcolor="{_MERGE_FILL[kind]}", class="merge {kind}"')
            self.lines.append(f'{indent}{nid} [label="{_dot_esc(label)}", {shape}];')
        else:
            text = _md_esc(label)
            self.lines.append(f'{indent}{nid}["{text}"]' if kind == "op" else f'{indent}{nid}(["{text}"])')
        return nid

    def edge(self, a: str, b: str) -> None:
        self.edges.append(f"{a} -> {b};" if self.fmt == "dot" else f"{a} --> {b}")

    def walk(self, node, preds: list, indent: str) -> list:
        if isinstance(node, Op):
            nid = self.node("\n".join((node.label, *node.notes)), "op", indent)
            for p in preds:
                self.edge(p, nid)
            return [nid]
        if isinstance(node, Seq):
            for it in node.items:
                preds = self.walk(it, preds, indent)
            return preds
        if isinstance(node, Par):
            ends = [e for br in node.branches for e in self.walk(br, preds, indent)]
            mid = self.node(node.merge, node.kind, indent)
            for e in ends:
                self.edge(e, mid)
            return [mid]
        cid = self.new("cluster_" if self.fmt == "dot" else "s")
        label = "\n".join((node.title, *node.notes))
        if self.fmt == "dot":
            style = _DOT_BOX[node.kind]
            self.lines.append(f'{indent}subgraph {cid} {{')
            self.lines.append(f'{indent}  label="{_dot_esc(label)}"; class="{node.kind}"; {style}')
        else:
            self.lines.append(f'{indent}subgraph {cid}["{_md_esc(label)}"]')
            self.lines.append(f"{indent}  direction TB")
        body = node.body if node.body.items else Seq((Op("identity"),))
        out = self.walk(body, preds, indent + "  ")
        self.lines.append(f"{indent}}}" if self.fmt == "dot" else f"{indent}end")
        if self.fmt == "mermaid" and node.kind in ("cond", "aux"):
            self.lines.append(f"{indent}style {cid} stroke-dasharray: 5 5")
        if node.key:
            self.exits[node.key] = out
        return out


_MERGE_FILL = {"concat": "#fdf0c8", "add": "#d9f0d9", "residual": "#d9f0d9", "multiply": "#f6d9e8"}
_DOT_BOX = {
    "network": 'style="rounded"; fontsize=14;',
    "stage": 'style="rounded,filled"; fillcolor="#eef3fa"; color="#6b7f99";',
    "head": 'style="rounded,filled"; fillcolor="#eef7ee"; color="#6b996b";',
    "block": 'style="rounded,filled"; fillcolor="#fbf6ea"; color="#a08850";',
    "group": 'style="rounded"; color="#999999";',
    "cond": 'style="dashed"; color="#b05050";',
    "aux": 'style="rounded,dashed"; color="#6b996b";',
}


def _dot_esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _md_esc(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def _text(net: Network, fmt: str) -> str:
    w = _Writer(fmt)
    w.walk(net.box, [], "  ")
    for after, box in net.aux:
        w.walk(box, w.exits.get(after, []), "  ")
    if fmt == "dot":
        head = ["digraph archc {", "  rankdir=TB; newrank=true;",
                '  graph [fontname="monospace", fontsize=11];',
                '  node [fontname="monospace", fontsize=11, height=0.3];',
                '  edge [arrowsize=0.6];']
        return "\n".join(head + w.lines + ["  " + e for e in w.edges] + ["}"]) + "\n"
    return "\n".join(["flowchart TB"] + w.lines + ["  " + e for e in w.edges]) + "\n"


def to_dot(net: Network) -> str:
    return _text(net, "dot")


def to_mermaid(net: Network) -> str:
    return _text(net, "mermaid")


def render(spec, fmt: str = "dot", depth: Optional[int] = None) -> str:
    """The picture of a loaded spec in one of FORMATS, as text (same spec: same bytes)."""
    if fmt not in FORMATS:
        from ..errors import UsageError

        raise UsageError(f"unknown graph format {fmt!r} (choose {', '.join(FORMATS)})")
    net = build_tree(spec, depth)
    if fmt == "svg":
        from .graph_svg import to_svg

        return to_svg(net)
    return to_dot(net) if fmt == "dot" else to_mermaid(net)
