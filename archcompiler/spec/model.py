"""The spec language as pydantic models (strict types, unknown fields refused).

These models are the single source of the JSON Schema (`archc schema`). Values that may
depend on parameters are `$name` / `$(expr)` strings, parsed into `Expr` here and
evaluated when a block is instantiated (`archcompiler.ir.lower`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from typing_extensions import TypeAliasType

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from ..ops import SPEC_OPS
from ..ops.activation import ActP
from .expr import Expr
from .metadata import CheckpointFormat, Expect, Init, Preprocess  # noqa: F401 - re-exported
from .opstring import OP_NAMES, OpStringError, parse_op_string, unknown_op_message
from .types import (  # noqa: F401 - re-exported: the language's value types
    NAME_PATTERN, SHAPE_PATTERN, BoolP, IntP, ItemBase, Located, Name, NumP, Pair, Padding,
    Scalar, ShapeStr, _to_expr,
)
from .yaml_io import LocDict

SPEC_VERSION = 1

# --- ops: one model per spec op, from the registry (archcompiler.ops) ------------------

OP_MODELS = {name: op.model for name, op in SPEC_OPS.items()}

AnyOp = TypeAliasType("AnyOp", Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in OP_MODELS.items())],
    Discriminator(lambda v: v.get("op") if isinstance(v, dict) else getattr(v, "op", None)),
])

# --- structure ---------------------------------------------------------------------------


class ConcatItem(ItemBase):
    """Parallel branches merged by channel concatenation, in the order written."""

    concat: Annotated[list["Branch"], Field(min_length=1)]


class AddItem(ItemBase):
    """Two or more parallel branches summed elementwise (equal shapes); `[]` is the input."""

    add: Annotated[list["Branch"], Field(min_length=2)]


class MultiplyItem(ItemBase):
    """Two or more parallel branches multiplied elementwise with broadcasting: SE's
    `[[], [global_avgpool keepdim, ..., sigmoid]]` gates the input with a Cx1x1 branch."""

    multiply: Annotated[list["Branch"], Field(min_length=2)]


class SeqItem(ItemBase):
    """A sequence of items (a branch can be written as `{name: ..., seq: [...]}`)."""

    seq: Annotated[list["Item"], Field(min_length=1)]


class ResidualBody(Located):
    """act(shortcut(x) + scale * project(body(x))): Figure 20, and ResNet's blocks."""

    concat: Optional[Annotated[list["Branch"], Field(min_length=1)]] = None
    seq: Optional[Annotated[list["Item"], Field(min_length=1)]] = None
    project: Optional["Item"] = Field(
        None, description="an item after the body, e.g. the 1x1 'Linear' up-projection "
                          "conv 1x1 $in linear")
    shortcut: Optional["Branch"] = Field(
        None, description="item(s) applied to x before the add (default: identity), e.g. "
                          "ResNet's strided 1x1 conv + BN; a mapping may carry `when`")
    scale: NumP = 1.0
    act: ActP = "relu"
    add_when: Optional[BoolP] = Field(
        None, description="$condition: where false, no shortcut and no add: the body alone "
                          "(MobileNet's use_res_connect: $(stride == 1 and in == out))")

    @model_validator(mode="after")
    def _one_body(self):
        if (self.concat is None) == (self.seq is None):
            raise ValueError("a residual needs exactly one of 'concat' or 'seq' for its branch")
        return self


class ResidualItem(ItemBase):
    residual: ResidualBody


class BlockRef(ItemBase):
    """Use a block template (optionally with parameter values) inside another block."""

    block: Name
    with_: dict[Name, Union[Scalar, Expr]] = Field(default_factory=dict, alias="with")

    @field_validator("with_", mode="wrap")
    @classmethod
    def _exprs(cls, v, handler):
        return _with_values(v, handler)


