"""Spec metadata models: preprocessing, initialisation, expectations, checkpoint names.

None of these changes the network's structure (a variant that edits only these keeps its
base's expectations; see spec/variants.py)."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, StrictFloat, StrictInt, StrictStr, field_validator

from .expr import ExprError, parse_expr
from .types import Located, Name, ShapeStr


class Preprocess(Located):
    mean: Annotated[list[Union[StrictFloat, StrictInt]], Field(min_length=1, max_length=64)] = [0.5, 0.5, 0.5]
    std: Annotated[list[Annotated[Union[StrictFloat, StrictInt], Field(gt=0)]],
                   Field(min_length=1, max_length=64)] = [0.5, 0.5, 0.5]
    crop_pct: Annotated[Union[StrictFloat, StrictInt], Field(gt=0, le=1)] = 0.875
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    input_space: Literal["RGB", "BGR"] = Field("RGB", description="channel order the weights expect")
    input_range: Annotated[list[Union[StrictFloat, StrictInt]], Field(min_length=2, max_length=2)] = Field(
        [0, 1], description="pixel range before mean/std: [0, 1], or [0, 255] (Caffe-style weights)")


class Init(Located):
    """How fresh weights are drawn (what the reference code does for this model)."""

    scheme: Literal["torch_default", "trunc_normal", "kaiming_normal"] = Field(
        "torch_default", description="torch_default: PyTorch's layer defaults (kaiming-uniform, "
        "a=sqrt(5)); trunc_normal: N(0, std) truncated to [-2, 2] (torchvision Inception3, "
        "GoogLeNet); kaiming_normal: convolutions N(0, 2/fan_out) (torchvision ResNet), "
        "linear layers as torch_default")
    std: Union[StrictFloat, StrictInt] = 0.1
    overrides: dict[StrictStr, Union[StrictFloat, StrictInt]] = Field(
        default_factory=dict, description="node-name prefix -> std (trunc_normal only)")


class Expect(Located):
    layers: Optional[StrictInt] = None
    params: Optional[StrictInt] = None
    macs: Optional[StrictInt] = None
    min_input: Optional[StrictInt] = Field(None, description="smallest square input accepted")
    stages: dict[Name, ShapeStr] = Field(
        default_factory=dict, description="stage output shapes (in a variant: replaces the base's)")


class CheckpointFormat(Located):
    """How another library names this network's weights: ordered prefix renames.

    Keys are our names, values theirs; `{x}` matches one name segment (or part of one)
    and `{x+6}` shifts a captured integer. The first matching rule wins."""

    description: Optional[StrictStr] = None
    rename: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    reshape: list[StrictStr] = Field(
        default_factory=list, description="our-name patterns (same {x} placeholders) whose "
        "tensors are reshaped to our shape on load when the element counts agree")

    @field_validator("rename")
    @classmethod
    def _rules(cls, v):
        for ours, theirs in v.items():
            names = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", ours))
            for text in re.findall(r"\{([^{}]*)\}", theirs):
                try:
                    used = parse_expr("$(" + text + ")").names()
                except ExprError as exc:
                    raise ValueError(f"rename {ours!r}: {theirs!r}: {{{text}}} is not a placeholder "
                                     f"or an expression over one ({exc})") from None
                if not used <= names:
                    raise ValueError(f"rename {ours!r}: {theirs!r}: {{{text}}} uses "
                                     f"{', '.join(sorted(used - names))}, which {ours!r} does not "
                                     "capture")
        return v
