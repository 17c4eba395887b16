"""Generated PyTorch source: a readable, self-contained .py that imports only torch.

Written from the IR (the one lowering of archcompiler.network), not from the spec text:
one class per block template (its parameters are constructor arguments where the spec
wrote expressions of them; instances whose structure differs get a class each), one
class for the network. Each op writes its own source (archcompiler.ops). Submodule names
are the IR's, so the module it builds has the same state_dict keys as
`archcompiler.build(...)`, and the same outputs.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from archcompiler import __version__
from archcompiler.network import Network, network_for, spec_reference
from archcompiler.ops import OPS, SPEC_OPS, fmt_shape
from archcompiler.spec.expr import Expr
from archcompiler.spec.loader import Spec

from .codegen_scope import (Container, Ctx, Unit, _is_chain, _sequential, access, class_name,
                            forward_lines, ident, indent, module_tree, readers_of, scope_units)

_CONCAT = '''
class Concat(nn.Module):
    """Parallel branches (keyword arguments, in order) concatenated along channels."""

    def __init__(self, **branches):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], 1)
'''


class _Gen:
    def __init__(self, spec: Spec, net: Network, constants: dict):
        self.spec, self.net, self.constants = spec, net, constants
        self.graph, self.shapes = net.graph, net.shapes
        self.order = {n.name: i for i, n in enumerate(net.graph.nodes)}
        self.consumers = net.graph.consumers()
        self.classes: dict[str, str] = {}  # class name -> source
        self.bodies: dict[tuple, str] = {}  # (block, body) -> class name

    def ctx(self, params=(), classes_src="NUM_CLASSES") -> Ctx:
        return Ctx(self.graph, self.shapes, set(params), self.constants, classes_src,
                   order=self.order)

    # -- a scope as a module ----------------------------------------------------------
    def scope(self, nodes, path: str, depth: int, ctx: Ctx, scope_input: str):
        ctx.channels.setdefault(scope_input, "in_channels")
        units, inline = scope_units(nodes, path, depth, ctx, self.instance_call_nested(depth))
        return module_tree(units, inline, self.consumers, path), inline

    def instance_call_nested(self, depth: int):
        def make(scope, sub_nodes, in_src):
            return self.instance_call(scope, sub_nodes, depth, in_src)
        return make

    def foldable(self, top: dict, inline: list) -> Optional[str]:
        """The scope as one expression (a unit, or a chain of top-level units)."""
        if "" in top:
            return top[""].ctor
        kids = sorted(top.values(), key=lambda u: getattr(u, "order", 0))
        if inline or not all(isinstance(v, Unit) for v in kids):
            return None
        if _is_chain(kids, self.consumers, readers_of(kids, [])):
            keys = [next(k for k, v in top.items() if v is u) for u in kids]
            return _sequential(keys, top)
        return None

    def module_class(self, name: str, top: dict, inline: list, ctx: Ctx, scope_input: str,
                     params: list, doc: list[str], key: tuple) -> str:
        """A class for a scope; returns its name (shared by scopes with the same body)."""
        chain = self.foldable(top, inline) if "" not in top else None
        if chain is not None:  # a chain: an nn.Sequential of its units, in order
            base = "nn.Sequential"
            units = sorted(top.items(), key=lambda kv: kv[1].order)
            if [k for k, _ in units] == [str(i) for i in range(len(units))]:
                inner = ",\n".join(u.ctor for _, u in units)
                init = f"        super().__init__(\n{indent(inner, 12)},\n        )\n"
            else:
                inner = ",\n".join(f"({k!r}, {u.ctor})" for k, u in units)
                init = f"        super().__init__(OrderedDict([\n{indent(inner, 12)},\n        ]))\n"
            fwd = ""
        else:
            base = "nn.Module"
            init = "        super().__init__()\n" + "".join(
                f"        self.{k} = {indent(v.ctor, 8).lstrip()}\n" if k.isidentifier()
                else f"        self.add_module({k!r}, {indent(v.ctor, 8).lstrip()})\n"
                for k, v in top.items())
            lines, last = forward_lines(top, inline, ctx, scope_input)
            fwd = "\n    def forward(self, x):\n" + "".join(f"        {ln}\n" for ln in lines) + \
                  f"        return {last}\n"
        used = [p for p in params if _mentions(init + fwd, ident(p))]
        in_forward = [p for p in used if _mentions(fwd, ident(p))]
        if in_forward:  # parameters the forward reads are kept on the module
            init += "".join(f"        self.{ident(p)} = {ident(p)}\n" for p in in_forward)
            for p in in_forward:
                fwd = re.sub(rf"(?<![\w.]){re.escape(ident(p))}\b(?!\s*=[^=])", f"self.{ident(p)}", fwd)
        sig = ", ".join(["self", "in_channels", *(ident(p) for p in used)])
        body = f"    def __init__({sig}):\n{init}{fwd}"
        if (key, body) in self.bodies:
            return self.bodies[(key, body)], used
        cls = class_name(name)
        n = 2
        while cls in self.classes:
            cls, n = f"{class_name(name)}{n}", n + 1
        if n > 2:  # another structure of the same template: say so instead of repeating
            doc = _wrap(f"Block `{name}` ({doc[0].rstrip('.')}) as {class_name(name)}, with the "
                        "ops that a `when` condition or a parameter changes here.", 84)
        if len(doc) == 1:
            docstring = f'    """{doc[0]}"""\n\n'
        else:
            docstring = ('    """' + "\n".join(f"    {ln}" if ln else "" for ln in doc).strip()
                         + '\n    """\n\n' if doc else "")
        self.classes[cls] = f"class {cls}({base}):\n{docstring}{body}"
        self.bodies[(key, body)] = cls
        return cls, used

    def instance_call(self, scope, nodes, index: int, in_src) -> str:
        """`BlockClass(in_channels, k=..., ...)` for one block instance (`scope`, the
        index-th Scope of its nodes)."""
        names = {n.name for n in nodes}
        scope_input = next(i for n in nodes for i in n.inputs if i not in names)
        params = [p for p, _ in scope.params]
        ctx = self.ctx(params)
        top, inline = self.scope(nodes, scope.path, index + 1, ctx, scope_input)
        blk = self.spec.blocks.get(scope.block)
        doc = [f"{blk.figure}." if blk is not None and blk.figure else f"Block `{scope.block}`."]
        if blk is not None and blk.doc:
            doc += [""] + _wrap(blk.doc, 84)
        cls, used = self.module_class(scope.block, top, inline, ctx, scope_input, params, doc,
                                      ("block", scope.block))
        values = dict(scope.params)
        kwargs = "".join(f", {ident(p)}={values[p]!r}" for p in used)
        return f"{cls}({in_src}{kwargs})"

    def anonymous(self, name: str, nodes, scope_input: str, in_channels: int,
                  classes_src="num_classes") -> str:
        """A stage, head or aux head written inline: one expression or a class of its own."""
        ctx = self.ctx(classes_src=classes_src)
        ctx.channels[scope_input] = in_channels
        top, inline = self.scope(nodes, name, 0, ctx, scope_input)
        folded = self.foldable(top, inline)
        if folded is not None:
            return folded
        ctx.channels[scope_input] = "in_channels"
        ctx.params = {"num_classes"}
        top, inline = self.scope(nodes, name, 0, ctx, scope_input)
        cls, used = self.module_class(name, top, inline, ctx, scope_input, ["num_classes"],
                                      [f"Stage `{name}`."], ("stage", name))
        return f"{cls}({in_channels}" + (", num_classes=num_classes)" if used else ")")

    # -- the network --------------------------------------------------------------------
    def stage(self, st, x: str) -> str:
        nodes = [n for n in self.graph.nodes if n.stage == st.name]
        cin = self.shapes[x][0]
        if not st.block:
            return self.anonymous(st.name, nodes, x, cin)
        instances: dict = {}
        for n in nodes:
            instances.setdefault(n.scope[0].path, []).append(n)
        calls, ins = [], cin
        for path, inst in instances.items():
            calls.append(self.instance_call(inst[0].scope[0], inst, 0, ins))
            ins = self.shapes[inst[-1].name][0]
        if st.repeat is None:
            return calls[0]
        if len(set(calls)) == 1:
            return f"nn.Sequential(*[{calls[0]} for _ in range({len(calls)})])"
        return "nn.Sequential(\n" + indent(",\n".join(calls), 4) + ",\n)"


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.'\"]){re.escape(name)}\b(?!\s*=[^=])", text) is not None


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(text.split()), width)


