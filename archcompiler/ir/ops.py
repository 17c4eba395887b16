"""The op registry: one class per IR op, holding everything about it.

Each entry says what its attributes are, how it maps input shapes to an output shape,
which parameters (and buffers) it owns, how many multiply-accumulates it costs, how many
layers it contributes to the paper's layer count, and how each backend lowers it. The
core never imports torch or onnx: backends pass their modules in (`nn`, `F`, the ONNX
builder), so this file stays importable anywhere.

Adding an op = adding one class here and registering it in OPS.
"""

from __future__ import annotations

from typing import Mapping

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An op cannot be applied to its input shapes (message says why, for the user)."""


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a CxHxW feature map, got a flat vector of {shape[0]}")
    return shape  # type: ignore[return-value]


def _window_out(h: int, w: int, kernel, stride, padding, what: str) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ShapeError(
            f"{what}: its {h}x{w} input is smaller than the {kh}x{kw} window, the map would "
            "vanish: the network input is too small"
        )
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


class OpDef:
    name: str = ""
    layers: int = 0  # contribution to the paper's layer count (see passes.layers)
    doc: str = ""

    def infer_shape(self, attrs: Mapping, ins: list[Shape]) -> Shape:
        raise NotImplementedError

    def param_shapes(self, attrs: Mapping, ins: list[Shape]) -> dict[str, Shape]:
        """Trainable parameters (counted in the parameter total)."""
        return {}

    def buffer_shapes(self, attrs: Mapping, ins: list[Shape]) -> dict[str, Shape]:
        """Non-trainable state (BN running statistics): in checkpoints, not in counts."""
        return {}

    def macs(self, attrs: Mapping, ins: list[Shape], out: Shape) -> int:
        return 0

    # -- torch backend ---------------------------------------------------------------
    def torch_module(self, nn, attrs: Mapping, ins: list[Shape]):
        """An nn.Module holding this op's parameters, or None for a function call."""
        return None

    def torch_emit(self, graph, torch, node, args: list):
        """Add this op to a torch.fx graph; returns the fx node of its output.

        Ops with a module are called by their (qualified) node name; functional ops
        override this."""
        return graph.call_module(node.name, tuple(args))

    # -- ONNX backend ----------------------------------------------------------------
    def onnx_lower(self, g, node, inputs: list[str]) -> str:
        """Emit this op's ONNX nodes through `g`, the backend's graph builder, and return
        the name of the value holding the result. `inputs` are the value names of
        node.inputs. The builder (archcompiler.backends.onnx) offers
        `g.node(op_type, inputs, suffix=None, **attributes) -> output name` (the ONNX node
        and its output are named node.name, or node.name + "/" + suffix for helper nodes),
        `g.param(pname, shape=None) -> initializer name` (`<node>.<pname>`, from the
        weights, optionally reshaped) and `g.const(pname, values, dtype="float32") ->
        initializer name` (a constant; give a scalar for a scalar: runtimes fuse a Mul
        by a 0-d constant into the conv before it)."""
        raise NotImplementedError(f"op {self.name!r} has no ONNX lowering")

    def describe(self, attrs: Mapping) -> str:
        return self.name


def _onnx_pads(padding) -> list[int]:
    ph, pw = padding
    return [ph, pw, ph, pw]  # ONNX: begins of all spatial axes, then ends


