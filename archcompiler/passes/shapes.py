"""Shape inference: C x H x W for every node, for a given input size."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph, Node
from ..ir.ops import OPS, Shape, ShapeError


@dataclass(frozen=True)
class ShapeProblem:
    node: Node
    message: str


def infer_shapes(graph: Graph, input_shape: Shape | None = None,
                 recover: bool = False) -> tuple[dict[str, Shape], list[ShapeProblem]]:
    """Shapes of every node; problems are reported once, where they arise (nodes fed by a
    failed node are skipped rather than reported again).

    With `recover`, a residual add whose two sides disagree passes its block input on (the
    residual stream keeps its width), so that later problems are found in the same run."""
    shapes: dict[str, Shape] = {graph.input_name: tuple(input_shape or graph.input_shape)}
    problems: list[ShapeProblem] = []
    for node in graph.nodes:
        if any(i not in shapes for i in node.inputs):
            continue
        ins = [shapes[i] for i in node.inputs]
        try:
            shapes[node.name] = OPS[node.op].infer_shape(node.attrs, ins)
        except ShapeError as exc:
            problems.append(ShapeProblem(node, str(exc)))
            if recover and node.op == "scale_add":
                shapes[node.name] = ins[0]
    return shapes, problems


def input_shapes(graph: Graph, shapes: dict[str, Shape], node: Node) -> list[Shape]:
    return [shapes[i] for i in node.inputs]
