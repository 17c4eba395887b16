"""Convolution: the spec op `conv` (conv2d, then its own batch norm and activation) and
the IR op `conv2d`."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from ..spec.types import IntE, IntP, ItemBase, Located, PaddingP, PairP, Padding
from .activation import ActName, ActP, emit_act
from .base import IROp, ShapeError, SpecOp, kxk, onnx_pads, spatial
from .sizes import ALL, window
from .sugar import number_or_expr, parse_flags, take_kernel, take_number

MAX_KERNEL, MAX_CHANNELS = 64, 1 << 16

from .torch_modules import PAD_SRC, SAME_SRC  # noqa: E402

Eps = Annotated[StrictFloat, Field(gt=0, le=1)]


NormName = Literal["batchnorm", "layernorm", "groupnorm", "none"]
GroupsP = Union[Literal["depthwise"], IntE]


class ConvItem(ItemBase):
    """Convolution, by default followed by batch norm and ReLU (see `defaults.conv`)."""

    op: Literal["conv"]
    kernel: PairP = Field(description="kernel size: 3 or [1, 7] (height, width)")
    stride: PairP = 1
    out: IntP = Field(description="output channels")
    padding: Optional[PaddingP] = Field(
        None, description="same ((span-1)/2, stride 1), valid (0), tf_same (TF's SAME for any "
                          "stride), [ph, pw], or [top, bottom, left, right]")
    groups: Optional[GroupsP] = Field(
        None, description="grouped convolution: N groups, or depthwise (one group per input channel)")
    dilation: PairP = Field(1, description="kernel dilation (atrous convolution): 2 or [h, w]")
    norm: Optional[NormName] = None
    norm_groups: Optional[IntE] = Field(None, description="groups of a groupnorm norm (default 32)")
    act: Optional[ActP] = None
    bias: Optional[StrictBool] = None
    eps: Optional[Eps] = None


class ConvDefaults(Located):
    norm: NormName = "batchnorm"
    act: ActName = "relu"
    bias: StrictBool = False
    padding: Padding = "same"
    eps: Eps = 0.001
    momentum: Annotated[StrictFloat, Field(ge=0, le=1)] = 0.1
    norm_groups: Annotated[StrictInt, Field(ge=1)] = 32


class Conv(SpecOp):
    name = "conv"
    doc = "convolution, then (by default) its batch norm and ReLU: the figures' \"Conv\""
    form = ("conv KxK[/S] OUT [same|valid|tf_same|pad=P|pad=PHxPW] [dw|groups=G] [dilation=D] "
            "[act=ACT] [linear|bias|nobias|nobn|noact]")
    example = "conv 3x3/2 32 valid"
    model = ConvItem
    defaults_model = ConvDefaults
    flags = {
        "same": ("padding", {"padding": "same"}), "valid": ("padding", {"padding": "valid"}),
        "tf_same": ("padding", {"padding": "tf_same"}), "pad=": ("padding", {}),
        "linear": ("linear", {"norm": "none", "act": "none", "bias": True}),
        "bias": ("bias", {"bias": True}), "nobias": ("bias", {"bias": False}),
        "nobn": ("norm", {"norm": "none"}), "noact": ("act", {"act": "none"}),
        "dw": ("groups", {"groups": "depthwise"}),
    }

    def parse_words(self, words, text):
        out: dict = {}
        words = take_kernel(self, words, text, out)
        words = take_number(self, words, text, out, "out", "output channels after the kernel")
        rest = []
        for word in words:
            key, eq, val = word.partition("=")
            if eq and key in ("groups", "dilation") and key not in out:
                out[key] = number_or_expr(val, f"{key}=N", text)
            elif eq and key == "act" and "act" not in out:
                out["act"] = val
            else:
                rest.append(word)
        return parse_flags(self, out, rest, text)

    def lower(self, lw, it: ConvItem, path, x, env):
        d = lw.defaults("conv")
        out, out_src = lw.channels(it.out, env, it.loc, "conv out")
        win = lw.window(it, env, it.loc, "conv")
        dilation = lw.pair(it.dilation, env, it.loc, "conv: dilation", 1, MAX_KERNEL)
        if out is None or win is None or dilation is None:
            return None
        kernel, stride = win
        padding = lw.padding(it.padding if it.padding is not None else d.padding, kernel,
                             stride, env, it.loc, "conv", dilation, conv=True)
        norm = it.norm or d.norm
        act = lw.value(it.act, env, it.loc, "conv act", str) if it.act is not None else d.act
        cin = lw.channels_of(x)
        groups = _groups(lw, it, env, cin, out)
        bias = it.bias if it.bias is not None else (d.bias if norm != "none" else True)
        if padding is None or groups is None or act is None:
            return None
        srcs = {"out_channels": out_src, **lw.exprs_of(it, env, ("stride",))}
        y = lw.emit("conv2d", f"{path}.conv", [x], {
            "kernel": kernel, "stride": stride, "padding": padding, "out_channels": out,
            "bias": bias, "groups": groups, "dilation": dilation}, it.loc, srcs)
        eps = it.eps if it.eps is not None else d.eps
        if norm == "batchnorm":
            y = lw.emit("batchnorm", f"{path}.bn", [y], {"eps": eps, "momentum": d.momentum}, it.loc)
        elif norm == "layernorm":
            y = lw.emit("layernorm", f"{path}.norm", [y], {"eps": eps, "vector": False}, it.loc)
        elif norm == "groupnorm":
            ng = lw.value(it.norm_groups if it.norm_groups is not None else d.norm_groups, env,
                          it.loc, "conv norm_groups", int, 1, MAX_CHANNELS)
            if ng is None:
                return None
            y = lw.emit("groupnorm", f"{path}.norm", [y], {"eps": eps, "groups": ng}, it.loc)
        return emit_act(lw, act, f"{path}.act", y, it.loc, "conv act")

    def source_group(self, nodes, src) -> Optional[str]:
        """`ConvBnAct(...)` for the conv2d (+ batchnorm) (+ act) this item lowered to."""
        by = {n.name.rsplit(".", 1)[-1]: n for n in nodes}
        conv = by.get("conv")
        if conv is None or set(by) - {"conv", "bn", "act"}:
            return None
        a, s = conv.attrs, src.of(conv)
        if len(a["padding"]) != 2:  # asymmetric or tf_same: the plain modules
            return None
        args = [s.in_channels, s("out_channels"), _pair_src(a["kernel"])]
        if tuple(a["stride"]) != (1, 1) or "stride" in s.srcs:  # a parameter: always written
            args.append(f"stride={s('stride', _pair_src)}")
        if tuple(a["padding"]) != (0, 0):
            args.append(f"padding={_pair_src(a['padding'])}")
        if tuple(a.get("dilation", (1, 1))) != (1, 1):
            args.append(f"dilation={_pair_src(a['dilation'])}")
        if a["groups"] != 1:
            args.append(f"groups={a['groups']}")
        bn = by.get("bn")
        if bn is None:
            args.append("bn=False")
        elif bn.attrs["eps"] != src.constant("EPS") or bn.attrs["momentum"] != src.constant("MOMENTUM"):
            args.append(f"eps={bn.attrs['eps']!r}, momentum={bn.attrs['momentum']!r}")
        if "act" not in by:
            args.append("act=None")
        elif by["act"].op != "relu":
            args.append(f"act={_act_source(by['act'])}")
        if a["bias"]:
            args.append("bias=True")
        return f"ConvBnAct({', '.join(args)})"

    source_helpers = {"ConvBnAct": '''
class ConvBnAct(nn.Sequential):
    """Convolution, then (optionally) batch norm and an activation: the figures' "Conv".

    With bn=False, act=None and bias=True it is the figures' 1x1 "Linear" projection."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bn=True,
                 act="relu", bias=False, eps=EPS, momentum=MOMENTUM, dilation=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups, bias=bias)
        if bn:
            self.bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        if act == "relu":
            self.act = nn.ReLU(inplace=True)
        elif act is not None:
            self.act = act
