"""The resolved `Spec`, and how a spec file merges onto the spec it `extends`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import Diagnostic, Location, close_matches, error
from . import model as m
from .variants import apply_stage_edits, first_stage_using, param_closure, same_value


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


def merge(loader, sf: m.SpecFile, display: str, blocks: dict, base: Optional[Spec]):
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
            close = close_matches(k, list(params), n=1)
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

    network = list(network or [])
    if sf.stages:
        if base is None:
            diags.append(error(sf.key_loc("stages"), "stages: edits a base spec's stages; this "
                                                    "spec has no 'extends' (write them in 'network')"))
        elif sf.network is not None:
            diags.append(error(sf.key_loc("stages"), "stages: give either a whole 'network' or "
                                                    "'stages' edits of the base's, not both"))
    edited = (apply_stage_edits(network, sf.stages, sf.key_loc("stages") or here, diags)
              if sf.stages and base is not None and sf.network is None else None)
    if edited is not None:
        network = edited.stages
    stage_expect, expect, expect_loc, dropped_note = _expectations(
        sf, base, network, edited, params, all_blocks, defaults, input_shape, here)

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
        network=network,
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
    if dropped_note is not None:
        spec.warnings.append(dropped_note)
    return spec



# --- expectations ----------------------------------------------------------------------

def _changes(sf: m.SpecFile, base: Spec, network: list, edited, params: dict, blocks: dict,
             defaults, input_shape: tuple) -> tuple[list, Optional[int]]:
    """What a variant changes besides metadata, preprocess, init and checkpoints (the
    reasons, in words), and the first stage whose output may differ from the base's."""
    reasons: list = []
    firsts: list = []
    everything = []
    if sf.width is not None and sf.width != base.width:
        everything.append("width")
    if tuple(input_shape) != tuple(base.input_shape):
        everything.append("input")
    if sf.defaults is not None and defaults.model_dump() != base.defaults.model_dump():
        everything.append("defaults")
    if sf.network is not None:
        everything.append("network")
    if everything:
        reasons += everything
        firsts.append(0)
    changed = {k for k, v in params.items() if k not in base.params or not same_value(v, base.params[k])}
    if changed:
        reasons.append("params " + ", ".join(sorted(changed)))
    # a redefined block changes the stages that use it; a new one, only through stage edits
    new_blocks = {k for k, b in blocks.items() if k in base.blocks and base.blocks[k] is not b}
    if new_blocks:
        reasons.append("blocks " + ", ".join(sorted(new_blocks)))
    first = first_stage_using(network, blocks, param_closure(changed, params), new_blocks)
    if first is not None:
        firsts.append(first)
    if edited is not None and edited.edited:
        reasons.append("stages " + ", ".join(edited.edited))
        if edited.dirty_from is not None:
            firsts.append(edited.dirty_from)
    if "classes" in sf.set and sf.set["classes"] != base.classes:
        reasons.append("classes")
    for what in ("head", "aux"):
        if getattr(sf, what):
            reasons.append(what)
    return reasons, (min(firsts) if firsts else None)


def _expectations(sf, base, network, edited, params, blocks, defaults, input_shape, here):
    """-> (stage expectations, totals, their location, the note on dropped ones or None).

    The variant's own promises are always checked. The base's hold while the variant
    changes only metadata; otherwise the base's totals are dropped, and its stage shapes
    from the first stage the variant changes on."""
    own_stage: dict = {}
    if sf.network is not None:
        for st in sf.network:
            if st.expect is not None:
                own_stage[st.stage_name] = (parse_shape(st.expect), st.key_loc("expect"))
    if edited is not None:
        own_stage.update({k: (parse_shape(v), loc) for k, (v, loc) in edited.own_expect.items()})
    if sf.expect is not None:
        for k, v in sf.expect.stages.items():
            own_stage[k] = (parse_shape(v), sf.expect.key_loc("stages"))
    own_totals = {k: getattr(sf.expect, k) for k in ("layers", "params", "macs", "min_input")
                  if sf.expect is not None and getattr(sf.expect, k) is not None}
    if base is None:
        return own_stage, sf.expect or m.Expect(), sf.key_loc("expect"), None
    reasons, first = _changes(sf, base, network, edited, params, blocks, defaults, input_shape)
    order = {st.stage_name: i for i, st in enumerate(network)}
    stage_expect, dropped_stages = {}, []
    for name, value in base.stage_expect.items():
        if name in own_stage:
            continue
        if name in order and (first is None or order[name] < first):
            stage_expect[name] = value
        else:
            dropped_stages.append(name)
    stage_expect.update(own_stage)
    totals, locs, dropped_totals = {}, {}, []
    for k in ("layers", "params", "macs", "min_input"):
        if k in own_totals:
            totals[k], locs[k] = own_totals[k], sf.expect.key_loc(k)
        elif getattr(base.expect, k) is not None:
            if reasons:
                dropped_totals.append(f"expect.{k}")
            else:
                totals[k], locs[k] = getattr(base.expect, k), base.expect.key_loc(k)
    expect = m.Expect.model_construct(stages={}, **totals)
    expect._key_locs = locs
    expect._loc = sf.key_loc("expect") if sf.expect is not None else base.expect_loc
    note = None
    if dropped_totals or dropped_stages:
        what = dropped_totals + ([f"the output shapes of {', '.join(dropped_stages)}"]
                                 if dropped_stages else [])
        base_file = base.expect_loc.file if base.expect_loc else base.path
        note = Diagnostic(sf.key_loc("extends") or here,
                          f"this variant changes {'; '.join(reasons)}, so these expectations of "
                          f"its base ({base_file}) are not checked: {', '.join(what)}; state "
                          "them again in this file's 'expect' to check them", "note")
    return stage_expect, expect, expect._loc, note
