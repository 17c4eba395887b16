"""A variant's edits of its base spec, and which inherited expectations they make stale.

`stages:` edits the base's stages by name (fields given replace the stage's; `with`
merges), edits one copy of a repeated stage (`inception_a.2`), removes a stage, or inserts
a new one `before:`/`after:` a named stage. Whatever a variant changes, the base's promises
about it (stage shapes from the first changed stage on, and the totals) are not checked
against the variant: they describe the base, and an error pointing into the base file for
a number the variant changed on purpose would only confuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import Location, close_matches, error
from . import model as m
from .expr import Expr
from .yaml_values import merged_locdict

BODY_FIELDS = ("block", "op", "seq", "concat", "residual")


@dataclass
class EditedNetwork:
    stages: list  # the resulting network
    dirty_from: Optional[int] = None  # stages from this index on may differ from the base's
    own_expect: dict = field(default_factory=dict)  # stage -> (shape text, Location)
    edited: list = field(default_factory=list)  # what was edited, for the note


def _edit_stage(st: m.Stage, ed: m.StageEdit, loc: Location) -> m.Stage:
    given = {f for f in ed.model_fields_set if f not in ("before", "after")}
    update: dict = {}
    body = next((f for f in BODY_FIELDS if f in given), None)
    if body is not None:
        for f in BODY_FIELDS:
            update[f] = getattr(ed, f) if f == body else None
        if body != "block":  # an inline body: no block parameters, copies or repeat
            update.update(with_={}, repeat=None, copies={})
    new_block = body == "block" and ed.block != st.block
    if "with_" in given:
        update["with_"] = ed.with_ if new_block else merged_locdict(st.with_, ed.with_)
    elif new_block:
        update["with_"] = {}
    for f in ("repeat", "expect", "feature"):
        if f in given:
            update[f] = getattr(ed, f)
    if st.name is None and body is not None and update.get("block") != st.block:
        update["name"] = st.block  # the stage keeps its name when its block changes
    new = st.model_copy(update=update)
    new._loc = loc
    new._key_locs = {**st._key_locs, **ed._key_locs}
    return new


def _new_stage(name: str, ed: m.StageEdit, loc: Location, diags: list) -> Optional[m.Stage]:
    bodies = [f for f in BODY_FIELDS if getattr(ed, f) is not None]
    if len(bodies) != 1:
        diags.append(error(loc, f"stages.{name}: a new stage needs one body: block, op, seq, "
                                "concat or residual"))
        return None
    if ed.with_ and ed.block is None:
        diags.append(error(loc, f"stages.{name}: 'with' only applies to a 'block' stage"))
        return None
    fields = {f: getattr(ed, f) for f in ("block", "with_", "repeat", "op", "seq", "concat",
                                          "residual", "expect", "feature")}
    st = m.Stage.model_construct(name=name, copies={}, **fields)
    st._loc = loc
    st._key_locs = dict(ed._key_locs)
    return st


def _edit_copy(st: m.Stage, index: int, ed, key: str, loc: Location, diags: list) -> Optional[m.Stage]:
    extra = sorted(ed.model_fields_set - {"block", "with_"}) if not isinstance(ed, str) else []
    if isinstance(ed, str) or extra:
        what = "removing" if isinstance(ed, str) else ", ".join(
            "with" if f == "with_" else f for f in extra)
        diags.append(error(loc, f"stages.{key}: one copy of a repeated stage takes only 'block' "
                                f"and 'with' ({what} applies to the whole stage: edit "
                                f"'{st.stage_name}')"))
        return None
    if st.repeat is None:
        diags.append(error(loc, f"stages.{key}: stage {st.stage_name!r} is not repeated, so it has "
                                f"no copy {index}: edit '{st.stage_name}' itself"))
        return None
    if isinstance(st.repeat, int) and not 0 <= index < st.repeat:
        diags.append(error(loc, f"stages.{key}: stage {st.stage_name!r} has copies 0 to "
                                f"{st.repeat - 1}, so there is no copy {index}"))
        return None
    old = st.copies.get(str(index))
    with_ = ed.with_
    if old is not None and (ed.block is None or ed.block == old.block):
        with_ = merged_locdict(old.with_, ed.with_)
    block = ed.block if ed.block is not None else (old.block if old is not None else None)
    copy = m.CopyEdit.model_construct(block=block, with_=with_)
    copy._loc = loc
    copy._key_locs = dict(ed._key_locs)
    new = st.model_copy(update={"copies": {**st.copies, str(index): copy}})
    return new


def apply_stage_edits(network: list, edits: dict, here: Location, diags: list) -> EditedNetwork:
    """The base's `network` with a variant's `stages:` edits applied, in the order written."""
    rows = [[st, False] for st in network]  # [stage, changed]
    key_locs = getattr(edits, "key_locs", {}) or {}
    out = EditedNetwork([])

    def find(name):
        return next((i for i, (st, _) in enumerate(rows) if st.stage_name == name), None)

    def unknown(key, name, loc, hint=""):
        names = [st.stage_name for st, _ in rows]
        close = close_matches(name, names, n=1)
        listed = "the base's stages" if hint else "its stages"
        diags.append(error(loc, f"stages.{key}: the base has no stage named {name!r}"
                                + (f" (did you mean {close[0]!r}?)" if close else "")
                                + hint + f"; {listed}: {', '.join(names)}"))

    for key, ed in edits.items():
        loc = getattr(ed, "loc", None) or key_locs.get(key) or here
        name, dot, copy = key.partition(".")
        i = find(name)
        if dot:
            if i is None:
                unknown(key, name, key_locs.get(key) or loc)
                continue
            new = _edit_copy(rows[i][0], int(copy), ed, key, key_locs.get(key) or loc, diags)
            if new is not None:
                rows[i] = [new, True]
                out.edited.append(key)
            continue
        if isinstance(ed, str):  # remove
            if i is None:
                unknown(key, name, key_locs.get(key) or loc)
                continue
            del rows[i]
            if i < len(rows):
                rows[i][1] = True  # the stage after it now reads another input
            else:
                out.dirty_from = len(rows) if out.dirty_from is None else out.dirty_from
            out.edited.append(f"{key} (removed)")
            continue
        anchor = ed.before if ed.before is not None else ed.after
        if anchor is not None:
            if i is not None:
                diags.append(error(loc, f"stages.{key}: the base already has a stage named "
                                        f"{key!r}; edit it without 'before'/'after', or give the "
                                        "new stage another name"))
                continue
            j = find(anchor)
            if j is None:
                unknown(key, anchor, ed.key_loc("before" if ed.before is not None else "after"))
                continue
            st = _new_stage(key, ed, loc, diags)
            if st is not None:
                rows.insert(j if ed.before is not None else j + 1, [st, True])
                out.edited.append(f"{key} (inserted)")
            continue
        if i is None:
            unknown(key, name, key_locs.get(key) or loc,
                    "; a new stage needs 'before:' or 'after:' naming where it goes")
            continue
        edited = _edit_stage(rows[i][0], ed, loc)
        if edited.with_ and edited.block is None:
            diags.append(error(ed.key_loc("with") or loc, f"stages.{key}: 'with' only applies to "
                                                          "a 'block' stage (this stage is inline)"))
            continue
        rows[i] = [edited, True]
        out.edited.append(key)
    for i, (st, changed) in enumerate(rows):
        if changed and (out.dirty_from is None or i < out.dirty_from):
            out.dirty_from = i
        ed = edits.get(st.stage_name)
        if isinstance(ed, m.StageEdit) and ed.expect is not None:
            out.own_expect[st.stage_name] = (ed.expect, ed.key_loc("expect"))
    out.stages = [st for st, _ in rows]
    return out


# --- what a stage depends on ------------------------------------------------------------

def _walk(obj):
    """Every model, expression and block name reachable from `obj`."""
    if isinstance(obj, Expr):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _walk(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _walk(x)
    elif isinstance(obj, m.Located):
        yield obj
        for fname in type(obj).model_fields:
            yield from _walk(getattr(obj, fname))


def _uses(obj, blocks: dict, seen: Optional[set] = None) -> tuple[set, set]:
    """(parameter names, block names) that `obj` uses, through the blocks it instantiates."""
    seen = set() if seen is None else seen
    names: set = set()
    used_blocks: set = set()
    for x in _walk(obj):
        if isinstance(x, Expr):
            names |= x.names()
        block = getattr(x, "block", None) if isinstance(x, (m.Stage, m.BlockRef, m.CopyEdit)) else None
        if isinstance(block, str) and block not in seen:
            seen.add(block)
            used_blocks.add(block)
            if block in blocks:
                sub_names, sub_blocks = _uses(blocks[block], blocks, seen)
                names |= sub_names
                used_blocks |= sub_blocks
    return names, used_blocks


def param_closure(changed: set, params: dict) -> set:
    """Parameters whose value follows from a changed one (`b: $(2*a)` changes with `a`)."""
    out = set(changed)
    grew = True
    while grew:
        grew = False
        for k, v in params.items():
            if k not in out and isinstance(v, Expr) and v.names() & out:
                out.add(k)
                grew = True
    return out


def first_stage_using(network: list, blocks: dict, params: set, block_names: set) -> Optional[int]:
    for i, st in enumerate(network):
        names, used = _uses(st, blocks)
        if names & params or used & block_names:
            return i
    return None


def same_value(a, b) -> bool:
    if isinstance(a, Expr) or isinstance(b, Expr):
        return isinstance(a, Expr) and isinstance(b, Expr) and a.text == b.text
    return type(a) is type(b) and a == b
