"""Everything `archc validate` reports about a spec: shapes, layers, params, MACs, checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import Diagnostic, SpecError
from .ir.graph import Graph
from .ir.lower import LowerOptions, check_unused_params
from .network import Network, configure, lower_network
from .ops import fmt_shape
from .passes.checks import SizeRule, accepted_sizes, expectation_problems
from .passes.layers import layer_depths
from .passes.params import node_macs, node_params, params_upper_bounds
from .passes.shapes import infer_shapes
from .spec.loader import Spec

MAX_PARAMS = 2_000_000_000  # a documented limit, checked before any shape or tensor exists
MAX_INPUT_SIZE = 4096


def _stage_notes(spec: Spec, graph: Graph, node) -> tuple:
    """For a problem inside a block template (or an included file): where the stage that
    instantiated it is written."""
    st = next((s for s in graph.stages if s.name == node.stage), None)
    if st is None or st.loc is None or st.loc == node.loc:
        return ()
    stage = next((x for x in spec.network if x.stage_name == node.stage and x.block), None)
    block = stage.block if stage else None
    what = f"block {block!r} in stage {node.stage!r}" if block else f"stage {node.stage!r}"
    notes = ((st.loc, f"{what} ({node.name}), instantiated here"),)
    if node.op == "scale_add" and stage is not None and stage.with_:  # widths come from `with:`
        notes += ((stage.key_loc("with"), f"the block's widths come from these 'with:' values "
                   f"({', '.join(stage.with_)}): the fix is usually here"),)
    return notes


@dataclass(frozen=True)
class StageReport:
    name: str
    kind: str  # trunk | head | aux
    shape: tuple
    layers: int
    params: int
    macs: int

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape),
                "layers": self.layers, "params": self.params, "macs": self.macs}


@dataclass(frozen=True)
class Analysis:
    spec: Spec
    graph: Graph
    input_shape: tuple
    shapes: dict
    depths: dict
    node_params: dict
    node_macs: dict
    stages: tuple
    min_input: Optional[int]
    sizes: tuple = ()  # (SizeRule of heights, SizeRule of widths) this network accepts
    network: Optional[Network] = None  # the one lowering everything else reuses
    diagnostics: tuple = field(default=())

    @property
    def square_sizes(self) -> SizeRule:
        hs, ws = self.sizes
        return hs.intersect(ws)

    @property
    def layers(self) -> int:
        return self.depths[self.graph.outputs[0]]

    @property
    def params(self) -> int:
        return sum(self.node_params.values())

    @property
    def macs(self) -> int:
        return sum(self.node_macs.values())

    @property
    def output_shape(self) -> tuple:
        return self.shapes[self.graph.outputs[0]]

    def to_json(self) -> dict:
        return {
            "spec": self.spec.path,
            "name": self.spec.name,
            "valid": True,
            "input": list(self.input_shape),
            "output": list(self.output_shape),
            "layers": self.layers,
            "params": self.params,
            "macs": self.macs,
            "min_input": [self.input_shape[0], self.min_input, self.min_input],
            "input_sizes": {"height": self.sizes[0].to_json(), "width": self.sizes[1].to_json()},
            "stages": [s.to_json() for s in self.stages],
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }


def analyze(spec: Spec, input_size: Optional[tuple] = None,
            options: LowerOptions = LowerOptions()) -> Analysis:
    """Lower, infer shapes, count, and check. Raises SpecError listing every problem."""
    net = lower_network(spec, options.classes)
    graph = configure(net, features=options.features, aux=options.aux)
    diags: list[Diagnostic] = [*spec.warnings, *check_unused_params(spec)]
    input_shape = tuple(spec.input_shape)
    if input_size is not None:
        input_shape = (input_shape[0], *input_size)
    # every shape known from lowering: the exact counts serve as the limit's bound
    exact = net.complete and input_shape == tuple(graph.input_shape)
    if exact:
        shapes = {graph.input_name: input_shape, **{n.name: net.shapes[n.name] for n in graph.nodes}}
        bounds = nparams = node_params(graph, shapes)
    else:
        bounds = params_upper_bounds(graph)
    bound = sum(bounds.values())
    if bound > MAX_PARAMS:
        biggest = max(graph.nodes, key=lambda n: bounds[n.name])
        where = f"stage {biggest.stage}: " if biggest.stage else ""
        raise SpecError(diags + [spec.diag(
            biggest.loc or spec.input_loc,
            f"{where}the network would have about {bound:,} parameters, over the limit of "
            f"{MAX_PARAMS:,} (a documented limit); the largest op, {biggest.name}, alone has "
            f"{bounds[biggest.name]:,}", notes=_stage_notes(spec, graph, biggest))])
    if max(input_shape[1:]) > MAX_INPUT_SIZE:
        raise SpecError(spec.diag(spec.input_loc, f"input {fmt_shape(input_shape)} is larger than "
                                                  f"the limit {MAX_INPUT_SIZE}"))
    problems: list = []
    if not exact:
        shapes, problems = infer_shapes(graph, input_shape, recover=True)
    sizes = accepted_sizes(graph)
    square = sizes[0].intersect(sizes[1])
    min_in = square.min
    if not problems and not (sizes[0].contains(input_shape[1]) and sizes[1].contains(input_shape[2])):
        diags.append(spec.diag(spec.input_loc, unsupported_size_message(spec.name, input_shape, sizes)))
    for p in problems:
        msg = f"stage {p.node.stage}: {p.message}" if p.node.stage else p.message
        if ("too small" in msg or "must agree" in msg) and min_in is not None:
            msg += f" (input {fmt_shape(input_shape)}; {accepted_phrase(sizes)})"
        diags.append(spec.diag(p.node.loc, msg, notes=_stage_notes(spec, graph, p.node)))
    if any(d.severity == "error" for d in diags):
        raise SpecError(diags)

    depths = layer_depths(graph)
    if not exact:
        nparams = node_params(graph, shapes)
    nmacs = node_macs(graph, shapes)
    reports = []
    prev_depth = 0
    stage_depth = {}
    by_stage: dict = {}
    for n in graph.nodes:
        by_stage.setdefault(n.stage, []).append(n)
    for st in graph.stages:
        base = prev_depth
        if st.kind == "aux":
            aux = next(a for a in spec.aux if a.name == st.name)
            base = stage_depth.get(aux.after, 0)
        nodes = by_stage.get(st.name, ())
        reports.append(StageReport(
            st.name, st.kind, tuple(shapes[st.output]), depths[st.output] - base,
            sum(nparams[n.name] for n in nodes), sum(nmacs[n.name] for n in nodes)))
        stage_depth[st.name] = depths[st.output]
        if st.kind != "aux":
            prev_depth = depths[st.output]
    for st, msg in expectation_problems(graph, shapes,
                                        spatial=tuple(input_shape) == tuple(spec.input_shape)):
        diags.append(spec.diag(st.expect_loc or st.loc, msg))
    analysis = Analysis(spec, graph, input_shape, shapes, depths, nparams, nmacs, tuple(reports),
                        min_in, sizes, net)
    exp = spec.expect
    checks = (("layers", exp.layers, analysis.layers), ("params", exp.params, analysis.params),
              ("macs", exp.macs, analysis.macs), ("min_input", exp.min_input, min_in))
    for what, want, got in checks:
        if want is not None and input_size is None and want != got:
            loc = exp.key_loc(what) or spec.expect_loc
            diags.append(spec.diag(loc, f"expect.{what}: expected {want:,}, got {got:,}"
                         if isinstance(got, int) else f"expect.{what}: expected {want}, got {got}"))
    if any(d.severity == "error" for d in diags):
        raise SpecError(diags)
    return Analysis(spec, graph, input_shape, shapes, depths, nparams, nmacs, tuple(reports),
                    min_in, sizes, net, tuple(diags))


def accepted_phrase(sizes: tuple) -> str:
    hs, ws = sizes
    if hs.sizes == ws.sizes and hs.kind()[0] == "interval":
        return f"the smallest input this network accepts is {hs.min}x{hs.min}"
    if hs.sizes == ws.sizes:
        return f"this network accepts square inputs of {hs.describe()}"
    return f"this network accepts heights {hs.describe()} and widths {ws.describe()}"


def unsupported_size_message(name: str, shape: tuple, sizes: tuple) -> str:
    return (f"{name}: input {fmt_shape(shape)} is not a size this network accepts "
            f"({accepted_phrase(sizes)})")