def _constants(spec: Spec) -> dict:
    env: dict = {"classes": spec.classes}
    for k, v in spec.params.items():
        env[k] = v.evaluate(env) if isinstance(v, Expr) else v
    return env


def generate_source(spec: Spec, num_classes: Optional[int] = None, weights_file: Optional[str] = None,
                    net: Optional[Network] = None) -> str:
    """The whole generated module as text."""
    from .codegen_file import assemble

    net = net or network_for(spec, num_classes)
    constants = _constants(spec)
    d = spec.defaults.conv
    gen = _Gen(spec, net, {"EPS": d.eps, "MOMENTUM": d.momentum, **{k.upper(): v for k, v in constants.items()}})
    g = net.graph
    inits, calls, trunk_calls = [], [], []
    x = g.input_name
    aux_of = {}
    for name, after in g.aux_after:
        aux_of.setdefault(after, []).append(name)
    stage_by = {st.name: st for st in g.stages}
    for st in (s for s in g.stages if s.kind == "trunk"):
        src = gen.stage(st, x)
        inits.append(f"self.{st.name} = {indent(src, 8).lstrip()}")
        calls.append(f"x = self.{st.name}(x)  # {fmt_shape(net.shapes[st.output])}")
        trunk_calls.append(calls[-1])
        x = st.output
        for aux in aux_of.get(st.name, []):
            nodes = [n for n in g.nodes if n.stage == aux]
            asrc = gen.anonymous(aux, nodes, x, net.shapes[x][0])
            inits.append(f"self.{aux} = {indent(asrc, 8).lstrip()} if aux_logits else None")
            calls.append(f"if self.training and self.{aux} is not None:")
            calls.append(f"    aux[{aux!r}] = self.{aux}(x)")
    head = stage_by.get("head")
    head_src = "nn.Identity()"
    if head is not None:
        head_src = gen.anonymous("head", [n for n in g.nodes if n.stage == "head"], x,
                                 net.shapes[x][0])
    inits.append(f"self.head = {indent(head_src, 8).lstrip()}")
    used_helpers = {}
    text = "\n".join(gen.classes.values()) + "\n".join(inits)
    for op in (*SPEC_OPS.values(), *OPS.values()):
        for hname, hsrc in getattr(op, "source_helpers", {}).items():
            if re.search(rf"\b{hname}\(", text):
                used_helpers[hname] = hsrc
    if re.search(r"\bConcat\(", text):
        used_helpers["Concat"] = _CONCAT
    return assemble(spec, net, gen, inits, calls, trunk_calls, used_helpers, constants,
                    num_classes if num_classes is not None else spec.classes, weights_file,
                    head_src.startswith("nn.Sequential"))


