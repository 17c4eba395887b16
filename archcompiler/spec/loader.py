"""Loading a spec: files -> validated models -> one resolved `Spec`.

Resolution follows `imports` (block libraries) and `extends` (a base spec plus overrides),
confined to the spec root, and turns pydantic's errors into located diagnostics.

The spec root is the nearest directory, from the spec file's own upwards, that contains a
file named `.archc-root` (the shipped `specs/` has one); without such a file it is the
spec file's own directory. References are relative to the file that writes them, may use
`..` but never leave the root (symlinks are resolved first), and may name a shipped spec
as `archc:inception_v4`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from ..errors import Diagnostic, Location, SpecError, error
from . import model as m
from .yaml_io import LocDict, LocList, LocStr, UnreadableFile, read_yaml, type_name

ROOT_MARKER = ".archc-root"
MAX_INCLUDE_DEPTH = 16
_FIELD_NAMES = None


def package_specs_dir() -> Path:
    """Where the shipped specs live (a source checkout or an installed package)."""
    here = Path(__file__).resolve().parent.parent  # archcompiler/
    for cand in (here.parent / "specs", here / "specs"):
        if (cand / ROOT_MARKER).is_file():
            return cand
    try:
        from importlib.resources import files

        return Path(str(files("archcompiler.specs")))
    except (ImportError, ModuleNotFoundError, TypeError):  # pragma: no cover
        return here / "specs"


def find_named_spec(name: str) -> Optional[Path]:
    """`inception_v4` -> the shipped spec file, or None."""
    if not name.replace("_", "").replace("/", "").isalnum():
        return None
    path = package_specs_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_spec_names() -> list[str]:
    base = package_specs_dir()
    names = sorted(p.stem for p in base.glob("*.yaml"))
    names += sorted(f"variants/{p.stem}" for p in (base / "variants").glob("*.yaml"))
    return names


def find_root(spec_path: Path) -> Path:
    d = spec_path.resolve().parent
    for cand in (d, *d.parents):
        if (cand / ROOT_MARKER).is_file():
            return cand
    return d


@dataclass
class Spec:
    """A resolved spec: everything needed to lower it, with source locations."""

    name: str
    path: str  # the top-level file as the user named it
    root: str
    title: Optional[str]
    source: Optional[str]
    description: Optional[str]
    params: dict
    param_locs: dict
    width: Optional[float]
    input_shape: tuple
    input_loc: Optional[Location]
    classes: int
    preprocess: m.Preprocess
    defaults: m.Defaults
    init: m.Init
    blocks: dict  # name -> BlockDef
    network: list  # [Stage]
    head: list  # [Item]
    aux: list  # [AuxHead]
    expect: m.Expect
    expect_loc: Optional[Location]
    stage_expect: dict  # stage name -> (shape tuple, Location)
    checkpoints: dict  # name -> CheckpointFormat
    via: dict = field(default_factory=dict)  # file -> tuple of "included from" Locations
    files: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    base: Optional["Spec"] = None

    def diag(self, loc: Optional[Location], message: str, severity: str = "error",
             notes: tuple = ()) -> Diagnostic:
        loc = loc or Location(self.path, 1, 1)
        return Diagnostic(loc, message, severity, self.via.get(loc.file, ()), tuple(notes))

    def with_params(self, **overrides) -> "Spec":
        """A copy with spec-level parameters (or `classes`) replaced.

        The spec's promised totals (expect: layers, params, macs, min_input) describe its
        own configuration, so the copy does not check them; stage shapes still are."""
        import copy

        new = copy.copy(self)
        new.expect = m.Expect(stages=dict(self.expect.stages))
        new.params = dict(self.params)
        for k, v in overrides.items():
            if k == "classes":
                new.classes = v
            else:
                new.params[k] = v
        return new


def parse_shape(text: str) -> tuple:
    return tuple(int(x) for x in text.split("x"))


# --- pydantic errors -> diagnostics ------------------------------------------------------

def _field_names() -> set:
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
        elif (isinstance(part, str) and (part in _field_names() or part == "with")
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


def _describe(value) -> str:
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
        close = difflib.get_close_matches(key, sorted(_field_names()), n=1)
        return f"unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    if "missing" in kinds:
        field = rest[-1] if rest else str(first["loc"][-1])
        return f"missing required field {field!r}"
    for e in errs:  # our own validators say precisely what is wrong
        if e["type"] in ("value_error", "assertion_error"):
            return _clean(e["msg"])
    if "union_tag_invalid" in kinds or "union_tag_not_found" in kinds:
        return ("expected an op string like 'conv 3x3 64', or a mapping with one of: "
                + ", ".join(m.ITEM_KEYS) + f"; got {_describe(inp)}")
    if "string_pattern_mismatch" in kinds and isinstance(inp, str):
        msg = next(e["msg"] for e in errs if e["type"] == "string_pattern_mismatch")
        if "x[0-9]" in msg:
            return f"expected a shape written CxHxW like 384x35x35, got {inp!r}"
        if "A-Za-z_" in msg:
            return (f"{_describe(inp)[len('the string '):]} is not a valid name (letters, digits "
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
        msg = f"expected {expected}, got {_describe(inp)}"
        if isinstance(inp, str) and inp.strip().lstrip("+-").replace(".", "", 1).isdigit():
            msg += " (numbers are written without quotes)"
        elif "literal_error" in kinds and isinstance(inp, str):
            options = [o.strip("'") for o in expected.replace(" or ", ", ").split(", ")]
            close = difflib.get_close_matches(inp, options, n=1)
            if close:
                msg += f"; did you mean {close[0]!r}?"
        return msg
    err = next((e for e in errs if e["type"] not in _TYPE_ERRORS), first)
    msg = _clean(err["msg"])
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be "):] + f", got {_describe(err.get('input'))}"
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
        if not _inside(real, root):
            self.diags.append(error(loc, f"{label}: {shown!r} resolves to {real}, outside the spec "
                                         f"root {root} (the nearest directory with a "
                                         f"{ROOT_MARKER} file)"))
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
            raw = read_yaml(str(real), display)
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
                                    f"not {_describe(raw)}"))
            return None
        try:
            spec_file = m.SpecFile.model_validate(raw)
        except ValidationError as exc:
            self.diags.extend(validation_diagnostics(exc, raw, display))
            return None
        self.cache[key] = (spec_file, display, raw)
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
    return _merge(loader, sf, display, blocks, base)


def _merge(loader: _Loader, sf: m.SpecFile, display: str, blocks: dict, base: Optional[Spec]):
    here = sf.loc or Location(display)
    diags = loader.diags

    def pick(attr, base_attr=None):
        v = getattr(sf, attr)
        if v is not None or base is None:
            return v
        return getattr(base, base_attr or attr)

    name = sf.name or (base.name if base else None)
    if name is None:
        diags.append(error(here, "missing required field 'name'"))
    network = sf.network if sf.network is not None else (base.network if base else None)
    if network is None:
        diags.append(error(here, "missing required field 'network' (a spec that only holds "
                                 "blocks is a library: import it from a spec)"))
    params = dict(base.params) if base else {}
    param_locs = dict(base.param_locs) if base else {}
    p_locs = getattr(sf.params, "key_locs", {}) or {}
    s_locs = getattr(sf.set, "key_locs", {}) or {}
    for k, v in sf.params.items():
        params[k] = v
        param_locs[k] = p_locs.get(k) or sf.key_loc("params")
    for k, v in sf.set.items():
        if k not in params and k != "classes":
            close = difflib.get_close_matches(k, list(params), n=1)
            diags.append(error(s_locs.get(k) or sf.key_loc("set"),
                               f"set.{k}: {k!r} is not a parameter of the base spec"
                               + (f"; did you mean {close[0]!r}?" if close else "")
                               + (f" (its parameters: {', '.join(params)})" if params else "")))
        params[k] = v
        param_locs[k] = s_locs.get(k) or sf.key_loc("set")
    all_blocks = dict(base.blocks) if base else {}
    all_blocks.update(blocks)

    if sf.defaults is not None and base is not None:
        merged = base.defaults.model_dump()
        for section in ("conv", "avgpool", "maxpool"):
            sub = getattr(sf.defaults, section)
            merged[section].update(sub.model_dump(exclude_unset=True))
        defaults = m.Defaults.model_validate(merged)
    else:
        defaults = pick("defaults") or m.Defaults()

    input_loc = sf.key_loc("input") if sf.input else (base.input_loc if base else None)
    input_shape = parse_shape(sf.input) if sf.input else (base.input_shape if base else (3, 299, 299))
    if len(input_shape) != 3 or min(input_shape) < 1:
        diags.append(error(input_loc or here, f"input must be CxHxW with positive sizes, got {sf.input}"))
        input_shape = (3, 299, 299)

    # Expectations: a variant that states `expect` replaces the base's, stages included.
    stage_expect: dict = {}
    if sf.expect is None and base is not None:
        expect, expect_loc = base.expect, base.expect_loc
        stage_expect = dict(base.stage_expect)
    else:
        expect, expect_loc = sf.expect or m.Expect(), sf.key_loc("expect")
    if sf.network is not None:
        for st in sf.network:
            if st.expect is not None:
                stage_expect[st.stage_name] = (parse_shape(st.expect), st.key_loc("expect"))
    if sf.expect is not None:
        for k, v in sf.expect.stages.items():
            stage_expect[k] = (parse_shape(v), sf.expect.key_loc("stages"))

    classes = sf.set.get("classes") if "classes" in sf.set else pick("classes")
    if "classes" in sf.set and (isinstance(classes, bool) or not isinstance(classes, int)
                                or not 1 <= classes <= 1_000_000):
        diags.append(error(s_locs.get("classes") or sf.key_loc("set"),
                           f"set.classes: expected an integer between 1 and 1000000, got {classes!r}"))
        classes = None
    preprocess = pick("preprocess") or m.Preprocess()
    for what in ("mean", "std"):
        values = getattr(preprocess, what)
        if pick("preprocess") is not None and len(values) != input_shape[0]:
            where = preprocess.key_loc(what) if sf.preprocess is not None else None
            diags.append(error(where or input_loc or here,
                               f"preprocess.{what}: {len(values)} values for an input with "
                               f"{input_shape[0]} channels"))
    checkpoints = dict(base.checkpoints) if base else {}
    checkpoints.update(sf.checkpoints)
    spec = Spec(
        name=name or "unnamed",
        path=display,
        root=str(loader.root),
        title=pick("title"),
        source=pick("source"),
        description=pick("description"),
        params=params,
        param_locs=param_locs,
        width=pick("width"),
        input_shape=input_shape,
        input_loc=input_loc,
        classes=classes if classes is not None else 1000,
        preprocess=preprocess,
        defaults=defaults,
        init=pick("init") or m.Init(),
        blocks=all_blocks,
        network=list(network or []),
        head=list(sf.head if sf.head is not None else (base.head if base else []) or []),
        aux=list(sf.aux if sf.aux else (base.aux if base else [])),
        expect=expect,
        expect_loc=expect_loc,
        stage_expect=stage_expect,
        checkpoints=checkpoints,
        via=dict(loader.via),
        files=sorted({d for v in loader.cache.values() if v for d in [v[1]]}),
        base=base,
    )
    return spec


def load_spec_file(path, root: Optional[str] = None) -> Spec:
    """Load and resolve one spec file (raises SpecError with all diagnostics)."""
    p = Path(path)
    display = str(path)
    if not p.exists() and find_named_spec(str(path)):
        p = find_named_spec(str(path))
        display = str(path)
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
