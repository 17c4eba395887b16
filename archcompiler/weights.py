"""Weights as numpy arrays: names, fresh initialisation, checkpoints and their naming.

Everything here works without torch (the ONNX path needs that): checkpoints are read
with safetensors' numpy API; a `.pt/.pth` state_dict is read only through
`torch.load(weights_only=True)` and only when torch is installed. Names are ours
(`<node>.<param>`, e.g. `inception_a.0.branch2.1.conv.weight`); other libraries' names are
mapped through the spec's `checkpoints` rename rules, detected from the keys.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import Location, SpecError, error
from .ir.graph import Graph
from .ir.ops import OPS
from .spec.expr import parse_expr
from .spec.loader import Spec

OURS = "archc"


class CheckpointError(SpecError):
    """A checkpoint that cannot be read or does not match the spec."""


def _ckpt_error(path: str, message: str) -> CheckpointError:
    return CheckpointError(error(Location(path, 1, 1), message))


@dataclass(frozen=True)
class Entry:
    name: str
    node: str
    shape: tuple
    trainable: bool
    op: str
    param: str  # weight | bias | running_mean | running_var


def state_entries(graph: Graph, shapes: dict) -> list[Entry]:
    """Every tensor a model of this graph holds, in graph order."""
    out = []
    for node in graph.nodes:
        op = OPS[node.op]
        ins = [shapes[i] for i in node.inputs]
        for pname, shape in op.param_shapes(node.attrs, ins).items():
            out.append(Entry(f"{node.name}.{pname}", node.name, tuple(shape), True, node.op, pname))
        for pname, shape in op.buffer_shapes(node.attrs, ins).items():
            out.append(Entry(f"{node.name}.{pname}", node.name, tuple(shape), False, node.op, pname))
    return out


# --- fresh weights -----------------------------------------------------------------------

def _fan_in(shape: tuple) -> int:
    return int(math.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def init_weights(spec: Spec, graph: Graph, shapes: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic fresh weights, as the spec's reference code initialises them.

    torch_default: PyTorch's layer defaults (timm's inception_v4 / inception_resnet_v2 keep
    them): weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with
    a=sqrt(5)). trunc_normal (torchvision's Inception3): conv/linear weights N(0, std)
    truncated to [-2, 2], per-node `overrides`, biases 0. BatchNorm: gamma 1, beta 0,
    running mean 0, running var 1 in both."""
    rng = np.random.Generator(np.random.PCG64(seed))
    entries = state_entries(graph, shapes)
    weight_fan = {e.node: _fan_in(e.shape) for e in entries if e.param == "weight"}
    init = spec.init
    out: dict[str, np.ndarray] = {}
    for e in entries:
        if e.op == "batchnorm":
            value = np.ones(e.shape) if e.param in ("weight", "running_var") else np.zeros(e.shape)
        elif init.scheme == "trunc_normal":
            if e.param == "bias":
                value = np.zeros(e.shape)
            else:
                std = next((s for p, s in init.overrides.items()
                            if e.node == p or e.node.startswith(p + ".")), init.std)
                value = _trunc_normal(rng, e.shape, float(std))
        else:
            bound = 1.0 / math.sqrt(weight_fan[e.node])
            value = rng.uniform(-bound, bound, e.shape)
        out[e.name] = value.astype(np.float32)
    return out


def _trunc_normal(rng, shape, std: float, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    x = rng.normal(0.0, std, shape)
    bad = (x < lo) | (x > hi)
    while bad.any():
        x[bad] = rng.normal(0.0, std, int(bad.sum()))
        bad = (x < lo) | (x > hi)
    return x


# --- checkpoints -------------------------------------------------------------------------

def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Read a checkpoint into numpy arrays without ever unpickling arbitrary objects."""
    if not os.path.isfile(path):
        raise _ckpt_error(path, "no such checkpoint file")
    lower = path.lower()
    if lower.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            raw = load_file(path)
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise _ckpt_error(path, f"not a valid safetensors file (corrupt or truncated?): {exc}") from None
        return {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else np.asarray(v)
                for k, v in raw.items()}
    if lower.endswith((".pt", ".pth", ".bin")):
        try:
            import torch
        except ImportError:
            raise _ckpt_error(path, "reading a .pt/.pth checkpoint needs torch; convert it to "
                                    ".safetensors, which needs nothing") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _ckpt_error(path, "refused: not a plain state_dict of tensors (torch.load with "
                                    f"weights_only=True, nothing is unpickled): {first}") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise _ckpt_error(path, "expected a state_dict (a mapping of names to tensors)")
        return {k: (v.detach().float().numpy() if v.is_floating_point() else v.numpy())
                for k, v in obj.items()}
    raise _ckpt_error(path, "unknown checkpoint format: use .safetensors (or a .pt/.pth state_dict)")


def write_checkpoint(path: str, tensors: dict[str, np.ndarray], metadata: dict | None = None) -> None:
    from safetensors.numpy import save_file

    from .util import atomic_output

    with atomic_output(path, suffix=".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)


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


def match_checkpoint(spec: Spec, entries: list[Entry], ckpt: dict[str, np.ndarray], path: str,
                     replaceable: set[str] = frozenset()) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Map a checkpoint onto our names. `replaceable`: our names (a fresh classifier head)
    that may be skipped when their shape differs. Raises CheckpointError listing every
    missing, unexpected and mis-shaped key."""
    names = [e.name for e in entries]
    ignore = {k for k in ckpt if k.endswith("num_batches_tracked")}
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
    expected = {e.name: e for e in entries}
    out: dict[str, np.ndarray] = {}
    report = LoadReport(best, 0)
    missing, misshaped = [], []
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
        if tuple(arr.shape) != expected[ours].shape:
            if ours in replaceable:
                report.skipped.append(ours)
                continue
            misshaped.append(f"{theirs}: checkpoint {list(arr.shape)}, spec {list(expected[ours].shape)}")
            continue
        out[ours] = np.asarray(arr, dtype=np.float32)
    unexpected = sorted(k for k in ckpt if k not in used and k not in ignore)
    if missing or misshaped or unexpected:
        msg = (f"checkpoint does not match spec {spec.name!r} (read as {best!r} names: "
               f"{len(used)} of {len(names)} tensors found)")
        if missing:
            msg += _listing("missing", missing)
        if unexpected:
            msg += _listing("unexpected", unexpected)
        if misshaped:
            msg += _listing("wrong shape", misshaped)
        raise _ckpt_error(path, msg)
    report.loaded = len(out)
    if report.skipped:
        report.notes.append(f"kept fresh (not loaded from the checkpoint): {', '.join(report.skipped)}")
    return out, report


def to_format(spec: Spec, state: dict[str, np.ndarray], fmt: str) -> dict[str, np.ndarray]:
    """Our state in another library's naming (e.g. to compare with timm)."""
    mapping = names_in_format(spec, list(state), fmt)
    return {mapping[k]: v for k, v in state.items()}
