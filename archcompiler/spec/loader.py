"""Loading a spec: files -> validated models -> one resolved `Spec`.

Resolution follows `imports` (block libraries) and `extends` (a base spec plus overrides),
confined to the spec root, and turns pydantic's errors into located diagnostics.

The spec root is the nearest directory, from the spec file's own upwards, that holds a
`.archc-root` file (the shipped `specs/` has one), a `.git` or a `pyproject.toml`; without
any, it is the spec file's own directory (`--root` chooses another). References are relative to the file that writes them, may use
`..` but never leave the root (symlinks are resolved first), and may name a shipped spec
as `archc:inception_v4`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from ..errors import Diagnostic, Location, SpecError, close_matches, error
from . import model as m
from .diagnostics import describe, validation_diagnostics
from .merge import Spec, merge, parse_shape  # noqa: F401 - Spec and parse_shape are re-exported
from .shipped import ROOT_MARKER, find_named_spec, package_specs_dir, shipped_spec_names  # noqa: F401
from .yaml_io import LocDict, LocList, LocStr, UnreadableFile, parse_yaml, read_text

MAX_INCLUDE_DEPTH = 16
# Files read and validated in this process, by (display name, exact text): a base spec or
# block library shared by several specs (`archc validate specs/*.yaml`) is parsed once.
# Keyed by the text itself, so an edited file is always read afresh; the values are
# immutable (frozen models) or never modified (the located YAML).
_PARSED: dict = {}
_PARSED_MAX = 256


# What marks a spec root: our own marker, or what marks a project (a repository, a Python
# project), so that a variant in `variants/` can extend `../base.yaml` with no setup.
ROOT_MARKERS = (ROOT_MARKER, ".git", "pyproject.toml")
ROOT_RULE = ("the nearest directory holding .archc-root, .git or pyproject.toml, else the "
             "spec's own directory")


def find_root(spec_path: Path) -> Path:
    d = spec_path.resolve().parent
    for cand in (d, *d.parents):
        if any(os.path.lexists(cand / marker) for marker in ROOT_MARKERS):
            return cand
    return d


def _no_such_file(ref: str, real: Path, from_file: Path, label: str, shown: str) -> str:
    """'no such file' with the nearest name in the directory the reference points into
    (never the referencing file itself)."""
    parent, name = os.path.split(ref)
    try:
        entries = sorted(e for e in os.listdir(real.parent)
                         if not os.path.samefile(real.parent / e, from_file))
    except OSError:
        entries = []
    close = close_matches(name, entries, n=1, cutoff=0.8)
    hint = f"; did you mean {os.path.join(parent, close[0])!r}?" if close else ""
    return f"{label}: {shown!r}: no such file{hint}"


# --- files -------------------------------------------------------------------------------

def _display_path(p: Path) -> str:
    """How diagnostics name a shipped spec file: relative to the working directory when
    it lies below it (a source checkout), else its absolute path."""
    real = p.resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # pragma: no cover - the working directory was removed
        return str(real)
    return os.path.relpath(real, cwd) if _inside(real, cwd) else str(real)


def _inside(path: Path, root: Path) -> bool:
    return path == root or str(path).startswith(str(root).rstrip(os.sep) + os.sep)


class _Loader:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.cache: dict = {}  # realpath -> (SpecFile, display, raw YAML) or None
        self.diags: list[Diagnostic] = []
        self.via: dict = {}  # display -> include sites, innermost first

    def resolve_ref(self, ref: str, from_file: Path, from_display: str, loc: Location, label: str):
        """-> (real path, display path) or None (after a diagnostic)."""
        shown = ref if len(ref) <= 80 else ref[:77] + "..."
        if ref.startswith("archc:"):
            p = find_named_spec(ref[len("archc:"):])
            if p is None:
                self.diags.append(error(loc, f"{label}: no shipped spec named {shown!r} "
                                             f"(shipped: {', '.join(shipped_spec_names())})"))
                return None
            return p.resolve(), _display_path(p)
        if not ref.strip() or "\x00" in ref:
            self.diags.append(error(loc, f"{label}: {shown!r} is not a file name"))
            return None
        if os.path.isabs(ref) or ref.startswith("~") or ref.startswith("\\"):
            self.diags.append(error(loc, f"{label}: {shown!r}: absolute paths are not allowed; write "
                                         "a path relative to this file, inside the spec root"))
            return None
        try:
            real = Path(os.path.realpath(from_file.parent / ref))  # symlinks resolved first
        except (OSError, ValueError, RuntimeError) as exc:
            self.diags.append(error(loc, f"{label}: {shown!r}: cannot resolve the path ({exc})"))
            return None
        # Shipped specs may reference each other freely inside their own root.
        root = self.root if _inside(from_file, self.root) else package_specs_dir().resolve()
        if not os.path.lexists(real):
            self.diags.append(error(loc, _no_such_file(ref, real, from_file, label, shown)))
            return None
        if not _inside(real, root):
            self.diags.append(error(loc, f"{label}: {shown!r} resolves to {real}, outside the spec "
                                         f"root {root} ({ROOT_RULE}): put a {ROOT_MARKER} file in a "
                                         "directory above both files, or give --root"))
            return None
        display = os.path.normpath(os.path.join(os.path.dirname(from_display), ref))
        return real, display

    def load_file(self, real: Path, display: str, site: Optional[tuple] = None):
        """Read and validate one file (cached). `site` = (Location, label, ref) of the
        reference that names it: a file that cannot be read is reported there."""
        key = str(real)
        if key in self.cache:
            return self.cache[key]
        self.cache[key] = None
        try:
            text = read_text(str(real), display)
            parsed = _PARSED.get((display, text))
            if parsed is not None:  # the same file, same text, read for an earlier spec
                self.cache[key] = (parsed[0], display, parsed[1])
                return self.cache[key]
            raw = parse_yaml(text, display)
        except UnreadableFile as exc:
            if site is None:
                self.diags.extend(exc.diagnostics)
            else:
                loc, label, ref = site
                self.diags.append(error(loc, f"{label}: {ref!r}: {exc.reason}"))
            return None
        except SpecError as exc:
            self.diags.extend(exc.diagnostics)
            return None
        if not isinstance(raw, LocDict):
            self.diags.append(error(getattr(raw, "loc", Location(display)),
                                    "a spec file must be a YAML mapping (key: value), "
                                    f"not {describe(raw)}"))
            return None
        try:
            spec_file = m.SpecFile.model_validate(raw)
        except ValidationError as exc:
            self.diags.extend(validation_diagnostics(exc, raw, display))
            return None
        self.cache[key] = (spec_file, display, raw)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[(display, text)] = (spec_file, raw)
        return self.cache[key]

    def collect_blocks(self, real: Path, display: str, stack: tuple, via: tuple,
                       site: Optional[tuple] = None) -> dict:
        """All blocks visible in a file: its imports' (transitively), then its own."""
        if len(stack) > MAX_INCLUDE_DEPTH + 1:
            self.diags.append(error(via[0], f"imports nested deeper than {MAX_INCLUDE_DEPTH} files "
                                            "(a documented limit)"))
            return {}
        self.via.setdefault(display, via)
        loaded = self.load_file(real, display, site)
        if loaded is None:
            return {}
        sf, display, raw = loaded
        self.via.setdefault(display, via)
        blocks: dict = {}
        owner: dict = {}
        raw_imports = raw.get("imports")
        for i, ref in enumerate(sf.imports):
            if isinstance(raw_imports, LocList) and i < len(raw_imports.item_locs):
                loc = raw_imports.item_locs[i]
            else:  # pragma: no cover - imports always come from the YAML list
                loc = sf.key_loc("imports") or Location(display)
            label = f"imports[{i}]"
            res = self.resolve_ref(ref, real, display, loc, label)
            if res is None:
                continue
            sub_real, sub_display = res
            if str(sub_real) in stack:
                cycle = " -> ".join([*stack_displays(self, stack[stack.index(str(sub_real)):]),
                                     sub_display])
                self.diags.append(error(loc, f"{label}: import cycle: {cycle}"))
                continue
            sub = self.collect_blocks(sub_real, sub_display, (*stack, str(sub_real)), (loc, *via),
                                      (loc, label, ref))
            for name, blk in sub.items():
                if name in blocks and blocks[name] is not blk:
                    self.diags.append(error(loc, f"block {name!r} is defined both in "
                                                 f"{owner[name]} and in {sub_display}"))
                blocks[name] = blk
                owner[name] = sub_display
        for name, blk in sf.blocks.items():
            blocks[name] = blk  # a file's own definition overrides imported ones
        return blocks


