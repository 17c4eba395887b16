"""Generated source for one scope of the IR: a block instance, a stage, the head.

The scope's nodes become *units* (a module each: a spec op's group such as `ConvBnAct`,
a single op's module, or a nested block's class) and *inline* calls (concat, residual
add). Units sit in a module tree keyed by their names relative to the scope, so the
state_dict keys are the IR's. Containers whose units form a chain become `nn.Sequential`,
and parallel chains merged by a concat become `Concat`; what remains is written as a
straight-line forward. Channel counts are written as expressions of `in_channels` and
the block's parameters wherever the spec wrote an expression.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field

from archcompiler.ops import OPS, SPEC_OPS


def class_name(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) or "Block"


def ident(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or name in ("self", "x", "in_channels") else name


def ch_sum(parts: list):
    const = sum(p for p in parts if isinstance(p, int))
    terms = [p for p in parts if not isinstance(p, int)]
    if not terms:
        return const
    return " + ".join(terms + ([str(const)] if const else []))


class Src:
    """What an op's `source` sees: attributes rendered as source, the input width."""

    def __init__(self, node, ctx, in_channels, out_shape):
        self.node, self.ctx, self.out_shape = node, ctx, out_shape
        self.in_channels = str(in_channels)
        self.srcs = dict(node.srcs)

    def __call__(self, attr: str, fmt=repr) -> str:
        if attr in self.srcs:
            expr, scaled = self.srcs[attr]
            text = expr.render(self.ctx.rename)
            return f"_scaled({text})" if scaled else text
        return fmt(self.node.attrs[attr])

    def channels(self, attr: str):
        return self(attr) if attr in self.srcs else self.node.attrs[attr]

    def channel_sum(self, parts):
        return ch_sum(parts)

    def constant(self, name: str):
        return self.ctx.constants.get(name)

    def of(self, node) -> "Src":
        return self.ctx.src(node)


@dataclass
class Unit:
    rel: str  # module path relative to the scope ("" = the scope's own path)
    ctor: str
    inputs: tuple
    output: str
    order: int  # graph position of its output


@dataclass
class Ctx:
    """Renders one scope: names resolve to block parameters, spec constants, classes."""

    graph: object
    shapes: dict
    params: set = field(default_factory=set)
    constants: dict = field(default_factory=dict)
    classes_src: str = "NUM_CLASSES"
    channels: dict = field(default_factory=dict)  # IR value -> width source
    order: dict = field(default_factory=dict)  # IR node -> position in the graph

    def rename(self, n: str) -> str:
        if n == "in":
            return "in_channels"
        if n == "classes" and "num_classes" in self.params:
            return "num_classes"
        if n in self.params:
            return ident(n)
        return self.classes_src if n == "classes" else n.upper()

    def src(self, node) -> Src:
        return Src(node, self, self.channels.get(node.inputs[0], "in_channels") if node.inputs else "",
                   self.shapes.get(node.name, ()))


def _rel(path: str, name: str) -> str:
    return "" if name == path else name[len(path) + 1:]


