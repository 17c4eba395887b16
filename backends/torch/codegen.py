"""Generated PyTorch source: a readable, self-contained .py that imports only torch.

One class per block template (its parameters are constructor arguments, channel counts
inside it are expressions of `in_channels` and the parameters), one class for the
network. Submodule names are the spec's, so the module it builds has the same
state_dict keys as `archcompiler.build(...)`, and the same outputs.
"""

from __future__ import annotations

import keyword
import os
from dataclasses import dataclass, field
from typing import Optional

from archcompiler import __version__
from archcompiler.spec import model as m
from archcompiler.spec.expr import Expr
from archcompiler.spec.loader import Spec

_HELPERS = '''

class ConvBnAct(nn.Module):
    """Convolution, then (optionally) batch norm and ReLU: the figures' "Conv".

    With bn=False, act="none" and bias=True it is the figures' 1x1 "Linear" up-projection."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bn=True,
                 act="relu", bias=False, eps=EPS, momentum=MOMENTUM):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum) if bn else None
        self.act = nn.ReLU(inplace=True) if act == "relu" else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class GlobalAvgPool(nn.Module):
    """Average over the whole map, flattened: works for any input size."""

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class Concat(nn.Module):
    """Parallel branches (keyword arguments, in order) concatenated along channels."""

    def __init__(self, **branches):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], 1)


class Residual(nn.Module):
    """Figure 20: x + scale * project(body(x)), then an optional ReLU."""

    def __init__(self, body, project, scale, act="relu", concat=True):
        super().__init__()
        for name, module in body.items():
            self.add_module(name, module)
        self._body = list(body)
        self._concat = concat
        self.project = project
        self.scale = scale
        self.act = nn.ReLU(inplace=True) if act == "relu" else None

    def forward(self, x):
        if self._concat:
            r = torch.cat([getattr(self, name)(x) for name in self._body], 1)
        else:
            r = x
            for name in self._body:
                r = getattr(self, name)(r)
        x = self.project(r) * self.scale + x
        return self.act(x) if self.act is not None else x
'''


class _Ch:
    """A symbolic channel count: an integer plus source terms (`in_channels`, `n`)."""

    def __init__(self, const: int = 0, terms: tuple = ()):
        self.const, self.terms = const, tuple(terms)

    @staticmethod
    def of(src) -> "_Ch":
        return _Ch(src) if isinstance(src, int) else _Ch(0, (src,))

    def __add__(self, other: "_Ch") -> "_Ch":
        return _Ch(self.const + other.const, self.terms + other.terms)

    def render(self) -> str:
        parts = list(self.terms) + ([str(self.const)] if self.const or not self.terms else [])
        return " + ".join(parts)


def class_name(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) or "Block"