def write_source(spec: Spec, out: str, weights=None, seed: int = 0,
                 num_classes: Optional[int] = None) -> list[str]:
    """Write the generated module (and, with weights, a .safetensors beside it).

    Everything is computed first; the files are then written to temporary files and
    renamed into place together: both appear complete, or neither changes."""
    from archcompiler.util import atomic_outputs

    net = network_for(spec, num_classes)
    tensors = None
    weights_file = None
    if weights is not None:
        from . import prepare, resolve_weights

        graph, shapes = prepare(spec, num_classes, net=net)
        tensors, _ = resolve_weights(net, graph, shapes, weights, seed)
        weights_file = os.path.splitext(os.path.basename(out))[0] + ".safetensors"
    text = generate_source(spec, num_classes=num_classes, weights_file=weights_file, net=net)
    compile(text, out, "exec")  # a bug here must fail the build, not the user's import
    if tensors is None:
        with atomic_outputs([out], [".py"]) as (tmp,):
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
        return [out]
    from archcompiler.weights import save_safetensors

    wpath = os.path.join(os.path.dirname(os.path.abspath(out)), weights_file)
    with atomic_outputs([out, wpath], [".py", ".safetensors"]) as (tmp_py, tmp_w):
        save_safetensors(tmp_w, tensors, {"spec": spec.name, "format": "archc"})
        with open(tmp_py, "w", encoding="utf-8") as fh:
            fh.write(text)
    return [out, wpath]


__all__ = ["generate_source", "write_source", "class_name", "Container", "access", "spec_reference"]
