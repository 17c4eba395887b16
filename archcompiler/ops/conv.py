"""Convolution: the spec op `conv` (conv2d, then its own batch norm and activation) and
the IR op `conv2d`."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, StrictBool, StrictFloat

from ..spec.types import ActP, IntP, ItemBase, Located, PaddingP, PairP, Padding
from .base import IROp, ShapeError, SpecOp, kxk, onnx_pads, spatial, window_extent, window_out
from .sugar import parse_flags, take_kernel, take_number

Eps = Annotated[StrictFloat, Field(gt=0, le=1)]


class ConvItem(ItemBase):
    """Convolution, by default followed by batch norm and ReLU (see `defaults.conv`)."""

    op: Literal["conv"]
    kernel: PairP = Field(description="kernel size: 3 or [1, 7] (height, width)")
    stride: PairP = 1
    out: IntP = Field(description="output channels")
    padding: Optional[PaddingP] = Field(
        None, description="same (stride 1, odd kernel: (k-1)/2), valid (0), or explicit [ph, pw]")
    norm: Optional[Literal["batchnorm", "none"]] = None
    act: Optional[ActP] = None
    bias: Optional[StrictBool] = None
    eps: Optional[Eps] = None


class ConvDefaults(Located):
    norm: Literal["batchnorm", "none"] = "batchnorm"
    act: Literal["relu", "none"] = "relu"
    bias: StrictBool = False
    padding: Padding = "same"
    eps: Eps = 0.001
    momentum: Annotated[StrictFloat, Field(ge=0, le=1)] = 0.1


class Conv(SpecOp):
    name = "conv"
    doc = "convolution, then (by default) its batch norm and ReLU: the figures' \"Conv\""
    form = "conv KxK[/S] OUT [same|valid|pad=P|pad=PHxPW] [linear|bias|nobias|nobn|noact]"
    example = "conv 3x3/2 32 valid"
    model = ConvItem
    defaults_model = ConvDefaults
    flags = {
        "same": ("padding", {"padding": "same"}), "valid": ("padding", {"padding": "valid"}),
        "pad=": ("padding", {}),
        "linear": ("linear", {"norm": "none", "act": "none", "bias": True}),
        "bias": ("bias", {"bias": True}), "nobias": ("bias", {"bias": False}),
        "nobn": ("norm", {"norm": "none"}), "noact": ("act", {"act": "none"}),
    }

    def parse_words(self, words, text):
        out: dict = {}
        words = take_kernel(self, words, text, out)
        words = take_number(self, words, text, out, "out", "output channels after the kernel")
        return parse_flags(self, out, words, text)

    def lower(self, lw, it: ConvItem, path, x, env):
        d = lw.defaults("conv")
        out, out_src = lw.channels(it.out, env, it.loc, "conv out")
        win = lw.window(it, env, it.loc, "conv")
        if out is None or win is None:
            return None
        kernel, stride = win
        padding = lw.padding(it.padding if it.padding is not None else d.padding, kernel,
                             stride, env, it.loc, "conv")
        norm = it.norm or d.norm
        act = lw.value(it.act, env, it.loc, "conv act", str) if it.act is not None else d.act
        if act not in ("relu", "none"):
            if act is not None:  # None: already reported
                lw.diag(it.loc, f"conv act must be relu or none, got {act!r}")
            return None
        bias = it.bias if it.bias is not None else (d.bias if norm == "batchnorm" else True)
        if padding is None:
            return None
        srcs = {"out_channels": out_src, **lw.exprs_of(it, env, ("stride",))}
        y = lw.emit("conv2d", f"{path}.conv", [x], {
            "kernel": kernel, "stride": stride, "padding": padding, "out_channels": out,
            "bias": bias, "groups": 1}, it.loc, srcs)
        if norm == "batchnorm":
            y = lw.emit("batchnorm", f"{path}.bn", [y],
                        {"eps": it.eps if it.eps is not None else d.eps, "momentum": d.momentum},
                        it.loc)
        if act == "relu":
            y = lw.emit("relu", f"{path}.act", [y], {}, it.loc)
        return y

    def source_group(self, nodes, src) -> Optional[str]:
        """`ConvBnAct(...)` for the conv2d (+ batchnorm) (+ relu) this item lowered to."""
        by = {n.name.rsplit(".", 1)[-1]: n for n in nodes}
        conv = by.get("conv")
        if conv is None or set(by) - {"conv", "bn", "act"}:
            return None
        a, s = conv.attrs, src.of(conv)
        args = [s.in_channels, s("out_channels"), _pair_src(a["kernel"])]
        if tuple(a["stride"]) != (1, 1) or "stride" in s.srcs:  # a parameter: always written
            args.append(f"stride={s('stride', _pair_src)}")
        if tuple(a["padding"]) != (0, 0):
            args.append(f"padding={_pair_src(a['padding'])}")
        bn = by.get("bn")
        if bn is None:
            args.append("bn=False")
        elif bn.attrs["eps"] != src.constant("EPS") or bn.attrs["momentum"] != src.constant("MOMENTUM"):
            args.append(f"eps={bn.attrs['eps']!r}, momentum={bn.attrs['momentum']!r}")
        if "act" not in by:
            args.append("act=None")
        if a["bias"]:
            args.append("bias=True")
        return f"ConvBnAct({', '.join(args)})"

    source_helpers = {"ConvBnAct": '''
class ConvBnAct(nn.Sequential):
    """Convolution, then (optionally) batch norm and ReLU: the figures' "Conv".

    With bn=False, act=None and bias=True it is the figures' 1x1 "Linear" projection."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bn=True,
                 act="relu", bias=False, eps=EPS, momentum=MOMENTUM):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, bias=bias)
        if bn:
            self.bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        if act == "relu":
            self.act = nn.ReLU(inplace=True)
