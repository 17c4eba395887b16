"""pydantic's validation errors -> located diagnostics (`path:line:col: error: field: message`).

pydantic's error locations mix the user's keys and indices with internal union tags; they
are walked through the located YAML data (see yaml_io) to find the line, and the several
complaints a union gives are folded into one message that says what was expected.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from ..errors import Diagnostic, Location, close_matches, error
from . import model as m
from .yaml_io import LocDict, LocList, type_name

_FIELD_NAMES = None


def field_names() -> set:
    global _FIELD_NAMES
    if _FIELD_NAMES is None:
        _FIELD_NAMES = m.all_field_names()
    return _FIELD_NAMES


def _join(path: str, part) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


_STAGE_PATH = re.compile(r"(network|aux)\[\d+\]\Z")


def _locate(raw, loc_parts, file: str):
    """Walk pydantic's error location through the raw YAML data.

    pydantic's locations mix the user's keys and indices with internal union tags
    ('conv', 'list[int]', 'function-wrap[...]'); only what matches the data is kept.
    Returns (Location, user-facing field path, field names below the data: a missing
    field, or a field of a parsed op string)."""
    cur, where = raw, getattr(raw, "loc", Location(file))
    path = parent = ""
    parts = list(loc_parts)
    i = 0
    rest: list = []
    while i < len(parts):
        part = parts[i]
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        # union tags: ('op', 'conv', ...) for ops (also parsed op strings), and
        # ('concat', 'concat', ...) for the item kind followed by the field of that name
        if (part == "op" and nxt in m.OP_NAMES
                and (isinstance(cur, str) or (isinstance(cur, dict) and cur.get("op") == nxt))):
            i += 2
            continue
        if (isinstance(part, str) and part in m.ITEM_KEYS and isinstance(cur, dict)
                and m._item_kind(cur) == part and (nxt == part or nxt in ("name", "with"))
                and not _STAGE_PATH.match(path)):  # a stage is not a union: no tags
            i += 1
            continue
        if isinstance(cur, LocDict) and isinstance(part, str) and part in cur:
            where = cur.key_locs.get(part, where)
            parent, path = path, _join(path, part)
            cur = cur[part]
        elif isinstance(cur, LocList) and isinstance(part, int) and 0 <= part < len(cur):
            where = cur.item_locs[part]
            parent, path = path, _join(path, part)
            cur = cur[part]
        elif (isinstance(part, str) and (part in field_names() or part == "with")
              and part not in m.OP_NAMES):
            rest.append(part)  # a field absent from the data (missing) or from a parsed string
        # anything else is an internal tag (union member names): skipped
        i += 1
    if hasattr(cur, "loc") and not isinstance(cur, (LocDict, LocList)):
        where = cur.loc
    return where, path, rest, parent


_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "is_instance_of": "a $parameter expression",
}
_TYPE_ERRORS = set(_EXPECTED) | {"literal_error", "union_tag_invalid", "union_tag_not_found"}


def _is_pair_length_error(err: dict) -> bool:
    ctx = err.get("ctx") or {}
    return err["type"] in ("too_short", "too_long") and 2 in (ctx.get("min_length"), ctx.get("max_length"))


def _type_only(errs: list) -> bool:
    return all(e["type"] in _TYPE_ERRORS or _is_pair_length_error(e) for e in errs)


def describe(value) -> str:
    """`got ...` wording for a YAML value."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {text!r}"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        text = repr(list(value))
        if len(text) > 60 or any(isinstance(x, (dict, list)) for x in value):
            return f"a list of {len(value)} item{'s' * (len(value) != 1)}"
        return f"the list {text}"
    return type_name(value)


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def _group_message(errs: list, rest: list) -> str:
    """One message for the errors pydantic reports at one place (a union gives several)."""
    kinds = [e["type"] for e in errs]
    first = errs[0]
    inp = first.get("input")
    if "extra_forbidden" in kinds:
        extra = next(e for e in errs if e["type"] == "extra_forbidden")
        key = str(extra["loc"][-1]) if extra["loc"] else "?"
        close = close_matches(key, sorted(field_names()), n=1)
        return f"unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    if "missing" in kinds:
        field = rest[-1] if rest else str(first["loc"][-1])
        return f"missing required field {field!r}"
    for e in errs:  # our own validators say precisely what is wrong
        if e["type"] in ("value_error", "assertion_error"):
            return _clean(e["msg"])
    if "union_tag_invalid" in kinds or "union_tag_not_found" in kinds:
        return ("expected an op string like 'conv 3x3 64', or a mapping with one of: "
                + ", ".join(m.ITEM_KEYS) + f"; got {describe(inp)}")
    if "string_pattern_mismatch" in kinds and isinstance(inp, str):
        msg = next(e["msg"] for e in errs if e["type"] == "string_pattern_mismatch")
        if "x[0-9]" in msg:
            return f"expected a shape written CxHxW like 384x35x35, got {inp!r}"
        if "A-Za-z_" in msg:
            return (f"{describe(inp)[len('the string '):]} is not a valid name (letters, digits "
                    "and '_', not starting with a digit, at most 64 characters)")
        if "^\\$" in msg:
            return f"expected a $parameter expression, got {inp!r}"
    if _type_only(errs):
        wanted: list[str] = []
        for e in errs:
            if e["type"] == "literal_error":
                w = e["msg"].replace("Input should be ", "")
            elif _is_pair_length_error(e) or (e["type"] == "list_type" and e["loc"]
                                               and e["loc"][-1] == "list[int]"):
                w = "a list of 2 integers"  # the [height, width] form of a kernel, stride, pad
            else:
                w = _EXPECTED.get(e["type"], "")
            if w and w not in wanted:
                wanted.append(w)
        if "a list of 2 integers" in wanted and "a list" in wanted:
            wanted.remove("a list")
        if "a number" in wanted and "an integer" in wanted:
            wanted.remove("an integer")
        expected = ", ".join(wanted[:-1]) + (" or " if len(wanted) > 1 else "") + wanted[-1]
        msg = f"expected {expected}, got {describe(inp)}"
        if isinstance(inp, str) and inp.strip().lstrip("+-").replace(".", "", 1).isdigit():
            msg += " (numbers are written without quotes)"
        elif "literal_error" in kinds and isinstance(inp, str):
            options = [o.strip("'") for o in expected.replace(" or ", ", ").split(", ")]
            close = close_matches(inp, options, n=1)
            if close:
                msg += f"; did you mean {close[0]!r}?"
        return msg
    err = next((e for e in errs if e["type"] not in _TYPE_ERRORS), first)
    msg = _clean(err["msg"])
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be "):] + f", got {describe(err.get('input'))}"
    elif err["type"] == "too_short" and (err.get("ctx") or {}).get("min_length") == 1:
        msg = "must not be empty"
    return msg