def _with_values(v, handler):
    """Parameter values: `$...` strings become expressions; the validated mapping keeps
    the YAML locations of its keys (`.key_locs`), for diagnostics about one parameter."""
    if isinstance(v, dict):
        v2 = LocDict({k: (_to_expr(x) if isinstance(x, str) and x.startswith("$") else x)
                      for k, x in v.items()})
        v2.loc = getattr(v, "loc", None)
        v2.key_locs = getattr(v, "key_locs", {})
        v = v2
    out = handler(v)
    if isinstance(out, dict) and isinstance(v, LocDict):
        located = LocDict(out)
        located.loc = v.loc
        located.key_locs = v.key_locs
        return located
    return out


ITEM_KEYS = ("op", "concat", "add", "multiply", "seq", "residual", "block")


def _item_kind(v):
    if isinstance(v, dict):
        for k in ITEM_KEYS:
            if k in v:
                return k
        return None
    for cls, k in ((ConcatItem, "concat"), (AddItem, "add"), (MultiplyItem, "multiply"),
                   (SeqItem, "seq"), (ResidualItem, "residual"),
                   (BlockRef, "block")):
        if isinstance(v, cls):
            return k
    return "op"


def _parse_item(v):
    if isinstance(v, str):
        try:
            parsed = LocDict(parse_op_string(v))
        except OpStringError as exc:
            raise ValueError(str(exc)) from None
        parsed.loc = getattr(v, "loc", None)
        parsed.key_locs = {}
        return parsed
    if isinstance(v, dict):
        if "op" in v and v["op"] not in OP_NAMES:
            raise ValueError(unknown_op_message(str(v["op"])))
        if not any(k in v for k in ITEM_KEYS):
            raise ValueError(
                "expected an op string like 'conv 3x3 64', or a mapping with one of: "
                + ", ".join(ITEM_KEYS)
            )
    return v


OpString = Annotated[StrictStr, StringConstraints(pattern=r"^(" + "|".join(OP_NAMES) + r")(\s|$)")]

Item = TypeAliasType("Item", Annotated[
    Union[
        Annotated[AnyOp, Tag("op")],
        Annotated[ConcatItem, Tag("concat")],
        Annotated[AddItem, Tag("add")],
        Annotated[MultiplyItem, Tag("multiply")],
        Annotated[SeqItem, Tag("seq")],
        Annotated[ResidualItem, Tag("residual")],
        Annotated[BlockRef, Tag("block")],
    ],
    Discriminator(_item_kind),
    BeforeValidator(_parse_item, json_schema_input_type=Union[OpString, dict]),
])


def _parse_branch(v):
    # A branch is a list of items, or a single item (string or mapping).
    return v if isinstance(v, list) else [v]


Branch = TypeAliasType("Branch", Annotated[
    Union[list[Item], SeqItem],
    BeforeValidator(lambda v: v if isinstance(v, (list, SeqItem)) or (isinstance(v, dict) and "seq" in v)
                    else _parse_branch(v)),
])


# --- blocks, stages, the spec ------------------------------------------------------------

class BlockDef(Located):
    """A block template: one body (seq, concat or residual) and its parameters."""

    figure: Optional[StrictStr] = Field(None, description="where it comes from, e.g. 'Figure 4'")
    doc: Optional[StrictStr] = None
    params: Union[list[Name], dict[Name, Union[Scalar, Expr]]] = Field(
        default_factory=dict, description="parameter names, or names with default values")
    seq: Optional[Annotated[list[Item], Field(min_length=1)]] = None
    concat: Optional[Annotated[list[Branch], Field(min_length=1)]] = None
    residual: Optional[ResidualBody] = None

    @field_validator("params", mode="wrap")
    @classmethod
    def _param_exprs(cls, v, handler):
        return _with_values(v, handler)

    @model_validator(mode="after")
    def _one_body(self):
        bodies = [k for k in ("seq", "concat", "residual") if getattr(self, k) is not None]
        if len(bodies) != 1:
            raise ValueError("a block needs exactly one body: seq, concat or residual"
                             + (f" (found {', '.join(bodies)})" if bodies else ""))
        return self

    def param_defaults(self) -> dict:
        if isinstance(self.params, list):
            return {p: _REQUIRED for p in self.params}
        return dict(self.params)


