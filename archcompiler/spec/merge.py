"""The resolved `Spec`, and how a spec file merges onto the spec it `extends`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Optional

from ..errors import Diagnostic, Location, error
from . import model as m


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

