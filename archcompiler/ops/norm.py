"""Batch normalisation: the IR op `batchnorm` (a conv's own, or standalone) and the spec
op `batchnorm`, which may stand anywhere in a sequence (BN-Inception, pre-activation)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import numpy as np
from pydantic import Field, StrictFloat

from ..spec.types import ItemBase
from .base import IROp, SpecOp
from .sugar import OpStringError


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


SPEC_OPS = (BatchNormSpec(),)
IR_OPS = (BatchNorm(),)
