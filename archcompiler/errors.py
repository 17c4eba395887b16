"""Diagnostics: every problem the tool reports carries a file, a line and a column."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """A place in a spec file (1-based line and column)."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    location: Location
    message: str
    severity: str = "error"  # "error" | "warning"
    # The spec file that was being validated, when the problem lies in a file it includes.
    via: tuple[Location, ...] = field(default=())

    def format(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        for loc in self.via:
            text += f"\n{loc}: note: included from here"
        return text

    def format_github(self) -> str:
        kind = "error" if self.severity == "error" else "warning"
        msg = self.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return (
            f"::{kind} file={self.location.file},line={self.location.line},"
            f"col={self.location.column}::{msg}"
        )

    def to_json(self) -> dict:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "severity": self.severity,
            "message": self.message,
        }


class SpecError(Exception):
    """A spec (or a file it references) is wrong. Carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = sorted_diagnostics(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


class UsageError(Exception):
    """The command line itself is wrong (exit code 2)."""


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