class _Required:
    def __repr__(self):
        return "<required>"


_REQUIRED = _Required()


class CopyEdit(Located):
    """One copy of a repeated stage, made different: another block and/or other `with`
    values (merged onto the stage's; replacing them when the block changes)."""

    block: Optional[Name] = None
    with_: dict[Name, Union[Scalar, Expr]] = Field(default_factory=dict, alias="with")

    @field_validator("with_", mode="wrap")
    @classmethod
    def _exprs(cls, v, handler):
        return _with_values(v, handler)


class _StageFields(Located):
    """What a stage is made of: shared by `network` entries and a variant's `stages:` edits."""

    block: Optional[Name] = None
    with_: dict[Name, Union[Scalar, Expr]] = Field(default_factory=dict, alias="with")
    repeat: Optional[IntP] = None
    op: Optional[Item] = None
    seq: Optional[Annotated[list[Item], Field(min_length=1)]] = None
    concat: Optional[Annotated[list[Branch], Field(min_length=1)]] = None
    residual: Optional[ResidualBody] = None
    expect: Optional[ShapeStr] = Field(None, description="promised output shape, CxHxW")
    feature: Optional[StrictBool] = Field(
        None, description="whether features=True returns this stage's output "
                          "(default: the last stage at each spatial size)")

    @field_validator("with_", mode="wrap")
    @classmethod
    def _exprs(cls, v, handler):
        return _with_values(v, handler)


STAGE_BODIES = ("block", "op", "seq", "concat", "residual")


class Stage(_StageFields):
    """One entry of `network`: a block (possibly repeated) or inline ops."""

    name: Optional[Name] = None
    copies: dict[Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{1,4}$")], CopyEdit] = Field(
        default_factory=dict, description="copy index (a quoted string: YAML keys are strings) -> "
        "another block or other `with` values for that copy of a repeated stage; a variant "
        "writes `stages: {inception_a.2: {...}}`")

    @model_validator(mode="after")
    def _one_body(self):
        bodies = [k for k in STAGE_BODIES if getattr(self, k) is not None]
        if len(bodies) != 1:
            raise ValueError("a stage needs exactly one of: block, op, seq, concat, residual"
                             + (f" (found {', '.join(bodies)})" if bodies else ""))
        if self.block is None and self.name is None:
            raise ValueError("a stage without 'block' needs a 'name'")
        if self.with_ and self.block is None:
            raise ValueError("'with' only applies to a 'block' stage")
        if self.copies and self.repeat is None:
            raise ValueError("'copies' only applies to a repeated stage ('repeat: N')")
        return self

    @property
    def stage_name(self) -> str:
        return self.name or self.block  # type: ignore[return-value]


class StageEdit(_StageFields):
    """A variant's edit of the base's stage of this name (fields given replace the stage's;
    `with` merges), or, with `before`/`after`, a new stage of this name."""

    before: Optional[Name] = Field(None, description="insert a new stage before this one")
    after: Optional[Name] = Field(None, description="insert a new stage after this one")

    @model_validator(mode="after")
    def _one_body(self):
        bodies = [k for k in STAGE_BODIES if getattr(self, k) is not None]
        if len(bodies) > 1:
            raise ValueError(f"a stage has one body; this edit gives {', '.join(bodies)}")
        if self.before is not None and self.after is not None:
            raise ValueError("give 'before' or 'after', not both")
        return self


StageKey = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[0-9]{1,4})?$")]


