"""ONNX backend: `archcompiler.build(spec, backend="onnx")` and `archc build --backend onnx`.

The IR is lowered straight to ONNX with `onnx.helper` (no tracing, no torch: this module
works with torch not installed). Each IR op emits its own ONNX nodes (`OpDef.onnx_lower`
in archcompiler/ir/ops.py) through the small builder below. ONNX node names, value names
and initializer names are our IR names (`inception_a.0.branch2.1.conv`,
`...conv.weight`); an op that needs more than one ONNX node names the helpers
`<node>/<suffix>`. The spec (name, file, source paper, preprocessing, classes) goes into
`metadata_props`; each node's doc string says which stage and spec line it comes from.

Inference form: dropout is the identity (no node), BN uses its running statistics, and
auxiliary heads (training only) are not exported. Opset 17 or newer (default 18); ops
used: Conv, BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten,
Gemm, Concat, Mul, Add (and Slice, Identity only where the optional passes or a dropout
output need them), all float32, which onnxruntime's CPU, CUDA and TensorRT execution
providers all implement.

BN is emitted as BatchNormalization by default: every runtime that matters folds it
into the conv when it loads the graph (onnxruntime does at its basic level, TensorRT
always), so it costs nothing at run time (measured: benchmarks/onnx_cpu.py), and the
graph keeps the checkpoint's tensors under the checkpoint's names. `optimize=True`
(`--optimize`) folds it at build time instead (archcompiler.passes.fold_bn), with the
residual scales, for runtimes that do not, and for a graph 30% smaller in nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import replace
from typing import Optional, Union

import numpy as np

from archcompiler.errors import SpecError, UsageError
from archcompiler.ir.graph import Graph, Node
from archcompiler.network import configure, network_for, relative_location, spec_reference
from archcompiler.ops import OPS, fmt_shape
from archcompiler.passes.checks import accepted_sizes, symbolic_dims
from archcompiler.passes.shapes import infer_shapes
from archcompiler.spec.loader import Spec
from archcompiler.util import atomic_output, signals_deferred
from archcompiler.weights import narrow_report, resolve_state

DEFAULT_OPSET = 18
MIN_OPSET = 17
# protobuf cannot serialise a message of 2 GiB or more: above this the tensors go to a
# side file (ONNX external data) next to the model
EXTERNAL_DATA_BYTES = 1_800_000_000

ONNX_OPS = ("Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Flatten", "Gemm", "Concat", "Mul", "Add", "Identity", "Slice",
            # issue 10's vocabulary: activations (GELU decomposed), norms, SE, tf_same
            "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Div",
            "Sub", "Sqrt", "ReduceMean", "Reshape", "Shape", "Transpose", "LayerNormalization",
            "GroupNormalization", "Pad", "Max", "GlobalMaxPool", "MatMul", "ReduceMax")

# The inference passes (archcompiler.passes.optimize) that --optimize runs: exact folds
# that add no op. Not commute_pool_conv / fuse_siblings: in onnxruntime (CPU) the fused
# sibling convs come back as Split + ~100 NCHWc reorder nodes + unfused ReLUs, for no
# gain measurable on 2 cores; pass optimize=(names...) to build() to choose others.
ONNX_PASSES = ("drop_dropout", "fold_bn", "fold_residual_scale")

WeightsArg = Union[None, str, "os.PathLike[str]", "dict[str, np.ndarray]"]


# --- the builder handed to OpDef.onnx_lower ---------------------------------------------

class OnnxBuilder:
    """Collects ONNX nodes and initializers while the IR is walked in order."""

    def __init__(self, helper, numpy_helper, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET,
                 shapes: Optional[dict] = None):
        self.opset = opset
        self.shapes = shapes  # our inferred shapes, when the spatial size is fixed
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.weights = weights
        self.nodes: list = []
        self.initializers: dict = {}
        self.names: set[str] = set()
        self.current: Optional[Node] = None
        self.doc = ""

    def _unique(self, name: str) -> str:
        if name in self.names:
            raise ValueError(f"ONNX name {name!r} would be defined twice")
        self.names.add(name)
        return name

    def node(self, op_type: str, inputs, suffix: Optional[str] = None, **attributes) -> str:
        name = self._unique(self.current.name if suffix is None else f"{self.current.name}/{suffix}")
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [name], name=name,
                                                doc_string=self.doc, **attributes))
        return name

    def param(self, pname: str, shape: Optional[tuple] = None) -> str:
        name = f"{self.current.name}.{pname}"
        if name not in self.initializers:
            if name not in self.weights:
                raise KeyError(f"no weights for {name}")
            arr = np.ascontiguousarray(self.weights[name], dtype=np.float32)
            if shape is not None:
                arr = arr.reshape(shape)
            self.initializers[self._unique(name)] = self.numpy_helper.from_array(arr, name)
        return name

    def static_shape(self, value: str, what: str) -> tuple:
        """The CxHxW shape of IR value `value`; a located error when H and W are dynamic."""
        if self.shapes is None:
            node = self.current
            loc = node.loc if node is not None else None
            raise StaticShapeNeeded(loc, f"{what} needs a fixed input size in ONNX (its windows "
                                         "depend on the map size): build with --input-size HxW")
        return tuple(self.shapes[value])

    def const(self, pname: str, values, dtype: str = "float32") -> str:
        name = self._unique(f"{self.current.name}.{pname}")
        arr = np.asarray(values, dtype=np.dtype(dtype))
        self.initializers[name] = self.numpy_helper.from_array(arr, name)
        return name


# --- graph and weights preparation -------------------------------------------------------

class StaticShapeNeeded(Exception):
    def __init__(self, loc, message):
        super().__init__(message)
        self.loc, self.message = loc, message


def _spec_error(spec: Spec, problems) -> SpecError:
    return SpecError([spec.diag(p.node.loc, (f"stage {p.node.stage}: " if p.node.stage else "")
                                + p.message) for p in problems])


def export_graph(spec: Spec, num_classes: Optional[int], features: bool,
                 input_size: Optional[tuple], net=None) -> tuple[Graph, dict]:
    """The inference graph (no aux heads, only what the outputs need) and its shapes at
    the export input size."""
    from archcompiler.analysis import accepted_phrase, unsupported_size_message

    net = net or network_for(spec, num_classes)
    graph = configure(net, features=features, aux=False)
    in_shape = tuple(graph.input_shape) if input_size is None else (graph.input_shape[0], *input_size)
    shapes, problems = infer_shapes(graph, in_shape)
    sizes = accepted_sizes(graph)
    if problems:
        raise SpecError([spec.diag(p.node.loc, (f"stage {p.node.stage}: " if p.node.stage else "")
                                   + p.message + f" (input {fmt_shape(in_shape)}; "
                                   + accepted_phrase(sizes) + ")") for p in problems])
    if not (sizes[0].contains(in_shape[1]) and sizes[1].contains(in_shape[2])):
        raise SpecError(spec.diag(spec.input_loc, unsupported_size_message(spec.name, in_shape, sizes)))
    return graph, shapes


def dynamic_spatial_ok(graph: Graph) -> bool:
    """Dynamic H and W only where the accepted sizes are an open-ended rule (a network
    that accepts a list of sizes is exported at a fixed size)."""
    if any(n.op in ("adaptive_avgpool", "adaptive_maxpool") for n in graph.nodes):
        return False  # their windows depend on the map size: exported at a fixed size
    return all(rule.kind()[0] in ("interval", "periodic") for rule in accepted_sizes(graph))


# --- metadata ----------------------------------------------------------------------------

def metadata(spec: Spec, classes: int, input_shape: tuple, fixed: bool, weights_desc: str,
             passes: tuple, features: bool) -> dict[str, str]:
    pp = spec.preprocess
    from archcompiler import __version__

    meta = {
        "spec": spec.name,
        "spec_file": spec_reference(spec),
        "title": spec.title or "",
        "source": spec.source or "",
        "description": spec.description or "",
        "classes": str(classes),
        "input_size": fmt_shape(input_shape),
        "input_spatial": "fixed" if fixed else "dynamic (the size above is the spec's default)",
        "input_layout": "NCHW float32 RGB",
        "preprocess_mean": json.dumps([float(v) for v in pp.mean]),
        "preprocess_std": json.dumps([float(v) for v in pp.std]),
        "preprocess_crop_pct": repr(float(pp.crop_pct)),
        "preprocess_interpolation": pp.interpolation,
        "outputs": "features" if features else "logits",
        "weights": weights_desc,
        "batchnorm": ("folded into the convolutions" if "fold_bn" in passes
                      else "BatchNormalization (inference)"),
        "optimizations": ", ".join(passes) or "none",
        "archcompiler_version": __version__,
    }
    return {k: str(v) for k, v in meta.items()}


def _doc(node: Node, spec: Optional[Spec] = None) -> str:
    op = OPS[node.op]
    text = f"{node.op} {op.describe(node.attrs)}" if op.describe(node.attrs) != node.op else node.op
    if node.stage:
        text += f" | stage {node.stage}"
    if node.loc is not None:
        text += f" | {relative_location(spec, node.loc) if spec is not None else node.loc}"
    return text


# --- build --------------------------------------------------------------------------------

def _opset(opset: Optional[int]) -> int:
    from archcompiler.errors import extra_guard

    with extra_guard("the onnx backend"):
        import onnx

    opset = DEFAULT_OPSET if opset is None else int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"--opset must be between {MIN_OPSET} and {newest} (this onnx "
                         f"{onnx.__version__}), got {opset}")
    return opset


def lower_to_onnx(graph: Graph, shapes: dict, state: dict[str, np.ndarray], opset: int,
                  fixed_spatial: bool, meta: dict[str, str], doc: str = "", spec: Optional[Spec] = None):
    """IR graph + our-named weights -> onnx.ModelProto."""
    from onnx import TensorProto, helper, numpy_helper

    g = OnnxBuilder(helper, numpy_helper, state, opset, shapes if fixed_spatial else None)
    value = {graph.input_name: g._unique(graph.input_name)}
    for node in graph.nodes:
        g.current, g.doc = node, _doc(node, spec)
        value[node.name] = OPS[node.op].onnx_lower(g, node, [value[i] for i in node.inputs])
    g.current = None

    c, h, w = shapes[graph.input_name]
    spatial = [h, w] if fixed_spatial else ["height", "width"]
    inputs = [helper.make_tensor_value_info(graph.input_name, TensorProto.FLOAT,
                                            ["batch", c, *spatial])]
    # symbolic H and W of every value, named from the input's (passes.checks.symbolic_dims)
    sym = {} if fixed_spatial else symbolic_dims(graph, shapes)

    def dims_of(name: str) -> list:
        shape = shapes[name]
        if fixed_spatial or len(shape) == 1:
            return ["batch", *shape]
        return ["batch", shape[0], *sym[name]]

    outputs = []
    for out in graph.outputs:
        if value[out] != out:  # an output that lowers to no node of its own (dropout)
            g.current, g.doc = graph.by_name[out], _doc(graph.by_name[out], spec)
            g.nodes.append(helper.make_node("Identity", [value[out]], [g._unique(out)], name=out))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, dims_of(out)))
    # value_info from our shape inference, so Netron shows every edge's shape (the tests
    # check that ONNX's own inference agrees); named spatial dims when they are dynamic
    output_names = set(graph.outputs)
    value_info = []
    for node in graph.nodes:
        name = value[node.name]
        if name != node.name or name in output_names:
            continue
        value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims_of(node.name)))
    onnx_graph = helper.make_graph(g.nodes, graph.name, inputs, outputs,
                                   initializer=list(g.initializers.values()), doc_string=doc,
                                   value_info=value_info)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="archcompiler",
                              producer_version=meta.get("archcompiler_version", ""),
                              ir_version=helper.find_min_ir_version_for(opsets), doc_string=doc)
    helper.set_model_props(model, meta)
    return model


def build_with_report(spec: Spec, weights: WeightsArg = None, seed: int = 0,
                      num_classes: Optional[int] = None, input_size: Optional[tuple] = None,
                      opset: Optional[int] = DEFAULT_OPSET, optimize: Union[bool, tuple] = False,
                      features: bool = False):
    """build(), also returning (load report, notes for the user)."""
    opset = _opset(opset)
    if input_size is not None:
        input_size = tuple(int(d) for d in input_size)
        if len(input_size) != 2 or min(input_size) < 1:
            raise UsageError(f"input_size: expected (H, W), got {input_size}")
    net = network_for(spec, num_classes)
    graph, shapes = export_graph(spec, num_classes, features, input_size, net)
    if input_size is None and not dynamic_spatial_ok(graph):
        input_size = tuple(shapes[graph.input_name][1:])
    state, report, notes = resolve_state(net, weights, seed)
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] in graph.by_name}
    report = narrow_report(report, state)
    passes = () if not optimize else ONNX_PASSES if optimize is True else tuple(optimize)
    if passes:
        from archcompiler.passes.optimize import PASSES, optimize_for_inference

        unknown = [p for p in passes if p not in PASSES]
        if unknown:
            raise UsageError(f"optimize: unknown passes {unknown} (known: {', '.join(PASSES)})")

        graph, state = optimize_for_inference(graph, state, passes=passes)
        shapes, _ = infer_shapes(graph, shapes[graph.input_name])
    if weights is None:
        weights_desc = f"fresh: {spec.init.scheme} initialisation, seed {seed}"
    elif isinstance(weights, dict):
        weights_desc = f"from a dict of arrays ({report.format} names)"
    else:
        weights_desc = f"{os.path.basename(os.fsdecode(weights))} ({report.format} names)"
    if notes:
        weights_desc += "; " + "; ".join(notes)
    classes = num_classes if num_classes is not None else spec.classes
    meta = metadata(spec, classes, tuple(shapes[graph.input_name]), input_size is not None,
                    weights_desc, passes, features)
    doc = ": ".join(x for x in (spec.title or spec.name, spec.description) if x)
    try:
        model = lower_to_onnx(graph, shapes, state, opset, input_size is not None, meta, doc, spec)
    except StaticShapeNeeded as exc:
        raise SpecError(spec.diag(exc.loc, exc.message)) from None
    return model, report, notes


def build(spec: Spec, weights: WeightsArg = None, seed: int = 0, num_classes: Optional[int] = None,
          input_size: Optional[tuple] = None, opset: Optional[int] = DEFAULT_OPSET,
          optimize: Union[bool, tuple] = False, features: bool = False):
    """An onnx.ModelProto for the spec, in inference form.

    weights: None (fresh, seeded, as the reference code initialises; the same values as
    the torch backend for the same seed), a checkpoint path (.safetensors read with
    numpy; timm names detected from the keys) or a dict of arrays (our names, or a known
    naming). num_classes: a fresh classifier of that size (a checkpoint's head is
    skipped, with a warning). input_size: (H, W) to fix the spatial size (default:
    dynamic height/width; the batch is always dynamic). opset: 17 or newer. optimize:
    True runs ONNX_PASSES (drop dropout, fold BN into the convolutions, fold residual
    scales into the projections), or give a tuple of pass names of
    archcompiler.passes.optimize.PASSES. features: the 35/17/8 grid stage outputs
    instead of logits."""
    model, _, notes = build_with_report(spec, weights, seed, num_classes, input_size, opset,
                                        optimize, features)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return model


# --- writing -----------------------------------------------------------------------------

def tensor_bytes(model) -> int:
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) or (len(t.float_data) * 4)
    return total


def save(model, path: str, external_data: Optional[bool] = None) -> list[str]:
    """Write `model` to `path` atomically; returns the files written. external_data
    (default: only when the tensors approach protobuf's 2 GiB limit) puts the tensors in
    `<path>.data` beside it. Either every file appears complete or none changes."""
    import onnx

    if external_data is None:
        external_data = tensor_bytes(model) > EXTERNAL_DATA_BYTES
    if not external_data:
        with atomic_output(path, suffix=".onnx") as tmp:
            onnx.save_model(model, tmp)
        return [path]
    directory = os.path.dirname(os.path.abspath(path))
    data_name = os.path.basename(path) + ".data"
    tmpdir = tempfile.mkdtemp(prefix=".archc-", dir=directory)
    try:
        tmp_model = os.path.join(tmpdir, os.path.basename(path))
        copy = onnx.ModelProto()  # saving as external data rewrites the proto in place
        copy.CopyFrom(model)
        onnx.save_model(copy, tmp_model, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        with signals_deferred():  # Ctrl-C waits until both renames are done
            os.replace(os.path.join(tmpdir, data_name), os.path.join(directory, data_name))
            os.replace(tmp_model, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return [path, os.path.join(os.path.dirname(path), data_name)]


def cli_build(spec: Spec, args) -> list[str]:
    out = args.output or f"{spec.name}.onnx"
    with warnings.catch_warnings(record=True):
        model, _, notes = build_with_report(
            spec, weights=getattr(args, "weights", None), seed=getattr(args, "seed", 0) or 0,
            num_classes=getattr(args, "num_classes", None),
            input_size=getattr(args, "input_size", None), opset=getattr(args, "opset", None),
            optimize=bool(getattr(args, "optimize", False)))
    for note in notes:
        print(f"archc: warning: {note}", file=sys.stderr)
    return save(model, out)
