"""The size vectors of the input-size search (archcompiler.ops.sizes) kept as runs of equal
lengths: every operation equals the same rule applied to each length one by one, and
torch's own output sizes (the expected values come from torch's formulas, written out
here, not from the implementation under test)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcompiler.ops import sizes as S

N = 300  # candidate input lengths 0..N-1 (the search uses 4097; the rules are the same)


def floor_window(x, k, s, lo, hi, d=1):
    return (x + lo + hi - d * (k - 1) - 1) // s + 1


def ceil_window(x, k, s, lo, hi):  # torch's ceil_mode, last window starting in the padding dropped
    o = -(-(x + lo + hi - k) // s) + 1
    return o - 1 if (o - 1) * s >= x + lo else o


def mask_set(mask: int, n: int = N) -> set:
    return set(S.mask_indices(mask, n))


windows = st.tuples(st.integers(1, 7), st.integers(1, 4), st.integers(0, 3), st.integers(0, 3),
                    st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(windows, min_size=1, max_size=4), st.booleans())
def test_a_chain_of_windows_equals_the_rule_per_length(chain, ceil):
    v = S.Sizes.identity(N)
    expect = list(range(N))
    for k, s, lo, hi, d in chain:
        if ceil:
            d, hi = 1, lo  # pools: dilation 1, symmetric padding
            expect = [ceil_window(x, k, s, lo, hi) for x in expect]
        else:
            expect = [floor_window(x, k, s, lo, hi, d) for x in expect]
        v = S.window(v, k, s, lo, hi, d, ceil=ceil)
        assert v.values == expect
        assert [v.at(i) for i in range(N)] == expect
        m, v = S.clamp(v)  # what the search does after each window
        assert mask_set(m) == {i for i, x in enumerate(expect) if x >= 1}
        expect = [max(x, 1) for x in expect]
        assert v.values == expect
    assert S.minimum(v) == min(expect)
    assert v.starts == [i for i in range(N) if i == 0 or expect[i] != expect[i - 1]]  # canonical


@settings(max_examples=60, deadline=None)
@given(windows, windows)
def test_two_branches_agree_and_broadcast_where_the_rule_says(a, b):
    va = S.window(S.Sizes.identity(N), *a)
    vb = S.window(S.Sizes.identity(N), *b)
    xa = [floor_window(x, *a) for x in range(N)]
    xb = [floor_window(x, *b) for x in range(N)]
    assert mask_set(S.equal(va, vb)) == {i for i in range(N) if xa[i] == xb[i]}
    mask, out = S.broadcast(va, vb)
    assert mask_set(mask) == {i for i in range(N) if xa[i] == xb[i] or 1 in (xa[i], xb[i])}
    assert out.values == [max(x, y) for x, y in zip(xa, xb)]


def test_a_vector_built_from_values_is_canonical_runs():
    v = S.Sizes([3, 3, 4, 4, 4, 1, 1, 9])
    assert (v.starts, v.vals, v.lengths()) == ([0, 2, 5, 7], [3, 4, 1, 9], [2, 3, 2, 1])
    assert v.same(S.Sizes(list(v.values))) and not v.same(S.Sizes([3] * 8))
    assert S.const(v, 5).values == [5] * 8


@pytest.mark.parametrize("n, kernel, stride, pad", [(299, 3, 2, 0), (224, 7, 2, 3), (35, 3, 1, 1)])
def test_the_windows_of_the_input_in_closed_form_match_torch(n, kernel, stride, pad):
    torch = pytest.importorskip("torch")
    v = S.window(S.Sizes.identity(n + 1), kernel, stride, pad, pad)
    x = torch.zeros(1, 1, n, 1)
    got = torch.nn.functional.max_pool2d(x, (kernel, 1), (stride, 1), (pad, 0)).shape[2]
    assert v.at(n) == got
