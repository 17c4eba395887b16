"""Checks against what a spec promises, and the input sizes a network accepts.

The accepted sizes are found for every size from 1 to 4096 at once: each op's vectorised
spatial rule (`IROp.spatial_rule`) maps numpy arrays of sizes to output sizes and a mask
of the sizes it accepts. Height and width are independent (every op acts on each axis on
its own), so the accepted inputs are the pairs (H, W) with H and W each accepted. A
floor-mode conv concatenated with a ceil-mode pool (BN-Inception's reductions) accepts
only some sizes; a flatten before a linear layer fixes the map size there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..ir.graph import Graph
from ..ops import OPS, fmt_shape

MAX_SEARCH_SIZE = 4096
_LIST_LIMIT = 24


@dataclass(frozen=True)
class SizeRule:
    """Accepted lengths of one input axis, from 1 to 4096."""

    sizes: tuple  # every accepted length, ascending

    @property
    def min(self):
        return self.sizes[0] if self.sizes else None

    @cached_property
    def _members(self) -> frozenset:
        return frozenset(self.sizes)

    def contains(self, n: int) -> bool:
        return n in self._members if n <= MAX_SEARCH_SIZE else self._beyond(n)

    def intersect(self, other: "SizeRule") -> "SizeRule":
        return SizeRule(tuple(sorted(self._members & other._members)))

    def _beyond(self, n: int) -> bool:
        kind = self.kind()
        if kind[0] == "interval":
            return True
        return kind[0] == "periodic" and n % kind[2] in kind[3]

    def kind(self) -> tuple:
        """("interval", min) | ("periodic", min, step, residues) | ("list",) | ("none",)."""
        s = self.sizes
        if not s:
            return ("none",)
        if s[-1] == MAX_SEARCH_SIZE and len(s) == MAX_SEARCH_SIZE - s[0] + 1:
            return ("interval", s[0])
        if s[-1] > MAX_SEARCH_SIZE - 128:
            for step in range(2, 129):
                residues = frozenset(n % step for n in s)
                first = s[0]
                expect = [n for n in range(first, MAX_SEARCH_SIZE + 1) if n % step in residues]
                if tuple(expect) == s:
                    return ("periodic", first, step, tuple(sorted(residues)))
        return ("list",)

    def describe(self) -> str:
        k = self.kind()
        if k[0] == "none":
            return "no size up to 4096"
        if k[0] == "interval":
            return f"{k[1]} and larger"
        if k[0] == "periodic":
            res = " or ".join(str(r) for r in k[3])
            return f"{k[1]} and larger with size % {k[2]} == {res}"
        shown = ", ".join(str(n) for n in self.sizes[:_LIST_LIMIT])
        more = f", ... ({len(self.sizes)} sizes, up to {self.sizes[-1]})" \
            if len(self.sizes) > _LIST_LIMIT else ""
        return shown + more

    def to_json(self):
        k = self.kind()
        if k[0] == "interval":
            return {"min": k[1]}
        if k[0] == "periodic":
            return {"min": k[1], "step": k[2], "residues": list(k[3])}
        return {"sizes": list(self.sizes)}


def symbolic_dims(graph: Graph, shapes: dict, names=("height", "width")) -> dict:
    """A name for every node's H and W when the input's are symbolic: two values get the
    same name exactly when they are equal at every accepted input size; a value equal to
    the input's keeps its name; others are named after their size at the spec's input
    (`height_35`: 35 at the default input)."""
    mh, mw = _axis_masks(graph)
    sizes = np.arange(MAX_SEARCH_SIZE + 1, dtype=np.int64)
    _, h0, w0 = graph.input_shape
    out: dict = {}
    for axis, mask in ((0, mh), (1, mw)):
        hs = sizes if axis == 0 else np.full_like(sizes, h0)
        ws = np.full_like(sizes, w0) if axis == 0 else sizes
        hw = _run(graph, hs, ws, keep=True)[2]
        keys: dict = {}
        base = names[axis]
        ident = hw[graph.input_name][axis][mask].tobytes()
        for node in graph.nodes:
            arr = hw[node.name][axis][mask]
            key = arr.tobytes()
            if key == ident:
                name = base
            elif key in keys:
                name = keys[key]
            else:
                at_spec = shapes[node.name][1 + axis] if len(shapes[node.name]) == 3 else 1
                name, n = f"{base}_{at_spec}", 1
                while name in keys.values():
                    n += 1
                    name = f"{base}_{at_spec}_{n}"
                keys[key] = name
            out.setdefault(node.name, [None, None])[axis] = name
    return {k: tuple(v) for k, v in out.items()}


def _run(graph: Graph, hs: np.ndarray, ws: np.ndarray, ref: dict | None = None, keep: bool = False):
    """Which (H, W) pairs (elementwise) every op accepts; and the map size entering each
    flatten (whose vector length, hence the next linear's weights, fixes the size there:
    `ref` holds those sizes at the spec's own input)."""
    hw = {graph.input_name: (hs, ws)}
    ok = (hs >= 1) & (ws >= 1)
    flat: dict = {}
    for node in graph.nodes:
        ins = [hw[i] for i in node.inputs]
        h, w, accepted = OPS[node.op].spatial_rule(node.attrs, ins)
        if accepted is not True:
            ok &= accepted
        # most ops keep the map size and hand back their input's arrays: no work then
        if h is not ins[0][0]:
            h = np.broadcast_to(h, hs.shape)
            ok &= h >= 1
            h = np.maximum(h, 1)
        if w is not ins[0][1]:
            w = np.broadcast_to(w, hs.shape)
            ok &= w >= 1
            w = np.maximum(w, 1)
        if node.op == "flatten":
            flat[node.name] = ins[0]
            if ref is not None:
                ok &= (ins[0][0] == ref[node.name][0]) & (ins[0][1] == ref[node.name][1])
        hw[node.name] = (h, w)
    return (ok, flat, hw) if keep else (ok, flat)


def _axis_masks(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """Boolean arrays over sizes 0..4096: the heights and the widths the network accepts
    (each with the other axis at an accepted value)."""
    sizes = np.arange(MAX_SEARCH_SIZE + 1, dtype=np.int64)
    _, h0, w0 = graph.input_shape
    _, flat = _run(graph, np.array([h0]), np.array([w0]))
    ref = {k: (int(v[0][0]), int(v[1][0])) for k, v in flat.items()}
    square, _ = _run(graph, sizes, sizes, ref)
    if not square.any():
        return square, square
    # the other axis at a size that works: the spec's own if it does
    fix_w = w0 if w0 <= MAX_SEARCH_SIZE and _run(graph, sizes, np.full_like(sizes, w0), ref)[0].any() \
        else int(np.flatnonzero(square)[0])
    mh, _ = _run(graph, sizes, np.full_like(sizes, fix_w), ref)
    fix_h = int(np.flatnonzero(mh)[0]) if h0 > MAX_SEARCH_SIZE or not mh[h0] else h0
    mw, _ = _run(graph, np.full_like(sizes, fix_h), sizes, ref)
    return mh, mw


def accepted_sizes(graph: Graph) -> tuple[SizeRule, SizeRule]:
    """(heights, widths) the network accepts (each up to 4096)."""
    mh, mw = _axis_masks(graph)
    return (SizeRule(tuple(int(n) for n in np.flatnonzero(mh))),
            SizeRule(tuple(int(n) for n in np.flatnonzero(mw))))


def square_sizes(graph: Graph) -> SizeRule:
    mh, mw = _axis_masks(graph)
    return SizeRule(tuple(int(n) for n in np.flatnonzero(mh & mw)))


def min_input_size(graph: Graph) -> int | None:
    """Smallest square input (H = W) the network accepts."""
    return square_sizes(graph).min


def expectation_problems(graph: Graph, shapes: dict, spatial: bool = True) -> list[tuple]:
    """(stage, message) for every stage whose output differs from its `expect`.

    With `spatial=False` (another input size than the spec's), only the channels are
    compared: the promised shapes hold for the spec's own input size."""
    out = []
    for st in graph.stages:
        if st.expect is None or st.output not in shapes:
            continue
        got = tuple(shapes[st.output])
        want = tuple(st.expect)
        if spatial and got != want:
            out.append((st, f"stage {st.name}: expected {fmt_shape(want)}, got {fmt_shape(got)}"))
        elif not spatial and (len(got) != len(want) or got[0] != want[0]):
            out.append((st, f"stage {st.name}: expected {want[0]} channels (from {fmt_shape(want)}), "
                            f"got {fmt_shape(got)}"))
    return out
