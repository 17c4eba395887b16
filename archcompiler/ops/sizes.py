"""Size vectors for the input-size search (passes.checks): plain Python, no numpy.

A `Sizes` is one axis' length at one node for every candidate input length along that
axis (index n: the network input is n long). Height and width are independent (every
op acts on each axis on its own), so an op's spatial rule maps each axis' vector on its
own, and says which input lengths it accepts as a mask: an int whose byte n is 1 when
length n is accepted (ALL: no condition). Results are memoised on the input vector: a
branch, or the other axis, that applies the same window to the same vector costs a
dict lookup, and a window that keeps the length hands back its input itself.

A vector is kept as runs of equal values (`starts`, `vals`): a length is a step function
of the input length, and every stride-s op merges runs s at a time, so past the stem a
vector of 4097 lengths is a few hundred runs. Every rule is elementwise (a length's
output depends on that length alone), so it is applied to the run values only.
"""

from __future__ import annotations

from bisect import bisect_right

ALL = -1  # the mask with no condition (every byte set): `mask & ALL == mask`
made = [0]  # how many vectors were computed (passes.checks bounds what it keeps)
_ONE, _ZERO = b"\x01", b"\x00"


class Sizes:
    """`n` lengths, as runs: vals[i] for the input lengths starts[i] .. starts[i+1]-1.
    Adjacent runs differ (canonical), so equal vectors have equal runs."""

    __slots__ = ("n", "starts", "vals", "memo", "_values")

    def __init__(self, values: list):
        starts, vals = [], []
        last = object()
        for i, x in enumerate(values):
            if x != last:
                starts.append(i)
                vals.append(x)
                last = x
        self._set(len(values), starts, vals)

    @classmethod
    def runs(cls, n: int, starts: list, vals: list) -> "Sizes":
        """From runs whose adjacent values may be equal (they are merged)."""
        out = cls.__new__(cls)
        keep = [i for i in range(1, len(vals)) if vals[i] != vals[i - 1]]
        if len(keep) + 1 < len(vals):
            keep.insert(0, 0)
            starts, vals = [starts[i] for i in keep], [vals[i] for i in keep]
        out._set(n, starts, vals)
        return out

    @classmethod
    def identity(cls, n: int) -> "Sizes":
        """The input lengths themselves, 0 .. n-1."""
        out = cls.__new__(cls)
        out._set(n, list(range(n)), list(range(n)))
        out.memo["identity"] = True
        return out

    def _set(self, n: int, starts: list, vals: list) -> None:
        self.n, self.starts, self.vals = n, starts, vals
        self.memo: dict = {}
        self._values = None
        made[0] += 1

    @property
    def values(self) -> list:
        """Every length, one per input length (built once, when asked for)."""
        if self._values is None:
            out: list = []
            ends = self.starts[1:] + [self.n]
            for s, e, x in zip(self.starts, ends, self.vals):
                out.extend([x] * (e - s))
            self._values = out
        return self._values

    def at(self, i: int) -> int:
        return self.vals[bisect_right(self.starts, i) - 1]

    def lengths(self) -> list:
        return _lengths(self.starts, self.n)

    def same(self, other: "Sizes") -> bool:
        return self is other or (self.vals == other.vals and self.starts == other.starts)

    def map(self, key, fn) -> "Sizes":
        """Sizes(fn(values)) for an elementwise fn, memoised under `key` (which names
        what fn computes)."""
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = Sizes.runs(self.n, self.starts, fn(self.vals))
        return got

    def mask(self, key, fn) -> int:
        """The mask of fn(values) (byte n = 1 where true) for an elementwise fn, memoised
        under `key`."""
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = _runs_mask(fn(self.vals), self)
        return got


def _lengths(starts: list, n: int) -> list:
    """How many input lengths each run covers."""
    return [e - s for s, e in zip(starts, starts[1:] + [n])]


def _runs_mask(flags, v: "Sizes | list") -> int:
    """The mask of one truth value per run (of v, or of these run lengths)."""
    if all(flags):
        return ALL
    lengths = v.lengths() if isinstance(v, Sizes) else v
    return int.from_bytes(b"".join((_ONE if f else _ZERO) * k for f, k in zip(flags, lengths)),
                          "little")


def mask_indices(mask: int, n: int) -> list[int]:
    """The lengths (0..n-1) a mask accepts, ascending."""
    if mask <= 0:
        return list(range(n)) if mask == ALL else []
    raw = mask.to_bytes(n, "little")
    first = raw.find(1)
    if raw.count(1) == n - first:  # an interval: first and larger
        return list(range(first, n))
    return [i for i in range(first, n) if raw[i]]


