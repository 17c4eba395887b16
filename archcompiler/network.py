"""Lower once: the whole network as one IR, and the configurations cut from it.

`lower_network` lowers a spec once, with every auxiliary head, at the spec's input size:
what checkpoints hold and what the generated source builds. Validation, weights and
every backend take that one `Network` and cut the configuration they need from it
(`configure`: aux heads on or off, or the feature maps only) without lowering again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from .errors import SpecError
from .ir.graph import Graph, feature_outputs, needed_nodes
from .ir.lower import LowerOptions, lower
from .passes.shapes import infer_shapes
from .spec.loader import Spec


@dataclass(frozen=True)
class Network:
    spec: Spec
    classes: int
    graph: Graph  # trunk, head and every aux head
    shapes: dict  # at the spec's input size (nodes whose shape fails are absent)
    aux_default: frozenset  # the aux heads the spec turns on
    complete: bool = False  # every node has a shape at the spec's input (no problem)


def lower_network(spec: Spec, classes: Optional[int] = None) -> Network:
    """The whole network (every aux head lowered). Raises SpecError."""
    shapes: dict = {}
    graph = lower(spec, LowerOptions(classes=classes, aux=True), shapes)
    # lowering inferred every shape already (for `$in`) unless some op failed: then the
    # shapes pass, which goes on past a failed residual add
    complete = len(shapes) == len(graph.nodes) + 1
    if not complete:
        shapes, _ = infer_shapes(graph, recover=True)
    default_on = frozenset(_aux_enabled(spec))
    return Network(spec, classes if classes is not None else spec.classes, graph, shapes,
                   default_on, complete)


def _aux_enabled(spec: Spec):
    from .spec.expr import Expr

    for aux in spec.aux:
        on = aux.enabled
        if isinstance(on, Expr):
            try:
                on = on.evaluate({"classes": spec.classes, **spec.params})
            except Exception:  # noqa: BLE001 - reported by lowering with the spec's own value
                on = False
        if on is True:
            yield aux.name


def prune(graph: Graph, outputs: tuple, aux_outputs: tuple = ()) -> Graph:
    """Only what `outputs` need: nodes, stages and aux records."""
    need = needed_nodes(graph, outputs)
    nodes = tuple(n for n in graph.nodes if n.name in need)
    if (len(nodes) == len(graph.nodes) and tuple(outputs) == graph.outputs
            and tuple(aux_outputs) == graph.aux_outputs):
        return graph  # all of it (no aux head to drop): the same, already checked graph
    aux_names = {st.name for st in graph.stages if st.kind == "aux" and st.output in aux_outputs}
    return replace(graph, nodes=nodes,
                   outputs=tuple(outputs), aux_outputs=tuple(aux_outputs),
                   stages=tuple(s for s in graph.stages
                                if s.output in need and (s.kind != "aux" or s.name in aux_names)),
                   aux_after=tuple(a for a in graph.aux_after if a[0] in aux_names))


def configure(net: Network, features: bool = False, aux: Optional[bool] = None,
              out_indices: Optional[tuple] = None) -> Graph:
    """The graph of one configuration: with the spec's aux heads (aux=None), all (True)
    or none (False); or, with `features`, the feature maps (ir.graph.feature_outputs)."""
    g = net.graph
    if features:
        outs = feature_outputs(replace(g, outputs=()), net.shapes, out_indices)
        if not outs:
            raise SpecError(net.spec.diag(None, "features=True selects no stage: mark stages "
                                                "'feature: true' or give out_indices"))
        return prune(g, outs)
    aux_stages = [st for st in g.stages if st.kind == "aux"]
    keep = [st.output for st in aux_stages
            if aux is True or (aux is None and st.name in net.aux_default)]
    main = tuple(o for o in g.outputs if o not in g.aux_outputs)
    return prune(g, main + tuple(keep), tuple(keep))


def check_shapes(spec: Spec, graph: Graph, input_shape=None) -> dict:
    """Shapes of a configured graph, or SpecError naming every problem."""
    shapes, problems = infer_shapes(graph, input_shape)
    if problems:
        raise SpecError([spec.diag(p.node.loc, (f"stage {p.node.stage}: " if p.node.stage else "")
                                   + p.message) for p in problems])
    return shapes


def network_for(spec: Spec, classes: Optional[int] = None) -> Network:
    """The spec's network, reusing the lowering `archcompiler.load_spec` already did when
    the number of classes is the same."""
    analysis = getattr(spec, "analysis", None)
    net = getattr(analysis, "network", None)
    if net is not None and net.spec is spec and (classes is None or classes == net.classes):
        return net
    return lower_network(spec, classes)


def spec_reference(spec: Spec) -> str:
    """How artifacts name their spec: its path relative to the spec root (never a machine
    path), so that the same spec gives the same bytes on any machine."""
    import os

    try:
        rel = os.path.relpath(os.path.realpath(spec.path), os.path.realpath(spec.root))
    except ValueError:  # another drive
        rel = ".."
    return (os.path.basename(spec.path) if rel.startswith("..") else rel).replace(os.sep, "/")


def relative_location(spec: Spec, loc) -> str:
    """`file:line:col` with the file relative to the spec root (for artifacts)."""
    import os

    if loc is None:
        return ""
    path = loc.file
    if os.path.exists(path):  # a display path: relative to the working directory, or absolute
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(spec.root))
        path = os.path.basename(path) if rel.startswith("..") else rel.replace(os.sep, "/")
    return f"{path}:{loc.line}:{loc.column}"
