"""Activations: one spec op and one IR op per function (relu, relu6, leaky_relu, silu,
gelu, gelu_tanh, sigmoid, hardsigmoid, hardswish, tanh, identity). Each is also a conv's
`act` and a residual's `act` (`ACT_NAMES`; `leaky_relu=0.1` gives the slope there).

ONNX: default-domain ops valid at opset 17 and 18 (Gelu exists only from opset 20, so
gelu and gelu_tanh are decomposed into Erf / Tanh arithmetic; silu is x * Sigmoid(x)).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Callable, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field, StrictStr, WithJsonSchema, create_model
from typing_extensions import TypeAliasType

from ..spec.expr import Expr
from ..spec.types import ExprText, ItemBase, NumP, _to_expr
from .base import IROp, SpecOp
from .sugar import number_or_expr, OpStringError


def _relu6(g, node, x):
    return g.node("Clip", [x, g.const("min", 0.0), g.const("max", 6.0)])


def _silu(g, node, x):
    return g.node("Mul", [x, g.node("Sigmoid", [x], suffix="sigmoid")])


def _gelu(g, node, x):  # x * 0.5 * (1 + erf(x / sqrt(2)))
    e = g.node("Erf", [g.node("Div", [x, g.const("sqrt2", math.sqrt(2.0))], suffix="div")], suffix="erf")
    one = g.node("Add", [e, g.const("one", 1.0)], suffix="add")
    half = g.node("Mul", [x, g.const("half", 0.5)], suffix="half")
    return g.node("Mul", [half, one])


def _gelu_tanh(g, node, x):  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    cube = g.node("Mul", [g.node("Mul", [x, x], suffix="sq"), x], suffix="cube")
    inner = g.node("Add", [x, g.node("Mul", [cube, g.const("c", 0.044715)], suffix="cc")], suffix="inner")
    t = g.node("Tanh", [g.node("Mul", [inner, g.const("k", math.sqrt(2.0 / math.pi))], suffix="scaled")],
               suffix="tanh")
    one = g.node("Add", [t, g.const("one", 1.0)], suffix="add")
    half = g.node("Mul", [x, g.const("half", 0.5)], suffix="half")
    return g.node("Mul", [half, one])


# name -> (doc, torch constructor source (attrs -> str), ONNX lowering (g, node, x) -> value)
_TABLE: dict[str, tuple[str, Callable, Callable]] = {
    "relu": ("rectified linear unit, max(x, 0)", lambda a: "nn.ReLU(inplace=True)",
             lambda g, n, x: g.node("Relu", [x])),
    "relu6": ("min(max(x, 0), 6) (MobileNet)", lambda a: "nn.ReLU6()", _relu6),
    "leaky_relu": ("x for x > 0, slope * x otherwise (slope default 0.01)",
                   lambda a: f"nn.LeakyReLU({a['slope']!r})",
                   lambda g, n, x: g.node("LeakyRelu", [x], alpha=float(n.attrs["slope"]))),
    "silu": ("x * sigmoid(x) (swish; EfficientNet)", lambda a: "nn.SiLU()", _silu),
    "gelu": ("x * Phi(x), exact (erf)", lambda a: "nn.GELU()", _gelu),
    "gelu_tanh": ("GELU's tanh approximation", lambda a: "nn.GELU(approximate='tanh')", _gelu_tanh),
    "sigmoid": ("1 / (1 + exp(-x)) (SE gates)", lambda a: "nn.Sigmoid()",
                lambda g, n, x: g.node("Sigmoid", [x])),
    "hardsigmoid": ("relu6(x + 3) / 6 (MobileNet v3 gates)", lambda a: "nn.Hardsigmoid()",
                    lambda g, n, x: g.node("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)),
    "hardswish": ("x * relu6(x + 3) / 6 (MobileNet v3)", lambda a: "nn.Hardswish()",
                  lambda g, n, x: g.node("HardSwish", [x])),
    "tanh": ("hyperbolic tangent", lambda a: "nn.Tanh()", lambda g, n, x: g.node("Tanh", [x])),
    "identity": ("passes its input through (a named no-op)", lambda a: "nn.Identity()",
                 lambda g, n, x: x),
}

ACT_NAMES = tuple(_TABLE)
_LEAKY = re.compile(r"leaky_relu=(\d{0,9}\.?\d{1,9}(e-?\d{1,2})?)\Z")

def parse_act(act) -> tuple[str, dict] | None:
    """An `act` value -> (IR op, attrs), ('none', {}) or None when it is not one."""
    if act in ("none", "identity"):
        return "none", {}
    if act == "leaky_relu":
        return "leaky_relu", {"slope": 0.01}
    if act in _TABLE:
        return act, {}
    m = _LEAKY.match(act) if isinstance(act, str) else None
    return ("leaky_relu", {"slope": float(m.group(1))}) if m else None


def _check_act(v):
    if not isinstance(v, str) or parse_act(v) is None:
        raise ValueError(f"expected one of {', '.join(ACT_NAMES)}, leaky_relu=SLOPE or none, "
                         f"got {v!r}")
    return v


ActName = Annotated[StrictStr, AfterValidator(_check_act), WithJsonSchema({"anyOf": [
    {"enum": [*ACT_NAMES, "none"]}, {"type": "string", "pattern": r"^leaky_relu=[0-9.]+(e-?[0-9]+)?$"}]})]
ActP = TypeAliasType("ActP", Annotated[
    Union[ActName, Expr],
    BeforeValidator(lambda v: _to_expr(v) if isinstance(v, str) and v.startswith("$") else v,
                    json_schema_input_type=Union[ActName, ExprText])])



def emit_act(lw, act, path: str, x, loc, what: str):
    """Emit a conv's or residual's activation `act` (already evaluated) at `path`."""
    if x is None or act is None:
        return None
    parsed = parse_act(act)
    if parsed is None:
        lw.diag(loc, f"{what} must be one of {', '.join(ACT_NAMES)}, leaky_relu=SLOPE or none, "
                     f"got {act!r}")
        return None
    op, attrs = parsed
    return x if op == "none" else lw.emit(op, path, [x], attrs, loc)


class ActSpec(SpecOp):
    def __init__(self, name: str, doc: str):
        self.name, self.doc = name, doc
        fields: dict = {"op": (Literal[name], ...)}
        self.form = name
        self.example = name
        if name == "leaky_relu":
            fields["slope"] = (NumP, Field(0.01, description="the slope for x < 0"))
            self.form, self.example = "leaky_relu [SLOPE]", "{op: leaky_relu, slope: 0.1}"
        self.model = create_model(f"{name.title().replace('_', '')}Item", __base__=ItemBase,
                                  __doc__=doc, **fields)

    def parse_words(self, words, text):
        if self.name == "leaky_relu" and len(words) == 1:
            return {"slope": number_or_expr(words[0], "a slope like 0.1", text, allow_float=True)}
        if words:
            raise OpStringError(f"{text!r}: unexpected {words[0]!r} (form: {self.form})")
        return {}

    def lower(self, lw, it, path, x, env):
        attrs = {}
        if self.name == "leaky_relu":
            slope = lw.value(it.slope, env, it.loc, "leaky_relu slope", float, 0.0)
            if slope is None:
                return None
            attrs["slope"] = float(slope)
        return lw.emit(self.name, path, [x], attrs, it.loc)


_MODULES = {"relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU", "sigmoid": "Sigmoid",
            "hardsigmoid": "Hardsigmoid", "hardswish": "Hardswish", "tanh": "Tanh",
            "identity": "Identity"}


class Activation(IROp):
    def __init__(self, name: str, doc: str, src: Callable, onnx: Callable):
        self.name, self.doc, self._src, self._onnx = name, doc, src, onnx

    def torch_module(self, nn, attrs, ins):
        if self.name == "relu":
            return nn.ReLU(inplace=True)
        if self.name == "leaky_relu":
            return nn.LeakyReLU(attrs["slope"])
        if self.name in ("gelu", "gelu_tanh"):
            return nn.GELU(approximate="tanh" if self.name == "gelu_tanh" else "none")
        return getattr(nn, _MODULES[self.name])()

    def source(self, attrs, src):
        return self._src(attrs)

    def onnx_lower(self, g, node, inputs):
        return self._onnx(g, node, inputs[0])

    def describe(self, attrs):
        return f"leaky_relu {attrs['slope']}" if self.name == "leaky_relu" else self.name


SPEC_OPS = tuple(ActSpec(name, doc) for name, (doc, _, _) in _TABLE.items())
IR_OPS = tuple(Activation(name, doc, src, onnx) for name, (doc, src, onnx) in _TABLE.items())
