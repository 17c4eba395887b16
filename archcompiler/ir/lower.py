"""Lowering: a resolved spec -> the graph IR, instantiating block templates on the way.

Names: an item at index j of a sequence is `<parent>.<j>` (or `<parent>.<its name>`), the
i-th branch of a concat is `<parent>.branch<i>`, a repeated stage's i-th copy is
`<stage>.<i>`. Each spec op lowers itself (archcompiler.ops: a `conv` becomes
`<path>.conv`, `<path>.bn`, `<path>.act`); a residual adds `<path>.project...`,
`<path>.shortcut...`, `<path>.add` and `<path>.act`. Shapes are inferred while lowering,
at the spec's input size, so that `$in` (the channels entering a block) is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import Diagnostic, Location, SpecError, close_matches
from ..ops import OPS, SPEC_OPS, ShapeError
from ..ops.activation import emit_act, parse_act
from ..ops.merge import broadcast
from ..spec import model as m
from ..spec.expr import Expr, ExprError
from ..spec.loader import Spec
from ..spec.yaml_values import merged_locdict
from . import replay
from .graph import Graph, Node, Scope, Stage, frozen_attrs
from .lowering import MAX_CHANNELS, MAX_KERNEL, MAX_STRIDE, LoweringTools, check_unused_params  # noqa: F401

MAX_REPEAT = 1000
MAX_NODES = 100_000  # IR nodes after instantiation


class _Abort(Exception):
    """Raised when lowering cannot go on (too many nodes, block cycle...)."""


@dataclass(frozen=True)
class LowerOptions:
    classes: Optional[int] = None  # override the spec's number of classes
    features: bool = False  # stop before the head; outputs are the feature stages
    aux: Optional[bool] = None  # force aux heads on/off (None: as the spec says)


class _Lowering(LoweringTools):
    def __init__(self, spec: Spec, options: LowerOptions):
        super().__init__(spec)
        self.opts = options
        self.nodes: list[Node] = []
        self.names: dict[str, Node] = {}
        self.shapes: dict[str, tuple] = {"input": tuple(spec.input_shape)}
        self.block_stack: list[str] = []
        self.scopes: list[Scope] = []
        self.scope_tuple: Optional[tuple] = ()  # tuple(self.scopes); None: to be made again
        self.current_item: tuple = ("", "")
        self.dup_locs: set = set()
        self.spec_env = self._spec_env()

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

    def emit(self, op: str, name: str, inputs, attrs: dict, loc, srcs: Optional[dict] = None) -> str:
        if name in self.names:
            if loc not in self.dup_locs:  # once per spec item, not per IR node (conv/bn/act)
                self.dup_locs.add(loc)
                self.diag(loc, f"two ops would both be named {name!r}: give one of them another 'name'")
            name = f"{name}__{len(self.nodes)}"
        if len(self.nodes) >= MAX_NODES:
            self.diag(loc, f"the network has more than {MAX_NODES} ops (a documented limit)")
            raise _Abort
        item, spec_op = self.current_item
        scope = self.scope_tuple
        if scope is None:  # a block was entered or left since the last node
            scope = self.scope_tuple = tuple(self.scopes)
        node = Node(name, op, tuple(inputs), frozen_attrs(attrs), loc, self.stage, scope, item,
                    spec_op, tuple(sorted((k, v) for k, v in srcs.items() if v is not None))
                    if srcs else ())
        self.nodes.append(node)
        self.names[name] = node
        shapes = self.shapes
        ins = [shapes.get(i) for i in node.inputs]
        if None not in ins:
            try:  # problems are reported by the shapes pass, where they arise
                shapes[name] = OPS[op].infer_shape(node.attrs, ins)
            except ShapeError:
                pass
        return name

    def channels_of(self, x: str) -> Optional[int]:
        shape = self.shapes.get(x)
        return shape[0] if shape else None

    # -- items -----------------------------------------------------------------------
    def item(self, it, path: str, x: str, env: dict) -> Optional[str]:
        if x is None:
            return None
        when = getattr(it, "when", None)
        if when is not None:
            on = self.value(when, env, it.key_loc("when"), "when", bool)
            if not on:
                return None if on is None else x  # false: the item is the identity
        if isinstance(it, m.ConcatItem):
            return self.concat(it.concat, path, x, env, it.loc)
        if isinstance(it, m.AddItem):
            return self.merge("add", it.add, path, x, env, it.loc)
        if isinstance(it, m.MultiplyItem):
            return self.merge("mul", it.multiply, path, x, env, it.loc)
        if isinstance(it, m.SeqItem):
            return self.seq(it.seq, path, x, env)
        if isinstance(it, m.ResidualItem):
            return self.residual(it.residual, path, x, env)
        if isinstance(it, m.BlockRef):
            return self.block(it.block, it.with_, it, path, x, env)
        op = SPEC_OPS[it.op]
        saved, self.current_item = self.current_item, (path, op.name)
        try:
            return op.lower(self, it, path, x, env)
        finally:
            self.current_item = saved

    def seq(self, items, path: str, x: str, env: dict) -> Optional[str]:
        for j, it in enumerate(items):
            x = self.item(it, f"{path}.{getattr(it, 'name', None) or j}", x, env)
        return x

    def branch(self, br, path: str, x: str, env: dict) -> Optional[str]:
        """A branch: a list of items, or a `{seq: ...}` mapping (which may carry `when`)."""
        if isinstance(br, m.SeqItem):
            return self.item(br, path, x, env)
        return self.seq(br, path, x, env)

    def concat(self, branches, path: str, x: str, env: dict, loc) -> Optional[str]:
        outs = []
        for i, br in enumerate(branches):
            name = (br.name if isinstance(br, m.SeqItem) else None) or f"branch{i}"
            outs.append(self.branch(br, f"{path}.{name}", x, env))
        if any(o is None for o in outs):
            return None
        return self.emit("concat", f"{path}.concat", outs, {}, loc)

    def merge(self, op: str, branches, path: str, x: str, env: dict, loc) -> Optional[str]:
        """`add:` (equal shapes) or `multiply:` (broadcasting; the broadcast operands are
        gates, which the layer count leaves off the path)."""
        outs = []
        for i, br in enumerate(branches):
            name = (br.name if isinstance(br, m.SeqItem) else None) or f"branch{i}"
            outs.append(self.branch(br, f"{path}.{name}", x, env))
        if any(o is None for o in outs):
            return None
        attrs: dict = {}
        if op == "mul":
            shapes = [self.shapes.get(o) for o in outs]
            if all(s is not None for s in shapes):
                try:
                    full = broadcast(shapes)
                except ShapeError:  # reported by the shapes pass, with both shapes
                    full = None
                attrs["gates"] = tuple(i for i, s in enumerate(shapes) if full and s != full)
        return self.emit(op, f"{path}.{op}", outs, attrs, loc)

    def residual(self, body: m.ResidualBody, path: str, x: str, env: dict) -> Optional[str]:
        if body.concat is not None:
            r = self.concat(body.concat, path, x, env, body.loc)
        else:
            r = self.seq(body.seq, path, x, env)
        if body.project is not None:
            r = self.item(body.project, f"{path}.project", r, env)
        if body.add_when is not None:
            on = self.value(body.add_when, env, body.key_loc("add_when"), "residual add_when", bool)
            if on is None:
                return None
            if not on:  # the body alone, then the activation
                act = self.value(body.act, env, body.key_loc("act"), "residual act", str)
                return emit_act(self, act, f"{path}.act", r, body.key_loc("act"), "residual act")
        shortcut = x
        if body.shortcut is not None:
            shortcut = self.branch(body.shortcut, f"{path}.shortcut", x, env)
        scale = self.value(body.scale, env, body.key_loc("scale"), "residual scale", float)
        act = self.value(body.act, env, body.key_loc("act"), "residual act", str)
        if act is not None and parse_act(act) is None:
            emit_act(self, act, f"{path}.act", x, body.key_loc("act"), "residual act")  # reports
            return None
        if r is None or shortcut is None or scale is None:
            return None
        srcs = {"scale": (body.scale, False)} if isinstance(body.scale, Expr) else None
        add_loc = body.key_loc("project") if body.project is not None else body.loc
        y = self.emit("scale_add", f"{path}.add", [shortcut, r], {"scale": float(scale)}, add_loc, srcs)
        return emit_act(self, act, f"{path}.act", y, body.key_loc("act"), "residual act")

    def block(self, name: str, with_: dict, ref, path: str, x: str, env: dict) -> Optional[str]:
        blk = self.spec.blocks.get(name)
        loc = ref.key_loc("block") if ref is not None else None
        if blk is None:
            close = close_matches(name, list(self.spec.blocks), n=1)
            self.diag(loc, f"unknown block {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                      + f" (defined blocks: {', '.join(sorted(self.spec.blocks)) or 'none'})")
            return None
        if name in self.block_stack:
            cycle = " -> ".join([*self.block_stack[self.block_stack.index(name):], name])
            self.diag(loc, f"block cycle: {cycle} (a block cannot contain itself)")
            raise _Abort
        cin = self.channels_of(x)
        benv = self.block_env(blk, name, with_, ref, env, cin)
        if benv is None:
            return None
        params = tuple((k, benv[k]) for k in blk.param_defaults())
        key = replay.key(name, blk, benv, self.shapes.get(x), self.current_item)
        out = replay.replay(self, key, path, x, MAX_NODES) if key is not None else None
        if out is not None:  # lowered before with the same values: its nodes, renamed
            return out
        start, ndiags = len(self.nodes), len(self.diags)
        self.block_stack.append(name)
        self.block_sites.append((name, loc))
        self.scopes.append(Scope(path, name, params, cin))
        self.scope_tuple = None
        try:
            if blk.seq is not None:
                out = self.seq(blk.seq, path, x, benv)
            elif blk.concat is not None:
                out = self.concat(blk.concat, path, x, benv, blk.loc)
            else:
                out = self.residual(blk.residual, path, x, benv)
        finally:
            self.block_stack.pop()
            self.block_sites.pop()
            self.scopes.pop()
            self.scope_tuple = None
        if key is not None and len(self.diags) == ndiags:
            replay.record(self, key, path, x, start, out)
        return out

    def block_env(self, blk: m.BlockDef, name: str, with_: dict, ref, env: dict,
                  cin: Optional[int]) -> Optional[dict]:
        declared = blk.param_defaults()
        benv = dict(self.spec_env)
        if cin is not None:
            benv["in"] = cin
        ok = True
        with_locs = getattr(with_, "key_locs", {}) or {}
        for k, v in with_.items():
            if k not in declared:
                close = close_matches(k, list(declared), n=1)
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
                    benv[k] = default.evaluate(benv)
                except ExprError as exc:
                    self.diag(blk.key_loc("params"), f"params.{k}: {exc}")
                    ok = False
            else:
                benv[k] = default
        return benv if ok else None

    # -- the network -----------------------------------------------------------------
    def stage_body(self, st, name: str, x: str) -> Optional[str]:
        if st.block is not None:
            if st.repeat is None:
                return self.block(st.block, st.with_, st, name, x, self.spec_env)
            reps = self.value(st.repeat, self.spec_env, st.key_loc("repeat"), "repeat", int, 1,
                              MAX_REPEAT)
            if reps is None:
                return None
            for k in sorted((k for k in st.copies if not int(k) < reps), key=int):
                self.diag(st.copies[k].loc, f"copies: stage {name!r} has copies 0 to {reps - 1}, "
                                            f"so there is no copy {k}")
            for i in range(reps):  # `$i` in `with:` is the copy's index
                block, with_, ref = copy_of(st, i)
                x = self.block(block, with_, ref, f"{name}.{i}", x, {**self.spec_env, "i": i})
            return x
        if st.repeat is not None:
            self.diag(st.key_loc("repeat"), "repeat applies to block stages; define a block")
        if st.op is not None:
            return self.item(st.op, name, x, self.spec_env)
        if st.seq is not None:
            return self.seq(st.seq, name, x, self.spec_env)
        if st.concat is not None:
            return self.concat(st.concat, name, x, self.spec_env, st.loc)
        return self.residual(st.residual, name, x, self.spec_env)

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
            x = self.stage_body(st, name, x)
            exp = spec.stage_expect.get(name)
            if x is not None:
                reps = st.repeat if isinstance(st.repeat, int) else None
                stages.append(Stage(name, x, st.loc, exp[0] if exp else None, exp[1] if exp else None,
                                    feature=bool(st.feature), block=st.block or "",
                                    repeat=reps if st.block else None))
        for sname, (shape, loc) in spec.stage_expect.items():
            if sname not in seen_stage:
                self.stage = ""
                close = close_matches(sname, list(seen_stage), n=1)
                self.diag(loc, f"expect.stages: there is no stage named {sname!r}"
                               + (f"; did you mean {close[0]!r}?" if close else ""))
        outputs, aux_outputs, aux_after = self.heads(stages, x)
        self.stage = ""
        return Graph(spec.name, tuple(self.nodes), "input", tuple(spec.input_shape),
                     tuple(outputs + aux_outputs), tuple(stages), tuple(aux_outputs),
                     tuple(aux_after))

    def heads(self, stages: list, x) -> tuple[list, list, list]:
        spec = self.spec
        outputs: list[str] = []
        aux_outputs: list[str] = []
        aux_after: list = []
        if self.opts.features:
            # every trunk stage; backends pick with ir.graph.feature_outputs
            return [s.output for s in stages if s.kind == "trunk"], [], []
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
                close = close_matches(aux.after, [s.name for s in stages], n=1)
                self.diag(aux.key_loc("after"), f"aux head {aux.name!r}: no stage named "
                                                f"{aux.after!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
                continue
            y = self.seq(aux.seq, aux.name, src.output, self.spec_env)
            if y is not None:
                stages.append(Stage(aux.name, y, aux.loc, kind="aux"))
                aux_outputs.append(y)
                aux_after.append((aux.name, aux.after))
        return outputs, aux_outputs, aux_after


def copy_of(st: m.Stage, i: int) -> tuple:
    """(block, with, the item to locate errors at) of copy i of a repeated stage: the
    stage's, unless `copies` makes that copy different (its `with` merges onto the
    stage's, or replaces it when the copy has another block)."""
    ov = st.copies.get(str(i))
    if ov is None:
        return st.block, st.with_, st
    if ov.block is not None and ov.block != st.block:
        return ov.block, ov.with_, ov
    return st.block, merged_locdict(st.with_, ov.with_), ov if ov.with_ else st


def lower(spec: Spec, options: LowerOptions = LowerOptions(), shapes: Optional[dict] = None) -> Graph:
    """Spec -> Graph. Raises SpecError with every problem found. A `shapes` dict receives
    the shapes inferred while lowering (at the spec's input; failed nodes are absent)."""
    lw = _Lowering(spec, options)
    try:
        graph = lw.network()
    except _Abort:
        graph = None
    errors = [d for d in lw.diags if d.severity == "error"]
    if errors or graph is None:
        raise SpecError(lw.diags)
    if shapes is not None:
        shapes.update(lw.shapes)
    return graph


__all__ = ["LowerOptions", "lower", "check_unused_params", "Diagnostic"]
