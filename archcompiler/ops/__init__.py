"""The op registry: every op, in one entry each, grouped by family.

`SPEC_OPS`: what a spec writes (name -> archcompiler.ops.base.SpecOp: fields, sugar,
defaults, lowering). `OPS`: the graph IR's ops (name -> IROp: shapes, parameters, init,
MACs, layer weight, torch / generated-source / ONNX lowering). Adding an op = one entry
in its family module (and its tests); nothing else lists ops.
"""

from __future__ import annotations

from . import activation, conv, dense, merge, norm, pool
from .base import IROp, Shape, ShapeError, SpecOp, fmt_shape

FAMILIES = (conv, norm, activation, pool, dense, merge)

SPEC_OPS: dict[str, SpecOp] = {op.name: op for fam in FAMILIES for op in fam.SPEC_OPS}
OPS: dict[str, IROp] = {op.name: op for fam in FAMILIES for op in fam.IR_OPS}
SPEC_OP_NAMES = tuple(SPEC_OPS)

__all__ = ["OPS", "SPEC_OPS", "SPEC_OP_NAMES", "IROp", "SpecOp", "Shape", "ShapeError",
           "fmt_shape"]
