"""`archc diff`: what differs between two specs, and what it does to shapes, params, MACs.

Compared: the top-level settings that change the network (width, input, classes,
params values, op defaults), the stages matched by name (block, `with`, repeat, body;
the head and aux heads as stages too), and the block templates by name (definitions,
not source locations). Each differing stage carries its output shape, parameters and
MACs on both sides. Titles, descriptions, preprocessing, init and checkpoint formats
are metadata: not compared.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Optional

from ..ops import fmt_shape

class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # a key one side does not have
_MAX_CHANGES = 4  # per stage or block: the first few differences say where to look


@dataclass(frozen=True)
class Change:
    """One difference: `path` inside the compared thing, the values on each side."""

    path: str
    a: object = MISSING
    b: object = MISSING
    note: str = ""  # the text, where `path: a -> b` would not read well

    def to_json(self) -> dict:
        return {"path": self.path, "a": _json(self.a), "b": _json(self.b)}

    def __str__(self) -> str:
        if self.note:
            return self.note
        if isinstance(self.a, list) and isinstance(self.b, list):
            return f"{self.path}: {_items(len(self.a))} -> {_items(len(self.b))}"
        return f"{self.path}: {_text(self.a)} -> {_text(self.b)}"


@dataclass(frozen=True)
class StageDiff:
    name: str
    status: str  # added | removed | changed
    changes: tuple  # of Change: the definition's differences (none: only the numbers moved)
    a: Optional[dict]  # {shape, params, macs} (None: absent, or an aux head that is off)
    b: Optional[dict]
    more: int = 0  # differences beyond those listed

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status,
                "changes": [c.to_json() for c in self.changes], "more_changes": self.more,
                "a": self.a, "b": self.b, "delta": _delta(self.a, self.b)}


@dataclass(frozen=True)
class BlockDiff:
    name: str
    status: str  # added | removed | changed
    changes: tuple = ()
    more: int = 0

    def to_json(self) -> dict:
        return {"name": self.name, "status": self.status,
                "changes": [c.to_json() for c in self.changes], "more_changes": self.more}


@dataclass(frozen=True)
class Diff:
    a_name: str
    a_path: str
    b_name: str
    b_path: str
    settings: tuple  # of Change
    stages: tuple  # of StageDiff
    blocks: tuple  # of BlockDiff
    totals: dict = field(default_factory=dict)  # "a", "b": {output, layers, params, macs}

    @property
    def equal(self) -> bool:
        return not (self.settings or self.stages or self.blocks) and \
            self.totals.get("a") == self.totals.get("b")

    def to_json(self) -> dict:
        t = self.totals
        return {"a": {"spec": self.a_path, "name": self.a_name},
                "b": {"spec": self.b_path, "name": self.b_name}, "equal": self.equal,
                "settings": [c.to_json() for c in self.settings],
                "stages": [s.to_json() for s in self.stages],
                "blocks": [b.to_json() for b in self.blocks],
                "totals": {"a": t["a"], "b": t["b"], "delta": _delta(t["a"], t["b"])}}

    def __str__(self) -> str:
        return format_diff(self)


# --- plain data: what a definition is, without source locations -------------------------

def plain(value):
    """A spec model as plain data (dicts, lists, scalars; expressions as their text):
    pydantic models compare with their locations; this compares what was written."""
    from pydantic import BaseModel

    from ..spec.expr import Expr

    if isinstance(value, BaseModel):
        return {(f.alias or k): plain(getattr(value, k)) for k, f in type(value).model_fields.items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Expr):
        return value.text or repr(value)
    return value


def changes(a, b, path: str = "") -> list:
    """Every difference of two plain values, by path (`concat[1][0].out`); lists of
    different lengths are one change (their items no longer correspond)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{k}" if path else str(k)
            out += changes(a.get(k, MISSING), b.get(k, MISSING), sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [c for i, (x, y) in enumerate(zip(a, b)) for c in changes(x, y, f"{path}[{i}]")]
    if a is MISSING and b is MISSING:
        return []
    if type(a) is type(b) and a == b:  # 1 == 1.0 == True in Python, not in a spec
        return []
    return [Change(path or "value", a, b)]


# --- the comparison ---------------------------------------------------------------------

_BLOCK_METADATA = ("figure", "doc")
_STAGE_KEYS = ("block", "with", "repeat", "copies", "op", "seq", "concat", "residual")  # not name/expect


def _stage_defs(spec) -> dict:
    """Stage name -> (plain definition, kind), the head and aux heads included."""
    defs = {}
    for st in spec.network:
        d = plain(st)
        defs[st.stage_name] = ({k: d.get(k) for k in _STAGE_KEYS}, "trunk")
    if spec.head:
        defs["head"] = ({"seq": plain(spec.head)}, "head")
    for a in spec.aux:
        defs[a.name] = ({k: plain(getattr(a, k)) for k in ("after", "enabled", "seq")}, "aux")
    return defs


def _numbers(report) -> Optional[dict]:
    if report is None:
        return None
    return {"shape": list(report.shape), "params": report.params, "macs": report.macs}


def _merged_order(a: list, b: list) -> list:
    """A's names and B's, each side's order kept (B's new names where B puts them)."""
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        out += a[i1:i2] if tag in ("equal", "delete", "replace") else []
        out += b[j1:j2] if tag in ("insert", "replace") else []
    return list(dict.fromkeys(out))


def _limited(found: list) -> tuple:
    return tuple(found[:_MAX_CHANGES]), max(0, len(found) - _MAX_CHANGES)


def _compare_stages(sa, sb, changed_blocks: set) -> list:
    da, db = _stage_defs(sa), _stage_defs(sb)
    ra = {r.name: r for r in sa.analysis.stages}
    rb = {r.name: r for r in sb.analysis.stages}
    out = []
    for name in _merged_order(list(da), list(db)):
        na, nb = _numbers(ra.get(name)), _numbers(rb.get(name))
        if name not in db:
            out.append(StageDiff(name, "removed", (), na, None))
            continue
        if name not in da:
            out.append(StageDiff(name, "added", (), None, nb))
            continue
        found = changes(da[name][0], db[name][0])
        block = da[name][0].get("block")
        if block and block == db[name][0].get("block") and block in changed_blocks:
            found.append(Change("block template", block, block,
                                note=f"block template {block} changed (below)"))
        if da[name][1] == "aux" and (na is None) != (nb is None):  # enabled by a parameter
            on = ("off", "on") if na is None else ("on", "off")
            found.append(Change("aux head", *on, note=f"aux head {on[0]} -> {on[1]}"))
        if found or na != nb:
            shown, more = _limited(found)
            out.append(StageDiff(name, "changed", shown, na, nb, more))
    return out


def _compare_blocks(sa, sb) -> list:
    out = []
    for name in _merged_order(list(sa.blocks), list(sb.blocks)):
        if name not in sb.blocks:
            out.append(BlockDiff(name, "removed"))
        elif name not in sa.blocks:
            out.append(BlockDiff(name, "added"))
        else:
            found = changes(plain(sa.blocks[name]), plain(sb.blocks[name]))
            found.sort(key=lambda c: c.path in _BLOCK_METADATA)  # the body's changes first
            if found:
                out.append(BlockDiff(name, "changed", *_limited(found)))
    return out


def _settings(sa, sb) -> list:
    out = []
    for what, a, b in (("width", sa.width, sb.width), ("input", list(sa.input_shape), list(sb.input_shape)),
                       ("classes", sa.classes, sb.classes)):
        out += changes(a, b, what)
    out += changes(plain(sa.params), plain(sb.params), "params")
    out += changes(plain(sa.defaults), plain(sb.defaults), "defaults")
    return out


def _totals(a) -> dict:
    return {"output": list(a.output_shape), "layers": a.layers, "params": a.params, "macs": a.macs}


def compare(sa, sb) -> Diff:
    """The difference of two loaded (analysed) specs."""
    blocks = _compare_blocks(sa, sb)
    changed = {b.name for b in blocks if b.status == "changed"}
    return Diff(sa.name, sa.path, sb.name, sb.path, tuple(_settings(sa, sb)),
                tuple(_compare_stages(sa, sb, changed)), tuple(blocks),
                {"a": _totals(sa.analysis), "b": _totals(sb.analysis)})


def diff(a, b, root: Optional[str] = None) -> Diff:
    """Compare two specs (each a `Spec`, a path, or a shipped spec's name)."""
    from .. import load_spec
    from ..spec.loader import Spec

    def load(x):
        if isinstance(x, Spec) and getattr(x, "analysis", None) is not None:
            return x
        return load_spec(x, root=root)

    return compare(load(a), load(b))


# --- text -------------------------------------------------------------------------------

def _json(v):
    return None if v is MISSING else v


def _items(n: int) -> str:
    return f"{n} item{'s' * (n != 1)}"


def _text(v) -> str:
    if v is MISSING:
        return "(none)"
    if v is None:
        return "(unset)"
    if isinstance(v, bool):  # as the spec writes it
        return "true" if v else "false"
    if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return "x".join(map(str, v))
    text = _flow(v)
    return text if len(text) <= 48 else text[:45] + "..."


def _flow(v) -> str:
    """A value as YAML flow text (`{block: inception_a}`), empty and unset fields left out."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()
                               if x not in (None, {}, []) and x is not MISSING) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _delta(a: Optional[dict], b: Optional[dict]) -> dict:
    a, b = a or {}, b or {}
    return {k: b.get(k, 0) - a.get(k, 0) for k in ("params", "macs")}


def _moved(a: Optional[int], b: Optional[int]) -> str:
    """`1,234 -> 567 (-667)`; one number when equal."""
    a, b = a or 0, b or 0  # an absent stage has none
    if a == b:
        return f"{a:,}"
    return f"{a:,} -> {b:,} ({b - a:+,})"


def _shape_moved(a: Optional[dict], b: Optional[dict]) -> str:
    sa = fmt_shape(a["shape"]) if a else "-"
    sb = fmt_shape(b["shape"]) if b else "-"
    return sa if sa == sb else f"{sa} -> {sb}"


def _table(rows: list) -> list:
    """Rows of cells, columns aligned (the last cell of a row may run on)."""
    n = max(len(r) for r in rows)
    widths = [max((len(r[k]) for r in rows if len(r) > k + 1), default=0) for k in range(n)]
    return ["  " + "  ".join(f"{c:<{widths[k]}}" if k + 1 < len(r) else c
                             for k, c in enumerate(r)).rstrip() for r in rows]


def format_diff(d: Diff) -> str:
    def who(name, path):
        return name if name == path else f"{name} ({path})"

    lines = [f"{who(d.a_name, d.a_path)} -> {who(d.b_name, d.b_path)}"]
    if d.equal:
        return "\n".join(lines + ["  no differences"])
    rows, notes = [], {}
    for c in d.settings:
        rows.append(["setting", c.path, f"{_text(c.a)} -> {_text(c.b)}"])
    for s in d.stages:
        get = (lambda side, k: side[k] if side else None)
        rows.append(["stage", s.name, s.status, _shape_moved(s.a, s.b),
                     "params " + _moved(get(s.a, "params"), get(s.b, "params")),
                     "MACs " + _moved(get(s.a, "macs"), get(s.b, "macs"))])
        notes[len(rows) - 1] = [str(c) for c in s.changes] + ([f"... {s.more} more"] if s.more else [])
    for b in d.blocks:
        rows.append(["block", b.name, b.status])
        notes[len(rows) - 1] = [str(c) for c in b.changes] + ([f"... {b.more} more"] if b.more else [])
    ta, tb = d.totals["a"], d.totals["b"]
    shapes = _shape_moved({"shape": ta["output"]}, {"shape": tb["output"]})
    rows.append(["total", "", "", shapes, "params " + _moved(ta["params"], tb["params"]),
                 "MACs " + _moved(ta["macs"], tb["macs"]), "layers " + _moved(ta["layers"], tb["layers"])])
    for i, text in enumerate(_table(rows)):
        lines.append(text)
        lines += [f"      {n}" for n in notes.get(i, [])]
    return "\n".join(lines)
