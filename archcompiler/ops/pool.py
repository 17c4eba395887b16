"""Pooling: windowed max/avg pooling (floor or ceil mode), adaptive pooling to an output
size, and global pooling (flattening to a C vector, or keeping Cx1x1)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, StrictBool

from ..spec.types import ItemBase, Located, Padding, PaddingP, PairP
from .base import IROp, ShapeError, SpecOp, fmt_shape, kxk, onnx_pads, spatial, window_out
from .conv import _pair_src, _window_rule
from .sizes import ALL, at_least, const
from .sugar import parse_flags, take_kernel

_CEIL_DOC = "ceil mode (torch's rule: a window that would start in the padding is dropped)"


class MaxPoolItem(ItemBase):
    op: Literal["maxpool"]
    kernel: PairP
    stride: PairP = 1
    padding: Optional[PaddingP] = None
    ceil: StrictBool = Field(False, description=_CEIL_DOC)


class AvgPoolItem(MaxPoolItem):
    op: Literal["avgpool"]  # type: ignore[assignment]
    count_pad: Optional[StrictBool] = Field(
        None, description="whether padded zeros count in the average (torch count_include_pad; "
                          "TF SAME pooling excludes them)")


class MaxPoolDefaults(Located):
    padding: Padding = "valid"


class AvgPoolDefaults(Located):
    count_pad: StrictBool = False
    padding: Padding = "same"


class _WindowPoolSpec(SpecOp):
    flags = {"same": ("padding", {"padding": "same"}), "valid": ("padding", {"padding": "valid"}),
             "pad=": ("padding", {}), "ceil": ("ceil", {"ceil": True}),
             "floor": ("ceil", {"ceil": False})}

    def parse_words(self, words, text):
        out: dict = {}
        return parse_flags(self, out, take_kernel(self, words, text, out), text)

    def lower(self, lw, it, path, x, env):
        win = lw.window(it, env, it.loc, self.name)
        if win is None:
            return None
        kernel, stride = win
        d = lw.defaults(self.name)
        padding = lw.padding(it.padding if it.padding is not None else d.padding, kernel, stride,
                             env, it.loc, self.name)
        if padding is None:
            return None
        attrs = {"kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": it.ceil}
        if self.name == "avgpool":
            attrs["count_include_pad"] = it.count_pad if it.count_pad is not None else d.count_pad
        return lw.emit(self.name, path, [x], attrs, it.loc, lw.exprs_of(it, env, ("stride",)))


class MaxPoolSpec(_WindowPoolSpec):
    name = "maxpool"
    doc = "max pooling over a window (padding never wins the max)"
    form = "maxpool KxK[/S] [same|valid|pad=P] [ceil]"
    example = "maxpool 3x3/2 ceil"
    model = MaxPoolItem
    defaults_model = MaxPoolDefaults


class AvgPoolSpec(_WindowPoolSpec):
    name = "avgpool"
    doc = "average pooling over a window"
    form = "avgpool KxK[/S] [same|valid|pad=P] [count_pad|exclude_pad] [ceil]"
    example = "avgpool 3x3 count_pad"
    model = AvgPoolItem
    defaults_model = AvgPoolDefaults
    flags = {**_WindowPoolSpec.flags, "count_pad": ("count_pad", {"count_pad": True}),
             "exclude_pad": ("count_pad", {"count_pad": False})}


class _WindowPool(IROp):
    layers = 1

    def infer_shape(self, attrs, ins):
        c, h, w = spatial(ins[0], self.name)
        return (c, *window_out(h, w, attrs["kernel"], attrs["stride"], attrs["padding"],
                               f"{self.name} {self.describe(attrs)}",
                               ceil=attrs.get("ceil_mode", False)))

    def spatial_rule(self, attrs, ins):
        return _window_rule(attrs, ins, ceil=attrs.get("ceil_mode", False))

    def _args(self, attrs, src) -> list[str]:
        args = [_pair_src(attrs["kernel"]), f"stride={src('stride', _pair_src)}"]
        if tuple(attrs["padding"]) != (0, 0):
            args.append(f"padding={_pair_src(attrs['padding'])}")
        if attrs.get("ceil_mode"):
            args.append("ceil_mode=True")
        return args

    def _onnx_attrs(self, a) -> dict:
        return dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                    pads=onnx_pads(a["padding"]), ceil_mode=int(bool(a.get("ceil_mode"))))

    def describe(self, attrs):
        s = kxk(attrs["kernel"])
        if tuple(attrs["stride"]) != (1, 1):
            s += f"/{attrs['stride'][0]}"
        return s + (" ceil" if attrs.get("ceil_mode") else "")


class MaxPool(_WindowPool):
    name = "maxpool"
    doc = "max pooling (kernel, stride, padding, ceil mode; padding never wins the max)"

    def torch_module(self, nn, attrs, ins):
        return nn.MaxPool2d(tuple(attrs["kernel"]), stride=tuple(attrs["stride"]),
                            padding=tuple(attrs["padding"]), ceil_mode=attrs.get("ceil_mode", False))

    def source(self, attrs, src):
        return f"nn.MaxPool2d({', '.join(self._args(attrs, src))})"

    def onnx_lower(self, g, node, inputs):
        return g.node("MaxPool", inputs, **self._onnx_attrs(node.attrs))


class AvgPool(_WindowPool):
    name = "avgpool"
    doc = "average pooling (kernel, stride, padding, count_include_pad, ceil mode)"

    def torch_module(self, nn, attrs, ins):
        return nn.AvgPool2d(tuple(attrs["kernel"]), stride=tuple(attrs["stride"]),
                            padding=tuple(attrs["padding"]), ceil_mode=attrs.get("ceil_mode", False),
                            count_include_pad=attrs["count_include_pad"])

    def source(self, attrs, src):
        args = self._args(attrs, src) + [f"count_include_pad={attrs['count_include_pad']}"]
        return f"nn.AvgPool2d({', '.join(args)})"

    def onnx_lower(self, g, node, inputs):
        return g.node("AveragePool", inputs, **self._onnx_attrs(node.attrs),
                      count_include_pad=int(bool(node.attrs["count_include_pad"])))


# --- adaptive pooling ---------------------------------------------------------------------

class AdaptivePoolItem(ItemBase):
    op: Literal["adaptive_avgpool", "adaptive_maxpool"]
    out: PairP = Field(description="output size: 4 or [4, 4]; windows may overlap (torch's rule)")


class _AdaptivePoolSpec(SpecOp):
    model = AdaptivePoolItem

    def parse_words(self, words, text):
        out: dict = {}
        rest = take_kernel(self, words, text, out, with_stride=False)
        out["out"] = out.pop("kernel")
        return parse_flags(self, out, rest, text)

    def lower(self, lw, it, path, x, env):
        size = lw.pair(it.out, env, it.loc, f"{self.name} out", 1, 4096)
        return None if size is None else lw.emit(self.name, path, [x], {"out": size}, it.loc)


class AdaptiveAvgPoolSpec(_AdaptivePoolSpec):
    name = "adaptive_avgpool"
    doc = "average pooling to a fixed output size (window i spans floor(iH/o) to ceil((i+1)H/o))"
    form = "adaptive_avgpool HxW"
    example = "adaptive_avgpool 4x4"


class AdaptiveMaxPoolSpec(_AdaptivePoolSpec):
    name = "adaptive_maxpool"
    doc = "max pooling to a fixed output size (torch's adaptive windows)"
    form = "adaptive_maxpool HxW"
    example = "adaptive_maxpool 1x1"


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


class _AdaptivePool(IROp):
    reduce = ""

    def infer_shape(self, attrs, ins):
        c, h, w = spatial(ins[0], self.name)
        oh, ow = attrs["out"]
        if oh > h or ow > w:
            raise ShapeError(f"{self.name} {oh}x{ow}: the output is larger than its {h}x{w} "
                             "input (the network input is too small for this pooling)")
        return (c, oh, ow)

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        oh, ow = attrs["out"]
        return const(h, oh), const(w, ow), at_least(h, oh), at_least(w, ow)

    def torch_emit(self, graph, torch, node, args):
        fn = getattr(torch.nn.functional, f"adaptive_{self.reduce}_pool2d")
        return graph.call_function(fn, (args[0], tuple(node.attrs["out"])))

    def source(self, attrs, src):
        cls = "AdaptiveAvgPool2d" if self.reduce == "avg" else "AdaptiveMaxPool2d"
        return f"nn.{cls}({_pair_src(attrs['out'])})"

    def onnx_lower(self, g, node, inputs):
        _, h, w = g.static_shape(node.inputs[0], f"{self.name} to {kxk(node.attrs['out'])}")
        oh, ow = node.attrs["out"]
        if h % oh == 0 and w % ow == 0:  # equal, non-overlapping windows: one pooling node
            op = "AveragePool" if self.reduce == "avg" else "MaxPool"
            k = [h // oh, w // ow]
            return g.node(op, inputs, kernel_shape=k, strides=k)
        if self.reduce == "avg":  # overlapping windows: averaging matrices, P_h X P_w^T
            ph = _averaging_matrix(h, oh)
            pw = _averaging_matrix(w, ow).T
            cols = g.node("MatMul", [inputs[0], g.const("pool_w", pw)], suffix="cols")
            return g.node("MatMul", [g.const("pool_h", ph), cols])
        rows = [_window_max(g, inputs[0], a, b, 2, f"r{i}")
                for i, (a, b) in enumerate(adaptive_windows(h, oh))]
        rowcat = g.node("Concat", rows, suffix="rows", axis=2)
        cols = [_window_max(g, rowcat, a, b, 3, f"c{i}")
                for i, (a, b) in enumerate(adaptive_windows(w, ow))]
        return g.node("Concat", cols, axis=3)

    def describe(self, attrs):
        return f"{self.name} {kxk(attrs['out'])}"


def _window_max(g, x: str, start: int, stop: int, axis: int, tag: str) -> str:
    """max over [start, stop) of one spatial axis, kept as a length-1 axis."""
    part = g.node("Slice", [x, g.const(f"starts_{tag}", [start], "int64"),
                            g.const(f"ends_{tag}", [stop], "int64"),
                            g.const(f"axes_{tag}", [axis], "int64")], suffix=tag)
    if g.opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        return g.node("ReduceMax", [part, g.const(f"raxes_{tag}", [axis], "int64")],
                      suffix=f"max_{tag}", keepdims=1)
    return g.node("ReduceMax", [part], suffix=f"max_{tag}", keepdims=1, axes=[axis])


def _averaging_matrix(size: int, out: int):
    import numpy as np  # here: `archc validate` never imports numpy

    m = np.zeros((out, size), dtype=np.float32)
    for i, (a, b) in enumerate(adaptive_windows(size, out)):
        m[i, a:b] = 1.0 / (b - a)
    return m


class AdaptiveAvgPool(_AdaptivePool):
    name = "adaptive_avgpool"
    doc = "adaptive average pooling to a fixed output size"
    reduce = "avg"
    layers = 1


class AdaptiveMaxPool(_AdaptivePool):
    name = "adaptive_maxpool"
    doc = "adaptive max pooling to a fixed output size"
    reduce = "max"
    layers = 1


# --- global pooling -------------------------------------------------------------------------

class GlobalPoolItem(ItemBase):
    op: Literal["global_avgpool", "global_maxpool"]
    keepdim: StrictBool = Field(False, description="keep a Cx1x1 map instead of a C vector")


class _GlobalPoolSpec(SpecOp):
    model = GlobalPoolItem
    flags = {"keepdim": ("keepdim", {"keepdim": True})}

    def lower(self, lw, it, path, x, env):
        return lw.emit(self.name, path, [x], {"keepdim": it.keepdim}, it.loc)


class GlobalAvgPoolSpec(_GlobalPoolSpec):
    name = "global_avgpool"
    doc = "mean over the whole map: a C vector, or Cx1x1 with keepdim (any input size)"
    form = "global_avgpool [keepdim]"
    example = "global_avgpool"


class GlobalMaxPoolSpec(_GlobalPoolSpec):
    name = "global_maxpool"
    doc = "max over the whole map: a C vector, or Cx1x1 with keepdim"
    form = "global_maxpool [keepdim]"
    example = "global_maxpool keepdim"


class _GlobalPool(IROp):
    reduce = ""

    def infer_shape(self, attrs, ins):
        c, _, _ = spatial(ins[0], self.name)
        return (c, 1, 1) if attrs.get("keepdim") else (c,)

    def spatial_rule(self, attrs, ins):
        h, w = ins[0]
        return const(h, 1), const(w, 1), ALL, ALL

    def torch_emit(self, graph, torch, node, args):
        # as timm's SelectAdaptivePool2d: any input size
        fn = getattr(torch.nn.functional, f"adaptive_{self.reduce}_pool2d")
        pooled = graph.call_function(fn, (args[0], 1))
        return pooled if node.attrs.get("keepdim") else graph.call_function(torch.flatten, (pooled, 1))

    def source(self, attrs, src):
        return f"GlobalPool({self.reduce!r}, flatten={not attrs.get('keepdim')})"

    source_helpers = {"GlobalPool": '''
class GlobalPool(nn.Module):
    """Average (or max) over the whole map, flattened to a C vector: any input size."""

    def __init__(self, reduce="avg", flatten=True):
        super().__init__()
        self.reduce, self.flatten = reduce, flatten

    def forward(self, x):
        pool = F.adaptive_avg_pool2d if self.reduce == "avg" else F.adaptive_max_pool2d
        x = pool(x, 1)
        return torch.flatten(x, 1) if self.flatten else x
'''}

    def onnx_lower(self, g, node, inputs):
        op = "GlobalAveragePool" if self.reduce == "avg" else "GlobalMaxPool"
        if node.attrs.get("keepdim"):
            return g.node(op, inputs)  # N x C x 1 x 1
        pooled = g.node(op, inputs, suffix="pool")
        return g.node("Flatten", [pooled], axis=1)  # N x C

    def describe(self, attrs):
        return self.name + (" keepdim" if attrs.get("keepdim") else "")


class GlobalAvgPool(_GlobalPool):
    name = "global_avgpool"
    doc = "mean over the whole spatial map (a C vector, or Cx1x1 with keepdim)"
    reduce = "avg"


class GlobalMaxPool(_GlobalPool):
    name = "global_maxpool"
    doc = "max over the whole spatial map (a C vector, or Cx1x1 with keepdim)"
    reduce = "max"


SPEC_OPS = (MaxPoolSpec(), AvgPoolSpec(), AdaptiveAvgPoolSpec(), AdaptiveMaxPoolSpec(),
            GlobalAvgPoolSpec(), GlobalMaxPoolSpec())
IR_OPS = (MaxPool(), AvgPool(), AdaptiveAvgPool(), AdaptiveMaxPool(), GlobalAvgPool(),
          GlobalMaxPool())
