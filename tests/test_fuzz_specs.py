"""Property test: mutate the real specs (their values, keys, structure and raw text) and
check that `archcompiler.load_spec` either succeeds or raises `SpecError` - never any
other exception, never a hang (a generous per-example deadline guards that) - and that
every diagnostic it reports is located inside a file with a message."""

from __future__ import annotations

import copy
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archcompiler
from archcompiler import SpecError
from spec_helpers import SPECS

# the file that is mutated -> the top-level spec that reads it
TARGETS = {
    "inception_v4.yaml": "inception_v4.yaml",
    "inception_v3.yaml": "inception_v3.yaml",
    "inception_resnet_v1.yaml": "inception_resnet_v1.yaml",
    "inception_resnet_v2.yaml": "inception_resnet_v2.yaml",
    "inception_resnet_v2_paper.yaml": "inception_resnet_v2_paper.yaml",
    "blocks/inception_v4_stem.yaml": "inception_v4.yaml",
    "blocks/reduction_a.yaml": "inception_resnet_v1.yaml",
    "blocks/inception_resnet_v2_blocks.yaml": "inception_resnet_v2_paper.yaml",
    "variants/inception_v4_half.yaml": "variants/inception_v4_half.yaml",
    "variants/inception_v3_aux.yaml": "variants/inception_v3_aux.yaml",
    "variants/inception_resnet_v2_scale03.yaml": "variants/inception_resnet_v2_scale03.yaml",
}
ORIGINAL = {rel: (SPECS / rel).read_text(encoding="utf-8") for rel in TARGETS}
PARSED = {rel: yaml.safe_load(text) for rel, text in ORIGINAL.items()}

SETTINGS = settings(
    max_examples=250,
    deadline=timedelta(seconds=20),  # a guard against hangs, not a timing assertion
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def tree():
    """A private copy of specs/ (with its .archc-root), mutated one file at a time."""
    d = Path(tempfile.mkdtemp(prefix="archc-fuzz-"))
    shutil.copytree(SPECS, d / "specs")
    yield d / "specs"
    shutil.rmtree(d, ignore_errors=True)


def check_load(tree: Path, rel: str, content) -> None:
    target = tree / rel
    try:
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        try:
            spec = archcompiler.load_spec(str(tree / TARGETS[rel]))
        except SpecError as exc:
            assert exc.diagnostics, "a SpecError must carry diagnostics"
            for d in exc.diagnostics:
                assert d.location.line >= 1 and d.location.column >= 1
                assert d.message.strip()
                assert d.format().startswith(f"{d.location.file}:{d.location.line}:")
                d.format_github()
                d.to_json()
        else:
            a = spec.analysis
            assert a.layers >= 0 and a.params >= 0 and len(a.output_shape) >= 1
    finally:
        target.write_text(ORIGINAL[rel], encoding="utf-8")


# --- structured mutations of the parsed YAML tree ------------------------------------------

SCALARS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0, -1, 1, 2, 7, 64, 2**16, 2**16 + 1, 10**6, 10**12, 2**53, 2**53 + 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
    st.sampled_from([
        "", "conv", "conv 3x3", "conv 3x3 64", "conv 0x0 0", "conv 3x3/0 8", "conv 65x65 8",
        "conv 3x3/2 99999 same", "conv 2x2 8 same", "conv 3x3 8 pad=7", "maxpool 3x3/2",
        "maxpool 99x99", "avgpool 3x3 count_pad", "global_avgpool", "dropout 1.5", "dropout 0.5",
        "linear 0", "linear 10", "relu", "relu 3", "$k", "$nope", "$(k*k*k*k*k)", "$(1/0)",
        "$(k // 0)", "$(", "$(1+)", "$classes", "$drop_rate", "$(drop_rate * 10)", "none",
        "valid", "same", "3x299x299", "3x0x0", "1x1", "0x75x75", "3x4097x4097", "batchnorm",
        "archc:inception_v4", "archc:nope", "../x.yaml", "/etc/passwd", "stem_v4",
        "inception_a", "reduction_a", "inception_resnet_b", "mixed_6e", "x" * 100,
        "conv 3x3 " + "9" * 5000, "3x" + "9" * 5000 + "x1", "$(" + "9" * 5000 + ")",
    ]),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["op", "out", "kernel", "block", "seq",
                                                             "concat", "name", "with", "repeat",
                                                             "residual", "project", "x"]),
                                            inner, max_size=4)),
    max_leaves=8,
)
KEYS = st.sampled_from(["op", "out", "kernel", "stride", "padding", "block", "seq", "concat",
                        "residual", "project", "scale", "act", "name", "with", "repeat", "expect",
                        "params", "set", "extends", "imports", "width", "input", "classes",
                        "network", "head", "aux", "blocks", "defaults", "archc", "feature",
                        "after", "enabled", "netwrk", "strde", "count_pad", "layers", "stages"])


