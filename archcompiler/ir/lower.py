"""Lowering: a resolved spec -> the graph IR, instantiating block templates on the way.

Names: an item at index j of a sequence is `<parent>.<j>` (or `<parent>.<its name>`), the
i-th branch of a concat is `<parent>.branch<i>`, a repeated stage's i-th copy is
`<stage>.<i>`. A spec `conv` becomes up to three IR nodes `<path>.conv`, `<path>.bn`,
`<path>.act`; a residual adds `<path>.project...`, `<path>.add` and `<path>.act`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from ..errors import Diagnostic, Location, SpecError
from ..spec import model as m
from ..spec.expr import Expr, ExprError
from ..spec.loader import Spec
from .graph import Graph, Node, Stage, frozen_attrs

MAX_CHANNELS = 1 << 16  # per op
MAX_KERNEL = 64
MAX_STRIDE = 64
MAX_REPEAT = 1000
MAX_NODES = 100_000  # IR nodes after instantiation


class _Abort(Exception):
    """Raised when lowering cannot go on (too many nodes, block cycle...)."""


@dataclass(frozen=True)
class LowerOptions:
    classes: Optional[int] = None  # override the spec's number of classes
    features: bool = False  # stop before the head; outputs are the feature stages
    aux: Optional[bool] = None  # force aux heads on/off (None: as the spec says)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


class _Lowering:
    def __init__(self, spec: Spec, options: LowerOptions):
        self.spec = spec
        self.opts = options
        self.nodes: list[Node] = []
        self.names: dict[str, Node] = {}
        self.diags: list[Diagnostic] = []
        self.stage = ""
        self.stage_loc: Optional[Location] = None
        self.block_stack: list[str] = []
        self.block_sites: list[tuple] = []  # (block name, where it is used), outermost first
        self.dup_locs: set = set()
        self.spec_env = self._spec_env()

    # -- helpers ---------------------------------------------------------------------
    def diag(self, loc, message: str, severity: str = "error"):
        prefix = f"stage {self.stage}: " if self.stage else ""
        loc = loc or self.stage_loc
        # inside a block template: also say where each enclosing block was used
        notes = tuple((site, f"in block {b!r}, used here") for b, site in reversed(self.block_sites)
                      if site is not None and site != loc)
        d = self.spec.diag(loc, prefix + message, severity, notes=notes)
        self.diags.append(d)

    def _spec_env(self) -> dict:
        env: dict = {"classes": self.opts.classes if self.opts.classes is not None else self.spec.classes}
        for k, v in self.spec.params.items():
            if isinstance(v, Expr):
                try:
                    v = v.evaluate(env)
                except ExprError as exc:
                    self.diags.append(self.spec.diag(self.spec.param_locs.get(k), f"params.{k}: {exc}"))
                    continue
            env[k] = v
        return env

    def value(self, v, env: dict, loc, what: str, kind=int, minimum=None, maximum=None):
        """Evaluate a possibly-parametric value and check its type and range."""
        if isinstance(v, Expr):
            try:
                v = v.evaluate(env)
            except ExprError as exc:
                self.diag(loc, f"{what}: {exc}")
                return None
        ok = {
            int: isinstance(v, int) and not isinstance(v, bool),
            float: isinstance(v, (int, float)) and not isinstance(v, bool),
            bool: isinstance(v, bool),
            str: isinstance(v, str),
        }[kind]
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

    def emit(self, op: str, name: str, inputs, attrs: dict, loc) -> str:
        if name in self.names:
            if loc not in self.dup_locs:  # once per spec item, not per IR node (conv/bn/act)
                self.dup_locs.add(loc)
                self.diag(loc, f"two ops would both be named {name!r}: give one of them another 'name'")
            name = f"{name}__{len(self.nodes)}"
        if len(self.nodes) >= MAX_NODES:
            self.diag(loc, f"the network has more than {MAX_NODES} ops (a documented limit)")
            raise _Abort
        node = Node(name, op, tuple(inputs), frozen_attrs(attrs), loc, self.stage)
        self.nodes.append(node)
        self.names[name] = node
        return name

    # -- items -----------------------------------------------------------------------
    def item(self, it, path: str, x: str, env: dict) -> Optional[str]:
        if x is None:
            return None
        if isinstance(it, m.ConvOp):
            return self.conv(it, path, x, env)
        if isinstance(it, m.PoolOp):
            return self.pool(it, path, x, env)
        if isinstance(it, m.GlobalPoolOp):
            return self.emit("global_avgpool", path, [x], {}, it.loc)
        if isinstance(it, m.DropoutOp):
            p = self.value(it.p, env, it.loc, "dropout p", float, 0.0)
            if p is not None and p >= 1.0:
                self.diag(it.loc, f"dropout p must be < 1, got {p}")
                p = None
            return None if p is None else self.emit("dropout", path, [x], {"p": float(p)}, it.loc)
        if isinstance(it, m.LinearOp):
            out = self.value(it.out, env, it.loc, "linear out", int, 1, MAX_CHANNELS * 16)
            return None if out is None else self.emit(
                "linear", path, [x], {"out_features": out, "bias": it.bias}, it.loc)
        if isinstance(it, m.ReluOp):
            return self.emit("relu", path, [x], {}, it.loc)
        if isinstance(it, m.ConcatItem):
            return self.concat(it.concat, path, x, env, it.loc)
        if isinstance(it, m.SeqItem):
            return self.seq(it.seq, path, x, env)
        if isinstance(it, m.ResidualItem):
            return self.residual(it.residual, path, x, env)
        if isinstance(it, m.BlockRef):
            return self.block(it.block, it.with_, it, path, x, env)
        raise TypeError(type(it))  # pragma: no cover - the schema admits nothing else

    def seq(self, items, path: str, x: str, env: dict) -> Optional[str]:
        for j, it in enumerate(items):
            x = self.item(it, f"{path}.{getattr(it, 'name', None) or j}", x, env)
        return x

    def concat(self, branches, path: str, x: str, env: dict, loc) -> Optional[str]:
        outs = []
        for i, br in enumerate(branches):
            if isinstance(br, m.SeqItem):
                bpath, items = f"{path}.{br.name or f'branch{i}'}", br.seq
            else:
                bpath, items = f"{path}.branch{i}", br
            outs.append(self.seq(items, bpath, x, env))
        if any(o is None for o in outs):
            return None
        return self.emit("concat", f"{path}.concat", outs, {}, loc)

    def residual(self, body: m.ResidualBody, path: str, x: str, env: dict) -> Optional[str]:
        if body.concat is not None:
            r = self.concat(body.concat, path, x, env, body.loc)
        else:
            r = self.seq(body.seq, path, x, env)
        r = self.item(body.project, f"{path}.project", r, env)
        scale = self.value(body.scale, env, body.key_loc("scale"), "residual scale", float)
        act = self.value(body.act, env, body.key_loc("act"), "residual act", str)
        if act not in (None, "relu", "none"):
            self.diag(body.key_loc("act"), f"residual act must be relu or none, got {act!r}")
        if r is None or scale is None:
            return None
        y = self.emit("scale_add", f"{path}.add", [x, r], {"scale": float(scale)}, body.key_loc("project"))
        if act == "relu":
            y = self.emit("relu", f"{path}.act", [y], {}, body.key_loc("act"))
        return y

    def block(self, name: str, with_: dict, ref, path: str, x: str, env: dict) -> Optional[str]:
        blk = self.spec.blocks.get(name)
        loc = ref.key_loc("block") if ref is not None else None
        if blk is None:
            close = difflib.get_close_matches(name, list(self.spec.blocks), n=1)
            self.diag(loc, f"unknown block {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                      + f" (defined blocks: {', '.join(sorted(self.spec.blocks)) or 'none'})")
            return None
        if name in self.block_stack:
            cycle = " -> ".join([*self.block_stack[self.block_stack.index(name):], name])
            self.diag(loc, f"block cycle: {cycle} (a block cannot contain itself)")
            raise _Abort
        benv = self.block_env(blk, name, with_, ref, env)
        if benv is None:
            return None
        self.block_stack.append(name)
        self.block_sites.append((name, loc))
        try:
            if blk.seq is not None:
                return self.seq(blk.seq, path, x, benv)
            if blk.concat is not None:
                return self.concat(blk.concat, path, x, benv, blk.loc)
            return self.residual(blk.residual, path, x, benv)
        finally:
            self.block_stack.pop()
            self.block_sites.pop()

    def block_env(self, blk: m.BlockDef, name: str, with_: dict, ref, env: dict) -> Optional[dict]:
        declared = blk.param_defaults()
        benv = dict(self.spec_env)
        ok = True
        with_locs = getattr(with_, "key_locs", {}) or {}
        for k, v in with_.items():
            if k not in declared:
                close = difflib.get_close_matches(k, list(declared), n=1)
                self.diag(with_locs.get(k, ref.loc if ref else None),
                          f"block {name!r} has no parameter {k!r}"
                          + (f"; did you mean {close[0]!r}?" if close else "")
                          + f" (its parameters: {', '.join(declared) or 'none'})")
                ok = False
                continue
            if isinstance(v, Expr):
                try:
                    v = v.evaluate(env)
                except ExprError as exc:
                    self.diag(with_locs.get(k), f"with.{k}: {exc}")
                    ok = False
                    continue
            benv[k] = v
        for k, default in declared.items():
            if k in with_:
                continue
            if default is m._REQUIRED:
                self.diag(ref.loc if ref else self.stage_loc,
                          f"block {name!r} needs a value for parameter {k!r} (with: {{{k}: ...}})")
                ok = False
            elif isinstance(default, Expr):
                try:
                    benv[k] = default.evaluate(env)
                except ExprError as exc:
                    self.diag(blk.key_loc("params"), f"params.{k}: {exc}")
                    ok = False
            else:
                benv[k] = default
        return benv if ok else None

    # -- ops -------------------------------------------------------------------------
    def _padding(self, padding, kernel, stride, loc, what) -> Optional[tuple[int, int]]:
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if stride != (1, 1):
                self.diag(loc, f"{what}: padding 'same' is defined for stride 1 only; write valid "
                               "or an explicit pad=P for a strided op")
                return None
            if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                self.diag(loc, f"{what}: padding 'same' needs an odd kernel, got "
                               f"{kernel[0]}x{kernel[1]}; write an explicit pad=P")
                return None
            return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        ph, pw = _pair(padding)
        if ph < 0 or pw < 0:
            self.diag(loc, f"{what}: padding must be >= 0")
            return None
        if ph > kernel[0] // 2 or pw > kernel[1] // 2:
            self.diag(loc, f"{what}: padding {ph}x{pw} is more than half the {kernel[0]}x{kernel[1]} "
                           "kernel (torch and ONNX refuse that)")
            return None
        return (ph, pw)

    def _window(self, it, loc, what):
        kernel, stride = _pair(it.kernel), _pair(it.stride)
        if min(kernel) < 1 or max(kernel) > MAX_KERNEL:
            self.diag(loc, f"{what}: kernel sizes must be between 1 and {MAX_KERNEL}, got "
                           f"{kernel[0]}x{kernel[1]}")
            return None
        if min(stride) < 1 or max(stride) > MAX_STRIDE:
            self.diag(loc, f"{what}: stride must be between 1 and {MAX_STRIDE}, got {stride}")
            return None
        return kernel, stride

    def conv(self, it: m.ConvOp, path: str, x: str, env: dict) -> Optional[str]:
        d = self.spec.defaults.conv
        out = self.value(it.out, env, it.loc, "conv out", int, 1, MAX_CHANNELS)
        win = self._window(it, it.loc, "conv")
        if out is None or win is None:
            return None
        kernel, stride = win
        if self.spec.width is not None:
            out = max(1, int(out * self.spec.width + 0.5))
            if out > MAX_CHANNELS:
                self.diag(it.loc, f"conv out must be <= {MAX_CHANNELS} after 'width', got {out} "
                                  "(a documented limit)")
                return None
        padding = self._padding(it.padding if it.padding is not None else d.padding, kernel, stride,
                                it.loc, "conv")
        norm = it.norm or d.norm
        act = self.value(it.act, env, it.loc, "conv act", str) if it.act is not None else d.act
        if act not in ("relu", "none"):
            if act is not None:  # None: already reported
                self.diag(it.loc, f"conv act must be relu or none, got {act!r}")
            return None
        bias = it.bias if it.bias is not None else (d.bias if norm == "batchnorm" else True)
        if padding is None:
            return None
        y = self.emit("conv2d", f"{path}.conv", [x], {
            "kernel": kernel, "stride": stride, "padding": padding, "out_channels": out,
            "bias": bias, "groups": 1}, it.loc)
        if norm == "batchnorm":
            y = self.emit("batchnorm", f"{path}.bn", [y],
                          {"eps": it.eps if it.eps is not None else d.eps, "momentum": d.momentum}, it.loc)
        if act == "relu":
            y = self.emit("relu", f"{path}.act", [y], {}, it.loc)
        return y

    def pool(self, it: m.PoolOp, path: str, x: str, env: dict) -> Optional[str]:
        win = self._window(it, it.loc, it.op)
        if win is None:
            return None
        kernel, stride = win
        d = self.spec.defaults.avgpool if it.op == "avgpool" else self.spec.defaults.maxpool
        padding = self._padding(it.padding if it.padding is not None else d.padding, kernel, stride,
                                it.loc, it.op)
        if padding is None:
            return None
        attrs = {"kernel": kernel, "stride": stride, "padding": padding}
        if it.op == "avgpool":
            attrs["count_include_pad"] = it.count_pad if it.count_pad is not None else d.count_pad
        elif it.count_pad is not None:
            self.diag(it.loc, "count_pad applies to avgpool only")
        return self.emit(it.op, path, [x], attrs, it.loc)

    # -- the network -----------------------------------------------------------------
    def network(self) -> Graph:
        spec = self.spec
        x = "input"
        stages: list[Stage] = []
        seen_stage: dict[str, Location] = {}
        for st in spec.network:
            name = st.stage_name
            self.stage, self.stage_loc = name, st.loc
            if name in seen_stage:
                self.diag(st.loc, f"duplicate stage name {name!r} (first at line "
                                  f"{seen_stage[name].line}): give it a 'name'")
                continue
            seen_stage[name] = st.loc
            if x is None:
                continue
            if st.block is not None:
                if st.repeat is not None:
                    reps = self.value(st.repeat, self.spec_env, st.key_loc("repeat"), "repeat", int, 1,
                                      MAX_REPEAT)
                    if reps is None:
                        x = None
                        continue
                    for i in range(reps):
                        x = self.block(st.block, st.with_, st, f"{name}.{i}", x, self.spec_env)
                else:
                    x = self.block(st.block, st.with_, st, name, x, self.spec_env)
            else:
                if st.repeat is not None:
                    self.diag(st.key_loc("repeat"), "repeat applies to block stages; define a block")
                if st.op is not None:
                    x = self.item(st.op, name, x, self.spec_env)
                elif st.seq is not None:
                    x = self.seq(st.seq, name, x, self.spec_env)
                elif st.concat is not None:
                    x = self.concat(st.concat, name, x, self.spec_env, st.loc)
                else:
                    x = self.residual(st.residual, name, x, self.spec_env)
            exp = spec.stage_expect.get(name)
            if x is not None:
                stages.append(Stage(name, x, st.loc, exp[0] if exp else None, exp[1] if exp else None,
                                    feature=bool(st.feature)))
        for sname, (shape, loc) in spec.stage_expect.items():
            if sname not in seen_stage:
                self.stage = ""
                close = difflib.get_close_matches(sname, list(seen_stage), n=1)
                self.diag(loc, f"expect.stages: there is no stage named {sname!r}"
                               + (f"; did you mean {close[0]!r}?" if close else ""))
        outputs: list[str] = []
        aux_outputs: list[str] = []
        if self.opts.features:
            # every trunk stage for now; backends pick with ir.graph.feature_outputs,
            # which needs shapes
            outputs = [s.output for s in stages if s.kind == "trunk"]
        else:
            if spec.head:
                self.stage, self.stage_loc = "head", None
                y = self.seq(spec.head, "head", x, self.spec_env)
                if y is not None:
                    stages.append(Stage("head", y, spec.head[0].loc, kind="head"))
                    outputs.append(y)
            elif x is not None:
                outputs.append(x)
            for aux in spec.aux:
                self.stage, self.stage_loc = aux.name, aux.loc
                enabled = self.opts.aux if self.opts.aux is not None else self.value(
                    aux.enabled, self.spec_env, aux.key_loc("enabled"), "aux enabled", bool)
                if not enabled:
                    continue
                src = next((s for s in stages if s.name == aux.after), None)
                if src is None:
                    close = difflib.get_close_matches(aux.after, [s.name for s in stages], n=1)
                    self.diag(aux.key_loc("after"), f"aux head {aux.name!r}: no stage named "
                                                    f"{aux.after!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
                    continue
                y = self.seq(aux.seq, aux.name, src.output, self.spec_env)
                if y is not None:
                    stages.append(Stage(aux.name, y, aux.loc, kind="aux"))
                    aux_outputs.append(y)
        self.stage = ""
        return Graph(spec.name, tuple(self.nodes), "input", tuple(spec.input_shape),
                     tuple(outputs + aux_outputs), tuple(stages), tuple(aux_outputs))


def check_unused_params(spec: Spec) -> list[Diagnostic]:
    """A declared block parameter that the block never uses is almost always a typo."""
    out = []
    for bname, blk in spec.blocks.items():
        declared = blk.param_defaults()
        if not declared:
            continue
        used = _expr_names(blk)
        for p in declared:
            if p not in used:
                out.append(spec.diag(blk.key_loc("params"),
                                     f"block {bname!r}: parameter {p!r} is declared but never used"))
    spec_used: set = set()
    for blk in spec.blocks.values():
        spec_used |= _expr_names(blk)
    for obj in (spec.network, spec.head, spec.aux):
        spec_used |= _expr_names(obj)
    for k, v in spec.params.items():
        if isinstance(v, Expr):
            spec_used |= v.names()
    for p in spec.params:
        if p not in spec_used:
            out.append(spec.diag(spec.param_locs.get(p), f"params: {p!r} is never used", "warning"))
    return out


def _expr_names(obj) -> set:
    if isinstance(obj, Expr):
        return obj.names()
    if isinstance(obj, (list, tuple)):
        out: set = set()
        for x in obj:
            out |= _expr_names(x)
        return out
    if isinstance(obj, dict):
        out = set()
        for x in obj.values():
            out |= _expr_names(x)
        return out
    if isinstance(obj, m.Located):
        out = set()
        for fname in type(obj).model_fields:
            out |= _expr_names(getattr(obj, fname))
        return out
    return set()


def lower(spec: Spec, options: LowerOptions = LowerOptions()) -> Graph:
    """Spec -> Graph. Raises SpecError with every problem found."""
    lw = _Lowering(spec, options)
    try:
        graph = lw.network()
    except _Abort:
        graph = None
    errors = [d for d in lw.diags if d.severity == "error"]
    if errors or graph is None:
        raise SpecError(lw.diags)
    return graph
