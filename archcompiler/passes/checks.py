"""Checks against what a spec promises, and the smallest input a network accepts."""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import fmt_shape
from .shapes import infer_shapes

MAX_SEARCH_SIZE = 4096


def shape_ok(graph: Graph, size: int, channels: int) -> bool:
    _, problems = infer_shapes(graph, (channels, size, size))
    return not problems


def min_input_size(graph: Graph) -> int | None:
    """Smallest square input (H = W) for which every map keeps at least 1x1.

    Feasibility is monotone in the input size for these ops (every output size is a
    non-decreasing function of the input size), so a binary search is exact."""
    c = graph.input_shape[0]
    if not shape_ok(graph, MAX_SEARCH_SIZE, c):
        return None
    lo, hi = 1, MAX_SEARCH_SIZE
    while lo < hi:
        mid = (lo + hi) // 2
        if shape_ok(graph, mid, c):
            hi = mid
        else:
            lo = mid + 1
    return lo


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
