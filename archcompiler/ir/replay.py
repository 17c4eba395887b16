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

from .graph import Node


class _Record:
    __slots__ = ("path", "x", "nodes", "shapes", "out", "outer")

    def __init__(self, path, x, nodes, shapes, out, outer):
        self.path, self.x, self.nodes, self.shapes, self.out, self.outer = (
            path, x, nodes, shapes, out, outer)


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
    cut = len(rec.path)
    prefix = rec.path + "."

    def rename(name: str) -> str:
        return path + name[cut:]

    names = {rec.x: x}
    for n in rec.nodes:
        names[n.name] = rename(n.name)
    if any(names[n.name] in lw.names for n in rec.nodes):
        return None  # a clash: lowering reports it
    outer = tuple(lw.scopes)
    scopes: dict = {}
    stage = lw.stage
    for n, shape in zip(rec.nodes, rec.shapes):
        sc = scopes.get(n.scope)
        if sc is None:
            inner = tuple(s.__class__(rename(s.path), s.block, s.params, s.in_channels)
                          for s in n.scope[rec.outer:])
            sc = scopes[n.scope] = outer + inner
        new = Node(names[n.name], n.op, tuple(names[i] for i in n.inputs), n.attrs, n.loc,
                   stage, sc, rename(n.item) if n.item.startswith(prefix) else n.item,
                   n.spec_op, n.srcs)
        lw.nodes.append(new)
        lw.names[new.name] = new
        if shape is not None:
            lw.shapes[new.name] = shape
    return names[rec.out]
