"""Batch normalisation: the IR op `batchnorm` (a conv's own, or standalone) and the spec
op `batchnorm`, which may stand anywhere in a sequence (BN-Inception, pre-activation)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, StrictFloat

from ..spec.types import IntP, ItemBase
from .base import IROp, ShapeError, SpecOp, fmt_shape
from .sugar import OpStringError
from .torch_modules import LAYERNORM2D_SRC


class BatchNormItem(ItemBase):
    """Batch norm over the channels; eps and momentum default to `defaults.conv`'s."""

    op: Literal["batchnorm"]
    eps: Optional[Annotated[StrictFloat, Field(gt=0, le=1)]] = None
    momentum: Optional[Annotated[StrictFloat, Field(ge=0, le=1)]] = None


class BatchNormSpec(SpecOp):
    name = "batchnorm"
    doc = "batch normalisation over the channels, on its own (eps, momentum: defaults.conv's)"
    form = "batchnorm [eps=E]"
    example = "{op: batchnorm, eps: 1.0e-5}"
    model = BatchNormItem

    def parse_words(self, words, text):
        out: dict = {}
        for word in words:
            if word.startswith("eps=") and "eps" not in out:
                try:
                    out["eps"] = float(word[4:])
                except ValueError:
                    raise OpStringError(f"{text!r}: expected eps=NUMBER, got {word!r}") from None
            else:
                raise OpStringError(f"{text!r}: unexpected {word!r} (form: {self.form})")
        return out

    def lower(self, lw, it, path, x, env):
        d = lw.defaults("conv")
        return lw.emit("batchnorm", path, [x], {
            "eps": it.eps if it.eps is not None else d.eps,
            "momentum": it.momentum if it.momentum is not None else d.momentum}, it.loc)


class BatchNorm(IROp):
    name = "batchnorm"
    doc = "batch normalisation over channels (eps, momentum), affine"

    def param_shapes(self, attrs, ins):
        return {"weight": (ins[0][0],), "bias": (ins[0][0],)}

    def buffer_shapes(self, attrs, ins):
        return {"running_mean": (ins[0][0],), "running_var": (ins[0][0],)}

    def param_bound(self, attrs, in_channels):
        return 2 * in_channels[0], in_channels[0]

    def init(self, param, shape, scheme, rng, node_name):
        import numpy as np  # here: `archc validate` never imports numpy

        return np.ones(shape) if param in ("weight", "running_var") else np.zeros(shape)

    def torch_module(self, nn, attrs, ins):
        return nn.BatchNorm2d(ins[0][0], eps=attrs["eps"], momentum=attrs["momentum"])

    def source(self, attrs, src):
        return f"nn.BatchNorm2d({src.in_channels}, eps={attrs['eps']!r}, momentum={attrs['momentum']!r})"

    def onnx_lower(self, g, node, inputs):
        # inference form: running statistics (momentum only matters in training)
        return g.node("BatchNormalization", [inputs[0], g.param("weight"), g.param("bias"),
                                             g.param("running_mean"), g.param("running_var")],
                      epsilon=float(node.attrs["eps"]))




# --- layer norm and group norm ----------------------------------------------------------

class LayerNormItem(ItemBase):
    """Layer norm over the channels: of each pixel of a CxHxW map (ConvNeXt's LayerNorm2d),
    or of a C vector (nn.LayerNorm(C)); `over` states which, and is checked."""

    op: Literal["layernorm"]
    over: Optional[Literal["channels", "vector"]] = Field(
        None, description="channels (of a CxHxW map) or vector (a flat C vector); default: "
                          "whichever the input is")
    eps: Optional[Annotated[StrictFloat, Field(gt=0, le=1)]] = Field(None, description="default 1e-6")


class GroupNormItem(ItemBase):
    """Group norm: channels in `groups` groups, normalised over each group and H x W."""

    op: Literal["groupnorm"]
    groups: IntP = Field(description="number of channel groups (must divide the channels)")
    eps: Optional[Annotated[StrictFloat, Field(gt=0, le=1)]] = Field(None, description="default 1e-5")


def _eps_words(op, words, text, out):
    for word in words:
        if word.startswith("eps=") and "eps" not in out:
            try:
                out["eps"] = float(word[4:])
            except ValueError:
                raise OpStringError(f"{text!r}: expected eps=NUMBER, got {word!r}") from None
        elif word in ("channels", "vector") and op.name == "layernorm" and "over" not in out:
            out["over"] = word
        else:
            raise OpStringError(f"{text!r}: unexpected {word!r} (form: {op.form})")
    return out


class LayerNormSpec(SpecOp):
    name = "layernorm"
    doc = "layer norm over the channels (of each pixel of a CxHxW map, or of a vector)"
    form = "layernorm [channels|vector] [eps=E]"
    example = "{op: layernorm, eps: 1.0e-6}"
    model = LayerNormItem

    def parse_words(self, words, text):
        return _eps_words(self, words, text, {})

    def lower(self, lw, it, path, x, env):
        shape = lw.shapes.get(x)
        if it.over is not None and shape is not None and (len(shape) == 3) != (it.over == "channels"):
            want = "a CxHxW map" if it.over == "channels" else "a flat vector"
            other = "vector" if it.over == "channels" else "channels"
            lw.diag(it.loc, f"layernorm over {it.over} needs {want}, got {fmt_shape(shape)} "
                            f"(write over: {other})")
            return None
        return lw.emit("layernorm", path, [x], {"eps": it.eps if it.eps is not None else 1e-6,
                                                "vector": shape is not None and len(shape) == 1}, it.loc)


