"""Ops that merge, split or scale tensors. `concat`, `add`, `mul` and the residual add come
from the `concat:`, `add:`, `multiply:` and `residual:` constructs (archcompiler.ir.lower);
channel slices and moved biases from the optimization passes. `layer_scale` (a learnable
per-channel scale) and `drop_path` (stochastic depth) are spec ops of their own."""

from __future__ import annotations

import operator
from typing import Literal, Optional

from pydantic import Field

from ..spec.types import ItemBase, NumP
from .base import IROp, ShapeError, SpecOp, fmt_shape
from .sizes import ALL, broadcast as broadcast_sizes, equal
from .sugar import number_or_expr, OpStringError
from .torch_modules import DROP_PATH_SRC, SCALE_SRC


class Concat(IROp):
    name = "concat"
    doc = "channel concatenation of the branches, in order"

    def source_channels(self, attrs, in_channels, src):
        return src.channel_sum(in_channels)

    def infer_shape(self, attrs, ins):
        first = ins[0]
        for i, s in enumerate(ins[1:], 1):
            if len(s) != len(first) or s[1:] != first[1:]:
                raise ShapeError(
                    f"concat: branch0 gives {fmt_shape(first)} but branch{i} gives "
                    f"{fmt_shape(s)}; the spatial sizes of concatenated branches must agree")
        return (sum(s[0] for s in ins), *first[1:])

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        ok_h = ok_w = ALL
        for h2, w2 in ins[1:]:  # the same vectors (branches that keep the size): equal
            ok_h &= equal(h, h2)
            ok_w &= equal(w, w2)
        return h, w, ok_h, ok_w

    def param_bound(self, attrs, in_channels):
        return 0, sum(in_channels)

    def torch_emit(self, graph, torch, node, args):
        return graph.call_function(torch.cat, (list(args), 1))

    def source_call(self, attrs, args, src):
        return f"torch.cat([{', '.join(args)}], 1)"

    def onnx_lower(self, g, node, inputs):
        return g.node("Concat", inputs, axis=1)


class ScaleAdd(IROp):
    name = "scale_add"
    internal = True
    doc = "residual merge: shortcut + scale * branch (Figure 20's scaling)"

    def infer_shape(self, attrs, ins):
        x, r = ins
        if x != r and len(x) == len(r) and x[0] == r[0]:
            raise ShapeError(
                f"residual add: the branch gives {fmt_shape(r)} but the shortcut gives "
                f"{fmt_shape(x)}; the spatial sizes must agree (a strided or 'valid' op in the "
                "branch changes them: give the shortcut the same stride)")
        if x != r:
            raise ShapeError(
                f"residual add: the branch gives {r[0]} channels ({fmt_shape(r)}) but the "
                f"shortcut gives {x[0]} ({fmt_shape(x)}); they cannot be added: make the "
                f"branch's last op (or its projection) output {x[0]} channels, or project "
                "the shortcut")
        return x

    def spatial_rule(self, attrs, ins):
        (h, w), (h2, w2) = ins
        return h, w, equal(h, h2), equal(w, w2)

    def torch_emit(self, graph, torch, node, args):
        x, r = args  # timm's order of operations: conv2d(out) * scale + x
        if node.attrs["scale"] != 1.0:  # 1.0 after the scale is folded into the projection
            r = graph.call_function(operator.mul, (r, node.attrs["scale"]))
        return graph.call_function(operator.add, (r, x))

    def source_call(self, attrs, args, src):
        x, r = args
        scale = src("scale")
        return f"{r} + {x}" if scale == "1.0" else f"{r} * {scale} + {x}"

    def onnx_lower(self, g, node, inputs):
        x, r = inputs
        scale = float(node.attrs["scale"])
        if scale != 1.0:  # as torch computes it: r * scale + x
            r = g.node("Mul", [r, g.const("scale", scale)], suffix="scale")  # a 0-d scalar
        return g.node("Add", [r, x])


