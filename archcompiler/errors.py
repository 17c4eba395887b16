"""Diagnostics: every problem the tool reports carries a file, a line and a column."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Location:
    """A place in a spec file (1-based line and column)."""

    file: str
    line: int = 1
    column: int = 1

    # faster than the frozen dataclass's own __init__ (the YAML reader makes one per value)
    def __init__(self, file, line=1, column=1):
        object.__setattr__(self, "__dict__", {"file": file, "line": line, "column": column})

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    location: Location
    message: str
    severity: str = "error"  # "error" | "warning" | "note"
    # The spec file that was being validated, when the problem lies in a file it includes:
    # the chain of include sites, innermost first ("note: included from here").
    via: tuple[Location, ...] = field(default=())
    # Further context, printed after the message as `file:line:col: note: text` (e.g. the
    # stage that instantiated the block template where the problem lies).
    notes: tuple[tuple[Location, str], ...] = field(default=())

    def all_notes(self) -> list[tuple[Location, str]]:
        return [*self.notes, *((loc, "included from here") for loc in self.via)]

    def format(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        for loc, note in self.all_notes():
            text += f"\n{loc}: note: {note}"
        return text

    def format_github(self) -> str:
        """A GitHub Actions workflow command (`::error file=..,line=..,col=..::message`)."""
        kind = {"error": "error", "note": "notice"}.get(self.severity, "warning")
        msg = self.message
        for loc, note in self.all_notes():
            msg += f"\n{loc}: {note}"
        msg = msg.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        file = (self.location.file.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
                .replace(":", "%3A").replace(",", "%2C"))
        return (
            f"::{kind} file={file},line={self.location.line},"
            f"col={self.location.column}::{msg}"
        )

    def to_json(self) -> dict:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "severity": self.severity,
            "message": self.message,
            "notes": [{"file": loc.file, "line": loc.line, "column": loc.column, "message": note}
                      for loc, note in self.all_notes()],
        }


class SpecError(Exception):
    """A spec (or a file it references) is wrong. Carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = sorted_diagnostics([_alias_notes(d) for d in diagnostics])
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


# file -> [(start (line, col), end (line, col), alias Locations, anchor name)] for each
# YAML anchor whose value is used through aliases (filled as files are read: spec/yaml_io)
ALIAS_SPANS: dict = {}


def _alias_notes(d: Diagnostic) -> Diagnostic:
    """A problem inside an anchored YAML value is also a problem at each alias that uses
    it: a note names each of those lines."""
    spans = ALIAS_SPANS.get(d.location.file)
    if not spans:
        return d
    at = (d.location.line, d.location.column)
    notes = [(use, f"the value of anchor &{name} (line {start[0]}) is used here through "
                   f"alias *{name}")
             for start, end, uses, name in spans if start <= at <= end for use in uses]
    notes = [n for n in notes if n not in d.notes]
    return replace(d, notes=(*d.notes, *notes)) if notes else d


class UsageError(Exception):
    """The command line itself is wrong (exit code 2)."""


# the optional extras and the top-level modules each one installs
EXTRAS = {"torch": ("torch",), "onnx": ("onnx", "onnxruntime")}


class MissingExtraError(ImportError):
    """An optional extra (torch, onnx) is not installed; the message gives the command
    that installs it. `archc` exits 2 with the same text."""

    def __init__(self, extra: str, module: str, what: str = ""):
        self.extra = extra
        need = f"{what} needs" if what else "this needs"
        super().__init__(f"{need} the '{extra}' extra ({module} is not installed): "
                         f"pip install 'archcompiler[{extra}]'", name=module)


@contextmanager
def extra_guard(what: str = ""):
    """Turn a ModuleNotFoundError for an extra's own top-level module (torch, onnx,
    onnxruntime) into MissingExtraError; any other import error stays what it is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        for extra, modules in EXTRAS.items():
            if top in modules:
                raise MissingExtraError(extra, top, what) from exc
        raise


def sorted_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Stable order: by file, then line order, duplicates removed."""
    seen: set = set()
    out = []
    for d in diags:
        key = (d.location, d.message, d.severity)
        if key not in seen:
            seen.add(key)
            out.append(d)
    order = {}
    for d in out:
        order.setdefault(d.location.file, len(order))
    return sorted(out, key=lambda d: (order[d.location.file], d.location.line, d.location.column))


def error(loc: Location, message: str) -> Diagnostic:
    return Diagnostic(loc, message, "error")


def warning(loc: Location, message: str) -> Diagnostic:
    return Diagnostic(loc, message, "warning")


def close_matches(word: str, candidates, n: int = 1, cutoff: float = 0.6) -> list:
    """difflib's "did you mean" candidates (difflib is imported only when a message needs
    one: ~4 ms of every `archc` run otherwise)."""
    import difflib

    return difflib.get_close_matches(word, candidates, n=n, cutoff=cutoff)