class GroupNormSpec(SpecOp):
    name = "groupnorm"
    doc = "group norm: G groups of channels, each normalised over its channels and H x W"
    form = "groupnorm G [eps=E]"
    example = "{op: groupnorm, groups: 32}"
    model = GroupNormItem

    def parse_words(self, words, text):
        from .sugar import take_number

        out: dict = {}
        return _eps_words(self, take_number(self, words, text, out, "groups", "a group count"), text, out)

    def lower(self, lw, it, path, x, env):
        g = lw.value(it.groups, env, it.loc, "groupnorm groups", int, 1, 1 << 16)
        c = lw.channels_of(x)
        if g is None:
            return None
        if c is not None and c % g:
            lw.diag(it.loc, f"groupnorm: {g} groups do not divide the {c} channels")
            return None
        return lw.emit("groupnorm", path, [x], {"groups": g, "eps": it.eps if it.eps is not None else 1e-5},
                       it.loc)


class _AffineNorm(IROp):
    def param_shapes(self, attrs, ins):
        return {"weight": (ins[0][0],), "bias": (ins[0][0],)}

    def param_bound(self, attrs, in_channels):
        return 2 * in_channels[0], in_channels[0]

    def init(self, param, shape, scheme, rng, node_name):
        import numpy as np

        return np.ones(shape) if param == "weight" else np.zeros(shape)


class LayerNorm(_AffineNorm):
    name = "layernorm"
    doc = "layer norm over channels (per pixel of a map, or of a vector), affine"
    source_helpers = {"LayerNorm2d": LAYERNORM2D_SRC}

    def infer_shape(self, attrs, ins):
        if bool(attrs.get("vector")) != (len(ins[0]) == 1):
            raise ShapeError(f"layernorm: built for a {'vector' if attrs.get('vector') else 'map'}, "
                             f"got {fmt_shape(ins[0])}")
        return ins[0]

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import helper_class

        cls = helper_class("LayerNorm2d") if len(ins[0]) == 3 else nn.LayerNorm
        return cls(ins[0][0], eps=attrs["eps"])

    def source(self, attrs, src):
        cls = "nn.LayerNorm" if attrs.get("vector") else "LayerNorm2d"
        return f"{cls}({src.in_channels}, eps={attrs['eps']!r})"

    def onnx_lower(self, g, node, inputs):
        w, b, eps = g.param("weight"), g.param("bias"), float(node.attrs["eps"])
        if node.attrs.get("vector"):
            return g.node("LayerNormalization", [inputs[0], w, b], axis=-1, epsilon=eps)
        nhwc = g.node("Transpose", inputs, suffix="nhwc", perm=[0, 2, 3, 1])
        y = g.node("LayerNormalization", [nhwc, w, b], suffix="ln", axis=-1, epsilon=eps)
        return g.node("Transpose", [y], perm=[0, 3, 1, 2])


class GroupNorm(_AffineNorm):
    name = "groupnorm"
    doc = "group norm (groups, eps), affine per channel"

    def infer_shape(self, attrs, ins):
        if ins[0][0] % attrs["groups"]:
            raise ShapeError(f"groupnorm: {attrs['groups']} groups do not divide {ins[0][0]} channels")
        return ins[0]

    def torch_module(self, nn, attrs, ins):
        return nn.GroupNorm(attrs["groups"], ins[0][0], eps=attrs["eps"])

    def source(self, attrs, src):
        return f"nn.GroupNorm({attrs['groups']}, {src.in_channels}, eps={attrs['eps']!r})"

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        if g.opset >= 21:
            return g.node("GroupNormalization", [inputs[0], g.param("weight"), g.param("bias")],
                          num_groups=a["groups"], epsilon=float(a["eps"]))
        # below opset 21: x as N x G x (C/G * H * W), normalised over the last axis
        grouped = g.node("Reshape", [inputs[0], g.const("groups", [0, a["groups"], -1], "int64")],
                         suffix="grouped")
        mean = _reduce_mean(g, grouped, 2, "mean")
        d = g.node("Sub", [grouped, mean], suffix="centred")
        var = _reduce_mean(g, g.node("Mul", [d, d], suffix="sq"), 2, "var")
        std = g.node("Sqrt", [g.node("Add", [var, g.const("eps", float(a["eps"]))], suffix="vareps")],
                     suffix="std")
        normed = g.node("Div", [d, std], suffix="normed")
        w, b = g.param("weight", shape=(-1, 1, 1)), g.param("bias", shape=(-1, 1, 1))
        back = g.node("Reshape", [normed, g.node("Shape", inputs, suffix="shape")], suffix="back")
        return g.node("Add", [g.node("Mul", [back, w], suffix="scaled"), b])


def _reduce_mean(g, x, axis, tag):
    if g.opset >= 18:
        return g.node("ReduceMean", [x, g.const(f"axes_{tag}", [axis], "int64")], suffix=tag, keepdims=1)
    return g.node("ReduceMean", [x], suffix=tag, keepdims=1, axes=[axis])


SPEC_OPS = (BatchNormSpec(), LayerNormSpec(), GroupNormSpec())
IR_OPS = (BatchNorm(), LayerNorm(), GroupNorm())