class SliceChannels(IROp):
    name = "slice_channels"
    internal = True
    doc = "channels [start, stop) of the input (the outputs of a fused convolution)"

    def infer_shape(self, attrs, ins):
        c = ins[0][0]
        if not 0 <= attrs["start"] < attrs["stop"] <= c:
            raise ShapeError(f"channel slice {attrs['start']}:{attrs['stop']} outside 0:{c}")
        return (attrs["stop"] - attrs["start"], *ins[0][1:])

    def torch_emit(self, graph, torch, node, args):
        index = (slice(None), slice(node.attrs["start"], node.attrs["stop"]))
        return graph.call_function(operator.getitem, (args[0], index))

    def source_call(self, attrs, args, src):
        return f"{args[0]}[:, {attrs['start']}:{attrs['stop']}]"

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        return g.node("Slice", [inputs[0], g.const("starts", [a["start"]], "int64"),
                                g.const("ends", [a["stop"]], "int64"),
                                g.const("axes", [1], "int64")])


class BiasAdd(IROp):
    name = "bias_add"
    internal = True
    doc = "adds a per-channel bias (a convolution's bias moved after an average pool)"

    def param_shapes(self, attrs, ins):
        return {"bias": (ins[0][0],)}

    def init(self, param, shape, scheme, rng, node_name):
        import numpy as np  # here: `archc validate` never imports numpy

        return np.zeros(shape)

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import bias_add_class

        return bias_add_class(nn)(ins[0][0])

    def onnx_lower(self, g, node, inputs):
        return g.node("Add", [inputs[0], g.param("bias", shape=(-1, 1, 1))])  # C -> C x 1 x 1


class Add(IROp):
    name = "add"
    internal = True
    doc = "elementwise sum of two or more branches of equal shape (the `add:` construct)"

    def infer_shape(self, attrs, ins):
        for i, s in enumerate(ins[1:], 1):
            if s != ins[0]:
                raise ShapeError(f"add: branch0 gives {fmt_shape(ins[0])} but branch{i} gives "
                                 f"{fmt_shape(s)}; added branches must have equal shapes")
        return ins[0]

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        ok_h = ok_w = ALL
        for h2, w2 in ins[1:]:
            ok_h &= equal(h, h2)
            ok_w &= equal(w, w2)
        return h, w, ok_h, ok_w

    def torch_emit(self, graph, torch, node, args):
        y = args[0]
        for a in args[1:]:
            y = graph.call_function(operator.add, (y, a))
        return y

    def source_call(self, attrs, args, src):
        return " + ".join(args)

    def onnx_lower(self, g, node, inputs):
        y = inputs[0]
        for i, a in enumerate(inputs[1:], 1):
            y = g.node("Add", [y, a], suffix=None if i == len(inputs) - 1 else f"add{i}")
        return y


def broadcast(ins) -> tuple:
    """numpy broadcasting of C[xHxW] shapes; ShapeError naming both shapes otherwise."""
    out = ins[0]
    for s in ins[1:]:
        if len(s) != len(out) or any(a != b and 1 not in (a, b) for a, b in zip(out, s)):
            raise ShapeError(f"multiply: {fmt_shape(out)} and {fmt_shape(s)} do not broadcast "
                             "(equal shapes, or a Cx1x1 gate times a CxHxW map)")
        out = tuple(max(a, b) for a, b in zip(out, s))
    return out


class Mul(IROp):
    name = "mul"
    internal = True
    doc = "elementwise product with broadcasting (SE / gating: Cx1x1 times CxHxW)"

    def infer_shape(self, attrs, ins):
        return broadcast(ins)

    def depth_inputs(self, attrs, n: int):
        """The gates (broadcast operands) do not add depth: see passes.layers."""
        keep = [i for i in range(n) if i not in attrs.get("gates", ())]
        return keep or list(range(n))

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        ok_h = ok_w = ALL
        for h2, w2 in ins[1:]:
            m, h = broadcast_sizes(h, h2)
            ok_h &= m
            m, w = broadcast_sizes(w, w2)
            ok_w &= m
        return h, w, ok_h, ok_w

    def torch_emit(self, graph, torch, node, args):
        y = args[0]
        for a in args[1:]:
            y = graph.call_function(operator.mul, (y, a))
        return y

    def source_call(self, attrs, args, src):
        return " * ".join(args)

    def onnx_lower(self, g, node, inputs):
        y = inputs[0]
        for i, a in enumerate(inputs[1:], 1):
            y = g.node("Mul", [y, a], suffix=None if i == len(inputs) - 1 else f"mul{i}")
        return y


