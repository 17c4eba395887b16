"""The built model's first step: an input it can take, or a clear error. Traceable: fx
records it as one call, torch.compile / torch.export see torch._check."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function

from archcompiler.ir.graph import Graph
from archcompiler.ops import fmt_shape
from archcompiler.passes.shapes import infer_shapes


def check_input(x, check: "InputCheck"):
    """Returns x; raises ValueError for an input the network cannot take. Traceable: under
    torch.fx it is recorded as one call (through __torch_function__, like torch._assert)
    and runs on the real tensor later; under torch.compile / torch.export the size
    condition becomes a torch._check."""
    if has_torch_function((x,)):
        return handle_torch_function(check_input, (x,), x, check)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        shape_msg, small_msg = check.compiled_messages  # constants: what torch._check accepts
        torch._check(x.dim() == 4 and x.shape[1] == check.in_chans, lambda: shape_msg)
        if check.min_hw is not None:
            torch._check(x.shape[2] >= check.min_hw[0], lambda: small_msg)
            torch._check(x.shape[3] >= check.min_hw[1], lambda: small_msg)
        return x
    if x.dim() != 4 or x.shape[1] != check.in_chans:
        raise ValueError(check.bad_shape(x.shape))
    if check.min_hw is not None and (int(x.shape[2]) < check.min_hw[0] or int(x.shape[3]) < check.min_hw[1]):
        raise ValueError(check.too_small(x.shape))
    if check.sizes is not None and not (check.sizes[0].contains(int(x.shape[2]))
                                        and check.sizes[1].contains(int(x.shape[3]))):
        raise ValueError(check.unsupported(x.shape))
    return x


class InputCheck(nn.Module):
    """The model's first step: N x C x H x W with H, W >= min_input, or a clear error."""

    def __init__(self, graph: Graph, min_input: Optional[int], sizes: Optional[tuple] = None):
        super().__init__()
        self.in_chans, self.min_input, self._graph = graph.input_shape[0], min_input, graph
        # the smallest height and width: each axis on its own (a 1x5 kernel needs W >= 5 only)
        self.min_hw = ((sizes[0].min, sizes[1].min) if sizes is not None and sizes[0].min
                       else None if min_input is None else (min_input, min_input))
        # (heights, widths) accepted, where that is not simply "the minimum and larger"
        open_ended = sizes is None or all(r.kind()[0] == "interval" for r in sizes)
        self.sizes = None if open_ended else sizes

    def unsupported(self, shape) -> str:
        from archcompiler.analysis import unsupported_size_message

        return unsupported_size_message(self._graph.name, (self.in_chans, int(shape[2]),
                                                           int(shape[3])), self.sizes)

    def forward(self, x):
        return check_input(x, self)

    @property
    def compiled_messages(self) -> tuple[str, str]:
        """The messages without the input's own sizes (compiled code checks symbolically)."""
        m = self.min_input
        return (f"{self._graph.name}: expected input N x {self.in_chans} x H x W",
                f"{self._graph.name}: input is too small; the smallest input this network "
                f"accepts is {m}x{m}")

    def bad_shape(self, shape) -> str:
        return f"{self._graph.name}: expected input N x {self.in_chans} x H x W, got {tuple(shape)}"

    def too_small(self, shape) -> str:
        return too_small_message(self._graph, (self.in_chans, int(shape[2]), int(shape[3])),
                                 self.min_input, self.min_hw)

    def extra_repr(self) -> str:
        return f"in_chans={self.in_chans}, min_input={self.min_input}"


def too_small_message(graph: Graph, shape: tuple, min_input: int, min_hw=None) -> str:
    _, problems = infer_shapes(graph, shape)
    where = ""
    if problems:
        p = problems[0]
        where = f": in stage {p.node.stage}, {p.message.split(':')[0]} at {p.node.name} the map would vanish"
    if min_hw is not None and min_hw[0] != min_hw[1]:
        accepted = f"this network accepts heights from {min_hw[0]} and widths from {min_hw[1]}"
    else:
        accepted = f"the smallest input this network accepts is {min_input}x{min_input}"
    return f"{graph.name}: input {fmt_shape(shape)} is too small{where}; {accepted}"
