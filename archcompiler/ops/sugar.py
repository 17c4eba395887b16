"""Op-string sugar shared by the spec ops: `conv 3x3/2 32 valid`, `maxpool 3x3/2 ceil`.

Each spec op parses the words after its name with these helpers; numbers may be
`$name` or `$(expr)` wherever the mapping form takes an expression.
"""

from __future__ import annotations

import re

_VALUE = r"(\d{1,9}|\$[A-Za-z_][A-Za-z0-9_]*|\$\([^()]*(?:\([^()]*\)[^()]*)*\))"
_KERNEL = re.compile(_VALUE + r"x" + _VALUE + r"(?:/" + _VALUE + r")?\Z")
_PAD = re.compile(r"pad=" + _VALUE + r"(?:x" + _VALUE + r")?\Z")
_INT = re.compile(r"\d{1,9}\Z")
_FLOAT = re.compile(r"(\d{0,9}\.\d{1,9}|\d{1,9})(e-?\d{1,2})?\Z")


class OpStringError(ValueError):
    pass


def value(word: str):
    """`12` -> 12, `$k` / `$(k+1)` -> the text (parsed into an Expr by the model)."""
    return int(word) if _INT.match(word) else word


def number_or_expr(word: str, what: str, text: str, allow_float: bool = False):
    if word.startswith("$"):
        return word
    if _INT.match(word):
        return int(word)
    if allow_float and _FLOAT.match(word):
        return float(word)
    raise OpStringError(f"{text!r}: expected {what}, got {word!r}")


def take_kernel(op, words: list[str], text: str, out: dict, with_stride: bool = True) -> list[str]:
    """Parse `KxK[/S]` (K, S numbers or $expressions) into out['kernel'] (and 'stride')."""
    if not words:
        raise OpStringError(f"{text!r}: expected a kernel like 3x3 after {op.name!r} ({op.form})")
    m = _KERNEL.match(words[0])
    if not m or (m.group(3) and not with_stride):
        example = "3x3, 1x7 or 3x3/2 (stride 2)" if with_stride else "4x4"
        raise OpStringError(f"{text!r}: expected a kernel like {example}, got {words[0]!r}")
    a, b = value(m.group(1)), value(m.group(2))
    out["kernel"] = a if a == b and isinstance(a, str) else [a, b]
    if m.group(3):
        out["stride"] = value(m.group(3))
    return words[1:]


def take_number(op, words: list[str], text: str, out: dict, key: str, what: str,
                allow_float: bool = False) -> list[str]:
    if not words:
        raise OpStringError(f"{text!r}: expected {what} ({op.form})")
    out[key] = number_or_expr(words[0], what, text, allow_float)
    return words[1:]


def parse_flags(op, out: dict, words: list[str], text: str) -> dict:
    """The trailing words: `op.flags` maps a word to (slot, field updates); `pad=P` sets
    the padding where the op has one. A slot may be said once."""
    seen: dict = {}
    for word in words:
        pm = _PAD.match(word)
        if pm and "pad=" in op.flags:
            slot, updates = "padding", {"padding": [value(pm.group(1)), value(pm.group(2) or pm.group(1))]}
        elif word in op.flags and word != "pad=":
            slot, updates = op.flags[word]
        else:
            raise OpStringError(f"{text!r}: unexpected {word!r} (form: {op.form})")
        if slot in seen:
            raise OpStringError(f"{text!r}: {word!r} conflicts with {seen[slot]!r} (say it once)")
        seen[slot] = word
        out.update(updates)
    return out