def stack_displays(loader: _Loader, stack: tuple) -> list[str]:
    out = []
    for real in stack:
        got = loader.cache.get(real)
        out.append(got[1] if got else real)
    return out


def _resolve(loader: _Loader, real: Path, display: str, stack: tuple, via: tuple,
             site: Optional[tuple] = None) -> Optional[Spec]:
    loader.via.setdefault(display, via)
    loaded = loader.load_file(real, display, site)
    if loaded is None:
        return None
    sf, display, raw = loaded
    blocks = loader.collect_blocks(real, display, stack, via)
    base: Optional[Spec] = None
    if sf.extends is not None:
        loc = raw.get("extends").loc if isinstance(raw.get("extends"), LocStr) else sf.key_loc("extends")
        res = loader.resolve_ref(sf.extends, real, display, loc, "extends")
        if res is not None:
            b_real, b_display = res
            if str(b_real) in stack:
                cycle = " -> ".join([*stack_displays(loader, stack[stack.index(str(b_real)):]),
                                     b_display])
                loader.diags.append(error(loc, f"extends cycle: {cycle}"))
            elif len(stack) > MAX_INCLUDE_DEPTH:
                loader.diags.append(error(loc, f"extends nested deeper than {MAX_INCLUDE_DEPTH} "
                                               "files (a documented limit)"))
            else:
                base = _resolve(loader, b_real, b_display, (*stack, str(b_real)), (loc, *via),
                                (loc, "extends", sf.extends))
        if base is None:
            return None
    return merge(loader, sf, display, blocks, base)



def load_spec_file(path, root: Optional[str] = None) -> Spec:
    """Load and resolve one spec file (raises SpecError with all diagnostics)."""
    p = Path(path)
    display = str(path)
    named = find_named_spec(display) if display.startswith("archc:") or not p.exists() else None
    if named is not None:
        p = named
        if display.startswith("archc:"):
            display = _display_path(named)
    elif display.startswith("archc:"):
        raise SpecError(error(Location(display), f"no shipped spec named {display[6:]!r} "
                                                 f"(shipped: {', '.join(shipped_spec_names())})"))
    real = Path(os.path.realpath(p))
    loader = _Loader(Path(root) if root else find_root(p))
    spec = _resolve(loader, real, display, (str(real),), ())
    if loader.diags or spec is None:
        # A problem inside an included file also names the lines that included it.
        diags = [d if d.via or not loader.via.get(d.location.file)
                 else dataclasses.replace(d, via=loader.via[d.location.file])
                 for d in loader.diags]
        raise SpecError(diags or [error(Location(display), "could not load the spec")])
    return spec
