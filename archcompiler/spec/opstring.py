"""The short op strings of spec files: `conv 3x3/2 32 valid`, `avgpool 3x3 count_pad`.

They mirror the paper's figure labels ("3x3 Conv (32 stride 2 V)") and are sugar for the
structured mapping form (`{op: conv, kernel: [3, 3], stride: 2, out: 32, padding: valid}`).
Each op parses its own words (its registry entry, archcompiler.ops); this module finds
the entry and gives every mistake a precise message.
"""

from __future__ import annotations


from ..errors import close_matches
from ..ops import SPEC_OP_NAMES, SPEC_OPS
from ..ops.sugar import OpStringError

MAX_OP_CHARS = 200
OP_NAMES = SPEC_OP_NAMES
OP_FORMS = {name: op.form for name, op in SPEC_OPS.items()}

__all__ = ["OP_NAMES", "OP_FORMS", "OpStringError", "parse_op_string", "split_words",
           "unknown_op_message"]


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unknown_op_message(name: str) -> str:
    close = close_matches(name[:40], OP_NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown op {_short(name)!r}{hint} (valid ops: {', '.join(OP_NAMES)})"


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, except that a `$( ... )` expression is one word even
    when it contains spaces (`conv 1x1 $(k + l)`)."""
    words, i, n = [], 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j, depth = i, 0
        while j < n:
            c = text[j]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c.isspace() and depth <= 0:
                break
            j += 1
        words.append(text[i:j])
        i = j
    return words


def parse_op_string(text: str) -> dict:
    if len(text) > MAX_OP_CHARS:
        raise OpStringError(f"op string longer than {MAX_OP_CHARS} characters: {_short(text)!r}")
    words = split_words(text)
    if not words:
        raise OpStringError("empty op string (write e.g. 'conv 3x3 64')")
    name, rest = words[0], words[1:]
    if name not in SPEC_OPS:
        raise OpStringError(unknown_op_message(name))
    return {"op": name, **SPEC_OPS[name].parse_words(rest, text)}
