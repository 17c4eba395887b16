"""`archc show`: what a spec is made of, so that a variant can be written without reading
its base: the parameters (value, where defined, where used), the blocks (parameters,
figure), the stages (block, `with`, repeat, output shape); `--expand`: the whole resolved
spec (imports and extends applied) as one YAML file that validates to the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import fmt_shape
from ..spec import model as m
from ..spec.expr import Expr


def _value(v):
    return v.text if isinstance(v, Expr) else v


def _mentions(obj) -> set:
    from ..ir.lowering import _expr_names

    return _expr_names(obj)


@dataclass(frozen=True)
class ShowReport:
    name: str
    path: str
    title: str
    source: str
    summary: dict  # input, output, classes, layers, params, macs, width, base
    params: tuple  # {name, value, defined_at, used_by}
    blocks: tuple  # {name, params, figure, defined_at, used_by}
    stages: tuple  # {name, kind, block, with, repeat, copies, output, params}

    def to_json(self) -> dict:
        return {"spec": self.path, "name": self.name, "title": self.title, "source": self.source,
                **self.summary, "params": list(self.params), "blocks": list(self.blocks),
                "stages": list(self.stages)}

    def __str__(self) -> str:
        return format_show(self)


def show(spec) -> ShowReport:
    """The report of a loaded spec (`archcompiler.load_spec`)."""
    a = spec.analysis
    shapes = {s.name: s for s in a.stages}
    params = [{"name": "classes", "value": spec.classes, "defined_at": None,
               "used_by": _users(spec, "classes")}]
    for k, v in spec.params.items():
        loc = spec.param_locs.get(k)
        params.append({"name": k, "value": _value(v), "defined_at": str(loc) if loc else None,
                       "used_by": _users(spec, k)})
    used_by_stage: dict = {}
    for st in spec.network:
        for b in _blocks_of(st, spec.blocks):
            used_by_stage.setdefault(b, []).append(st.stage_name)
    blocks = []
    for name, blk in spec.blocks.items():
        declared = blk.param_defaults()
        blocks.append({"name": name, "figure": blk.figure,
                       "params": {k: (None if v is m._REQUIRED else _value(v)) for k, v in declared.items()},
                       "defined_at": str(blk.loc) if blk.loc else None,
                       "used_by": used_by_stage.get(name, [])})
    stages = []
    for st in spec.network:
        rep = shapes.get(st.stage_name)
        stages.append({"name": st.stage_name, "kind": "trunk", "block": st.block,
                       "with": {k: _value(v) for k, v in st.with_.items()},
                       "repeat": _value(st.repeat), "copies": {
                           k: {"block": c.block, "with": {w: _value(x) for w, x in c.with_.items()}}
                           for k, c in st.copies.items()},
                       "body": None if st.block else _body_text(st),
                       "output": list(rep.shape) if rep else None,
                       "params": rep.params if rep else None})
    for rep in a.stages:
        if rep.kind != "trunk":
            stages.append({"name": rep.name, "kind": rep.kind, "block": None, "with": {},
                           "repeat": None, "copies": {}, "body": "seq", "output": list(rep.shape),
                           "params": rep.params})
    summary = {"input": list(a.input_shape), "output": list(a.output_shape), "classes": spec.classes,
               "layers": a.layers, "params_total": a.params, "macs": a.macs, "width": spec.width,
               "extends": spec.base.path if spec.base is not None else None}
    return ShowReport(spec.name, spec.path, spec.title or "", spec.source or "", summary,
                      tuple(params), tuple(blocks), tuple(stages))


def _body_text(st) -> str:
    """An inline stage's body in a word: its op string, or seq / concat / residual."""
    from .labels import op_label

    if st.op is not None:
        return op_label(st.op) if getattr(st.op, "op", None) else "item"
    return next(f for f in ("seq", "concat", "residual") if getattr(st, f) is not None)


def _blocks_of(obj, blocks: dict, seen=None) -> list:
    """The block templates an item or stage instantiates, nested ones too, in order."""
    from ..spec.variants import _walk

    seen = [] if seen is None else seen
    for x in _walk(obj):
        name = getattr(x, "block", None) if isinstance(x, (m.Stage, m.BlockRef, m.CopyEdit)) else None
        if isinstance(name, str) and name not in seen:
            seen.append(name)
            if name in blocks:
                _blocks_of(blocks[name], blocks, seen)
    return seen


def _users(spec, param: str) -> list:
    """Where a spec parameter is read: stages (their `with`, repeat, body), blocks, the
    head, aux heads, other parameters."""
    out = [f"stage {st.stage_name}" for st in spec.network if param in _mentions(st)]
    out += [f"block {b}" for b, blk in spec.blocks.items() if param in _mentions(blk)]
    if param in _mentions(spec.head):
        out.append("head")
    out += [f"aux {x.name}" for x in spec.aux if param in _mentions(x)]
    out += [f"param {k}" for k, v in spec.params.items() if isinstance(v, Expr) and param in v.names()]
    return out


# --- text --------------------------------------------------------------------------------

def _table(header: list, rows: list) -> list:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def _cell(v, width: int = 0) -> str:
    """A value as the spec writes it (`true`, not `True`), cut to `width` characters."""
    text = ("true" if v else "false") if isinstance(v, bool) else ("-" if v is None else str(v))
    return text if not width or len(text) <= width else text[:width - 3] + "..."


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={_cell(v)}" for k, v in d.items())


