"""Ops that merge or split tensors. None is written in a spec as an op: `concat` and the
residual add come from the `concat:` and `residual:` constructs (archcompiler.ir.lower),
channel slices and moved biases from the optimization passes."""

from __future__ import annotations

import operator

import numpy as np

from .base import IROp, ShapeError, fmt_shape


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
        ok = True
        for h2, w2 in ins[1:]:  # the same arrays (branches that keep the size): equal
            if h2 is not h:
                ok = ok & (h2 == h)
            if w2 is not w:
                ok = ok & (w2 == w)
        return h, w, ok

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
        ok = True
        if h2 is not h:
            ok = ok & (h == h2)
        if w2 is not w:
            ok = ok & (w == w2)
        return h, w, ok

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
        return np.zeros(shape)

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import bias_add_class

        return bias_add_class(nn)(ins[0][0])

    def onnx_lower(self, g, node, inputs):
        return g.node("Add", [inputs[0], g.param("bias", shape=(-1, 1, 1))])  # C -> C x 1 x 1


SPEC_OPS = ()
IR_OPS = (Concat(), ScaleAdd(), SliceChannels(), BiasAdd())
