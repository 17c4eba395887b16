"""Safe, located YAML reading.

PyYAML only tokenises and composes here; we turn its node tree into plain Python
values ourselves, so that:
- every value keeps its line and column (for diagnostics),
- scalars get YAML 1.2 core-schema meaning (PyYAML implements 1.1), and the 1.1
  readings that would differ are rejected with a hint instead of being coerced,
- no tag is ever constructed (only `!!str` is accepted), duplicate keys are errors,
- aliases are expanded under a budget, so recursive or exponential ("billion laughs")
  documents are refused quickly.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

import yaml

from ..errors import ALIAS_SPANS, Diagnostic, Location, SpecError, error
from .yaml_values import (  # noqa: F401 - re-exported: the located values and the limits
    MAX_DEPTH, MAX_EVENTS, MAX_FILE_BYTES, MAX_INT, MAX_NODES, LocDict, LocList, LocStr,
    Converter, mark_loc, loc_of, type_name)

# libyaml (PyYAML's C extension) parses ~20x faster; the pure-Python parser is the fallback
# and also words every syntax error, so that messages are the same with or without libyaml.
_FAST = bool(getattr(yaml, "__with_libyaml__", False))


class UnreadableFile(SpecError):
    """The file itself cannot be used (missing, a directory, not a regular file, too large,
    unreadable). A reference to such a file is reported where the reference is written."""

    def __init__(self, diagnostic: Diagnostic, reason: str):
        super().__init__(diagnostic)
        self.reason = reason


class _Loader(yaml.SafeLoader):
    """SafeLoader whose resolver tags every implicit node with a marker.

    A node whose tag is not a marker was tagged explicitly by the author. Only the
    parser and composer run: no constructor ever sees a node."""

    def resolve(self, kind, value, implicit):  # noqa: D102
        return "archc:" + kind.__name__


if _FAST:

    class _CLoader(yaml.CSafeLoader):  # type: ignore[name-defined, misc]
        def resolve(self, kind, value, implicit):  # noqa: D102
            return "archc:" + kind.__name__
else:  # pragma: no cover - without libyaml
    _CLoader = None  # type: ignore[assignment, misc]


def _unreadable(where: Location, reason: str) -> UnreadableFile:
    return UnreadableFile(error(where, reason), reason)


def read_text(path: str, display: str) -> str:
    """Read a spec file as UTF-8 text, refusing anything that is not a small regular file."""
    where = Location(display, 1, 1)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _unreadable(where, "no such file") from None
    except (OSError, ValueError) as exc:
        raise _unreadable(where, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _unreadable(where, "is a directory, not a spec file")
    if not stat.S_ISREG(st.st_mode):
        raise _unreadable(where, "not a regular file (a device, FIFO or socket): refused")
    if st.st_size > MAX_FILE_BYTES:
        raise _unreadable(where, f"file is {st.st_size} bytes; spec files are limited to "
                                 f"{MAX_FILE_BYTES} bytes")
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the stat, open does not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise _unreadable(where, "not a regular file (a device, FIFO or socket): refused")
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _unreadable(where, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _unreadable(where, f"file is larger than {MAX_FILE_BYTES} bytes; spec files are "
                                 f"limited to {MAX_FILE_BYTES} bytes")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            error(Location(display, line, col),
                  f"invalid UTF-8 byte 0x{data[exc.start]:02x}: spec files must be UTF-8 text")
        ) from None
    if "\x00" in text:
        i = text.index("\x00")
        raise SpecError(
            error(Location(display, text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1),
                  "NUL byte: this looks like a binary file, not YAML")
        )
    return text


def _yaml_error(display: str, exc: yaml.YAMLError, text: str = "") -> SpecError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if problem.startswith("expected <block end>") and mark is not None and text:
        plain = _indentation_error(display, text, mark)
        if plain is not None:
            return SpecError(plain)
    msg = f"YAML syntax error: {problem}"
    if context:
        msg += f" ({context})"
    if "\\t" in msg or "'\\t'" in repr(problem):
        msg += "; indent with spaces, YAML does not allow tabs there"
    return SpecError(error(mark_loc(display, mark), msg))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _indentation_error(display: str, text: str, mark) -> Optional[Diagnostic]:
    """PyYAML's "expected <block end>, but found ..." in plain words: which line's
    indentation disagrees with which earlier lines."""
    lines = text.split("\n")
    row = mark.line
    if row >= len(lines):
        return None
    here = _indent(lines[row])
    levels: list[tuple[int, int]] = []  # (line index, indent) of the enclosing lines
    for i in range(row - 1, -1, -1):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        ind = _indent(lines[i])
        if not levels or ind < levels[-1][1]:
            levels.append((i, ind))
        if ind == 0:
            break
    if not levels:
        return None
    loc = Location(display, row + 1, here + 1)
    same = next((i for i, ind in levels if ind == here), None)
    if same is None:
        shown = " or ".join(f"line {i + 1} ({ind} space{'s' * (ind != 1)})" for i, ind in levels[:3])
        msg = (f"inconsistent indentation: line {row + 1} is indented {here} space"
               f"{'s' * (here != 1)}, which lines up with none of the lines it could belong to: "
               f"{shown}; indent it like the other keys (or list items) of its mapping (or list)")
        return Diagnostic(loc, msg, "error", (), ((Location(display, levels[0][0] + 1,
                                                            levels[0][1] + 1),
                                                   "the line before it is indented here"),))
    first = lines[same].strip()
    this = lines[row].strip()
    kinds = ("a list item ('- ')" if first.startswith("-") else "a mapping key",
             "a list item ('- ')" if this.startswith("-") else "a mapping key")
    msg = (f"inconsistent indentation: line {row + 1} is {kinds[1]} at the same indentation "
           f"({here} spaces) as line {same + 1}, which is {kinds[0]}; one level holds either "
           "keys or list items: indent line "
           f"{row + 1} differently, or make both {'list items' if kinds[0] != kinds[1] else 'alike'}")
    return Diagnostic(loc, msg, "error", (), ((Location(display, same + 1, here + 1),
                                               f"line {same + 1} starts that level here"),))


def _scan(text: str, display: str, loader_cls):
    """The (iterative) event parser: bounds the size and depth, catches multi-document
    streams with a precise location, and checks the anchors as PyYAML's composer would.
    Returns (events, ends, targets): ends[i] is the index of the event that closes the
    node starting at i (itself for a scalar or an alias), targets[i] the node an alias at
    i stands for; the values are built from this list (Converter), no node tree."""
    depth = docs = 0
    anchors: dict = {}  # name -> [start, end, [alias uses]] of its definition
    defined: dict = {}  # name -> index of the event that defines it
    spans: list = []
    open_anchors: list = []  # the anchor (or None) of each open collection
    events: list = []
    ends: list = []
    opened: list = []  # start indices of the open collections
    targets: dict = {}
    problem = None  # the composer's complaint (raised once the scan is through)
    scalar, alias = yaml.ScalarEvent, yaml.AliasEvent
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    stops = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    parser = loader_cls(text)
    next_event = parser.get_event  # None after the stream's end (yaml.parse, minus its generator)
    try:
        event = next_event()
        while event is not None:
            i = len(events)
            if i >= MAX_EVENTS:
                raise SpecError(
                    error(mark_loc(display, event.start_mark),
                          f"document too large: more than {MAX_EVENTS} YAML values and collections "
                          "(a documented limit; specs are small, use block templates and repeat)")
                )
            events.append(event)
            ends.append(i)
            cls = type(event)
            if cls is scalar or cls in starts:
                anchor = event.anchor
                if anchor is not None:
                    if anchor in defined and problem is None:
                        problem = yaml.composer.ComposerError(
                            f"found duplicate anchor {anchor!r}; first occurrence",
                            events[defined[anchor]].start_mark, "second occurrence", event.start_mark)
                    defined[anchor] = i
                    anchors[anchor] = [event.start_mark, event.end_mark if cls is scalar else None,
                                       [], anchor]
                    spans.append(anchors[anchor])
                if cls is not scalar:
                    open_anchors.append(anchor)
                    opened.append(i)
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise SpecError(
                            error(mark_loc(display, event.start_mark),
                                  f"nesting deeper than {MAX_DEPTH} levels (a documented limit)")
                        )
            elif cls in stops:
                if opened:
                    ends[opened.pop()] = i
                if open_anchors:
                    name = open_anchors.pop()
                    if name is not None and anchors[name][1] is None:
                        anchors[name][1] = event.end_mark
                depth -= 1
            elif cls is alias:
                if event.anchor in defined:
                    targets[i] = defined[event.anchor]
                    anchors[event.anchor][2].append(mark_loc(display, event.start_mark))
                elif problem is None:
                    problem = yaml.composer.ComposerError(
                        None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            elif cls is yaml.DocumentStartEvent:
                docs += 1
                if docs > 1:
                    raise SpecError(
                        error(mark_loc(display, event.start_mark),
                              "more than one YAML document ('---'): a spec file holds exactly one")
                    )
            event = next_event()
    finally:
        parser.dispose()
    ALIAS_SPANS.pop(display, None)
    used = [(_pos(a), _pos(b), tuple(uses), name) for a, b, uses, name in spans if uses and b]
    if used:
        ALIAS_SPANS[display] = used
    if problem is not None:
        raise problem
    return events, ends, targets


def _pos(mark) -> tuple:
    return (mark.line + 1, mark.column + 1)


def _root(events: list) -> Optional[int]:
    """The index of the document's node (None: no document)."""
    for i, event in enumerate(events):
        if type(event) is yaml.DocumentStartEvent:
            return i + 1
    return None


def parse_yaml(text: str, display: str):
    """Parse YAML text into located plain values (LocDict / LocList / LocStr / int / ...)."""
    try:
        if _FAST:
            try:
                scanned = _scan(text, display, _CLoader)
            except yaml.YAMLError:  # reparsed by PyYAML, whose messages we word
                scanned = _scan(text, display, _Loader)
        else:  # pragma: no cover - without libyaml
            scanned = _scan(text, display, _Loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(display, exc, text) from None
    events, ends, targets = scanned
    root = _root(events)
    if root is None:
        raise SpecError(error(Location(display, 1, 1),
                              "the file holds no YAML document (it is empty, or comments only)"))
    conv = Converter(display, events, ends, targets)
    value = conv.convert(root)
    if conv.diags:
        raise SpecError(conv.diags)
    return value


def read_yaml(path: str, display: str | None = None):
    display = display or path
    return parse_yaml(read_text(path, display), display)
