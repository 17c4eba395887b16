"""The building blocks of the spec models: strict located models and value types.

Shared by the spec language (archcompiler.spec.model) and the op registry
(archcompiler.ops), whose entries declare their own fields with these types.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from typing_extensions import TypeAliasType

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from ..errors import Location
from .expr import Expr, ExprError, parse_expr
from .yaml_io import LocDict

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # at most 64 characters
SHAPE_PATTERN = r"^[0-9]{1,9}(x[0-9]{1,9}){0,3}$"  # C, or CxHxW

ExprText = Annotated[StrictStr, StringConstraints(pattern=r"^\$")]


def _to_expr(v):
    if isinstance(v, str):
        if not v.startswith("$"):
            raise ValueError(
                f"expected a number or a $parameter expression, got the string {v!r}"
                + (" (numbers are written without quotes)" if re.fullmatch(r"-?[0-9.]+", v) else "")
            )
        try:
            return parse_expr(v)
        except ExprError as exc:
            raise ValueError(str(exc)) from None
    return v


def _expr_or(*types):
    """A value of the given types, or a `$expression` evaluated at instantiation."""
    return Annotated[Union[(*types, Expr)], BeforeValidator(_to_expr, json_schema_input_type=Union[(*types, ExprText)])]


IntP = TypeAliasType("IntP", _expr_or(StrictInt))
NumP = TypeAliasType("NumP", _expr_or(StrictInt, StrictFloat))
Name = TypeAliasType("Name", Annotated[StrictStr, StringConstraints(pattern=NAME_PATTERN)])
ShapeStr = Annotated[StrictStr, StringConstraints(pattern=SHAPE_PATTERN)]
Pair = Union[StrictInt, Annotated[list[StrictInt], Field(min_length=2, max_length=2)]]
Padding = Union[Literal["same", "valid", "tf_same"], Pair,
                Annotated[list[StrictInt], Field(min_length=4, max_length=4)]]
BoolP = TypeAliasType("BoolP", Annotated[Union[StrictBool, Expr],
                  BeforeValidator(lambda v: _to_expr(v) if isinstance(v, str) and v.startswith("$") else v,
                                  json_schema_input_type=Union[StrictBool, ExprText])])
Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]


class Located(BaseModel):
    """Base: strict, no unknown fields, remembers where in which file it was written."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)
    _loc: Optional[Location] = PrivateAttr(default=None)
    _key_locs: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_location(cls, data, handler):
        model = handler(data)
        if isinstance(data, LocDict):
            private = model.__pydantic_private__
            private["_loc"] = data.loc
            private["_key_locs"] = data.key_locs
        return model

    # The private attributes are read from pydantic's dict directly: `self._loc` goes
    # through BaseModel.__getattr__ (slow), and lowering reads a location per item.
    @property
    def loc(self) -> Optional[Location]:
        return self.__pydantic_private__["_loc"]

    def key_loc(self, key: str) -> Optional[Location]:
        private = self.__pydantic_private__
        return private["_key_locs"].get(key, private["_loc"])


def _dollar(v):
    return _to_expr(v) if isinstance(v, str) and v.startswith("$") else v


IntE = TypeAliasType("IntE", Annotated[Union[StrictInt, Expr], BeforeValidator(_dollar, json_schema_input_type=Union[StrictInt, ExprText])])
PairP = TypeAliasType("PairP", Union[IntE, Annotated[list[IntE], Field(min_length=2, max_length=2)]])
PaddingP = TypeAliasType("PaddingP", Annotated[
    Union[Literal["same", "valid", "tf_same"], StrictInt, Expr,
          Annotated[list[IntE], Field(min_length=2, max_length=2)],
          Annotated[list[IntE], Field(min_length=4, max_length=4)]],
    BeforeValidator(_dollar, json_schema_input_type=Union[
        Literal["same", "valid", "tf_same"], StrictInt, ExprText,
        Annotated[list[Union[StrictInt, ExprText]], Field(min_length=2, max_length=2)],
        Annotated[list[Union[StrictInt, ExprText]], Field(min_length=4, max_length=4)]])])


class ItemBase(Located):
    """Fields every mapping item may carry: its node-name segment and a condition."""

    name: Optional[Name] = None
    when: Optional[BoolP] = Field(
        None, description="$condition: the item is skipped (identity) when it is false")