def window(v: Sizes, kernel: int, stride: int, lo: int, hi: int, dilation: int = 1,
           ceil: bool = False) -> Sizes:
    """Output lengths of a sliding window padded by lo and hi (base.window_extent's rule;
    torch's ceil mode drops a last window that would start in the trailing padding)."""
    span = dilation * (kernel - 1) + 1
    if stride == 1 and lo + hi == span - 1:
        return v  # the length is kept
    c = lo + hi - span
    if not ceil:
        if "identity" in v.memo:  # the network input: the runs are known without a scan
            key = ("win", c, stride)
            got = v.memo.get(key)
            if got is None:
                got = v.memo[key] = _window_of_identity(v.n, c, stride)
            return got
        return v.map(("win", c, stride), lambda xs: [(x + c) // stride + 1 for x in xs])

    def ceil_rule(xs):
        out = []
        for x in xs:
            o = -(-(x + c) // stride) + 1
            out.append(o - 1 if (o - 1) * stride >= x + lo else o)
        return out
    return v.map(("ceil", c, stride, lo), ceil_rule)


def _window_of_identity(n: int, c: int, stride: int) -> Sizes:
    """(x + c) // stride + 1 for x in 0 .. n-1: a new value where x + c is a multiple of
    the stride."""
    first = (-c) % stride or stride
    starts = [0, *range(first, n, stride)]
    out = Sizes.__new__(Sizes)
    out._set(n, starts, [(x + c) // stride + 1 for x in starts])
    return out


def const(v: Sizes, value: int) -> Sizes:
    """The same length at every input length (a pooled or flattened map)."""
    return v.map(("const", value), lambda xs: [value] * len(xs))


def at_least(v: Sizes, n: int) -> int:
    """The input lengths where the length is n or more."""
    return v.mask(("ge", n), lambda xs: [x >= n for x in xs])


def _segments(a: Sizes, b: Sizes):
    """(starts, a's values, b's values) over the runs of both."""
    starts, av, bv = [], [], []
    i = j = 0
    sa, sb, va, vb = a.starts, b.starts, a.vals, b.vals
    na, nb = len(sa), len(sb)
    while i < na or j < nb:
        s = min(sa[i] if i < na else a.n, sb[j] if j < nb else b.n)
        if i < na and sa[i] == s:
            i += 1
        if j < nb and sb[j] == s:
            j += 1
        starts.append(s)
        av.append(va[i - 1])
        bv.append(vb[j - 1])
    return starts, av, bv


def equal(a: Sizes, b: Sizes) -> int:
    """The input lengths where two vectors agree."""
    if a.same(b):
        return ALL
    got = a.memo.get(("eq", id(b)))
    if got is None:  # b stays referenced beside its mask, so that its id is not reused
        starts, av, bv = _segments(a, b)
        got = a.memo[("eq", id(b))] = (b, _runs_mask([x == y for x, y in zip(av, bv)],
                                                      _lengths(starts, a.n)))
    return got[1]


def broadcast(a: Sizes, b: Sizes) -> tuple[int, Sizes]:
    """numpy broadcasting of two lengths: (where they agree or one is 1, the larger)."""
    if a.same(b):
        return ALL, a
    got = a.memo.get(("bc", id(b)))
    if got is None:
        if b.vals == [1] and minimum(a) >= 1:  # an SE gate: Cx1x1 times CxHxW
            got = (b, ALL, a)
        else:
            starts, av, bv = _segments(a, b)
            got = (b, _runs_mask([x == y or x == 1 or y == 1 for x, y in zip(av, bv)],
                                 _lengths(starts, a.n)),
                   Sizes.runs(a.n, starts, [x if x > y else y for x, y in zip(av, bv)]))
        a.memo[("bc", id(b))] = got  # b stays referenced, so that its id is not reused
    return got[1], got[2]


def minimum(v: Sizes) -> int:
    got = v.memo.get("min")
    if got is None:
        got = v.memo["min"] = min(v.vals)
    return got


def clamp(v: Sizes) -> tuple[int, Sizes]:
    """(lengths where v >= 1, v raised to at least 1): a map that vanishes rejects that
    input length; later ops see length 1 there (the length is rejected anyway)."""
    got = v.memo.get("clamp")
    if got is None:
        if minimum(v) >= 1:
            got = (ALL, v)
        else:
            got = (_runs_mask([x >= 1 for x in v.vals], v),
                   Sizes.runs(v.n, v.starts, [x if x >= 1 else 1 for x in v.vals]))
        v.memo["clamp"] = got
    return got
