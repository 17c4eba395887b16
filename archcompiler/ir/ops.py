"""The IR ops live in the op registry (archcompiler.ops); this name stays for imports."""

from ..ops import OPS, Shape, ShapeError, fmt_shape  # noqa: F401
from ..ops.base import IROp as OpDef  # noqa: F401