class Conv2d(OpDef):
    name = "conv2d"
    layers = 1
    doc = "2-D convolution (kernel, stride, symmetric explicit padding, groups, bias)"

    def infer_shape(self, attrs, ins):
        c, h, w = _spatial(ins[0], "convolution")
        if c % attrs["groups"]:
            raise ShapeError(f"{c} input channels are not divisible into {attrs['groups']} groups")
        ho, wo = _window_out(h, w, attrs["kernel"], attrs["stride"], attrs["padding"],
                             f"conv {self.describe(attrs)}")
        return (attrs["out_channels"], ho, wo)

    def param_shapes(self, attrs, ins):
        kh, kw = attrs["kernel"]
        shapes = {"weight": (attrs["out_channels"], ins[0][0] // attrs["groups"], kh, kw)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    def macs(self, attrs, ins, out):
        kh, kw = attrs["kernel"]
        return out[0] * out[1] * out[2] * (ins[0][0] // attrs["groups"]) * kh * kw

    def torch_module(self, nn, attrs, ins):
        return nn.Conv2d(ins[0][0], attrs["out_channels"], tuple(attrs["kernel"]),
                         stride=tuple(attrs["stride"]), padding=tuple(attrs["padding"]),
                         groups=attrs["groups"], bias=attrs["bias"])

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        params = [g.param("weight")] + ([g.param("bias")] if a["bias"] else [])
        return g.node("Conv", [inputs[0], *params], kernel_shape=list(a["kernel"]),
                      strides=list(a["stride"]), pads=_onnx_pads(a["padding"]),
                      dilations=[1, 1], group=a["groups"])

    def describe(self, attrs):
        (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
        s = f"{kh}x{kw}" + (f"/{sh}" if (sh, sw) != (1, 1) else "") + f" {attrs['out_channels']}"
        return s


class BatchNorm(OpDef):
    name = "batchnorm"
    doc = "batch normalisation over channels (eps, momentum), affine"

    def infer_shape(self, attrs, ins):
        return ins[0]

    def param_shapes(self, attrs, ins):
        return {"weight": (ins[0][0],), "bias": (ins[0][0],)}

    def buffer_shapes(self, attrs, ins):
        return {"running_mean": (ins[0][0],), "running_var": (ins[0][0],)}

    def torch_module(self, nn, attrs, ins):
        return nn.BatchNorm2d(ins[0][0], eps=attrs["eps"], momentum=attrs["momentum"])

    def onnx_lower(self, g, node, inputs):
        # inference form: running statistics (momentum only matters in training)
        return g.node("BatchNormalization", [inputs[0], g.param("weight"), g.param("bias"),
                                             g.param("running_mean"), g.param("running_var")],
                      epsilon=float(node.attrs["eps"]))


class ReLU(OpDef):
    name = "relu"
    doc = "rectified linear unit"

    def infer_shape(self, attrs, ins):
        return ins[0]

    def torch_module(self, nn, attrs, ins):
        return nn.ReLU(inplace=True)

    def onnx_lower(self, g, node, inputs):
        return g.node("Relu", inputs)


class _Pool(OpDef):
    layers = 1

    def infer_shape(self, attrs, ins):
        c, h, w = _spatial(ins[0], self.name)
        return (c, *_window_out(h, w, attrs["kernel"], attrs["stride"], attrs["padding"],
                                f"{self.name} {self.describe(attrs)}"))

    def describe(self, attrs):
        (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
        return f"{kh}x{kw}" + (f"/{sh}" if (sh, sw) != (1, 1) else "")


class MaxPool(_Pool):
    name = "maxpool"
    doc = "max pooling (kernel, stride, padding; padding never wins the max)"

    def torch_module(self, nn, attrs, ins):
        return nn.MaxPool2d(tuple(attrs["kernel"]), stride=tuple(attrs["stride"]),
                            padding=tuple(attrs["padding"]))

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        return g.node("MaxPool", inputs, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                      pads=_onnx_pads(a["padding"]), ceil_mode=0)


class AvgPool(_Pool):
    name = "avgpool"
    doc = "average pooling (kernel, stride, padding, count_include_pad)"

    def torch_module(self, nn, attrs, ins):
        return nn.AvgPool2d(tuple(attrs["kernel"]), stride=tuple(attrs["stride"]),
                            padding=tuple(attrs["padding"]),
                            count_include_pad=attrs["count_include_pad"])

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        return g.node("AveragePool", inputs, kernel_shape=list(a["kernel"]),
                      strides=list(a["stride"]), pads=_onnx_pads(a["padding"]), ceil_mode=0,
                      count_include_pad=int(bool(a["count_include_pad"])))


class GlobalAvgPool(OpDef):
    name = "global_avgpool"
    doc = "mean over the whole spatial map, flattened to a C vector (any input size)"

    def infer_shape(self, attrs, ins):
        c, _, _ = _spatial(ins[0], "global_avgpool")
        return (c,)

    def onnx_lower(self, g, node, inputs):
        pooled = g.node("GlobalAveragePool", inputs, suffix="pool")  # N x C x 1 x 1
        return g.node("Flatten", [pooled], axis=1)  # N x C

    def torch_emit(self, graph, torch, node, args):
        # as timm's SelectAdaptivePool2d('avg', flatten=True): any input size
        pooled = graph.call_function(torch.nn.functional.adaptive_avg_pool2d, (args[0], 1))
        return graph.call_function(torch.flatten, (pooled, 1))


class Dropout(OpDef):
    name = "dropout"
    doc = "dropout with probability p (training only)"

    def infer_shape(self, attrs, ins):
        return ins[0]

    def torch_module(self, nn, attrs, ins):
        return nn.Dropout(attrs["p"])

    def onnx_lower(self, g, node, inputs):
        return inputs[0]  # identity at inference: no node


class Linear(OpDef):
    name = "linear"
    layers = 1
    doc = "fully connected layer"

    def infer_shape(self, attrs, ins):
        if len(ins[0]) != 1:
            raise ShapeError(
                f"linear needs a flat vector, got a {fmt_shape(ins[0])} map: "
                "put global_avgpool before it"
            )
        return (attrs["out_features"],)

    def param_shapes(self, attrs, ins):
        shapes = {"weight": (attrs["out_features"], ins[0][0])}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_features"],)
        return shapes

    def macs(self, attrs, ins, out):
        return ins[0][0] * out[0]

    def torch_module(self, nn, attrs, ins):
        return nn.Linear(ins[0][0], attrs["out_features"], bias=attrs["bias"])

    def onnx_lower(self, g, node, inputs):
        params = [g.param("weight")] + ([g.param("bias")] if node.attrs["bias"] else [])
        return g.node("Gemm", [inputs[0], *params], transB=1)  # x @ W^T + b


class Concat(OpDef):
    name = "concat"
    doc = "channel concatenation of the branches, in order"

    def infer_shape(self, attrs, ins):
        first = ins[0]
        for i, s in enumerate(ins[1:], 1):
            if len(s) != len(first) or s[1:] != first[1:]:
                raise ShapeError(
                    f"concat: branch0 gives {fmt_shape(first)} but branch{i} gives "
                    f"{fmt_shape(s)}; the spatial sizes of concatenated branches must agree"
                )
        return (sum(s[0] for s in ins), *first[1:])

    def onnx_lower(self, g, node, inputs):
        return g.node("Concat", inputs, axis=1)

    def torch_emit(self, graph, torch, node, args):
        return graph.call_function(torch.cat, (list(args), 1))


class ScaleAdd(OpDef):
    name = "scale_add"
    doc = "residual merge: x + scale * r (Figure 20's scaling)"

    def infer_shape(self, attrs, ins):
        x, r = ins
        if x != r and len(x) == len(r) and x[0] == r[0]:
            raise ShapeError(
                f"residual add: the branch gives {fmt_shape(r)} but the block input is "
                f"{fmt_shape(x)}; the spatial sizes must agree (a strided or 'valid' op in the "
                "branch changes them)"
            )
        if x != r:
            raise ShapeError(
                f"residual add: the up-projection gives {r[0]} channels ({fmt_shape(r)}) but the "
                f"block input has {x[0]} ({fmt_shape(x)}); they cannot be added: make the "
                f"projection output {x[0]} channels"
            )
        return x

    def onnx_lower(self, g, node, inputs):
        x, r = inputs
        scale = float(node.attrs["scale"])
        if scale != 1.0:  # as torch computes it: r * scale + x
            r = g.node("Mul", [r, g.const("scale", scale)], suffix="scale")  # a 0-d scalar
        return g.node("Add", [r, x])

    def torch_emit(self, graph, torch, node, args):
        import operator

        x, r = args  # timm's order of operations: conv2d(out) * scale + x
        if node.attrs["scale"] != 1.0:  # 1.0 after the scale is folded into the projection
            r = graph.call_function(operator.mul, (r, node.attrs["scale"]))
        return graph.call_function(operator.add, (r, x))


OPS: dict[str, OpDef] = {
    op.name: op
    for op in (Conv2d(), BatchNorm(), ReLU(), MaxPool(), AvgPool(), GlobalAvgPool(), Dropout(),
               Linear(), Concat(), ScaleAdd())
}


# --- ops introduced by the inference-optimization passes (archcompiler.passes.optimize) ----

class SliceChannels(OpDef):
    name = "slice_channels"
    doc = "channels [start, stop) of the input (the outputs of a fused convolution)"

    def infer_shape(self, attrs, ins):
        c = ins[0][0]
        if not 0 <= attrs["start"] < attrs["stop"] <= c:
            raise ShapeError(f"channel slice {attrs['start']}:{attrs['stop']} outside 0:{c}")
        return (attrs["stop"] - attrs["start"], *ins[0][1:])

    def torch_emit(self, graph, torch, node, args):
        import operator

        index = (slice(None), slice(node.attrs["start"], node.attrs["stop"]))
        return graph.call_function(operator.getitem, (args[0], index))

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        return g.node("Slice", [inputs[0], g.const("starts", [a["start"]], "int64"),
                                g.const("ends", [a["stop"]], "int64"),
                                g.const("axes", [1], "int64")])


class BiasAdd(OpDef):
    name = "bias_add"
    doc = "adds a per-channel bias (a convolution's bias moved after an average pool)"

    def infer_shape(self, attrs, ins):
        return ins[0]

    def param_shapes(self, attrs, ins):
        return {"bias": (ins[0][0],)}

    def torch_module(self, nn, attrs, ins):
        return _torch_bias_add(nn)(ins[0][0])

    def onnx_lower(self, g, node, inputs):
        return g.node("Add", [inputs[0], g.param("bias", shape=(-1, 1, 1))])  # C -> C x 1 x 1


_BIAS_ADD_CLASS = {}


def _torch_bias_add(nn):
    if nn not in _BIAS_ADD_CLASS:
        import torch

        class BiasAdd(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(channels))

            def forward(self, x):
                return x + self.bias.view(1, -1, 1, 1)

        _BIAS_ADD_CLASS[nn] = BiasAdd
    return _BIAS_ADD_CLASS[nn]


for _op in (SliceChannels(), BiasAdd()):
    OPS[_op.name] = _op