def scope_units(nodes, path: str, depth: int, ctx: Ctx, nested_ctor):
    """Units and inline nodes of the scope at `path` (`nodes`: every node inside it;
    nested block instances become one unit each, built by `nested_ctor`)."""
    units, inline, groups, nested = [], [], {}, {}
    for n in nodes:
        if len(n.scope) > depth:
            nested.setdefault(n.scope[depth].path, []).append(n)
        else:
            groups.setdefault(n.item or n.name, []).append(n)
    for sub_nodes in nested.values():  # a nested block's width: its number here
        ctx.channels[sub_nodes[-1].name] = ctx.shapes[sub_nodes[-1].name][0]
    for item, members in sorted(groups.items(), key=lambda kv: ctx.order[kv[1][0].name]):
        for m in members:
            ctx.channels[m.name] = OPS[m.op].source_channels(
                m.attrs, [ctx.channels.get(i, "in_channels") for i in m.inputs], ctx.src(m))
        spec_op = SPEC_OPS.get(members[0].spec_op)
        group = getattr(spec_op, "source_group", None)
        ctor = group(members, ctx.src(members[0])) if group else None
        if ctor is not None:
            last = members[-1].name
            units.append(Unit(_rel(path, item), ctor, members[0].inputs, last, ctx.order[last]))
            continue
        for m in members:
            ctor = OPS[m.op].source(m.attrs, ctx.src(m))
            if ctor is None:
                inline.append(m)
            else:
                units.append(Unit(_rel(path, m.name), ctor, m.inputs, m.name, ctx.order[m.name]))
    for sub_path, sub_nodes in nested.items():  # after the groups: their widths are known
        names = {n.name for n in sub_nodes}
        ext = tuple(dict.fromkeys(i for n in sub_nodes for i in n.inputs if i not in names))
        out = sub_nodes[-1].name
        in_src = ctx.channels.get(ext[0], ctx.shapes[ext[0]][0] if ext[0] in ctx.shapes else "in_channels")
        ctor = nested_ctor(sub_nodes[0].scope[depth], sub_nodes, in_src)
        units.append(Unit(_rel(path, sub_path), ctor, ext, out, ctx.order[out]))
    return units, inline


def _sort_key(k: str, first: int):
    return (0, int(k)) if k.isdigit() else (1, first)


def _first(v) -> int:
    return v.order if isinstance(v, Unit) else min(_first(c) for c in v.items.values())


@dataclass
class Container:
    rel: str
    items: dict  # key -> Unit | Container

    @property
    def listed(self) -> bool:
        return list(self.items) == [str(i) for i in range(len(self.items))]

    @property
    def ctor(self) -> str:
        if self.listed:
            inner = ",\n".join(v.ctor for v in self.items.values())
            return f"nn.ModuleList([\n{indent(inner, 4)},\n])"
        inner = ",\n".join(f"{k!r}: {v.ctor}" for k, v in self.items.items())
        return f"nn.ModuleDict({{\n{indent(inner, 4)},\n}})"

    def units(self):
        for v in self.items.values():
            yield from (v.units() if isinstance(v, Container) else (v,))


def module_tree(units: list, inline: list, consumers: dict, scope_path: str = "") -> dict:
    """key -> Unit | Container for the scope's top level, folding chains and concats."""
    prefix = scope_path + "." if scope_path else ""
    readers = readers_of(units, inline)
    tree: dict = {}
    for u in units:
        if u.rel == "":
            return {"": u}
        parts = u.rel.split(".")
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = u

    def fold(node: dict, path: str):
        items = {k: fold(v, f"{path}.{k}" if path else k) if isinstance(v, dict) else v
                 for k, v in node.items()}
        items = dict(sorted(items.items(), key=lambda kv: _sort_key(kv[0], _first(kv[1]))))
        if not path:
            return items
        kids = list(items.values())
        inside = [n for n in inline if n.name.startswith(prefix + path + ".")]
        if all(isinstance(v, Unit) for v in kids):
            by_order = sorted(kids, key=lambda u: u.order)
            if not inside and _is_chain(by_order, consumers, readers):
                keys = [next(k for k, v in items.items() if v is u) for u in by_order]
                unit = Unit(path, _sequential(keys, items), by_order[0].inputs, by_order[-1].output,
                            by_order[-1].order)
                for i in unit.inputs:  # the chain reads its input in place of its first unit
                    readers[i] = [id(unit) if r == id(by_order[0]) else r for r in readers.get(i, [])]
                return unit
            if len(inside) == 1 and inside[0].op == "concat" and _parallel(kids, inside[0], consumers) \
                    and all(k.isidentifier() and not keyword.iskeyword(k) for k in items):
                cat = inside[0]
                inline.remove(cat)
                by_input = {u.output: k for k, u in items.items()}
                body = ",\n".join(f"{by_input[o]}={items[by_input[o]].ctor}" for o in cat.inputs)
                unit = Unit(path, f"Concat(\n{indent(body, 4)},\n)", kids[0].inputs, cat.name,
                            max(u.order for u in kids) + 1)
                branch_ids = {id(u) for u in kids}
                for i in unit.inputs:  # the concat reads the input once, for its branches
                    rs = [r for r in readers.get(i, []) if r not in branch_ids]
                    readers[i] = rs + [id(unit)]
                return unit
        return Container(path, items)

    return fold(tree, "")


