"""What the spec ops use while lowering themselves (archcompiler.ops.*.lower): values and
their checks, windows and padding, defaults, width scaling, diagnostics."""

from __future__ import annotations

from typing import Optional

from ..errors import Diagnostic, Location
from ..spec import model as m
from ..spec.expr import Expr, ExprError
from ..spec.loader import Spec

MAX_CHANNELS = 1 << 16  # per op
MAX_KERNEL = 64
MAX_STRIDE = 64


def _pair(v) -> tuple:
    return (v, v) if not isinstance(v, (list, tuple)) else (v[0], v[1])


class LoweringTools:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.diags: list[Diagnostic] = []
        self.stage = ""
        self.stage_loc: Optional[Location] = None
        self.block_sites: list[tuple] = []  # (block name, where it is used), outermost first

    def diag(self, loc, message: str, severity: str = "error"):
        prefix = f"stage {self.stage}: " if self.stage else ""
        loc = loc or self.stage_loc
        # inside a block template: also say where each enclosing block was used
        notes = tuple((site, f"in block {b!r}, used here") for b, site in reversed(self.block_sites)
                      if site is not None and site != loc)
        self.diags.append(self.spec.diag(loc, prefix + message, severity, notes=notes))

    def defaults(self, op: str):
        return getattr(self.spec.defaults, op)

    def value(self, v, env: dict, loc, what: str, kind=int, minimum=None, maximum=None):
        """Evaluate a possibly-parametric value and check its type and range."""
        if isinstance(v, Expr):
            try:
                v = v.evaluate(env)
            except ExprError as exc:
                self.diag(loc, f"{what}: {exc}")
                return None
        if kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, kind)  # bool or str
        if not ok:
            want = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]
            got = str(v).lower() if isinstance(v, bool) else repr(v)
            self.diag(loc, f"{what}: expected {want}, got {got}")
            return None
        if minimum is not None and v < minimum:
            self.diag(loc, f"{what} must be >= {minimum}, got {v}")
            return None
        if maximum is not None and v > maximum:
            self.diag(loc, f"{what} must be <= {maximum}, got {v} (a documented limit)")
            return None
        return v

    def pair(self, v, env, loc, what: str, minimum: int, maximum: int) -> Optional[tuple]:
        """An int or [a, b] (either may be an expression) -> (a, b), range-checked."""
        a, b = _pair(v)
        a = self.value(a, env, loc, what, int)
        b = self.value(b, env, loc, what, int)
        if a is None or b is None:
            return None
        if min(a, b) < minimum or max(a, b) > maximum:
            self.diag(loc, f"{what} must be between {minimum} and {maximum}, got {a}x{b}")
            return None
        return (a, b)

    def window(self, it, env, loc, what):
        kernel = self.pair(it.kernel, env, loc, f"{what}: kernel sizes", 1, MAX_KERNEL)
        stride = self.pair(it.stride, env, loc, f"{what}: stride", 1, MAX_STRIDE)
        return None if kernel is None or stride is None else (kernel, stride)

    def padding(self, padding, kernel, stride, env, loc, what, dilation=(1, 1), conv=False):
        """(ph, pw), (top, bottom, left, right) (convs only) or "tf_same" (convs only)."""
        span = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
        if padding == "valid":
            return (0, 0)
        if padding == "tf_same":
            if not conv:
                self.diag(loc, f"{what}: padding tf_same is for convolutions; write an explicit pad=P")
                return None
            return "tf_same"
        if padding == "same":
            if stride != (1, 1):
                self.diag(loc, f"{what}: padding 'same' is defined for stride 1 only; write valid, "
                               "an explicit pad=P or (convs) tf_same for a strided op")
                return None
            if span[0] % 2 == 0 or span[1] % 2 == 0:
                self.diag(loc, f"{what}: padding 'same' needs an odd kernel, got "
                               f"{kernel[0]}x{kernel[1]}; write an explicit pad=P or tf_same")
                return None
            return ((span[0] - 1) // 2, (span[1] - 1) // 2)
        if isinstance(padding, (list, tuple)) and len(padding) == 4:
            if not conv:
                self.diag(loc, f"{what}: a [top, bottom, left, right] padding is for convolutions")
                return None
            pads = [self.value(p, env, loc, f"{what}: padding", int, 0, MAX_KERNEL * 64) for p in padding]
            if any(p is None for p in pads):
                return None
            t, b, l, r = pads
            if max(t, b) >= span[0] or max(l, r) >= span[1]:
                self.diag(loc, f"{what}: padding [{t}, {b}, {l}, {r}] is as large as the "
                               f"{span[0]}x{span[1]} window (a row or column of pure padding)")
                return None
            return (t, b, l, r)
        pads = self.pair(padding, env, loc, f"{what}: padding", 0, MAX_KERNEL * (64 if conv else 1))
        if pads is None:
            return None
        ph, pw = pads
        if ph > span[0] // 2 or pw > span[1] // 2:
            win = f"{kernel[0]}x{kernel[1]}" + (f" (dilated to {span[0]}x{span[1]})" if span != tuple(kernel) else "")
            self.diag(loc, f"{what}: padding {ph}x{pw} is more than half the {win} "
                           "kernel (torch and ONNX refuse that)")
            return None
        return (ph, pw)

    def channels(self, v, env, loc, what: str) -> tuple[Optional[int], object]:
        """An output channel count, scaled by the spec's `width` unless it is derived from
        `$in` (the input width is already scaled). Returns (channels, source for the
        generated code: (Expr, scaled) or None)."""
        out = self.value(v, env, loc, what, int, 1, MAX_CHANNELS)
        if out is None:
            return None, None
        scaled = self.spec.width is not None and not (isinstance(v, Expr) and "in" in v.names())
        if scaled:
            out = max(1, int(out * self.spec.width + 0.5))
            if out > MAX_CHANNELS:
                self.diag(loc, f"{what} must be <= {MAX_CHANNELS} after 'width', got {out} "
                               "(a documented limit)")
                return None, None
        return out, ((v, scaled) if isinstance(v, Expr) else None)

    def exprs_of(self, it, env, fields, rename=None) -> dict:
        """Generated-source expressions for the item's fields written as expressions."""
        out = {}
        for f in fields:
            v = getattr(it, f)
            if isinstance(v, Expr):
                out[(rename or {}).get(f, f)] = (v, False)
        return out


def check_unused_params(spec: Spec) -> list[Diagnostic]:
    """A declared block parameter that the block never uses is almost always a typo."""
    out = []
    spec_used: set = set()
    for bname, blk in spec.blocks.items():
        used = _block_names(blk)
        spec_used |= used
        for p in blk.param_defaults():
            if p not in used:
                out.append(spec.diag(blk.key_loc("params"),
                                     f"block {bname!r}: parameter {p!r} is declared but never used"))
    for obj in (spec.network, spec.head, spec.aux):
        spec_used |= _expr_names(obj)
    for k, v in spec.params.items():
        if isinstance(v, Expr):
            spec_used |= v.names()
    for p in spec.params:
        if p not in spec_used:
            out.append(spec.diag(spec.param_locs.get(p), f"params: {p!r} is never used", "warning"))
    return out


_BLOCK_NAMES: dict = {}  # id -> (block template, names): a spec and its variants share blocks


def _block_names(blk) -> frozenset:
    got = _BLOCK_NAMES.get(id(blk))
    if got is None or got[0] is not blk:
        if len(_BLOCK_NAMES) > 4096:  # bounded, for a process that loads many specs
            _BLOCK_NAMES.clear()
        got = _BLOCK_NAMES[id(blk)] = (blk, frozenset(_expr_names(blk)))  # keeps blk alive
    return got[1]


def _expr_names(obj, out: Optional[set] = None) -> set:
    """Every parameter name the expressions inside obj use."""
    out = set() if out is None else out
    if isinstance(obj, Expr):
        out |= obj.names()
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            if not isinstance(x, _LEAVES):
                _expr_names(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            if not isinstance(x, _LEAVES):
                _expr_names(x, out)
    elif isinstance(obj, m.Located):  # its fields' values (a strict model has no extras)
        for x in obj.__dict__.values():
            if not isinstance(x, _LEAVES):
                _expr_names(x, out)
    return out


_LEAVES = (str, int, float, type(None))  # values that hold no expression
