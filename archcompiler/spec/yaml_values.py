"""Located YAML values, and YAML 1.2 core-schema meaning for PyYAML's node tree.

The converter turns composed nodes into plain Python values that keep their line and
column (LocStr / LocDict / LocList); scalars get YAML 1.2 meaning and the YAML 1.1
readings that would differ are refused with a hint; tags are refused, never constructed;
duplicate keys are errors; aliases are expanded under a budget ("billion laughs").
"""

from __future__ import annotations

import math
import re

import yaml

from ..errors import Diagnostic, Location, SpecError, error

# Limits (documented in docs/spec-language.md). The largest shipped spec is ~7 KiB, ~550
# YAML events and ~600 values, so each limit leaves a margin of about 100x.
MAX_FILE_BYTES = 1 << 20  # 1 MiB per file
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_EVENTS = 50_000  # YAML parser events per file (scalars, collection starts and ends)
MAX_NODES = 50_000  # values per file after alias expansion ("billion laughs" budget)
MAX_INT = 2**53  # larger integers are refused (no channel count gets near)


class LocStr(str):
    loc: Location


class LocDict(dict):
    loc: Location
    key_locs: dict


def merged_locdict(old: dict, new: dict) -> LocDict:
    """`{**old, **new}` keeping where each key was written (`new`'s locations win): a
    variant's `with` merged onto its base's, errors still at the line of each value."""
    out = LocDict({**old, **new})
    out.loc = getattr(new, "loc", None) or getattr(old, "loc", None)
    out.key_locs = {**(getattr(old, "key_locs", {}) or {}), **(getattr(new, "key_locs", {}) or {})}
    return out


class LocList(list):
    loc: Location
    item_locs: list


def loc_of(value, default: Location) -> Location:
    return getattr(value, "loc", default)


def _style(node):
    """The scalar style: None for plain scalars (libyaml says '' where PyYAML says None)."""
    return node.style or None