class LayerScaleItem(ItemBase):
    """x * gamma, gamma a learnable per-channel scale (CaiT / ConvNeXt layer scale)."""

    op: Literal["layer_scale"]
    init: NumP = Field(1e-6, description="the initial value of every gamma")


class LayerScaleSpec(SpecOp):
    name = "layer_scale"
    doc = "learnable per-channel scale, x * gamma (gamma starts at init, 1e-6 by default)"
    form = "layer_scale [INIT]"
    example = "{op: layer_scale, init: 1.0e-6}"
    model = LayerScaleItem

    def parse_words(self, words, text):
        if len(words) > 1:
            raise OpStringError(f"{text!r}: unexpected {words[1]!r} (form: {self.form})")
        return {"init": number_or_expr(words[0], "an initial scale", text, True)} if words else {}

    def lower(self, lw, it, path, x, env):
        init = lw.value(it.init, env, it.loc, "layer_scale init", float)
        shape = lw.shapes.get(x)
        vector = shape is not None and len(shape) == 1
        return None if init is None else lw.emit("layer_scale", path, [x], {
            "init": float(init), "vector": vector}, it.loc)


class LayerScale(IROp):
    name = "layer_scale"
    doc = "learnable per-channel scale (parameter gamma, [C])"
    source_helpers = {"LayerScale": SCALE_SRC}

    def param_shapes(self, attrs, ins):
        return {"gamma": (ins[0][0],)}

    def param_bound(self, attrs, in_channels):
        return in_channels[0], in_channels[0]

    def init_from_attrs(self, attrs, param, shape):
        import numpy as np

        return np.full(shape, float(attrs["init"]))

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import helper_class

        return helper_class("LayerScale")(ins[0][0], attrs["init"], vector=len(ins[0]) == 1)

    def source(self, attrs, src):
        vector = ", vector=True" if attrs.get("vector") else ""
        return f"LayerScale({src.in_channels}, {attrs['init']!r}{vector})"

    def onnx_lower(self, g, node, inputs):
        shape = None if node.attrs.get("vector") else (-1, 1, 1)
        return g.node("Mul", [inputs[0], g.param("gamma", shape=shape)])


class DropPathItem(ItemBase):
    op: Literal["drop_path"]
    p: NumP = Field(description="drop probability (may depend on $i: $(0.1 * i / 15))")


class DropPathSpec(SpecOp):
    name = "drop_path"
    doc = "stochastic depth: drops the whole branch per sample (training only; gone in eval and ONNX)"
    form = "drop_path P"
    example = "{op: drop_path, p: 0.1}"
    model = DropPathItem

    def parse_words(self, words, text):
        if len(words) != 1:
            raise OpStringError(f"{text!r}: expected one drop probability (form: {self.form})")
        return {"p": number_or_expr(words[0], "a drop probability like 0.1", text, True)}

    def lower(self, lw, it, path, x, env):
        from .dense import lower_probability_op

        return lower_probability_op(lw, it, path, x, env, "drop_path")


class DropPath(IROp):
    name = "drop_path"
    doc = "stochastic depth with probability p (training only)"
    source_helpers = {"DropPath": DROP_PATH_SRC}

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import helper_class

        return helper_class("DropPath")(attrs["p"])

    def source(self, attrs, src):
        return f"DropPath({attrs['p']!r})"

    def onnx_lower(self, g, node, inputs):
        return inputs[0]  # identity at inference: no node


SPEC_OPS = (LayerScaleSpec(), DropPathSpec())
IR_OPS = (Concat(), ScaleAdd(), SliceChannels(), BiasAdd(), Add(), Mul(), LayerScale(), DropPath())
