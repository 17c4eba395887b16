"""Checkpoints: other libraries' names, and matching a checkpoint to a spec.

Other libraries' names are mapped to ours through the spec's `checkpoints` rename rules,
detected from the keys. Reading and writing files: archcompiler.checkpoint_files
(re-exported here). Everything works without torch (the ONNX path needs that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .checkpoint_files import (  # noqa: F401 - the file API, re-exported
    CHECKPOINT_SUFFIXES, OURS, CheckpointError, UnusableTensor, _ckpt_error, read_checkpoint,
    save_safetensors, write_checkpoint,
)
from .spec.expr import parse_expr
from .spec.loader import Spec

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TARGET = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class RenameRule:
    pattern: re.Pattern
    target: str
    source: str

    def apply(self, name: str) -> str | None:
        m = self.pattern.match(name)
        if not m:
            return None
        groups = m.groupdict()

        def fill(t):
            text = t.group(1)
            if text in groups:
                return groups[text]
            env = {k: int(v) for k, v in groups.items() if v.isdigit()}
            return str(parse_expr("$(" + text + ")").evaluate(env))

        return _TARGET.sub(fill, self.target) + name[m.end():]


def compile_rules(rename: dict) -> list[RenameRule]:
    rules = []
    for ours, theirs in rename.items():
        regex, pos = "", 0
        for ph in _PLACEHOLDER.finditer(ours):
            regex += re.escape(ours[pos:ph.start()]) + f"(?P<{ph.group(1)}>[A-Za-z0-9]+)"
            pos = ph.end()
        regex += re.escape(ours[pos:]) + r"(?=\.|$)"
        rules.append(RenameRule(re.compile(regex), theirs, ours))
    return rules


def names_in_format(spec: Spec, names: list[str], fmt: str) -> dict[str, str]:
    """Our name -> the name a `fmt` checkpoint uses (identity for our own format)."""
    if fmt == OURS:
        return {n: n for n in names}
    rules = compile_rules(spec.checkpoints[fmt].rename)
    out = {}
    for n in names:
        for rule in rules:
            got = rule.apply(n)
            if got is not None:
                out[n] = got
                break
        else:
            out[n] = n
    return out


@dataclass
class LoadReport:
    format: str
    loaded: int
    skipped: list = field(default_factory=list)  # our names kept fresh (e.g. a new head)
    notes: list = field(default_factory=list)


def _listing(title: str, items: list[str], limit: int = 12) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}):\n    {shown}{more}"


def _is_float_array(arr) -> bool:
    return isinstance(arr, np.ndarray) and arr.dtype.kind == "f"


def _dtype_name(arr) -> str:
    dtype = getattr(arr, "dtype", None)
    return str(dtype) if dtype is not None else type(arr).__name__


def match_checkpoint(spec: Spec, entries: list, ckpt: dict[str, np.ndarray], path: str,
                     replaceable: set[str] = frozenset()) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Map a checkpoint onto our names. `replaceable`: our names (a fresh classifier head)
    that may be skipped when their shape differs. Raises CheckpointError listing every
    missing, unexpected, mis-shaped, non-float and non-finite tensor."""
    names = [e.name for e in entries]
    bad_key = next((k for k in ckpt if not isinstance(k, str)), None)
    if bad_key is not None:
        raise _ckpt_error(path, f"tensor names must be strings, got {bad_key!r} "
                                f"({type(bad_key).__name__})")
    ignore = {k for k in ckpt if k.endswith("num_batches_tracked")}
    if not names and not set(ckpt) - ignore:  # a network without tensors: nothing to load
        return {}, LoadReport(OURS, 0)
    if not set(ckpt) - ignore:
        raise _ckpt_error(path, f"the checkpoint holds no tensors (spec {spec.name!r} needs "
                                f"{len(names)})")
    best, best_map, best_score = None, None, -1
    for fmt in (OURS, *spec.checkpoints):
        mapping = names_in_format(spec, names, fmt)
        score = sum(1 for theirs in mapping.values() if theirs in ckpt)
        if score > best_score:
            best, best_map, best_score = fmt, mapping, score
    if best_score <= 0:
        formats = ", ".join([OURS, *spec.checkpoints])
        raise _ckpt_error(path, f"no key of this checkpoint matches spec {spec.name!r} in any known "
                                f"naming ({formats}); first keys: {', '.join(sorted(ckpt)[:3])}")
    assert best_map is not None
    reshapes = compile_rules({p: "" for p in spec.checkpoints[best].reshape}) if best != OURS else []
    expected = {e.name: e for e in entries}
    out: dict[str, np.ndarray] = {}
    report = LoadReport(best, 0)
    missing, misshaped, wrong_dtype, not_finite = [], [], [], []
    used = set()
    for ours, theirs in best_map.items():
        if theirs not in ckpt:
            if ours in replaceable:
                report.skipped.append(ours)
            else:
                missing.append(f"{theirs}" + (f" (ours: {ours})" if theirs != ours else "")
                               + f" {list(expected[ours].shape)}")
            continue
        used.add(theirs)
        arr = ckpt[theirs]
        if tuple(getattr(arr, "shape", ())) != expected[ours].shape and isinstance(arr, np.ndarray) \
                and any(r.pattern.match(ours) for r in reshapes):
            if arr.size != int(np.prod(expected[ours].shape)):
                misshaped.append(f"{theirs}: checkpoint {list(arr.shape)} cannot be reshaped to "
                                 f"{list(expected[ours].shape)} (a 'reshape' rule applies, but the "
                                 "element counts differ)")
                continue
            arr = arr.reshape(expected[ours].shape)
        if tuple(getattr(arr, "shape", ())) != expected[ours].shape:
            if ours in replaceable:
                report.skipped.append(ours)
                continue
            misshaped.append(f"{theirs}: checkpoint {list(getattr(arr, 'shape', ()))}, "
                             f"spec {list(expected[ours].shape)}")
            continue
        if isinstance(arr, UnusableTensor) and arr.reason:
            wrong_dtype.append(f"{theirs}: {arr.dtype} {arr.reason}, expected a dense "
                               "floating-point tensor")
            continue
        if isinstance(arr, UnusableTensor) or not _is_float_array(arr):
            dtype = arr.dtype if isinstance(arr, UnusableTensor) else _dtype_name(arr)
            wrong_dtype.append(f"{theirs}: {dtype}, expected floating point (F16, BF16, F32 or F64)")
            continue
        value = np.asarray(arr, dtype=np.float32)
        finite = np.isfinite(value)
        if not finite.all():
            not_finite.append(f"{theirs}: {int(finite.size - finite.sum())} of {finite.size} "
                              "values are NaN or infinite")
            continue
        out[ours] = value
    unexpected = sorted(k for k in ckpt if k not in used and k not in ignore)
    if missing or misshaped or unexpected or wrong_dtype or not_finite:
        msg = (f"checkpoint does not match spec {spec.name!r} (read as {best!r} names: "
               f"{len(used)} of {len(names)} tensors found)")
        if missing:
            msg += _listing("missing", missing)
        if unexpected:
            msg += _listing("unexpected", unexpected)
        if misshaped:
            msg += _listing("wrong shape", misshaped)
        if wrong_dtype:
            msg += _listing("wrong dtype or layout", wrong_dtype)
        if not_finite:
            msg += _listing("not finite", not_finite)
        raise _ckpt_error(path, msg)
    report.loaded = len(out)
    if report.skipped:
        report.notes.append(f"kept fresh (not loaded from the checkpoint): {', '.join(report.skipped)}")
    return out, report


def to_format(spec: Spec, state: dict[str, np.ndarray], fmt: str) -> dict[str, np.ndarray]:
    """Our state in another library's naming (e.g. to compare with timm)."""
    mapping = names_in_format(spec, list(state), fmt)
    return {mapping[k]: v for k, v in state.items()}