def format_show(r: ShowReport) -> str:
    s = r.summary
    head = f"{r.name}" + (f": {r.title}" if r.title else "") + f"   ({r.path})"
    lines = [head]
    if r.source:
        lines.append(f"  source: {r.source}")
    if s["extends"]:
        lines.append(f"  extends: {s['extends']}")
    lines.append(f"  input {fmt_shape(s['input'])} -> {fmt_shape(s['output'])}   layers {s['layers']}"
                 f"   params {s['params_total']:,}   MACs {s['macs']:,}"
                 + (f"   width {s['width']}" if s["width"] is not None else ""))
    lines += ["", "parameters (a variant changes them with `set: {name: value}`)"]
    lines += _table(["name", "value", "defined at", "used by"],
                    [[p["name"], _cell(p["value"]), p["defined_at"] or "(built in)",
                      ", ".join(p["used_by"]) or "-"] for p in r.params])
    lines += ["", "blocks (a variant redefines one under `blocks:`)"]
    lines += _table(["name", "parameters", "figure", "defined at", "used by"],
                    [[b["name"], ", ".join(k if v is None else f"{k}={_cell(v)}"
                                           for k, v in b["params"].items()) or "-",
                      _cell(b["figure"], 40), b["defined_at"] or "-",
                      ", ".join(b["used_by"]) or "(not used)"] for b in r.blocks])
    lines += ["", "stages (a variant edits them with `stages: {name: {...}}`)"]
    rows = []
    for st in r.stages:
        what = st["block"] or (st["body"] if st["kind"] == "trunk" else st["kind"])
        extra = _kv(st["with"])
        if st["copies"]:
            extra += ("; " if extra else "") + "; ".join(
                f"copy {k}: " + ", ".join(filter(None, [c["block"] and f"block {c['block']}", _kv(c["with"])]))
                for k, c in st["copies"].items())
        rows.append([st["name"], what, extra or "-", st["repeat"] if st["repeat"] is not None else "-",
                     fmt_shape(st["output"]) if st["output"] else "-",
                     f"{st['params']:,}" if st["params"] is not None else "-"])
    lines += _table(["name", "block or op", "with", "repeat", "output", "params"], rows)
    return "\n".join(lines)


# --- the resolved spec as YAML -----------------------------------------------------------

def _data(value):
    """A spec model as the YAML a user would write: only the fields given, expressions as
    their `$` text, plain dicts, lists and scalars."""
    if isinstance(value, m.Located):
        out = {}
        for k, f in type(value).model_fields.items():
            if k not in value.model_fields_set:
                continue
            v = getattr(value, k)
            if v is None or (isinstance(v, (dict, list)) and not v and k in ("with_", "copies")):
                continue
            out[f.alias or k] = _data(v)
        return out
    if isinstance(value, Expr):
        return str(value.text)
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def expanded(spec) -> dict:
    """The resolved spec as one self-contained spec (no imports, no extends)."""
    doc: dict = {"archc": m.SPEC_VERSION, "name": spec.name}
    for k in ("title", "description", "source"):
        if getattr(spec, k):
            doc[k] = getattr(spec, k)
    doc["input"] = fmt_shape(spec.input_shape)
    doc["classes"] = spec.classes
    if spec.width is not None:
        doc["width"] = spec.width
    if spec.params:
        doc["params"] = {k: _data(v) for k, v in spec.params.items()}
    doc["preprocess"] = _full(spec.preprocess)
    doc["defaults"] = _full(spec.defaults)
    doc["init"] = _full(spec.init)
    doc["blocks"] = {k: _data(b) for k, b in spec.blocks.items()}
    doc["network"] = [{k: v for k, v in _data(st).items() if k != "expect"} for st in spec.network]
    if spec.head:
        doc["head"] = _data(spec.head)
    if spec.aux:
        doc["aux"] = _data(spec.aux)
    expect = {k: getattr(spec.expect, k) for k in ("layers", "params", "macs", "min_input")
              if getattr(spec.expect, k) is not None}
    if spec.stage_expect:
        expect["stages"] = {k: fmt_shape(shape) for k, (shape, _) in spec.stage_expect.items()}
    if expect:
        doc["expect"] = expect
    if spec.checkpoints:
        doc["checkpoints"] = {k: _data(c) for k, c in spec.checkpoints.items()}
    return doc


def _full(model) -> dict:
    """Every field of a settings model (defaults included): what the spec resolved to."""
    if model is None:
        return {}
    return _data(type(model).model_construct(**{k: getattr(model, k) for k in type(model).model_fields}))


def _scalar(v) -> bool:
    return not isinstance(v, (dict, list))


def _flow(v) -> bool:
    """Written on one line: an op (`{op: conv, kernel: [3, 3], out: 32}`), a short mapping of
    scalars (`with: {k: 192, l: 224}`), a list of scalars."""
    if isinstance(v, list):
        return all(_scalar(x) for x in v)
    return (all(_scalar(x) or (isinstance(x, list) and all(map(_scalar, x))) for x in v.values())
            and ("op" in v or len(v) <= 6))


def expanded_yaml(spec) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(dict, lambda d, v: d.represent_mapping(
        "tag:yaml.org,2002:map", v, flow_style=_flow(v)))
    Dumper.add_representer(list, lambda d, v: d.represent_sequence(
        "tag:yaml.org,2002:seq", v, flow_style=_flow(v)))
    from ..network import spec_reference  # relative to the spec root: no machine path

    header = (f"# {spec.name}, resolved by `archc show --expand` from {spec_reference(spec)}: "
              "imports and extends applied\n")
    return header + yaml.dump(expanded(spec), Dumper=Dumper, sort_keys=False, width=100,
                              allow_unicode=True)