def type_name(value) -> str:
    """How a YAML value is called in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_INT_DEC = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF_NAN = re.compile(r"[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z")
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_YAML11_BOOL = {"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"}
_NUMBER_START = frozenset("+-.0123456789")  # every number pattern here starts with one
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+\Z")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?\Z")
_YAML11_INT = re.compile(r"[-+]?(0b[01_]+|[0-9][0-9_]*_[0-9_]*)\Z")


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mark_loc(file: str, mark) -> Location:
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


STR_TAG = "tag:yaml.org,2002:str"


def _explicit_tag(event):
    """The tag the author wrote (None: none, or the non-specific '!')."""
    tag = event.tag
    return None if tag is None or tag == "!" else tag


class Converter:
    """Turns the parser's event list (yaml_io._scan) into located values, as PyYAML's
    composer would build nodes from it: an alias stands for its anchor's value, which is
    converted again where it is used (and counts again towards the budget)."""

    def __init__(self, file: str, events: list, ends: list, targets: dict):
        self.file = file
        self.events, self.ends, self.targets = events, ends, targets
        self.nodes = 0
        self.active: set[int] = set()
        self.diags: list[Diagnostic] = []

    def loc(self, node) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def node_at(self, i: int) -> int:
        """The event that starts the node at i (an alias: its anchor's)."""
        return self.targets[i] if type(self.events[i]) is yaml.AliasEvent else i

    def convert(self, i: int, depth: int = 0):
        """The value of the node starting at event i."""
        i = self.node_at(i)
        ev = self.events[i]
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError(
                error(
                    self.loc(ev),
                    f"the document expands to more than {MAX_NODES} values "
                    "(alias/anchor expansion?); specs are small, write them out",
                )
            )
        if depth > MAX_DEPTH:
            raise SpecError(error(self.loc(ev), f"nesting deeper than {MAX_DEPTH} levels"))
        tag = _explicit_tag(ev)
        if tag is not None and tag != STR_TAG:
            self.diags.append(
                error(
                    self.loc(ev),
                    f"YAML tag {tag.replace('tag:yaml.org,2002:', '!!')!r} is not allowed: "
                    "specs use plain YAML values only (remove the tag); nothing was constructed",
                )
            )
            return None
        cls = type(ev)
        if cls is yaml.ScalarEvent:
            return self.scalar(ev, explicit_str=tag == STR_TAG)
        if i in self.active:
            raise SpecError(error(self.loc(ev), "recursive alias: a value contains itself"))
        self.active.add(i)
        try:
            if cls is yaml.SequenceStartEvent:
                out = LocList()
                out.loc = self.loc(ev)
                out.item_locs = []
                j, end = i + 1, self.ends[i]
                while j < end:
                    out.append(self.convert(j, depth + 1))
                    out.item_locs.append(self.loc(self.events[self.node_at(j)]))
                    j = self.ends[j] + 1
                return out
            return self.mapping(i, depth)
        finally:
            self.active.discard(i)

    def mapping(self, i: int, depth: int) -> LocDict:
        events, ends = self.events, self.ends
        out = LocDict()
        out.loc = self.loc(events[i])
        out.key_locs = {}
        j, end = i + 1, ends[i]
        while j < end:
            kev = events[self.node_at(j)]
            v = ends[j] + 1  # the value's first event
            j = ends[v] + 1  # the next key's
            kloc = self.loc(kev)
            if type(kev) is not yaml.ScalarEvent:
                self.diags.append(error(kloc, "mapping keys must be plain strings"))
                continue
            ktag = _explicit_tag(kev)
            if ktag is not None and ktag != STR_TAG:
                self.diags.append(
                    error(kloc, f"YAML tag {ktag.replace('tag:yaml.org,2002:', '!!')!r} is not "
                                "allowed: specs use plain YAML values only (remove the tag)")
                )
                continue
            if kev.value == "<<" and _style(kev) is None:
                self.diags.append(
                    error(kloc, "YAML merge keys ('<<') are not supported: use a block "
                                "template with parameters, or 'extends'")
                )
                continue
            key = self.scalar(kev, explicit_str=ktag == STR_TAG, is_key=True)
            if not isinstance(key, str):
                self.diags.append(
                    error(kloc, f"mapping key {kev.value!r} is read as {_article(type_name(key))}, "
                                f"not a string: quote it ('{kev.value}')")
                )
                continue
            if key in out:
                first = out.key_locs[key]
                self.diags.append(
                    error(kloc, f"duplicate key {key!r} (first defined at line {first.line})")
                )
                continue
            out[key] = self.convert(v, depth + 1)
            out.key_locs[key] = kloc
        return out

    def scalar(self, node, explicit_str: bool = False, is_key: bool = False):
        text = node.value
        loc = self.loc(node)
        if _style(node) is not None or explicit_str:  # quoted or block scalar: always a string
            s = LocStr(text)
            s.loc = loc
            return s
        value = self.resolve_plain(text, loc, is_key)
        if isinstance(value, str):
            s = LocStr(value)
            s.loc = loc
            return s
        return value

    def resolve_plain(self, text: str, loc: Location, is_key: bool):
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if len(text) > 64:  # no number is that long; the regexes below stay linear-time
            if _INT_DEC.match(text) or _INT_OCT.match(text) or _INT_HEX.match(text):
                self.diags.append(error(loc, f"integer {_short(text)} is too large (limit 2**53)"))
                return 0
            if _FLOAT.match(text):
                self.diags.append(error(loc, f"number {_short(text)} has too many digits"))
                return 0.0
            return text
        if text[0] not in _NUMBER_START:  # a word (an op string, a name): no pattern below applies
            if not is_key and text in _YAML11_BOOL:
                self._yaml11_bool(text, loc)
            return text
        if _INT_DEC.match(text):
            if _LEADING_ZERO.match(text):
                self.diags.append(
                    error(loc, f"{text!r}: a leading zero is octal in YAML 1.1 and decimal in "
                               f"YAML 1.2; write {int(text)} (or 0o{text.lstrip('+-0')} for octal)")
                )
                return int(text)
            return self.checked_int(int(text), text, loc)
        if _INT_OCT.match(text):
            return self.checked_int(int(text[2:], 8), text, loc)
        if _INT_HEX.match(text):
            return self.checked_int(int(text[2:], 16), text, loc)
        if _FLOAT.match(text):
            value = float(text)
            if not math.isfinite(value):
                self.diags.append(error(loc, f"{text!r} is not a finite number"))
            return value
        if _INF_NAN.match(text):
            self.diags.append(error(loc, f"{text!r}: NaN and infinity are not allowed"))
            return float("nan")
        if is_key:
            return text
        if text in _YAML11_BOOL:
            self._yaml11_bool(text, loc)
        elif _SEXAGESIMAL.match(text):
            self.diags.append(
                error(loc, f"{text!r} is a base-60 number in YAML 1.1 and a string in YAML 1.2: "
                           "quote it if you mean the string")
            )
        elif _YAML11_INT.match(text):
            try:
                hint = f"write {int(text.replace('_', ''), 0)}"
            except ValueError:
                hint = "write plain decimal digits without '_'"
            self.diags.append(
                error(loc, f"{text!r} is an integer in YAML 1.1 but a string in YAML 1.2: {hint}, "
                           "or quote it if you mean the string")
            )
        return text

    def _yaml11_bool(self, text: str, loc: Location) -> None:
        self.diags.append(
            error(loc, f"{text!r} is a boolean in YAML 1.1 but a string in YAML 1.2: "
                       "write true or false, or quote it if you mean the string")
        )

    def checked_int(self, value: int, text: str, loc: Location) -> int:
        if abs(value) > MAX_INT:
            self.diags.append(error(loc, f"integer {_short(text)} is too large (limit 2**53)"))
        return value