def _is_chain(kids: list, consumers: dict, readers: dict | None = None) -> bool:
    """Each unit reads only the previous one's output, which nothing else reads
    (`readers`: IR value -> the units and inline ops of the scope that read it)."""
    if len(kids[0].inputs) != 1:
        return False
    for a, b in zip(kids, kids[1:]):
        if b.inputs != (a.output,):
            return False
        if readers is not None:
            if readers.get(a.output, []) != [id(b)]:
                return False
        elif len(consumers.get(a.output, [])) != 1:
            return False
    return True


def readers_of(units: list, inline: list) -> dict:
    out: dict = {}
    for u in units:
        for i in u.inputs:
            out.setdefault(i, []).append(id(u))
    for n in inline:
        for i in n.inputs:
            out.setdefault(i, []).append(id(n))
    return out


def _parallel(kids: list, cat, consumers: dict) -> bool:
    return (len({u.inputs for u in kids}) == 1 and len(kids[0].inputs) == 1
            and sorted(u.output for u in kids) == sorted(cat.inputs)
            and all(consumers.get(u.output) == [cat.name] for u in kids))


def _sequential(keys: list, items: dict) -> str:
    if keys == [str(i) for i in range(len(keys))]:
        if len(keys) == 1:
            return f"nn.Sequential({items[keys[0]].ctor})"
        return "nn.Sequential(\n" + indent(",\n".join(items[k].ctor for k in keys), 4) + ",\n)"
    inner = ",\n".join(f"({k!r}, {items[k].ctor})" for k in keys)
    return f"nn.Sequential(OrderedDict([\n{indent(inner, 4)},\n]))"


def access(top: dict, rel: str) -> str:
    """`self.branch1[0]`-style access to the module at `rel`."""
    parts = rel.split(".")
    out = f"self.{parts[0]}" if parts[0].isidentifier() and not keyword.iskeyword(parts[0]) \
        else f"getattr(self, {parts[0]!r})"
    node = top[parts[0]]
    for p in parts[1:]:
        if node.listed:
            out += f"[{p}]"
        else:
            out += f".{p}" if p.isidentifier() and not keyword.iskeyword(p) else f"[{p!r}]"
        node = node.items[p]
    return out


def forward_lines(top: dict, inline: list, ctx: Ctx, scope_input: str) -> tuple[list, str]:
    """Straight-line forward over the top-level units and the inline ops."""
    steps = []
    for v in top.values():
        steps.extend(v.units() if isinstance(v, Container) else [v])
    steps = [(u.order, "unit", u) for u in steps] + [(ctx.order[n.name], "op", n) for n in inline]
    var = {scope_input: "x"}
    used: set = {"x", *(ident(p) for p in ctx.params)}
    lines = []
    last = "x"
    for _, kind, s in sorted(steps, key=lambda t: t[0]):
        out = s.output if kind == "unit" else s.name
        base = (s.rel or "y") if kind == "unit" else s.name.rsplit(".", 1)[-1]
        base = base.replace(".", "_")
        name = base if base.isidentifier() and not keyword.iskeyword(base) else f"x{base}"
        while name in used:
            name += "_"
        used.add(name)
        if kind == "unit":
            args = ", ".join(var[i] for i in s.inputs)
            lines.append(f"{name} = {access(top, s.rel)}({args})")
        else:
            args = [var[i] for i in s.inputs]
            lines.append(f"{name} = {OPS[s.op].source_call(s.attrs, args, ctx.src(s))}")
        var[out] = last = name
    return lines, last


def indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.split("\n"))