def validation_diagnostics(exc: ValidationError, raw, file: str) -> list[Diagnostic]:
    """pydantic's errors -> `path:line:col: error: <field path>: message` diagnostics."""
    groups: dict = {}
    for err in exc.errors():
        where, path, rest, parent = _locate(raw, err["loc"], file)
        if err["type"] == "extra_forbidden":
            # the unknown key is part of the data path: report it under its parent
            path, rest = parent, []
        key = (path, tuple(rest) if err["type"] != "missing" else ("missing", *rest))
        groups.setdefault(key, {"where": where, "errs": [], "path": path, "rest": rest})
        groups[key]["errs"].append(err)
    # A union reports every member's complaint. When some member got further into the
    # data (an error deeper down), the shallow "wrong type" complaints are noise.
    paths = [g["path"] for g in groups.values()]
    out = []
    for g in groups.values():
        path, rest = g["path"], g["rest"]
        if _type_only(g["errs"]) and any(
                p != path and (p.startswith(path + ".") or p.startswith(path + "[") or not path)
                for p in paths):
            continue
        msg = _group_message(g["errs"], rest)
        label = path
        kinds = {e["type"] for e in g["errs"]}
        if "missing" in kinds:
            label = ".".join([label, *rest[:-1]]) if rest[:-1] else label
        elif rest and not kinds & {"value_error", "extra_forbidden", "union_tag_invalid",
                                   "union_tag_not_found"}:
            msg = f"{rest[-1]}: {msg}"
        out.append(error(g["where"], f"{label}: {msg}" if label else msg))
    return out