'''}


def _act_source(node) -> str:
    from . import OPS

    return OPS[node.op].source(node.attrs, None)


def _groups(lw, it, env, cin, out):
    """The conv's groups (an int), checked against its input and output channels."""
    g = it.groups
    if g is None:
        return 1
    if g == "depthwise":
        if cin is None:
            return None
        g = cin
    else:
        g = lw.value(g, env, it.loc, "conv groups", int, 1, MAX_CHANNELS)
        if g is None:
            return None
    if cin is not None and cin % g:
        lw.diag(it.loc, f"conv groups: {g} groups do not divide the {cin} input channels")
        return None
    if out % g:
        lw.diag(it.loc, f"conv groups: {g} groups do not divide the {out} output channels"
                        + (" (depthwise: out must be a multiple of the input channels)"
                           if it.groups == "depthwise" else ""))
        return None
    return g


def _pair_src(v) -> str:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    return str(a) if a == b else f"({a}, {b})"


def _span(attrs):
    (kh, kw), (dh, dw) = attrs["kernel"], attrs.get("dilation", (1, 1))
    return (kh - 1) * dh + 1, (kw - 1) * dw + 1


def tf_same_pad(size, span: int, stride: int):
    """TF SAME total padding: max((ceil(size/s) - 1)*s + span - size, 0) (ints or arrays)."""
    p = (-(-size // stride) - 1) * stride + span - size
    return p * (p > 0)


def conv_pads(attrs, h, w):
    """(top, bottom, left, right) at input size h x w (ints or numpy arrays)."""
    p = attrs["padding"]
    if p == "tf_same":
        (sh, sw), (eh, ew) = attrs["stride"], _span(attrs)
        ph, pw = tf_same_pad(h, eh, sh), tf_same_pad(w, ew, sw)
        return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2
    if len(p) == 4:
        return tuple(p)
    return p[0], p[0], p[1], p[1]


class Conv2d(IROp):
    name = "conv2d"
    layers = 1
    bn_foldable = True
    doc = "2-D convolution (kernel, stride, padding, dilation, groups, bias)"

    def source_channels(self, attrs, in_channels, src):
        return src.channels("out_channels")

    def _out(self, attrs, h, w):
        t, b, l, r = conv_pads(attrs, h, w)
        (eh, ew), (sh, sw) = _span(attrs), attrs["stride"]
        return (h + t + b - eh) // sh + 1, (w + l + r - ew) // sw + 1

    def infer_shape(self, attrs, ins):
        c, h, w = spatial(ins[0], "convolution")
        g = attrs["groups"]
        if c % g:
            raise ShapeError(f"conv {self.describe(attrs)}: {g} groups do not divide its {c} "
                             "input channels")
        ho, wo = self._out(attrs, h, w)
        if ho < 1 or wo < 1:
            t, b, l, r = conv_pads(attrs, h, w)
            eh, ew = _span(attrs)
            k = kxk(attrs["kernel"]) + (f" (dilated to {eh}x{ew})" if (eh, ew) != tuple(attrs["kernel"]) else "")
            padded = f" ({h + t + b}x{w + l + r} padded)" if t + b + l + r else ""
            raise ShapeError(f"conv {self.describe(attrs)}: its {h}x{w} input{padded} is smaller than "
                             f"the {k} window, the map would vanish: the network input is too small")
        return (attrs["out_channels"], ho, wo)

    def spatial_rule(self, attrs, ins):  # _run drops input lengths where an output is < 1
        h, w = ins[0]
        (eh, ew), (sh, sw), (dh, dw) = _span(attrs), attrs["stride"], attrs.get("dilation", (1, 1))
        if attrs["padding"] == "tf_same":
            return _tf_same_sizes(h, eh, sh), _tf_same_sizes(w, ew, sw), ALL, ALL
        t, b, l, r = conv_pads(attrs, 0, 0)
        (kh, kw) = attrs["kernel"]
        return window(h, kh, sh, t, b, dh), window(w, kw, sw, l, r, dw), ALL, ALL

    def param_shapes(self, attrs, ins):
        kh, kw = attrs["kernel"]
        shapes = {"weight": (attrs["out_channels"], ins[0][0] // attrs["groups"], kh, kw)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    def param_bound(self, attrs, in_channels):
        kh, kw = attrs["kernel"]
        out = attrs["out_channels"]
        return out * (in_channels[0] // attrs["groups"] or 1) * kh * kw + out, out

    def macs(self, attrs, ins, out):
        kh, kw = attrs["kernel"]
        return out[0] * out[1] * out[2] * (ins[0][0] // attrs["groups"]) * kh * kw

    def torch_module(self, nn, attrs, ins):
        from .torch_modules import helper_class

        kw = dict(stride=tuple(attrs["stride"]), dilation=tuple(attrs.get("dilation", (1, 1))),
                  groups=attrs["groups"], bias=attrs["bias"])
        p = attrs["padding"]
        if p == "tf_same":
            return helper_class("Conv2dSame")(ins[0][0], attrs["out_channels"], tuple(attrs["kernel"]), **kw)
        if len(p) == 4:
            return helper_class("PadConv2d")(ins[0][0], attrs["out_channels"], tuple(attrs["kernel"]),
                                             pads=tuple(p), **kw)
        return nn.Conv2d(ins[0][0], attrs["out_channels"], tuple(attrs["kernel"]),
                         padding=tuple(p), **kw)

    def source(self, attrs, src):
        args = [src.in_channels, src("out_channels"), _pair_src(attrs["kernel"])]
        if tuple(attrs["stride"]) != (1, 1) or "stride" in src.srcs:
            args.append(f"stride={src('stride', _pair_src)}")
        p = attrs["padding"]
        cls = "nn.Conv2d"
        if p == "tf_same":
            cls = "Conv2dSame"
        elif len(p) == 4:
            cls = "PadConv2d"
            args.append(f"pads={tuple(p)}")
        elif tuple(p) != (0, 0):
            args.append(f"padding={_pair_src(p)}")
        if tuple(attrs.get("dilation", (1, 1))) != (1, 1):
            args.append(f"dilation={_pair_src(attrs['dilation'])}")
        if attrs["groups"] != 1:
            args.append(f"groups={attrs['groups']}")
        if not attrs["bias"]:
            args.append("bias=False")
        return f"{cls}({', '.join(args)})"

    source_helpers = {"Conv2dSame": SAME_SRC, "PadConv2d": PAD_SRC}

    def onnx_lower(self, g, node, inputs):
        a = node.attrs
        params = [g.param("weight")] + ([g.param("bias")] if a["bias"] else [])
        kw = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                  dilations=list(a.get("dilation", (1, 1))), group=a["groups"])
        if a["padding"] == "tf_same":
            if g.shapes is None and tuple(kw["dilations"]) == (1, 1):
                # run time: ONNX's SAME_UPPER is TF's SAME (onnxruntime: without dilation)
                return g.node("Conv", [inputs[0], *params], auto_pad="SAME_UPPER", **kw)
            if g.shapes is None:
                padded = _onnx_same_pad(g, inputs[0], a)
                return g.node("Conv", [padded, *params], pads=[0, 0, 0, 0], **kw)
            _, h, w = g.static_shape(node.inputs[0], "tf_same")
            t, b, l, r = conv_pads(a, h, w)
            return g.node("Conv", [inputs[0], *params], pads=[t, l, b, r], **kw)
        return g.node("Conv", [inputs[0], *params], pads=onnx_pads(a["padding"]), **kw)

    def describe(self, attrs):
        s = kxk(attrs["kernel"])
        if tuple(attrs["stride"]) != (1, 1):
            s += f"/{attrs['stride'][0]}"
        s += f" {attrs['out_channels']}"
        if attrs["groups"] != 1:
            s += f" groups={attrs['groups']}"
        if tuple(attrs.get("dilation", (1, 1))) != (1, 1):
            s += f" dilation={attrs['dilation'][0]}"
        return s


def _onnx_same_pad(g, x, a):
    """TF SAME padding computed from the run-time H, W (int64 arithmetic)."""
    i64 = "int64"
    hw = g.node("Slice", [g.node("Shape", [x], suffix="shape"), g.const("hw_start", [2], i64),
                          g.const("hw_end", [4], i64)], suffix="hw")
    s, span = g.const("same_stride", list(a["stride"]), i64), g.const("same_span", list(_span(a)), i64)
    out = g.node("Div", [g.node("Add", [hw, g.const("same_sm1", [v - 1 for v in a["stride"]], i64)],
                                suffix="hw_up"), s], suffix="out_hw")
    need = g.node("Sub", [g.node("Add", [g.node("Mul", [g.node("Sub", [out, g.const("one", [1, 1], i64)],
                                                                suffix="outm1"), s], suffix="reach"),
                                          span], suffix="total"), hw], suffix="need")
    pad = g.node("Max", [need, g.const("zero", [0, 0], i64)], suffix="pad")
    begin = g.node("Div", [pad, g.const("two", [2, 2], i64)], suffix="begin")
    end = g.node("Sub", [pad, begin], suffix="end")
    zeros = g.const("nc", [0, 0], i64)
    pads = g.node("Concat", [zeros, begin, zeros, end], suffix="pads", axis=0)
    return g.node("Pad", [x, pads], suffix="padded")


def _tf_same_sizes(v, span: int, stride: int):
    """Output lengths of a TF-SAME conv (the padding depends on the length)."""
    def rule(xs):
        out = []
        for x in xs:
            p = (-(-x // stride) - 1) * stride + span - x
            out.append((x + (p if p > 0 else 0) - span) // stride + 1)
        return out
    return v.map(("tf_same", span, stride), rule)


def _window_rule(attrs, ins, ceil: bool):
    """Output sizes of a sliding window (see IROp.spatial_rule). An axis the window
    keeps as it is (stride 1, padding (k-1)/2) hands back its input vector itself."""
    h, w = ins[0]
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
    return (window(h, kh, sh, ph, ph, ceil=ceil), window(w, kw, sw, pw, pw, ceil=ceil),
            ALL, ALL)  # _run drops input lengths where an output falls below 1


SPEC_OPS = (Conv(),)
IR_OPS = (Conv2d(),)
