"""What an op is: the two kinds of registry entries and the helpers they share.

An `IROp` is a node of the graph IR (conv2d, batchnorm, concat, ...): its shape rule,
parameters and buffers, fresh initialisation, MACs, layer weight, and each backend's
lowering (torch.fx, generated source, ONNX). A `SpecOp` is what a spec file writes
(`conv 3x3/2 32 valid`): its fields (a pydantic model, the source of the JSON Schema),
its op-string sugar and defaults, and how it lowers to IR ops. A spec op owns the IR ops
it lowers to (`conv` -> conv2d + batchnorm + act); both live in the same family module
(archcompiler/ops/conv.py, pool.py, ...). The core never imports torch or onnx: backends
hand their modules in (`nn`, the fx graph, the ONNX builder).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Optional

from .sizes import ALL

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An op cannot be applied to its input shapes (the message says why, for the user)."""


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a CxHxW feature map, got a flat vector of {shape[0]}")
    return shape  # type: ignore[return-value]


def window_extent(size, kernel: int, stride: int, pad: int, dilation: int = 1, ceil: bool = False):
    """Output length of a sliding window (works on ints and on numpy arrays of sizes).

    torch's rule for ceil_mode: round up, but drop a last window that would start in the
    right/bottom padding. Returns a non-positive value when the window does not fit."""
    span = dilation * (kernel - 1) + 1
    room = size + 2 * pad - span
    if not ceil:
        return room // stride + 1
    out = -(-room // stride) + 1
    # the last window must start inside the input or the left padding
    start_past = (out - 1) * stride >= size + pad
    return out - start_past * 1


def window_out(h: int, w: int, kernel, stride, padding, what: str, dilation=(1, 1),
               ceil: bool = False) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = window_extent(h, kh, sh, ph, dh, ceil)
    wo = window_extent(w, kw, sw, pw, dw, ceil)
    if ho < 1 or wo < 1:
        eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        win = f"{kh}x{kw}" + (f" (dilated to {eh}x{ew})" if (dh, dw) != (1, 1) else "")
        raise ShapeError(f"{what}: its {h}x{w} input is smaller than the {win} window, the "
                         "map would vanish: the network input is too small")
    return ho, wo


def onnx_pads(padding) -> list[int]:
    if len(padding) == 4:  # top, bottom, left, right
        t, b, l, r = padding
        return [t, l, b, r]
    ph, pw = padding
    return [ph, pw, ph, pw]  # ONNX: begins of all spatial axes, then ends


def kxk(pair) -> str:
    a, b = pair
    return f"{a}x{b}"


class IROp:
    """One op of the graph IR. Subclasses override what applies to them."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    layers: ClassVar[int] = 0  # contribution to the paper's layer count (passes.layers)
    internal: ClassVar[bool] = False  # made by passes or lowering, never written in a spec
    # the optimization passes may fold a following batchnorm into this op (a linear map
    # per output channel with a `weight` whose first axis is the output channels)
    bn_foldable: ClassVar[bool] = False
    # generated-source helper classes this op's `source` uses (name -> class source)
    source_helpers: ClassVar[Mapping[str, str]] = {}

    # -- shapes, state, cost -----------------------------------------------------------
    def infer_shape(self, attrs: Mapping, ins: list[Shape]) -> Shape:
        return ins[0]

    def spatial_rule(self, attrs: Mapping, ins: list):
        """Spatial sizes for the input-size search (passes.checks): `ins` are (H, W) pairs
        of `ops.sizes.Sizes` (an axis' length at every candidate input length). Returns
        (H, W, ok_h, ok_w): the output vectors and the masks of the input lengths this op
        accepts along each axis (ops.sizes: ALL for no condition). Most ops keep the
        size: they hand back their input's vectors, and the search skips them."""
        h, w = ins[0]
        return h, w, ALL, ALL

    def param_shapes(self, attrs: Mapping, ins: list[Shape]) -> dict[str, Shape]:
        """Trainable parameters (counted in the parameter total)."""
        return {}

    def buffer_shapes(self, attrs: Mapping, ins: list[Shape]) -> dict[str, Shape]:
        """Non-trainable state (BN running statistics): in checkpoints, not in counts."""
        return {}

    def param_bound(self, attrs: Mapping, in_channels: list[int]) -> tuple[int, int]:
        """(parameter upper bound, output channels) from channel counts alone, so that an
        absurd spec is refused before any shape exists."""
        return 0, (in_channels[0] if in_channels else 0)

    def macs(self, attrs: Mapping, ins: list[Shape], out: Shape) -> int:
        return 0

    def init(self, param: str, shape: Shape, scheme, rng, node_name: str):
        """A fresh value for one parameter or buffer (numpy), or None for the scheme's
        default for weights (see archcompiler.weights.init_weights)."""
        return None

    # -- torch -------------------------------------------------------------------------
    def torch_module(self, nn, attrs: Mapping, ins: list[Shape]):
        """An nn.Module holding this op's state, or None for a function call."""
        return None

    def torch_emit(self, graph, torch, node, args: list):
        """Add this op to a torch.fx graph; returns the fx node of its output. Ops with a
        module are called by their (qualified) node name; functional ops override this."""
        return graph.call_module(node.name, tuple(args))

    # -- generated source ----------------------------------------------------------------
    def source(self, attrs: Mapping, src) -> Optional[str]:
        """Constructor source of this op's module in the generated .py (`src(attr)` renders
        an attribute, as an expression over the block's parameters where it came from
        one; `src.in_channels` is the input width), or None for a functional op."""
        return None

    def source_channels(self, attrs: Mapping, in_channels: list, src):
        """The output width in the generated source: an int, or an expression (str)
        over the block's parameters and `in_channels`."""
        return in_channels[0]

    def source_call(self, attrs: Mapping, args: list[str], src) -> str:
        """The expression computing a functional op from its argument expressions."""
        raise NotImplementedError(f"op {self.name!r} has no generated-source form")

    # -- ONNX ----------------------------------------------------------------------------
    def onnx_lower(self, g, node, inputs: list[str]) -> str:
        """Emit ONNX nodes through `g` (archcompiler.backends.onnx.OnnxBuilder) and return
        the value name of the result: `g.node(op_type, inputs, suffix=None, **attrs)`,
        `g.param(pname, shape=None)`, `g.const(pname, values, dtype)`, `g.opset`,
        `g.static_shape(value)`."""
        raise NotImplementedError(f"op {self.name!r} has no ONNX lowering")

    def describe(self, attrs: Mapping) -> str:
        return self.name


class SpecOp:
    """One op of the spec language. `model` is its pydantic class (fields and schema)."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    form: ClassVar[str] = ""  # the op-string form, for docs and messages
    example: ClassVar[str] = ""  # an op string (or YAML mapping) for the docs
    model: ClassVar[Any] = None
    defaults_model: ClassVar[Any] = None  # pydantic class of `defaults.<name>`, if any
    flags: ClassVar[Mapping[str, tuple]] = {}  # op-string word -> (slot, field updates)

    def parse_words(self, words: list[str], text: str) -> dict:
        """Op-string words after the op name -> the mapping form (without `op`)."""
        from .sugar import parse_flags

        return parse_flags(self, {}, words, text)

    def lower(self, lw, item, path: str, x: str, env: dict) -> Optional[str]:
        """Emit this item's IR nodes through the lowering `lw`; returns the output node."""
        raise NotImplementedError


def prod(shape) -> int:
    return int(math.prod(shape))
