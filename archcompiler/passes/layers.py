"""The paper's layer count.

Rule (one rule for every model, not tuned per model): the count is the number of layers
on the deepest path from the input to the main output, where every convolution and fully
connected layer counts 1, every spatial (non-global) pooling counts 1, and concat,
residual add and scale, batch norm, activation, dropout and global pooling count 0. A
multiply's gate (its broadcast operand: SE's Cx1x1 branch) is not on the path: the depth
of a multiply is that of its full-size operands. The
per-op weights live in the op registry (`OpDef.layers`).
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.ops import OPS


_LAYERS = {name: op.layers for name, op in OPS.items()}
_GATED = frozenset(name for name, op in OPS.items() if hasattr(op, "depth_inputs"))


def layer_depths(graph: Graph) -> dict[str, int]:
    """Deepest-path layer count from the input to every node (nodes are in topological order)."""
    depth = {graph.input_name: 0}
    for node in graph.nodes:
        ins = node.inputs
        if node.op in _GATED:  # a multiply's gates do not add depth
            ins = [ins[k] for k in OPS[node.op].depth_inputs(node.attrs, len(ins))]
        depth[node.name] = (depth[ins[0]] if len(ins) == 1 else max(depth[i] for i in ins)) \
            + _LAYERS[node.op]
    return depth


def count_layers(graph: Graph) -> int:
    return layer_depths(graph)[graph.outputs[0]] if graph.outputs else 0