class AuxHead(Located):
    """A side output taken after a stage, present in training mode only (v3's AuxLogits)."""

    name: Name
    after: Name = Field(description="the stage whose output feeds this head")
    enabled: BoolP = True
    seq: Annotated[list[Item], Field(min_length=1)]


# `defaults: {conv: ..., maxpool: ...}`: one section per spec op that declares defaults
Defaults = create_model(
    "Defaults", __base__=Located, __doc__="Per-op defaults (the registry's defaults models).",
    **{name: (op.defaults_model, Field(default_factory=op.defaults_model))
       for name, op in SPEC_OPS.items() if op.defaults_model is not None})


class SpecFile(Located):
    """A spec file: a complete network, a variant (`extends`), or a block library."""

    archc: StrictInt = Field(description="spec format version; this tool reads version 1")
    name: Optional[Name] = None
    title: Optional[StrictStr] = None
    description: Optional[StrictStr] = None
    source: Optional[StrictStr] = Field(None, description="paper / figure / reference code")
    extends: Optional[StrictStr] = Field(None, description="base spec, relative to this file")
    imports: list[StrictStr] = Field(default_factory=list,
                                     description="block libraries, relative to this file")
    params: dict[Name, Union[Scalar, Expr]] = Field(default_factory=dict)
    set: dict[Name, Union[Scalar, Expr]] = Field(
        default_factory=dict, description="in a variant: new values for the base's params")
    width: Optional[Union[StrictFloat, StrictInt]] = Field(
        None, gt=0, le=16, description="multiplies every conv's output channels (rounded)")
    input: Optional[ShapeStr] = Field(None, description="CxHxW, e.g. 3x299x299")
    classes: Optional[StrictInt] = Field(None, ge=1, le=1_000_000,
                                         description="classifier outputs; $classes in specs")
    preprocess: Optional[Preprocess] = None
    defaults: Optional[Defaults] = None
    blocks: dict[Name, BlockDef] = Field(default_factory=dict)
    network: Optional[Annotated[list[Stage], Field(min_length=1)]] = None
    stages: dict[StageKey, Union[Literal["remove"], StageEdit]] = Field(
        default_factory=dict, description="in a variant: edits of the base's stages by name "
        "(`inception_a: {repeat: 2}`, one copy `inception_a.2: {with: ...}`, `remove`), or new "
        "stages placed with `before:`/`after:`")
    head: Optional[Annotated[list[Item], Field(min_length=1)]] = None
    aux: list[AuxHead] = Field(default_factory=list)
    init: Optional[Init] = None
    expect: Optional[Expect] = None
    checkpoints: dict[Name, CheckpointFormat] = Field(default_factory=dict)

    @field_validator("params", "set", "stages", mode="wrap")
    @classmethod
    def _exprs(cls, v, handler):
        return _with_values(v, handler)

    @field_validator("archc")
    @classmethod
    def _version(cls, v):
        if v != SPEC_VERSION:
            raise ValueError(f"unsupported spec version {v}: this archc reads version {SPEC_VERSION}")
        return v


# forward references ("Item", "Branch") resolve when a model is first used (defer_build):
# rebuilding them all here would build every schema at import, for every `archc` call


def all_field_names() -> set[str]:
    """Every field name of the language (for 'did you mean' suggestions)."""
    names: set[str] = set()
    defaults = [op.defaults_model for op in SPEC_OPS.values() if op.defaults_model is not None]
    for m in (*OP_MODELS.values(), *defaults, ConcatItem, SeqItem, ResidualBody, ResidualItem,
              BlockRef, BlockDef, Stage, StageEdit, CopyEdit, AuxHead, Defaults, Preprocess, Init, Expect,
              CheckpointFormat, SpecFile):
        for fname, f in m.model_fields.items():
            names.add(f.alias or fname)
    return names


def json_schema() -> dict:
    schema = SpecFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://archcompiler.dev/schema/archc.schema.json"
    schema["title"] = "archc spec (version 1)"
    return schema
