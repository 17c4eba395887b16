"""Vector ops: `flatten` (CxHxW -> C*H*W), `linear` (fully connected), `dropout`."""

from __future__ import annotations

from typing import Literal

from pydantic import StrictBool

from ..spec.types import IntP, ItemBase, NumP
from .base import IROp, ShapeError, SpecOp, fmt_shape, prod
from .sizes import ALL, const
from .sugar import parse_flags, take_number

MAX_FEATURES = (1 << 16) * 16


class LinearItem(ItemBase):
    op: Literal["linear"]
    out: IntP
    bias: StrictBool = True


class LinearSpec(SpecOp):
    name = "linear"
    doc = "fully connected layer on a flat vector (after global pooling or flatten)"
    form = "linear OUT [nobias]"
    example = "{op: linear, out: $classes, name: fc}"
    model = LinearItem
    flags = {"nobias": ("bias", {"bias": False})}

    def parse_words(self, words, text):
        out: dict = {}
        return parse_flags(self, out, take_number(self, words, text, out, "out", "output features"),
                           text)

    def lower(self, lw, it, path, x, env):
        out = lw.value(it.out, env, it.loc, "linear out", int, 1, MAX_FEATURES)
        if out is None:
            return None
        return lw.emit("linear", path, [x], {"out_features": out, "bias": it.bias}, it.loc,
                       lw.exprs_of(it, env, ("out",), rename={"out": "out_features"}))


class Linear(IROp):
    name = "linear"
    layers = 1
    doc = "fully connected layer"

    def source_channels(self, attrs, in_channels, src):
        return src.channels("out_features")

    def infer_shape(self, attrs, ins):
        if len(ins[0]) != 1:
            raise ShapeError(f"linear needs a flat vector, got a {fmt_shape(ins[0])} map: "
                             "put global_avgpool (or flatten) before it")
        return (attrs["out_features"],)

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        return const(h, 1), const(w, 1), ALL, ALL

    def param_shapes(self, attrs, ins):
        shapes = {"weight": (attrs["out_features"], ins[0][0])}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_features"],)
        return shapes

    def param_bound(self, attrs, in_channels):
        # after a spatial map the bound assumes it was pooled (the exact count needs shapes)
        return attrs["out_features"] * (in_channels[0] + 1), attrs["out_features"]

    def macs(self, attrs, ins, out):
        return ins[0][0] * out[0]

    def torch_module(self, nn, attrs, ins):
        return nn.Linear(ins[0][0], attrs["out_features"], bias=attrs["bias"])

    def source(self, attrs, src):
        bias = "" if attrs["bias"] else ", bias=False"
        return f"nn.Linear({src.in_channels}, {src('out_features')}{bias})"

    def onnx_lower(self, g, node, inputs):
        params = [g.param("weight")] + ([g.param("bias")] if node.attrs["bias"] else [])
        return g.node("Gemm", [inputs[0], *params], transB=1)  # x @ W^T + b


class FlattenItem(ItemBase):
    op: Literal["flatten"]


class FlattenSpec(SpecOp):
    name = "flatten"
    doc = "a CxHxW map as one vector of C*H*W values (channel-major, as torch.flatten)"
    form = "flatten"
    example = "flatten"
    model = FlattenItem

    def lower(self, lw, it, path, x, env):
        return lw.emit("flatten", path, [x], {}, it.loc)


class Flatten(IROp):
    name = "flatten"
    doc = "CxHxW -> C*H*W"

    def infer_shape(self, attrs, ins):
        return (prod(ins[0]),)

    def spatial_rule(self, attrs, ins):
        # the vector's length depends on the map's size: later ops see it as 1x1 and a
        # following linear's shape rule (run at each accepted size) checks the length
        h, w = ins[0]
        return const(h, 1), const(w, 1), ALL, ALL

    def source_channels(self, attrs, in_channels, src):
        return src.out_shape[0]  # a number: it depends on the map size

    def torch_emit(self, graph, torch, node, args):
        return graph.call_function(torch.flatten, (args[0], 1))

    def source(self, attrs, src):
        return "nn.Flatten()"

    def onnx_lower(self, g, node, inputs):
        return g.node("Flatten", inputs, axis=1)


class DropoutItem(ItemBase):
    op: Literal["dropout"]
    p: NumP


class DropoutSpec(SpecOp):
    name = "dropout"
    doc = "dropout with probability p (training only; gone at inference and in ONNX)"
    form = "dropout P"
    example = "dropout 0.2"
    model = DropoutItem

    def parse_words(self, words, text):
        out: dict = {}
        rest = take_number(self, words, text, out, "p", "a drop probability like 0.2",
                           allow_float=True)
        return parse_flags(self, out, rest, text)

    def lower(self, lw, it, path, x, env):
        return lower_probability_op(lw, it, path, x, env, "dropout")


def lower_probability_op(lw, it, path, x, env, op: str):
    """An op whose one value is a drop probability 0 <= p < 1 (dropout, drop_path)."""
    p = lw.value(it.p, env, it.loc, f"{op} p", float, 0.0)
    if p is not None and p >= 1.0:
        lw.diag(it.loc, f"{op} p must be < 1, got {p}")
        p = None
    return None if p is None else lw.emit(op, path, [x], {"p": float(p)}, it.loc)


class Dropout(IROp):
    name = "dropout"
    doc = "dropout with probability p (training only)"

    def torch_module(self, nn, attrs, ins):
        return nn.Dropout(attrs["p"])

    def source(self, attrs, src):
        return f"nn.Dropout({attrs['p']!r})"

    def onnx_lower(self, g, node, inputs):
        return inputs[0]  # identity at inference: no node


SPEC_OPS = (FlattenSpec(), LinearSpec(), DropoutSpec())
IR_OPS = (Flatten(), Linear(), Dropout())
