"""Size vectors for the input-size search (passes.checks): plain Python, no numpy.

A `Sizes` is one axis' length at one node for every candidate input length along that
axis (index n: the network input is n long). Height and width are independent (every
op acts on each axis on its own), so an op's spatial rule maps each axis' vector on its
own, and says which input lengths it accepts as a mask: an int whose byte n is 1 when
length n is accepted (ALL: no condition). Results are memoised on the input vector: a
branch, or the other axis, that applies the same window to the same vector costs a
dict lookup, and a window that keeps the length hands back its input itself.
"""

from __future__ import annotations

ALL = -1  # the mask with no condition (every byte set): `mask & ALL == mask`
made = [0]  # how many vectors were computed (passes.checks bounds what it keeps)


class Sizes:
    __slots__ = ("values", "memo")

    def __init__(self, values: list):
        self.values = values  # an int per candidate input length
        self.memo: dict = {}
        made[0] += 1

    def map(self, key, fn) -> "Sizes":
        """Sizes(fn(values)), memoised under `key` (which names what fn computes)."""
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = Sizes(fn(self.values))
        return got

    def mask(self, key, fn) -> int:
        """mask_of(fn(values)), memoised under `key`."""
        got = self.memo.get(key)
        if got is None:
            got = self.memo[key] = mask_of(fn(self.values))
        return got


def mask_of(flags) -> int:
    """A mask from one truth value per length (byte n = 1 for True)."""
    return int.from_bytes(bytes(flags), "little")


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
        return v.map(("win", c, stride), lambda xs: [(x + c) // stride + 1 for x in xs])

    def ceil_rule(xs):
        out = []
        for x in xs:
            o = -(-(x + c) // stride) + 1
            out.append(o - 1 if (o - 1) * stride >= x + lo else o)
        return out
    return v.map(("ceil", c, stride, lo), ceil_rule)


def const(v: Sizes, value: int) -> Sizes:
    """The same length at every input length (a pooled or flattened map)."""
    return v.map(("const", value), lambda xs: [value] * len(xs))


def at_least(v: Sizes, n: int) -> int:
    """The input lengths where the length is n or more."""
    return v.mask(("ge", n), lambda xs: [x >= n for x in xs])


def equal(a: Sizes, b: Sizes) -> int:
    """The input lengths where two vectors agree."""
    if a is b or a.values == b.values:
        return ALL
    got = a.memo.get(("eq", id(b)))
    if got is None:  # b stays referenced beside its mask, so that its id is not reused
        got = a.memo[("eq", id(b))] = (b, mask_of([x == y for x, y in zip(a.values, b.values)]))
    return got[1]


def broadcast(a: Sizes, b: Sizes) -> tuple[int, Sizes]:
    """numpy broadcasting of two lengths: (where they agree or one is 1, the larger)."""
    if a is b or a.values == b.values:
        return ALL, a
    got = a.memo.get(("bc", id(b)))
    if got is None:
        av, bv = a.values, b.values
        if bv == const(b, 1).values and minimum(a) >= 1:  # an SE gate: Cx1x1 times CxHxW
            got = (b, ALL, a)
        else:
            got = (b, mask_of([x == y or x == 1 or y == 1 for x, y in zip(av, bv)]),
                   Sizes([x if x > y else y for x, y in zip(av, bv)]))
        a.memo[("bc", id(b))] = got  # b stays referenced, so that its id is not reused
    return got[1], got[2]


def minimum(v: Sizes) -> int:
    got = v.memo.get("min")
    if got is None:
        got = v.memo["min"] = min(v.values)
    return got


def clamp(v: Sizes) -> tuple[int, Sizes]:
    """(lengths where v >= 1, v raised to at least 1): a map that vanishes rejects that
    input length; later ops see length 1 there (the length is rejected anyway)."""
    got = v.memo.get("clamp")
    if got is None:
        if minimum(v) >= 1:
            got = (ALL, v)
        else:
            vals = v.values
            low = [i for i, x in enumerate(vals) if x < 1]
            flags, out = bytearray(b"\x01") * len(vals), list(vals)
            for i in low:
                flags[i], out[i] = 0, 1
            got = (mask_of(flags), Sizes(out))
        v.memo["clamp"] = got
    return got
