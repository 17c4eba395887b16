"""docs/spec-language.md stays the reference of the language: every field and op of the
models is documented, the documented limits are the ones the code enforces, and the YAML
examples are valid YAML for our reader."""

from __future__ import annotations

import re

import pytest

from archcompiler.spec import model as m
from archcompiler.spec.opstring import OP_FORMS
from archcompiler.spec.yaml_io import parse_yaml
from spec_helpers import ROOT

DOC = (ROOT / "docs" / "spec-language.md").read_text(encoding="utf-8")


def test_every_field_is_documented():
    missing = sorted(f for f in m.all_field_names() if f"`{f}" not in DOC)
    assert not missing, f"fields not in docs/spec-language.md: {missing}"


@pytest.mark.parametrize("op", sorted(OP_FORMS))
def test_every_op_is_documented(op):
    assert f"### {op}" in DOC or f"`{op}" in DOC
    assert f"{{op: {op}" in DOC or op in ("conv", "maxpool", "avgpool")


def _fmt(n: int) -> list[str]:
    return [f"{n:,}", str(n)]


def test_documented_limits_match_the_code():
    from archcompiler import analysis
    from archcompiler.ir import lower
    from archcompiler.spec import expr, loader, opstring, yaml_io

    assert "| spec file size | 1 MiB |" in DOC and yaml_io.MAX_FILE_BYTES == 1 << 20
    expected = {
        "YAML nesting depth": yaml_io.MAX_DEPTH,
        "YAML events per file": yaml_io.MAX_EVENTS,
        "YAML values after alias expansion": yaml_io.MAX_NODES,
        "imports / extends nesting": loader.MAX_INCLUDE_DEPTH,
        "`repeat`": lower.MAX_REPEAT,
        "IR nodes after instantiation": lower.MAX_NODES,
        "parameters": analysis.MAX_PARAMS,
        "input height / width": analysis.MAX_INPUT_SIZE,
    }
    for label, value in expected.items():
        row = next(line for line in DOC.splitlines() if line.startswith(f"| {label} |"))
        assert any(v in row for v in _fmt(value)), (label, value, row)
    row = next(line for line in DOC.splitlines() if line.startswith("| conv output channels |"))
    assert f"1..{lower.MAX_CHANNELS:,}" in row
    row = next(line for line in DOC.splitlines() if line.startswith("| linear outputs |"))
    assert f"1..{lower.MAX_CHANNELS * 16:,}" in row
    row = next(line for line in DOC.splitlines() if line.startswith("| kernel, stride |"))
    assert f"1..{lower.MAX_KERNEL}" in row and lower.MAX_KERNEL == lower.MAX_STRIDE
    row = next(line for line in DOC.splitlines() if line.startswith("| expressions |"))
    assert f"{expr.MAX_EXPR_CHARS} characters" in row and f"{expr._Parser.MAX_DEPTH} levels" in row
    assert expr.MAX_MAGNITUDE == 10**12 and "±10**12" in row
    row = next(line for line in DOC.splitlines() if line.startswith("| op strings |"))
    assert f"{opstring.MAX_OP_CHARS} characters" in row
    assert yaml_io.MAX_INT == 2**53 and "2**53" in DOC


def test_exit_codes_documented():
    from archcompiler import cli

    for code in (cli.EXIT_OK, cli.EXIT_SPEC, cli.EXIT_USAGE, cli.EXIT_INTERNAL):
        assert re.search(rf"^\| {code} \| ", DOC, re.M), code


def test_yaml_examples_are_valid_yaml():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
    assert len(blocks) >= 10
    for text in blocks:
        if any(line.strip() and not line.startswith("#") for line in text.splitlines()):
            parse_yaml(text, "docs/spec-language.md")


def test_op_table_equals_the_registry():
    """docs/spec-language.md's op table lists exactly the registry's spec ops, in order."""
    from archcompiler.ops import SPEC_OPS

    table = DOC.split("<!-- ops-table -->")[1].split("<!-- /ops-table -->")[0]
    names = re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M)
    assert names == list(SPEC_OPS)
    for name, op in SPEC_OPS.items():  # each documented with its string form
        assert op.form.split()[0] == name
