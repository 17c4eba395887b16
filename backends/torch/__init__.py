"""PyTorch backend: `archcompiler.build(spec, backend="torch")` and `archc build --backend torch`.

- `build(...)` returns an `ArchcModel` (nn.Module) built from the IR through torch.fx.
- `generate_source(...)` writes a readable, self-contained .py (one class per block
  template) that builds the very same module and imports only torch.
- `export_pt2(...)` writes a torch.export program with a dynamic batch dimension.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import numpy as np

from archcompiler.ir.graph import Graph
from archcompiler.network import Network, check_shapes, configure, network_for, spec_reference
from archcompiler.passes.checks import accepted_sizes
from archcompiler.passes.shapes import infer_shapes
from archcompiler.spec.loader import Spec
from archcompiler.weights import LoadReport, narrow_report, resolve_state, state_entries

WeightsArg = Union[None, str, "dict[str, np.ndarray]"]


def pretrained_cfg(spec: Spec, classes: int) -> dict:
    pp = spec.preprocess
    return {
        "architecture": spec.name,
        "title": spec.title,
        "source": spec.source,
        "spec_file": spec_reference(spec),
        "input_size": tuple(spec.input_shape),
        "mean": tuple(pp.mean),
        "std": tuple(pp.std),
        "crop_pct": pp.crop_pct,
        "interpolation": pp.interpolation,
        "num_classes": classes,
    }


def prepare(spec: Spec, num_classes: Optional[int] = None, features: bool = False,
            aux: Optional[bool] = None, net: Optional[Network] = None,
            out_indices: Optional[Sequence[int]] = None):
    """Spec -> (graph, shapes) for the requested configuration, cut from the one lowering
    of the whole network (archcompiler.network)."""
    net = net or network_for(spec, num_classes)
    graph = configure(net, features=features, aux=aux, out_indices=out_indices)
    return graph, check_shapes(spec, graph)


def stage_layout(graph: Graph) -> dict[str, tuple[str, bool]]:
    """Stage name -> (the class name the generated source gives it, whether it repeats a
    block): how the built module names its stages when printed."""
    from archcompiler.ops import SPEC_OPS

    from .codegen import class_name

    out = {}
    for st in graph.stages:
        if st.block:
            out[st.name] = (class_name(st.block), st.repeat is not None)
            continue
        first = next((n for n in graph.nodes if n.stage == st.name), None)
        single = first is not None and first.item == st.name and first.spec_op in SPEC_OPS
        out[st.name] = ("ConvBnAct" if single and first.spec_op == "conv" else "Sequential", False)
    return out


def resolve_weights(net: Network, graph: Graph, shapes: dict, weights: WeightsArg,
                    seed: int) -> tuple[dict, Optional[LoadReport]]:
    """Our-named numpy state for `graph`: the whole network's (see
    archcompiler.weights.resolve_state, shared with the ONNX backend), narrowed to the
    tensors this configuration holds."""
    state, report, notes = resolve_state(net, weights, seed)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    narrowed = {e.name: state[e.name] for e in state_entries(graph, shapes)}
    return narrowed, narrow_report(report, narrowed)


def load_numpy_state(model, state: dict) -> None:
    import torch

    own = model.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            own[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))


def build(spec: Spec, weights: WeightsArg = None, seed: int = 0, num_classes: Optional[int] = None,
          features: bool = False, aux: Optional[bool] = None, optimize: bool = False,
          out_indices: Optional[Sequence[int]] = None):
    """A torch.nn.Module for the spec.

    weights: None (fresh, seeded, as the reference code initialises), a checkpoint path
    (.safetensors; .pt/.pth via torch.load(weights_only=True); timm names detected from
    the keys), or a dict of arrays in our naming. num_classes: a fresh classifier of that
    size (the checkpoint's is skipped, with a warning). features: return stage outputs
    instead of logits: the stages marked `feature: true`, else the last three of
    `model.feature_info` (every stride-change point; the 35/17/8 grids of the Inception
    networks); out_indices: those entries of that list instead (negative from the end).
    optimize: inference passes (the module is put in
    eval mode). The module is returned in training mode, like any fresh nn.Module."""
    from archcompiler.errors import extra_guard

    with extra_guard("the torch backend"):
        from .module import ArchcModel

    if out_indices is not None and not features:
        raise ValueError(f"{spec.name}: out_indices selects feature maps: use it with features=True")
    net = network_for(spec, num_classes)
    graph, shapes = prepare(spec, num_classes, features, aux, net=net, out_indices=out_indices)
    state, report = resolve_weights(net, graph, shapes, weights, seed)
    sizes, layout = accepted_sizes(graph), stage_layout(graph)
    if optimize:
        from archcompiler.passes.optimize import optimize_for_inference

        graph, state = optimize_for_inference(graph, state, shapes)
        shapes, _ = infer_shapes(graph)
    classes = num_classes if num_classes is not None else spec.classes
    square = sizes[0].intersect(sizes[1]).sizes
    model = ArchcModel(graph, shapes, pretrained_cfg(spec, classes), square[0] if square else None,
                       sizes, features=features, layout=layout)
    load_numpy_state(model, state)
    model.load_report = report
    if optimize:
        model.eval()
    return model


def cli_build(spec: Spec, args) -> list[str]:
    """`archc build --backend torch`: the generated .py (with --weights, a .safetensors
    beside it) or, with --format pt2, a torch.export program. Nothing is written unless
    the whole build succeeds. Warnings (a fresh classifier head) go to stderr."""
    import sys

    from archcompiler.errors import UsageError

    from .codegen import write_source
    from .export import export_pt2

    fmt = args.format or ("pt2" if (args.output or "").endswith(".pt2") else "py")
    if fmt == "py" and args.optimize:
        raise UsageError("--optimize builds an inference program: use it with --format pt2 "
                         "(or --backend onnx); the generated .py is the trainable module")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if fmt == "pt2":
            out = args.output or f"{spec.name}.pt2"
            model = build(spec, weights=args.weights, seed=args.seed, num_classes=args.num_classes,
                          optimize=args.optimize)
            export_pt2(model, out)
            written = [out]
        else:
            out = args.output or f"{spec.name}.py"
            written = write_source(spec, out, weights=args.weights, seed=args.seed,
                                   num_classes=args.num_classes)
    for w in caught:
        if str(w.message).startswith(f"{spec.name}: "):  # ours, not torch's own chatter
            print(f"archc: warning: {w.message}", file=sys.stderr)
    return written
