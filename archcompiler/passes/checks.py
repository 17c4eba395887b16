"""Checks against what a spec promises, and the input sizes a network accepts.

The accepted sizes are found for every size from 1 to 4096 at once: each op's spatial
rule (`IROp.spatial_rule`) maps size vectors (ops.sizes: an axis' length at every
candidate input length) to output vectors and masks of the lengths it accepts. Height and
width are independent (every op acts on each axis on its own), so one pass gives both
axes, and the accepted inputs are the pairs (H, W) with H and W each accepted. A
floor-mode conv concatenated with a ceil-mode pool (BN-Inception's reductions) accepts
only some sizes; a flatten before a linear layer fixes the map size there. Plain Python
(no numpy): most ops keep the size and cost nothing, and each distinct window is computed
once per process (a spec and its variants share their stems).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property

from ..ir.graph import Graph
from ..ops import OPS, IROp, fmt_shape
from ..ops.sizes import ALL, Sizes, at_least, clamp, mask_indices, made as sizes_made

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
        if n > MAX_SEARCH_SIZE:
            return self._beyond(n)
        i = bisect_left(self.sizes, n)  # the sizes are ascending
        return i < len(self.sizes) and self.sizes[i] == n

    def intersect(self, other: "SizeRule") -> "SizeRule":
        if self.sizes == other.sizes:  # square networks: height and width alike
            return SizeRule(self.sizes)
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
    (mh, mw), hw = _axis_masks(graph, keep=True)
    out: dict = {}
    for axis, mask in ((0, mh), (1, mw)):
        keep = mask_indices(mask, MAX_SEARCH_SIZE + 1)
        keys: dict = {}
        base = names[axis]
        values = hw[graph.input_name][axis].values
        ident = tuple(values[n] for n in keep)
        for node in graph.nodes:
            values = hw[node.name][axis].values
            key = tuple(values[n] for n in keep)
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


# the ops whose spatial rule keeps the size (IROp's own): the search passes them by
_KEEPS = frozenset(name for name, op in OPS.items() if type(op).spatial_rule is IROp.spatial_rule)


def _run(graph: Graph, hs: Sizes, ws: Sizes, ref):
    """The input lengths every op accepts, per axis (masks: ops.sizes); the map size
    entering each flatten (whose vector length, hence the next linear's weights, fixes
    the size there: `ref` holds those sizes at the spec's own input, or is the (H, W)
    index where this run's vectors hold them); and every node's vectors."""
    hw = {graph.input_name: (hs, ws)}
    ok_h = at_least(hs, 1)
    ok_w = at_least(ws, 1)
    flat: dict = {}
    # the copies of a repeated block share their attributes (ir.replay) and mostly see the
    # same vectors: their rules are applied once (graph and hw keep the ids alive)
    seen: dict = {}
    for node in graph.nodes:
        if node.op in _KEEPS:  # most ops keep the map size: no work then
            hw[node.name] = hw[node.inputs[0]]
            continue
        inputs = node.inputs
        if len(inputs) == 1:
            pair = hw[inputs[0]]
            ins = [pair]
            key = (node.op, id(node.attrs), id(pair[0]), id(pair[1]))
        else:
            ins = [hw[i] for i in inputs]
            key = (node.op, id(node.attrs), *[id(v) for pair in ins for v in pair])
        got = seen.get(key)
        if got is None:
            h, w, mh, mw = OPS[node.op].spatial_rule(node.attrs, ins)
            if h is not ins[0][0]:
                m, h = clamp(h)
                mh &= m
            if w is not ins[0][1]:
                m, w = clamp(w)
                mw &= m
            got = seen[key] = (h, w, mh, mw)
        h, w, mh, mw = got
        if node.op == "flatten":
            fh, fw = flat[node.name] = ins[0]
            if isinstance(ref, tuple):
                rh, rw = fh.at(ref[0]), fw.at(ref[1])
            else:
                rh, rw = ref[node.name]
            mh &= fh.mask(("is", rh), lambda xs: [x == rh for x in xs])
            mw &= fw.mask(("is", rw), lambda xs: [x == rw for x in xs])
        if mh != ALL:  # (an `&` with ALL would copy a 4097-byte mask for nothing)
            ok_h &= mh
        if mw != ALL:
            ok_w &= mw
        hw[node.name] = (h, w)
    return ok_h, ok_w, flat, hw


def _axis_masks(graph: Graph, keep: bool = False):
    """Masks over lengths 0..4096 (ops.sizes): the heights and the widths the network
    accepts (each with the other axis at an accepted value; none at all when no (H, W)
    pair is accepted). Every op acts on each axis on its own, so one run gives both."""
    _, h0, w0 = graph.input_shape
    n = MAX_SEARCH_SIZE + 1
    sizes = _base_sizes()
    if h0 < n and w0 < n:  # the flatten sizes at the spec's input: read off the same run
        ref = (h0, w0)
    else:
        flat = _run(graph, Sizes([h0]), Sizes([w0]), (0, 0))[2]
        ref = {k: (fh.at(0), fw.at(0)) for k, (fh, fw) in flat.items()}
    mh, mw, _, hw = _run(graph, sizes, sizes, ref)
    if not mh & mw:  # no square size; then no pair at all (the axes are independent)
        mh = mw = 0
    return ((mh, mw), hw) if keep else (mh, mw)


_BASE: list = []  # [(Sizes of 0..4096, vectors made when it was)]
_KEEP_VECTORS = 256  # up to ~150 kB each (the shipped specs make ~100)


def _base_sizes() -> Sizes:
    """The input lengths 0..4096, shared by every search in this process: networks with
    the same stem (a spec and its variants) find their vectors in its memo. Renewed once
    it holds many vectors, so that memory stays bounded."""
    if not _BASE or sizes_made[0] - _BASE[0][1] > _KEEP_VECTORS:
        _BASE[:] = [(Sizes.identity(MAX_SEARCH_SIZE + 1), sizes_made[0])]
    return _BASE[0][0]


def accepted_sizes(graph: Graph) -> tuple[SizeRule, SizeRule]:
    """(heights, widths) the network accepts (each up to 4096)."""
    mh, mw = _axis_masks(graph)
    n = MAX_SEARCH_SIZE + 1
    return SizeRule(tuple(mask_indices(mh, n))), SizeRule(tuple(mask_indices(mw, n)))


def square_sizes(graph: Graph) -> SizeRule:
    mh, mw = _axis_masks(graph)
    return SizeRule(tuple(mask_indices(mh & mw, MAX_SEARCH_SIZE + 1)))


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
