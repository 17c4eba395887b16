"""archcompiler: neural-network architectures written as data, compiled to runnable models.

    spec = archcompiler.load_spec("inception_v4")      # or a path to a YAML spec
    spec.analysis.layers, spec.analysis.params          # 76, 42679816
    model = archcompiler.build(spec, backend="torch")   # needs the 'torch' extra
    print(archcompiler.summary(spec))                   # stages, blocks, shapes, params, MACs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .errors import Diagnostic, Location, MissingExtraError, SpecError, UsageError

if TYPE_CHECKING:
    from .spec.loader import Spec

__all__ = ["load_spec", "build", "show", "summary", "graph", "diff", "Spec", "SpecError",
           "Diagnostic", "Location", "UsageError", "MissingExtraError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # `Spec` (and with it pydantic and the spec model) is imported on first use: the CLI
    # imports this package, and `archc list` / `--help` / usage errors never need it.
    if name == "Spec":
        from .spec.loader import Spec

        return Spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_spec(path, *, root: Optional[str] = None, input_size: Optional[tuple] = None) -> Spec:
    """Load, resolve and validate a spec file (or a shipped spec by name).

    Returns the resolved `Spec`, with its analysis (shapes, layer count, parameters, MACs)
    at `spec.analysis`. Raises `SpecError` carrying every diagnostic."""
    from .analysis import analyze
    from .spec.loader import Spec, load_spec_file

    spec = path if isinstance(path, Spec) else load_spec_file(path, root=root)
    spec.analysis = analyze(spec, input_size)
    return spec


def show(spec_or_path, *, expand: bool = False, root: Optional[str] = None):
    """What a spec is made of: `.params` (value, where defined, where used), `.blocks`
    (parameters, figure), `.stages` (block, with, repeat, output shape), `.to_json()`;
    `str()` is what `archc show` prints. `expand=True`: the resolved spec (imports and
    extends applied) as YAML text that validates to the same graph."""
    from .spec.loader import Spec
    from .views.show import expanded_yaml
    from .views.show import show as _show

    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, root=root)
    return expanded_yaml(spec) if expand else _show(spec)


def summary(spec_or_path, depth: int = 2, input_size: Optional[tuple] = None, *,
            root: Optional[str] = None):
    """A torchinfo-like summary of a spec (no torch needed): `.rows` (name, depth, kind,
    shape, params, macs; depth 1 the stages), `.totals`, `.to_json()`; `str()` is the
    table `archc summary` prints. `input_size=(H, W)` analyses at another size."""
    from .views.summary import summary as _summary

    return _summary(spec_or_path, depth=depth, input_size=input_size, root=root)


def diff(a, b, *, root: Optional[str] = None):
    """What differs between two specs (each a `Spec`, a path or a shipped name):
    `.equal`, `.settings`, `.stages`, `.blocks`, `.totals`, `.to_json()`; `str()` is
    what `archc diff` prints."""
    from .views.diff import diff as _diff

    return _diff(a, b, root=root)


def build(spec_or_path, backend: str = "torch", **options):
    """Compile a spec into a runnable model: `backend="torch"` gives an nn.Module,
    `backend="onnx"` an onnx.ModelProto. See the backend's `build` for options."""
    from .spec.loader import Spec

    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path)
    if backend == "torch":
        from .backends.torch import build as build_torch

        return build_torch(spec, **options)
    if backend == "onnx":
        from .backends.onnx import build as build_onnx

        return build_onnx(spec, **options)
    raise UsageError(f"unknown backend {backend!r} (choose torch or onnx)")


def graph(spec_or_path, format: str = "dot", *, depth: Optional[int] = None,
          root: Optional[str] = None) -> str:
    """A picture of a spec's structure as text: `format` "dot" (Graphviz), "mermaid" or
    "svg" (our own layout: the same spec gives the same bytes). `depth` 1 draws each stage
    as one node. Loads (and validates) a path or a shipped name first."""
    from .spec.loader import Spec
    from .views.graph import render

    loaded = isinstance(spec_or_path, Spec) and hasattr(spec_or_path, "analysis")
    spec = spec_or_path if loaded else load_spec(spec_or_path, root=root)
    return render(spec, format, depth)