def _ident(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or name in ("self", "x", "in_channels") else name


def _pair_src(v) -> str:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    return str(a) if a == b else f"({a}, {b})"


def _as_pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _padding(padding, kernel) -> tuple:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return _as_pair(padding)


@dataclass
class _Ctx:
    """Where names in expressions resolve while generating one class."""

    spec: Spec
    locals: set = field(default_factory=set)  # block parameters (constructor arguments)
    classes_src: str = "NUM_CLASSES"

    def name(self, n: str) -> str:
        if n in self.locals:
            return _ident(n)
        if n == "classes":
            return self.classes_src
        return n.upper()

    def value(self, v) -> str:
        if isinstance(v, Expr):
            return v.render(self.name)
        return repr(v)

    def channels(self, v) -> _Ch:
        if isinstance(v, Expr):
            src = v.render(self.name)
            if self.spec.width is not None:
                src = f"_scaled({src})"
            return _Ch.of(src)
        if self.spec.width is not None:
            v = max(1, int(v * self.spec.width + 0.5))
        return _Ch.of(v)


class _Gen:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.classes: dict[str, str] = {}  # block name -> class source
        self.order: list[str] = []
        self.used_helpers: set = set()

    # -- items -> constructor source ----------------------------------------------------
    def item(self, it, cin: _Ch, ctx: _Ctx) -> tuple[str, _Ch]:
        d = self.spec.defaults
        if isinstance(it, m.ConvOp):
            kernel, stride = _as_pair(it.kernel), _as_pair(it.stride)
            pad = _padding(it.padding if it.padding is not None else d.conv.padding, kernel)
            out = ctx.channels(it.out)
            args = [cin.render(), out.render(), _pair_src(kernel)]
            if stride != (1, 1):
                args.append(f"stride={_pair_src(stride)}")
            if pad != (0, 0):
                args.append(f"padding={_pair_src(pad)}")
            norm = it.norm or d.conv.norm
            if norm != "batchnorm":
                args.append("bn=False")
            act = it.act if it.act is not None else d.conv.act
            act_src = ctx.value(act)
            if act_src != "'relu'":
                args.append(f"act={act_src}")
            bias = it.bias if it.bias is not None else (d.conv.bias if norm == "batchnorm" else True)
            if bias:
                args.append("bias=True")
            if it.eps is not None and it.eps != d.conv.eps:
                args.append(f"eps={it.eps!r}")
            return f"ConvBnAct({', '.join(args)})", out
        if isinstance(it, m.PoolOp):
            kernel, stride = _as_pair(it.kernel), _as_pair(it.stride)
            dd = d.avgpool if it.op == "avgpool" else d.maxpool
            pad = _padding(it.padding if it.padding is not None else dd.padding, kernel)
            args = [_pair_src(kernel), f"stride={_pair_src(stride)}"]
            if pad != (0, 0):
                args.append(f"padding={_pair_src(pad)}")
            if it.op == "avgpool":
                cip = it.count_pad if it.count_pad is not None else d.avgpool.count_pad
                args.append(f"count_include_pad={cip}")
                return f"nn.AvgPool2d({', '.join(args)})", cin
            return f"nn.MaxPool2d({', '.join(args)})", cin
        if isinstance(it, m.GlobalPoolOp):
            return "GlobalAvgPool()", cin
        if isinstance(it, m.DropoutOp):
            return f"nn.Dropout({ctx.value(it.p)})", cin
        if isinstance(it, m.LinearOp):
            out = _Ch.of(ctx.value(it.out)) if isinstance(it.out, Expr) else _Ch.of(it.out)
            bias = "" if it.bias else ", bias=False"
            return f"nn.Linear({cin.render()}, {out.render()}{bias})", out
        if isinstance(it, m.ReluOp):
            return "nn.ReLU(inplace=True)", cin
        if isinstance(it, m.SeqItem):
            return self.sequential(it.seq, cin, ctx)
        if isinstance(it, m.ConcatItem):
            parts, out = self.branches(it.concat, cin, ctx)
            inner = ",\n".join(f"{n}={src}" for n, src in parts)
            return f"Concat(\n{_indent(inner, 4)},\n)", out
        if isinstance(it, m.ResidualItem):
            return self.residual_inline(it.residual, cin, ctx)
        if isinstance(it, m.BlockRef):
            return self.block_call(it.block, it.with_, cin, ctx)
        raise TypeError(type(it))  # pragma: no cover

    def sequential(self, items, cin: _Ch, ctx: _Ctx) -> tuple[str, _Ch]:
        parts = []
        for j, it in enumerate(items):
            src, cin = self.item(it, cin, ctx)
            parts.append((getattr(it, "name", None) or str(j), src))
        return _sequential_src(parts), cin

    def branches(self, branches, cin: _Ch, ctx: _Ctx) -> tuple[list, _Ch]:
        parts, total = [], _Ch()
        for i, br in enumerate(branches):
            if isinstance(br, m.SeqItem):
                name, items = br.name or f"branch{i}", br.seq
            else:
                name, items = f"branch{i}", br
            src, out = self.sequential(items, cin, ctx)
            parts.append((name, src))
            total = total + out
        return parts, total

    def residual_inline(self, body: m.ResidualBody, cin: _Ch, ctx: _Ctx) -> tuple[str, _Ch]:
        if body.concat is not None:
            parts, r = self.branches(body.concat, cin, ctx)
        else:
            parts, r = [], cin
            for j, it in enumerate(body.seq):
                src, r = self.item(it, r, ctx)
                parts.append((getattr(it, "name", None) or str(j), src))
        proj, _ = self.item(body.project, r, ctx)
        parts_src = ",\n".join(f"({n!r}, {src})" for n, src in parts)
        return (f"Residual(\n    OrderedDict([\n{_indent(parts_src, 8)},\n    ]),\n"
                f"    project={proj},\n    scale={ctx.value(body.scale)},\n"
                f"    act={ctx.value(body.act)},\n    concat={body.concat is not None},\n)"), cin

    def block_call(self, name: str, with_: dict, cin: _Ch, ctx: _Ctx) -> tuple[str, _Ch]:
        cls = self.block_class(name)
        kwargs = "".join(f", {_ident(k)}={ctx.value(v)}" for k, v in with_.items())
        return (f"{cls}({cin.render()}{kwargs})",
                _Ch.of(f"{cls}.out_channels({cin.render()}{kwargs})"))

    # -- block templates -> classes -----------------------------------------------------
    def block_class(self, name: str) -> str:
        cls = class_name(name)
        if name in self.classes:
            return cls
        self.classes[name] = ""  # placeholder: also guards against cycles
        blk = self.spec.blocks[name]
        declared = blk.param_defaults()
        ctx = _Ctx(self.spec, set(declared))
        sig = ["self", "in_channels"]
        for p, default in declared.items():
            sig.append(_ident(p) if default is m._REQUIRED else
                       f"{_ident(p)}={_Ctx(self.spec).value(default)}")
        out_sig = ", ".join(s for s in sig if s != "self")
        cin = _Ch.of("in_channels")
        doc = [f"{blk.figure}." if blk.figure else f"Block `{name}`."]
        if blk.doc:
            doc.append("")
            doc.extend(_wrap(blk.doc, 84))
        loc = blk.loc
        doc.append("")
        doc.append(f"Block `{name}` of {loc.file}:{loc.line}." if loc else f"Block `{name}`.")
        if blk.seq is not None:
            parts, out = [], cin
            for j, it in enumerate(blk.seq):
                src, out = self.item(it, out, ctx)
                parts.append((getattr(it, "name", None) or str(j), src))
            body = ",\n".join(f"({n!r}, {src})" for n, src in parts)
            src = (f"class {cls}(nn.Sequential):\n{_docstring(doc)}\n"
                   f"    def __init__({', '.join(sig)}):\n"
                   f"        super().__init__(OrderedDict([\n{_indent(body, 12)},\n        ]))\n")
        elif blk.concat is not None:
            parts, out = self.branches(blk.concat, cin, ctx)
            inits = "\n".join(f"        self.{n} = {_indent(s, 8).lstrip()}" for n, s in parts)
            calls = ", ".join(f"self.{n}(x)" for n, _ in parts)
            src = (f"class {cls}(nn.Module):\n{_docstring(doc)}\n"
                   f"    def __init__({', '.join(sig)}):\n        super().__init__()\n{inits}\n\n"
                   f"    def forward(self, x):\n        return torch.cat([{calls}], 1)\n")
        else:
            body = blk.residual
            out = cin
            if body.concat is not None:
                parts, r = self.branches(body.concat, cin, ctx)
                inits = "\n".join(f"        self.{n} = {_indent(s, 8).lstrip()}" for n, s in parts)
                merge = "torch.cat([" + ", ".join(f"self.{n}(x)" for n, _ in parts) + "], 1)"
            else:
                parts, r = [], cin
                for j, it in enumerate(body.seq):
                    s, r = self.item(it, r, ctx)
                    parts.append((getattr(it, "name", None) or str(j), s))
                inits = "\n".join(f"        self.add_module({n!r}, {_indent(s, 8).lstrip()})"
                                  for n, s in parts)
                merge = "x"
                for n, _ in parts:
                    merge = f"getattr(self, {n!r})({merge})"
            proj, _ = self.item(body.project, r, ctx)
            src = (f"class {cls}(nn.Module):\n{_docstring(doc)}\n"
                   f"    def __init__({', '.join(sig)}):\n        super().__init__()\n{inits}\n"
                   f"        self.project = {_indent(proj, 8).lstrip()}\n"
                   f"        self.scale = {ctx.value(body.scale)}\n"
                   f"        self.act = nn.ReLU(inplace=True) if {ctx.value(body.act)} == 'relu' else None\n\n"
                   f"    def forward(self, x):\n"
                   f"        r = {merge}\n"
                   f"        x = self.project(r) * self.scale + x  # Figure 20: scaled residual\n"
                   f"        return self.act(x) if self.act is not None else x\n")
        out_src = out.render()
        src += (f"\n    @staticmethod\n    def out_channels({out_sig}):\n"
                f"        return {out_src}\n")
        self.classes[name] = src
        self.order.append(name)
        return cls


def _sequential_src(parts: list) -> str:
    if all(n == str(j) for j, (n, _) in enumerate(parts)):
        if len(parts) == 1:
            return f"nn.Sequential({parts[0][1]})"
        inner = ",\n".join(src for _, src in parts)
        return f"nn.Sequential(\n{_indent(inner, 4)},\n)"
    inner = ",\n".join(f"({n!r}, {src})" for n, src in parts)
    return f"nn.Sequential(OrderedDict([\n{_indent(inner, 4)},\n]))"


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(text.split()), width)


