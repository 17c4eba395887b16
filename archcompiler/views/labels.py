"""Op labels that read like the spec's op strings (`conv 3x3/2 32 valid`), rebuilt from
an op model's fields: shared by `archc graph` and `archc show`."""

from __future__ import annotations


def value_text(v) -> str:
    if hasattr(v, "text") and hasattr(v, "kind"):  # an Expr: as the spec wrote it
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(map(value_text, v))
    return str(v)


def _hxw(v) -> str:
    return value_text(v) if isinstance(v, (list, tuple)) else f"{value_text(v)}x{value_text(v)}"


def _stride(v) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2 and value_text(v[0]) == value_text(v[1]):
        v = v[0]
    return value_text(v)


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b  # True is not 1 here


def _flag_words(flags: dict, rest: dict) -> list:
    """The op's own op-string words for the fields written (`linear`, `valid`, `dw`,
    `ceil`), the largest that fit first; what no word says becomes `field=value`."""
    words, left = [], dict(rest)
    fits = [(w, u) for w, (_slot, u) in flags.items()
            if u and all(k in rest and _same(rest[k], v) for k, v in u.items())]
    for w, u in sorted(fits, key=lambda wu: -len(wu[1])):
        if all(k in left for k in u):
            words.append(w)
            for k in u:
                del left[k]
    for k, v in left.items():
        if v is None:
            continue
        if k != "padding":
            words.append(f"{k}={value_text(v)}")
        elif isinstance(v, str):  # same / valid / tf_same, where the op has no such word
            words.append(v)
        else:  # pad=1, pad=3x0 (height x width), or the four sides
            words.append(f"pad={_stride(v) if isinstance(v, (list, tuple)) and len(v) == 2 else value_text(v)}")
    return words


def op_label(it) -> str:
    """`conv 3x3/2 32 valid`, `avgpool 3x3`, `dropout $drop_rate`, `fc: linear $classes`:
    from any op model's fields (kernel[/stride], required values, then what was written),
    so that a new op needs nothing here."""
    from ..ops import SPEC_OPS

    fields = type(it).model_fields
    words, used = [it.op], {"op", "name", "when"}
    if "kernel" in fields:
        stride = getattr(it, "stride", 1)
        words.append(_hxw(it.kernel) + ("" if _same(stride, 1) else "/" + _stride(stride)))
        used |= {"kernel", "stride"}
    for f, info in fields.items():  # required fields are the op string's positional words
        if f not in used and info.is_required():
            words.append(value_text(getattr(it, f)))
            used.add(f)
    rest = {f: getattr(it, f) for f in fields if f in it.model_fields_set and f not in used}
    words += _flag_words(SPEC_OPS[it.op].flags, rest)
    text = " ".join(words)
    return f"{it.name}: {text}" if getattr(it, "name", None) else text
