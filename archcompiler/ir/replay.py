"""Each distinct block instantiation is lowered once: later uses replay its nodes.

A block's nodes depend only on the block, its environment (parameters, `$in` and the
spec's values), the shape of its input and the item it sits in; its node names, item
paths and scope paths sit under the path it is instantiated at. So a repeated stage's
copies, or a block used twice with the same values, are renamed copies of the first
instantiation: same ops, attributes (immutable, shared), locations and shapes. Only an
instantiation that lowered without any diagnostic is replayed (a problem is reported
where it arises, once per use, by lowering again).
"""

from __future__ import annotations

from typing import Optional

from .graph import Node, Scope


class _Record:
    """One instantiation, ready to be emitted again under another path: per node its
    name below the block's path, its inputs (-1: the block's input, else the index of an
    earlier node), its item below the path (None: an enclosing item, kept), and its
    block instances inside the block (paths below the path)."""

    __slots__ = ("nodes", "shapes", "out", "suffixes", "inputs", "items", "scope_of", "scopes")

    def __init__(self, path: str, x: str, nodes, shapes, out: str, outer: int):
        cut, prefix = len(path), path + "."
        index = {x: -1}
        for i, n in enumerate(nodes):
            index[n.name] = i
        self.nodes, self.shapes, self.out = nodes, shapes, index[out]
        self.suffixes = [n.name[cut:] for n in nodes]
        self.inputs = [tuple(index[i] for i in n.inputs) for n in nodes]
        self.items = [n.item[cut:] if n.item.startswith(prefix) else None for n in nodes]
        tails: dict = {}
        self.scope_of = [tails.setdefault(n.scope, len(tails)) for n in nodes]
        self.scopes = [tuple((s.path[cut:], s.block, s.params, s.in_channels) for s in sc[outer:])
                       for sc in tails]


class _Same:
    """A key part equal only to the very same object (which it keeps alive)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj


def key(name: str, blk, benv: dict, in_shape, current_item) -> Optional[tuple]:
    """What the instantiation depends on (None: not replayable): the block template
    itself (not only its name), its environment, its input's shape. Types are part of the
    key: 1, 1.0 and True are equal in Python but lower differently."""
    try:
        k = (name, _Same(blk), tuple((p, type(v), v) for p, v in benv.items()), in_shape,
             current_item)
        hash(k)
    except TypeError:
        return None
    return k


def records(lw) -> dict:
    got = lw.__dict__.get("_block_records")
    if got is None:
        got = lw.__dict__["_block_records"] = {}
    return got


def record(lw, k, path: str, x: str, start: int, out: Optional[str]) -> None:
    """Keep the nodes lw emitted since `start` for block instantiation `k` at `path`."""
    nodes = lw.nodes[start:]
    prefix = path + "."
    inner = {x}
    for n in nodes:  # (a concat's item is the enclosing one's, part of the key)
        if not n.name.startswith(prefix) or any(i not in inner for i in n.inputs) \
                or not (n.item.startswith(prefix) or n.item == lw.current_item[0]):
            return  # not a self-contained renamable block: lower each use
        inner.add(n.name)
    if out is None or out not in inner:
        return
    shapes = [lw.shapes.get(n.name) for n in nodes]
    records(lw)[k] = _Record(path, x, nodes, shapes, out, len(lw.scopes))


def replay(lw, k, path: str, x: str, max_nodes: int) -> Optional[str]:
    """Emit the recorded instantiation `k` at `path` reading `x`; returns its output, or
    None when there is no record (or a replay would need a diagnostic: lower it then)."""
    rec = records(lw).get(k)
    if rec is None or len(lw.nodes) + len(rec.nodes) > max_nodes:
        return None
    names = [path + s for s in rec.suffixes]
    if not lw.names.keys().isdisjoint(names):
        return None  # a clash: lowering reports it
    outer = tuple(lw.scopes)
    scopes = [outer + tuple(Scope(path + sp, b, p, c) for sp, b, p, c in tail)
              for tail in rec.scopes]
    stage = lw.stage
    nodes, by_name, shapes = lw.nodes, lw.names, lw.shapes
    for i, (n, shape, ins, item) in enumerate(zip(rec.nodes, rec.shapes, rec.inputs, rec.items)):
        name = names[i]
        new = Node(name, n.op, tuple(x if j < 0 else names[j] for j in ins), n.attrs, n.loc,
                   stage, scopes[rec.scope_of[i]], n.item if item is None else path + item,
                   n.spec_op, n.srcs)
        nodes.append(new)
        by_name[name] = new
        if shape is not None:
            shapes[name] = shape
    return x if rec.out < 0 else names[rec.out]
