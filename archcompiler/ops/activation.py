"""Activations: the spec op and IR op `relu` (also a conv's `act` and a residual's)."""

from __future__ import annotations

from typing import Literal

from ..spec.types import ItemBase
from .base import IROp, SpecOp


class ReluItem(ItemBase):
    op: Literal["relu"]


class ReluSpec(SpecOp):
    name = "relu"
    doc = "rectified linear unit, max(x, 0)"
    form = "relu"
    example = "relu"
    model = ReluItem

    def lower(self, lw, it, path, x, env):
        return lw.emit("relu", path, [x], {}, it.loc)


class ReLU(IROp):
    name = "relu"
    doc = "rectified linear unit"

    def torch_module(self, nn, attrs, ins):
        return nn.ReLU(inplace=True)

    def source(self, attrs, src):
        return "nn.ReLU(inplace=True)"

    def onnx_lower(self, g, node, inputs):
        return g.node("Relu", inputs)


SPEC_OPS = (ReluSpec(),)
IR_OPS = (ReLU(),)