def _paths(node, prefix=()):
    """Every path into a parsed YAML tree."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated_tree(draw):
    rel = draw(st.sampled_from(sorted(TARGETS)))
    data = copy.deepcopy(PARSED[rel])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        parent = _get(data, path[:-1]) if path else None
        kind = draw(st.sampled_from(["replace", "delete", "add_key", "rename_key", "duplicate",
                                     "wrap_list", "swap"]))
        if not path:
            if kind == "replace":
                data = draw(VALUES)
            continue
        key = path[-1]
        if kind == "replace":
            parent[key] = draw(VALUES)
        elif kind == "delete":
            del parent[key]
        elif kind == "add_key":
            target = _get(data, path)
            if isinstance(target, dict):
                target[draw(KEYS)] = draw(VALUES)
            else:
                parent[key] = {draw(KEYS): target}
        elif kind == "rename_key" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(key)
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif kind == "wrap_list":
            parent[key] = [parent[key]]
        elif kind == "swap" and isinstance(parent, list) and len(parent) > 1:
            j = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[j] = parent[j], parent[key]
    return rel, yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@SETTINGS
@given(mutated_tree())
def test_structured_mutations_only_raise_spec_error(tree, case):
    rel, text = case
    check_load(tree, rel, text)


# --- raw text mutations ---------------------------------------------------------------------

YAML_BITS = st.sampled_from([
    ":", "-", "- ", "[", "]", "{", "}", ",", "&a", "*a", "!", "!!python/object:os.system",
    "!!str", "|", ">", "'", '"', "#", "%", "@", "`", "?", "\t", "\n", "  ", "---\n", "...\n",
    "<<: ", "\\", "\x00", "\ufeff", "é", "0x", "0o", "012", "1:30", "yes", "~", ".nan", "1e999",
    "$(", "$k", "x", "99999999999999999999", "9" * 5000, "1_" * 2000 + "x", "0x" + "f" * 100,
    "$(" + "(" * 50, "conv 3x3 " + "9" * 30, "*" * 3, "&" * 3,
])


@st.composite
def mutated_text(draw):
    rel = draw(st.sampled_from(sorted(TARGETS)))
    text = ORIGINAL[rel]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "dup_line", "drop_line", "indent",
                                     "replace_number"]))
        lines = text.split("\n")
        if kind == "insert":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(YAML_BITS) + text[i:]
        elif kind == "delete" and text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
        elif kind == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif kind == "drop_line":
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
        elif kind == "indent":
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(st.sampled_from(["", " ", "  ", "\t", "    "])) + lines[i].lstrip(" ")
            text = "\n".join(lines)
        elif kind == "replace_number":
            import re

            nums = list(re.finditer(r"\d+", text))
            if nums:
                mt = draw(st.sampled_from(nums))
                text = text[:mt.start()] + str(draw(st.sampled_from(
                    [0, 1, 2, 3, 7, 9999, 65537, 10**9, 10**20]))) + text[mt.end():]
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # sometimes corrupt the bytes themselves
        i = draw(st.integers(0, max(0, len(raw) - 1)))
        raw = raw[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf"])) + raw[i:]
    return rel, raw


@SETTINGS
@given(mutated_text())
def test_text_mutations_only_raise_spec_error(tree, case):
    rel, raw = case
    check_load(tree, rel, raw)
