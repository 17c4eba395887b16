"""archcompiler: neural-network architectures written as data, compiled to runnable models.

    spec = archcompiler.load_spec("inception_v4")      # or a path to a YAML spec
    spec.analysis.layers, spec.analysis.params          # 76, 42679816
    model = archcompiler.build(spec, backend="torch")   # needs the 'torch' extra
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .errors import Diagnostic, Location, MissingExtraError, SpecError, UsageError

if TYPE_CHECKING:
    from .spec.loader import Spec

__all__ = ["load_spec", "build", "graph", "Spec", "SpecError", "Diagnostic", "Location", "UsageError",
           "MissingExtraError"]
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
