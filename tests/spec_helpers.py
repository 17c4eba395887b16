"""Helpers for the spec-language tests: run `archc` in-process or as a subprocess, write
spec trees into temporary directories, and parse `path:line:col: severity: message`."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
TEST_SPECS = ROOT / "tests" / "specs"

DIAG = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning|note): (?P<msg>.*)$")

# the smallest valid spec; tests append or replace lines
MINIMAL = """\
archc: 1
name: t
input: 3x32x32
network:
  - {name: c1, op: conv 3x3 8}
"""


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def diags(self) -> list[dict]:
        """Every `file:line:col: severity: message` line of stderr, parsed."""
        out = []
        for line in self.err.splitlines():
            m = DIAG.match(line)
            if m:
                d = m.groupdict()
                d["line"], d["col"] = int(d["line"]), int(d["col"])
                out.append(d)
        return out

    @property
    def errors(self) -> list[dict]:
        return [d for d in self.diags if d["sev"] == "error"]

    def only_error(self) -> dict:
        errs = self.errors
        assert len(errs) == 1, f"expected exactly one error, got:\n{self.err}"
        return errs[0]


def archc(*argv: str, cwd: str | os.PathLike | None = None) -> Result:
    """Run `archc argv...` in-process (fast); returns exit code, stdout and stderr."""
    from archcompiler.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse usage errors
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(old)
    return Result(rc, out.getvalue(), err.getvalue())


def archc_subprocess(*argv: str, cwd=None, timeout: float = 60, stdin=None) -> Result:
    """Run `python -m archcompiler.cli argv...` in a subprocess (for hang and crash checks)."""
    proc = subprocess.run(
        [sys.executable, "-m", "archcompiler.cli", *[str(a) for a in argv]],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_tree(root: Path, files: dict, marker: bool = True) -> Path:
    """Write {relative path: text or bytes} under root (with a .archc-root marker)."""
    root.mkdir(parents=True, exist_ok=True)
    if marker:
        (root / ".archc-root").touch()
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(textwrap.dedent(content) if content.startswith("\n") else content,
                         encoding="utf-8")
    return root


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the line holding the nth occurrence of needle."""
    count = 0
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            count += 1
            if count == nth:
                return i
    raise AssertionError(f"{needle!r} not found")


def col_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based column of the nth occurrence of needle on its line."""
    line = text.splitlines()[line_of(text, needle, nth) - 1]
    return line.index(needle) + 1