def _docstring(lines: list[str]) -> str:
    body = "\n".join(("    " + ln) if ln else "" for ln in lines)
    return f'    """{body.lstrip()}\n    """\n'


def _last_node(graph, prefix: str) -> str:
    return [n.name for n in graph.nodes if n.name.startswith(prefix)][-1]


def generate_source(spec: Spec, num_classes: Optional[int] = None, weights_file: Optional[str] = None) -> str:
    """The whole generated module as text."""
    from archcompiler.analysis import analyze

    analysis = spec.analysis if getattr(spec, "analysis", None) is not None else analyze(spec)
    shapes = analysis.shapes
    gen = _Gen(spec)
    classes = num_classes if num_classes is not None else spec.classes
    ctx = _Ctx(spec, classes_src="num_classes")
    stage_out = {st.name: st.output for st in analysis.graph.stages}
    inits, calls = [], []
    cin = spec.input_shape[0]
    aux_after = {a.after: a for a in spec.aux}
    aux_enabled = {}
    for a in spec.aux:
        en = a.enabled
        if isinstance(en, Expr):
            en = en.evaluate({**spec.params})
        aux_enabled[a.name] = bool(en)
    for st in spec.network:
        name = st.stage_name
        cin_ch = _Ch.of(cin)
        if st.block is not None:
            kwargs = "".join(f", {_ident(k)}={ctx.value(v)}" for k, v in st.with_.items())
            cls = gen.block_class(st.block)
            if st.repeat is not None:
                reps = st.repeat.evaluate(dict(spec.params)) if isinstance(st.repeat, Expr) else st.repeat
                ins = [cin] + [shapes[_last_node(analysis.graph, f"{name}.{i}.")][0]
                               for i in range(reps - 1)]
                if len(set(ins)) == 1:
                    src = f"nn.Sequential(*[{cls}({cin}{kwargs}) for _ in range({reps})])"
                else:  # copies whose input widths differ
                    inner = ",\n".join(f"{cls}({c}{kwargs})" for c in ins)
                    src = f"nn.Sequential(\n{_indent(inner, 4)},\n)"
            else:
                src = f"{cls}({cin}{kwargs})"
        elif st.op is not None:
            src, _ = gen.item(st.op, cin_ch, ctx)
        elif st.seq is not None:
            src, _ = gen.sequential(st.seq, cin_ch, ctx)
        elif st.concat is not None:
            parts, _ = gen.branches(st.concat, cin_ch, ctx)
            inner = ",\n".join(f"{n}={s}" for n, s in parts)
            src = f"Concat(\n{_indent(inner, 4)},\n)"
        else:
            src, _ = gen.residual_inline(st.residual, cin_ch, ctx)
        inits.append(f"self.{name} = {_indent(src, 8).lstrip()}")
        calls.append(f"x = self.{name}(x)")
        cin = shapes[stage_out[name]][0]
        if name in aux_after:
            a = aux_after[name]
            asrc, _ = gen.sequential(a.seq, _Ch.of(cin), ctx)
            inits.append(f"self.{a.name} = {_indent(asrc, 8).lstrip()} if aux_logits else None")
            calls.append(f"aux = self.{a.name}(x) if self.training and self.{a.name} is not None else None")
    head_src, _ = gen.sequential(spec.head, _Ch.of(cin), ctx) if spec.head else ("nn.Identity()", None)
    inits.append(f"self.head = {_indent(head_src, 8).lstrip()}")

    model_cls = class_name(spec.name)
    if model_cls in {class_name(b) for b in gen.order}:
        model_cls += "Net"
    params_src = "\n".join(f"{k.upper()} = {v!r}" for k, v in spec.params.items()
                           if not isinstance(v, Expr))
    pp = spec.preprocess
    cfg = {
        "architecture": spec.name, "title": spec.title, "source": spec.source,
        "spec_file": spec.path, "input_size": tuple(spec.input_shape), "mean": tuple(pp.mean),
        "std": tuple(pp.std), "crop_pct": pp.crop_pct, "interpolation": pp.interpolation,
        "num_classes": classes,
    }
    cfg_src = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in cfg.items()) + "}"
    has_aux = bool(spec.aux)
    sig = f"self, num_classes: int = {classes}"
    if has_aux:
        sig += f", aux_logits: bool = {any(aux_enabled.values())}"
    fwd = "\n".join(f"        {c}" for c in calls)
    if has_aux:
        ret = ("        x = self.head(x)\n"
               "        return (x, aux) if aux is not None else x\n")
        fwd = "        aux = None\n" + fwd
    else:
        ret = "        return self.head(x)\n"
    title = spec.title or spec.name
    weights_line = ""
    if weights_file:
        weights_line = (
            f"\n    @classmethod\n    def pretrained(cls, path=None, **kwargs):\n"
            f'        """The model with the weights written beside this file ({weights_file})."""\n'
            f"        model = cls(**kwargs)\n"
            f"        model.load_weights(path or os.path.join(os.path.dirname(os.path.abspath(__file__)), {weights_file!r}))\n"
            f"        return model\n")
    model_src = (
        f"class {model_cls}(nn.Module):\n"
        f'    """{title}.\n\n'
        + "".join(f"    {ln}\n" for ln in _wrap(f"Source: {spec.source}.", 88) if spec.source)
        + (("\n" + "".join(f"    {ln}\n" for ln in _wrap(spec.description, 88))) if spec.description else "")
        + f'    """\n\n    pretrained_cfg = PRETRAINED_CFG\n\n'
        f"    def __init__({sig}):\n        super().__init__()\n"
        + "\n".join(f"        {ln}" for ln in inits) + "\n"
        + f"        self.pretrained_cfg = dict(PRETRAINED_CFG, num_classes=num_classes)\n\n"
        f"    def forward(self, x):\n{fwd}\n{ret}"
        f"\n    def load_weights(self, path):\n"
        f'        """Load a .safetensors file in this module\'s naming (needs the safetensors package)."""\n'
        f"        from safetensors.torch import load_file\n\n"
        f"        missing, unexpected = self.load_state_dict(load_file(path), strict=False)\n"
        f"        missing = [k for k in missing if not k.endswith('num_batches_tracked')]\n"
        f"        if missing or unexpected:\n"
        f"            raise ValueError(f'{{path}} does not match: missing {{missing}}, unexpected {{unexpected}}')\n"
        f"        return self\n"
        + weights_line
    )
    blocks_src = "\n\n".join(gen.classes[b] for b in gen.order)
    width_src = ""
    if spec.width is not None:
        width_src = (f"\nWIDTH = {spec.width!r}\n\n\ndef _scaled(channels):\n"
                     f"    return max(1, int(channels * WIDTH + 0.5))\n")
    d = spec.defaults.conv
    header = (
        f'"""{spec.name}: {title}.\n\n'
        f"Generated by archcompiler {__version__} from {os.path.basename(spec.path)}; it needs only torch.\n"
        f"Submodule names follow the spec, so state_dicts match archcompiler.build(...).\n\n"
        f"    model = {model_cls}()\n"
        + (f"    model = {model_cls}.pretrained()   # weights from {weights_file}\n" if weights_file else "")
        + '"""\n\n'
        "import os\nfrom collections import OrderedDict\n\nimport torch\nimport torch.nn.functional as F\n"
        "from torch import nn\n\n"
        f"# Spec parameters\n{params_src}\n" + (f"NUM_CLASSES = {spec.classes}\n")
        + f"EPS = {d.eps!r}  # batch norm epsilon\nMOMENTUM = {d.momentum!r}\n"
        + width_src
        + f"\nPRETRAINED_CFG = {cfg_src}\n"
    )
    return header + _HELPERS + "\n\n" + blocks_src + "\n\n" + model_src


def write_source(spec: Spec, out: str, weights=None, seed: int = 0,
                 num_classes: Optional[int] = None) -> list[str]:
    """Write the generated module (and, with weights, a .safetensors beside it).

    Everything is computed first; the files are then written to temporary files and
    renamed into place together: both appear complete, or neither changes."""
    from archcompiler.util import atomic_outputs

    tensors = None
    weights_file = None
    if weights is not None:
        from . import prepare, resolve_weights

        graph, shapes = prepare(spec, num_classes)
        tensors, _ = resolve_weights(spec, graph, shapes, weights, seed, num_classes)
        weights_file = os.path.splitext(os.path.basename(out))[0] + ".safetensors"
    text = generate_source(spec, num_classes=num_classes, weights_file=weights_file)
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

