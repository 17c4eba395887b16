"""The short op strings of spec files: `conv 3x3/2 32 valid`, `avgpool 3x3 count_pad`.

They mirror the paper's figure labels ("3x3 Conv (32 stride 2 V)") and are sugar for the
structured mapping form (`{op: conv, kernel: [3, 3], stride: 2, out: 32, padding: valid}`);
`parse_op_string` turns one into the other, with a precise message for each mistake.
"""

from __future__ import annotations

import difflib
import re

# Numbers in op strings have at most 9 digits (every limit is far below that).
_KERNEL = re.compile(r"(\d{1,9})x(\d{1,9})(?:/(\d{1,9}))?\Z")
_PAD = re.compile(r"pad=(\d{1,9})(?:x(\d{1,9}))?\Z")
_INT = re.compile(r"\d{1,9}\Z")
_FLOAT = re.compile(r"\d{0,9}\.\d{1,9}\Z|\d{1,9}\Z")
MAX_OP_CHARS = 200

OP_FORMS = {
    "conv": "conv KxK[/S] OUT [same|valid|pad=P|pad=PHxPW] [linear|bias|nobias|nobn|noact]",
    "maxpool": "maxpool KxK[/S] [same|valid|pad=P]",
    "avgpool": "avgpool KxK[/S] [same|valid|pad=P] [count_pad|exclude_pad]",
    "global_avgpool": "global_avgpool",
    "dropout": "dropout P",
    "linear": "linear OUT [nobias]",
    "relu": "relu",
}
OP_NAMES = tuple(OP_FORMS)


class OpStringError(ValueError):
    pass


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unknown_op_message(name: str) -> str:
    close = difflib.get_close_matches(name[:40], OP_NAMES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown op {_short(name)!r}{hint} (valid ops: {', '.join(OP_NAMES)})"


def _number_or_expr(word: str, what: str, text: str, allow_float: bool = False):
    if word.startswith("$"):
        return word
    if _INT.match(word):
        return int(word)
    if allow_float and _FLOAT.match(word):
        return float(word)
    raise OpStringError(f"{text!r}: expected {what}, got {word!r}")


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
    op, rest = words[0], words[1:]
    if op not in OP_FORMS:
        raise OpStringError(unknown_op_message(op))
    form = OP_FORMS[op]
    out: dict = {"op": op}
    if op in ("conv", "maxpool", "avgpool"):
        if not rest:
            raise OpStringError(f"{text!r}: expected a kernel like 3x3 after {op!r} ({form})")
        m = _KERNEL.match(rest[0])
        if not m:
            raise OpStringError(
                f"{text!r}: expected a kernel like 3x3, 1x7 or 3x3/2 (stride 2), got {rest[0]!r}"
            )
        out["kernel"] = [int(m.group(1)), int(m.group(2))]
        if m.group(3):
            out["stride"] = int(m.group(3))
        rest = rest[1:]
    if op == "conv":
        if not rest:
            raise OpStringError(f"{text!r}: expected output channels after the kernel ({form})")
        out["out"] = _number_or_expr(rest[0], "output channels after the kernel", text)
        rest = rest[1:]
    elif op == "linear":
        if not rest:
            raise OpStringError(f"{text!r}: expected output features ({form})")
        out["out"] = _number_or_expr(rest[0], "output features", text)
        rest = rest[1:]
    elif op == "dropout":
        if not rest:
            raise OpStringError(f"{text!r}: expected a drop probability ({form})")
        out["p"] = _number_or_expr(rest[0], "a drop probability like 0.2", text, allow_float=True)
        rest = rest[1:]
    flags = {
        "conv": {"same", "valid", "linear", "bias", "nobias", "nobn", "noact"},
        "maxpool": {"same", "valid"},
        "avgpool": {"same", "valid", "count_pad", "exclude_pad"},
    }.get(op, set())
    seen: dict = {}
    for word in rest:
        slot = {"same": "padding", "valid": "padding", "linear": "linear", "bias": "bias",
                "nobias": "bias", "nobn": "norm", "noact": "act", "count_pad": "count_pad",
                "exclude_pad": "count_pad"}.get(word, "padding" if word.startswith("pad=") else None)
        if slot is not None and slot in seen:
            raise OpStringError(f"{text!r}: {word!r} conflicts with {seen[slot]!r} (say it once)")
        if slot is not None:
            seen[slot] = word
        pm = _PAD.match(word)
        if pm and op in ("conv", "maxpool", "avgpool"):
            ph = int(pm.group(1))
            out["padding"] = [ph, int(pm.group(2)) if pm.group(2) else ph]
        elif word in ("same", "valid") and word in flags:
            out["padding"] = word
        elif word == "linear" and op == "conv":
            out.update(norm="none", act="none", bias=True)
        elif word in ("bias", "nobias") and word in flags:
            out["bias"] = word == "bias"
        elif word == "nobias" and op == "linear":
            out["bias"] = False
        elif word == "nobn" and op == "conv":
            out["norm"] = "none"
        elif word == "noact" and op == "conv":
            out["act"] = "none"
        elif word in ("count_pad", "exclude_pad") and op == "avgpool":
            out["count_pad"] = word == "count_pad"
        else:
            raise OpStringError(f"{text!r}: unexpected {word!r} (form: {form})")
    return out