'''}


def _pair_src(v) -> str:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    return str(a) if a == b else f"({a}, {b})"


class Conv2d(IROp):
    name = "conv2d"
    layers = 1
    bn_foldable = True
    doc = "2-D convolution (kernel, stride, symmetric explicit padding, groups, bias)"

    def source_channels(self, attrs, in_channels, src):
        return src.channels("out_channels")

    def infer_shape(self, attrs, ins):
        c, h, w = spatial(ins[0], "convolution")
        if c % attrs["groups"]:
            raise ShapeError(f"{c} input channels are not divisible into {attrs['groups']} groups")
        ho, wo = window_out(h, w, attrs["kernel"], attrs["stride"], attrs["padding"],
                            f"conv {self.describe(attrs)}")
        return (attrs["out_channels"], ho, wo)

    def spatial_rule(self, attrs, ins):
        return _window_rule(attrs, ins, ceil=False)

    def param_shapes(self, attrs, ins):
        kh, kw = attrs["kernel"]
        shapes = {"weight": (attrs["out_channels"], ins[0][0] // attrs["groups"], kh, kw)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    def param_bound(self, attrs, in_channels):
        kh, kw = attrs["kernel"]
        out = attrs["out_channels"]
        return out * in_channels[0] * kh * kw + out, out

    def macs(self, attrs, ins, out):
        kh, kw = attrs["kernel"]
        return out[0] * out[1] * out[2] * (ins[0][0] // attrs["groups"]) * kh * kw

    def torch_module(self, nn, attrs, ins):
        return nn.Conv2d(ins[0][0], attrs["out_channels"], tuple(attrs["kernel"]),
                         stride=tuple(attrs["stride"]), padding=tuple(attrs["padding"]),
                         groups=attrs["groups"], bias=attrs["bias"])

    def source(self, attrs, src):
        args = [src.in_channels, src("out_channels"), _pair_src(attrs["kernel"])]
        if tuple(attrs["stride"]) != (1, 1) or "stride" in src.srcs:
            args.append(f"stride={src('stride', _pair_src)}")
        if tuple(attrs["padding"]) != (0, 0):
            args.append(f"padding={_pair_src(attrs['padding'])}")
        if attrs["groups"] != 1:
            args.append(f"groups={attrs['groups']}")
        if not attrs["bias"]:
            args.append("bias=False")
        return f"nn.Conv2d({', '.join(args)})"

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        params = [g.param("weight")] + ([g.param("bias")] if a["bias"] else [])
        return g.node("Conv", [inputs[0], *params], kernel_shape=list(a["kernel"]),
                      strides=list(a["stride"]), pads=onnx_pads(a["padding"]),
                      dilations=[1, 1], group=a["groups"])

    def describe(self, attrs):
        s = kxk(attrs["kernel"])
        if tuple(attrs["stride"]) != (1, 1):
            s += f"/{attrs['stride'][0]}"
        return f"{s} {attrs['out_channels']}"


def _window_rule(attrs, ins, ceil: bool):
    """Vectorised output sizes of a sliding window (see IROp.spatial_rule). An axis the
    window keeps as it is (stride 1, padding (k-1)/2) returns its input array itself."""
    h, w = ins[0]
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
    ho = h if sh == 1 and 2 * ph == kh - 1 else window_extent(h, kh, sh, ph, ceil=ceil)
    wo = w if sw == 1 and 2 * pw == kw - 1 else window_extent(w, kw, sw, pw, ceil=ceil)
    return ho, wo, True  # _run drops sizes where an output falls below 1


SPEC_OPS = (Conv(),)
IR_OPS = (Conv2d(),)
