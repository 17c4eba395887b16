"""One test per diagnostic that issue 2 lists, each asserting the exact `file:line:col`
and the message: shape and channel mismatches, sizes below 1, unmet expectations, unknown
and unused parameters, cycles and dangling references, schema errors (unknown / missing
fields, wrong and non-strict types), and errors inside included files."""

from __future__ import annotations

import json

import pytest

from spec_helpers import archc, col_of, line_of, write_tree


@pytest.fixture
def tree(tmp_path):
    """write(files) -> validate `s.yaml` (or `main`) in a fresh spec root, cwd = the root."""

    def run(files: dict, main: str = "s.yaml", *options):
        write_tree(tmp_path, files)
        return archc("validate", *options, main, cwd=tmp_path)

    run.path = tmp_path
    return run


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    return line_of(text, needle, nth), col_of(text, needle, nth)


def one(r, file: str = "s.yaml"):
    assert r.rc == 1, r.err
    e = r.only_error()
    assert e["file"] == file
    return e


# --- graph semantics ------------------------------------------------------------------------

def test_concat_spatial_mismatch_names_both_shapes(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    concat:
      - [conv 3x3 8]
      - [conv 3x3/2 8 valid]
network:
  - {block: b}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == (line_of(s, "concat:"), 5)
    assert e["msg"] == ("stage b: concat: branch0 gives 8x32x32 but branch1 gives 8x15x15; the "
                        "spatial sizes of concatenated branches must agree")


def test_residual_channel_mismatch_names_both_numbers_and_sides(tree):
    s = """\
archc: 1
name: t
input: 16x17x17
blocks:
  res:
    residual:
      concat:
        - [conv 1x1 8]
        - [conv 1x1 8, conv 3x3 8]
      project: conv 1x1 15 linear
network:
  - {block: res, name: stage_b}
"""
    r = tree({"s.yaml": s})
    e = one(r)
    assert (e["line"], e["col"]) == at(s, "project:")
    assert e["msg"] == ("stage stage_b: residual add: the branch gives 15 channels "
                        "(15x17x17) but the shortcut gives 16 (16x17x17); they cannot be added: "
                        "make the branch's last op (or its projection) output 16 channels, or "
                        "project the shortcut")
    note = [d for d in r.diags if d["sev"] == "note"][0]
    assert (note["file"], note["line"]) == ("s.yaml", line_of(s, "{block: res"))
    assert note["msg"] == "block 'res' in stage 'stage_b' (stage_b.add), instantiated here"


def test_residual_spatial_mismatch(tree):
    s = """\
archc: 1
name: t
input: 8x16x16
network:
  - name: r
    residual:
      seq: [conv 3x3/2 8 valid]
      project: conv 1x1 8 linear
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "project:")
    assert e["msg"] == ("stage r: residual add: the branch gives 8x7x7 but the shortcut gives "
                        "8x16x16; the spatial sizes must agree (a strided or 'valid' op in the "
                        "branch changes them: give the shortcut the same stride)")


def test_size_shrinking_below_1(tree):
    s = """\
archc: 1
name: t
input: 3x16x16
network:
  - {name: a, op: conv 3x3/2 8 valid}
  - {name: b, op: conv 3x3/2 8 valid}
  - {name: c, op: conv 3x3/2 8 valid}
  - {name: d, op: conv 3x3/2 8 valid}
"""
    # 16 -> 7 -> 3 -> 1, and a 3x3 window no longer fits; 31 -> 15 -> 7 -> 3 -> 1 does
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "conv 3x3/2 8 valid", 4)
    assert e["msg"] == ("stage d: conv 3x3/2 8: its 1x1 input is smaller than the 3x3 window, the "
                        "map would vanish: the network input is too small (input 3x16x16; the "
                        "smallest input this network accepts is 31x31)")


def test_unmet_stage_expectation(tree):
    # Reduction-A with n + m = 616 instead of Inception-v4's 384 + 256 = 640
    s = """\
archc: 1
name: t
imports: [archc:blocks/reduction_a]
input: 384x35x35
network:
  - {block: reduction_a, with: {k: 192, l: 224, m: 232, n: 384}, expect: 1024x17x17}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "expect:")
    assert e["msg"] == "stage reduction_a: expected 1024x17x17, got 1000x17x17"


def test_unmet_expect_stages_layers_and_params(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
network:
  - {name: c1, op: conv 3x3 8}
expect:
  stages: {c1: 9x32x32}
  layers: 2
  params: 100
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    assert errs == [
        (*at(s, "stages:"), "stage c1: expected 9x32x32, got 8x32x32"),
        (*at(s, "layers:"), "expect.layers: expected 2, got 1"),
        (*at(s, "params:"), "expect.params: expected 100, got 232"),  # 8*3*9 + 2*8
    ]


def test_unknown_parameter_in_with(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: [k]
    seq: [conv 3x3 $k]
network:
  - {block: b, with: {k: 8, kk: 4}}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "kk:")
    assert e["msg"] == "stage b: block 'b' has no parameter 'kk'; did you mean 'k'? (its parameters: k)"


def test_unknown_parameter_in_expression(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: [k]
    seq: [conv 3x3 $k, conv 1x1 $(2*j)]
network:
  - {block: b, with: {k: 8}}
"""
    r = tree({"s.yaml": s})
    e = one(r)
    assert (e["line"], e["col"]) == at(s, "conv 1x1 $(2*j)")
    assert e["msg"] == ("stage b: conv out: unknown parameter 'j' "
                        "(parameters in scope: classes, in, k)")
    note = [d for d in r.diags if d["sev"] == "note"][0]
    assert (note["line"], note["col"]) == at(s, "block: b,")
    assert note["msg"] == "in block 'b', used here"


def test_missing_parameter_value(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: [k]
    seq: [conv 3x3 $k]
network:
  - {block: b}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "{block: b}")
    assert e["msg"] == "stage b: block 'b' needs a value for parameter 'k' (with: {k: ...})"


def test_unused_block_parameter_is_an_error(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: {k: 8, spare: 3}
    seq: [conv 3x3 $k]
network:
  - {block: b}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "params:")
    assert e["msg"] == "block 'b': parameter 'spare' is declared but never used"


def test_unused_spec_parameter_is_a_warning(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
params: {width_mult: 2}
network:
  - {name: c1, op: conv 3x3 8}
"""
    r = tree({"s.yaml": s})
    assert r.rc == 0
    (w,) = r.diags
    assert (w["file"], w["line"], w["col"], w["sev"]) == ("s.yaml", *at(s, "width_mult"), "warning")
    assert w["msg"] == "params: 'width_mult' is never used"


def test_block_cycle_reported_as_the_cycle(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  a: {seq: [conv 1x1 8, {block: b}]}
  b: {seq: [{block: c}]}
  c: {seq: [{block: a}]}
network:
  - {block: a}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "block: a}]")
    assert e["msg"] == "stage a: block cycle: a -> b -> c -> a (a block cannot contain itself)"


def test_block_self_reference(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  a: {seq: [conv 1x1 8, {block: a}]}
network:
  - {block: a}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "block: a}]")
    assert e["msg"] == "stage a: block cycle: a -> a (a block cannot contain itself)"


def test_import_cycle(tree):
    s = "archc: 1\nname: t\nimports: [lib/a.yaml]\nnetwork:\n  - {block: x}\n"
    a = "archc: 1\nimports: [b.yaml]\nblocks:\n  x: {seq: [relu]}\n"
    b = "archc: 1\nimports:\n  - a.yaml\n"
    r = tree({"s.yaml": s, "lib/a.yaml": a, "lib/b.yaml": b})
    assert r.rc == 1
    (e,) = r.errors
    assert (e["file"], e["line"], e["col"]) == ("lib/b.yaml", 3, 5)
    assert e["msg"] == "imports[0]: import cycle: lib/a.yaml -> lib/b.yaml -> lib/a.yaml"
    notes = [(d["file"], d["line"], d["col"], d["msg"]) for d in r.diags if d["sev"] == "note"]
    assert notes == [("lib/a.yaml", 2, 11, "included from here"),
                     ("s.yaml", 3, 11, "included from here")]


def test_diamond_import_is_fine(tree):
    s = "archc: 1\nname: t\nimports: [l.yaml, r.yaml]\nnetwork:\n  - {block: x}\n"
    base = "archc: 1\nblocks:\n  x: {seq: [conv 1x1 4]}\n"
    r = tree({"s.yaml": s, "l.yaml": "archc: 1\nimports: [base.yaml]\n",
              "r.yaml": "archc: 1\nimports: [base.yaml]\n", "base.yaml": base})
    assert r.rc == 0, r.err


def test_extends_cycle(tree):
    s = "archc: 1\nname: t\nextends: base.yaml\n"
    base = "archc: 1\nname: base\nextends: s.yaml\nnetwork:\n  - {name: c1, op: relu}\n"
    r = tree({"s.yaml": s, "base.yaml": base})
    assert r.rc == 1
    (e,) = r.errors
    assert (e["file"], e["line"], e["col"]) == ("base.yaml", 3, 10)
    assert e["msg"] == "extends cycle: s.yaml -> base.yaml -> s.yaml"


def test_dangling_block_reference(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
blocks:
  inception_a: {seq: [conv 1x1 8]}
network:
  - {block: inception_aa}
"""
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "block: inception_aa")
    assert e["msg"] == ("stage inception_aa: unknown block 'inception_aa'; did you mean "
                        "'inception_a'? (defined blocks: inception_a)")


def test_dangling_aux_and_expect_stage_references(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
network:
  - {name: mixed_6e, op: conv 3x3 8}
aux:
  - {name: aux_logits, after: mixed_6f, seq: [global_avgpool, linear 10]}
expect:
  stages: {mixed_7a: 8x32x32}
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    assert errs == [
        (*at(s, "after:"), "stage aux_logits: aux head 'aux_logits': no stage named 'mixed_6f'; "
                           "did you mean 'mixed_6e'?"),
        (*at(s, "stages:"), "expect.stages: there is no stage named 'mixed_7a'; did you mean "
                            "'mixed_6e'?"),
    ]


def test_dangling_import_and_extends(tree):
    s = "archc: 1\nname: t\nimports:\n  - blocks/stem.yaml\nnetwork:\n  - {name: c, op: relu}\n"
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == (4, 5)
    assert e["msg"] == "imports[0]: 'blocks/stem.yaml': no such file"
    v = "archc: 1\nextends: ../inception_v4.yaml\nname: v\n"
    r = tree({"variants/v.yaml": v}, "variants/v.yaml")
    e = one(r, "variants/v.yaml")
    assert (e["line"], e["col"]) == (2, 10)
    assert e["msg"] == "extends: '../inception_v4.yaml': no such file"


def test_duplicate_stage_and_op_names(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
network:
  - {name: a, op: conv 3x3 8}
  - {name: a, op: conv 3x3 8}
  - name: b
    seq: [{op: conv, kernel: 1, out: 4, name: p}, {op: conv, kernel: 1, out: 4, name: p}]
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    line = s.splitlines()[7]
    second_op = line.index("{op", line.index("{op") + 1) + 1
    assert errs == [
        (6, 5, "stage a: duplicate stage name 'a' (first at line 5): give it a 'name'"),
        (8, second_op, "stage b: two ops would both be named 'b.p.conv': give one of them "
                       "another 'name'"),
    ]
    assert len(errs) == 2  # once per spec item, not once per IR node (conv, bn, act)


# --- schema -----------------------------------------------------------------------------

def test_unknown_field_did_you_mean(tree):
    s = """\
archc: 1
name: t
network:
  - {name: c, op: {op: conv, kernel: 3, out: 8, strides: 2}}
netwrk: []
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    assert errs == [
        (*at(s, "strides"), "network[0].op: unknown field 'strides'; did you mean 'stride'?"),
        (*at(s, "netwrk"), "unknown field 'netwrk'; did you mean 'network'?"),
    ]


def test_missing_fields(tree):
    s = """\
archc: 1
network:
  - {name: c, op: {op: conv, kernel: 3}}
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    assert errs == [(*at(s, "op: {op: conv"), "network[0].op: missing required field 'out'")]
    # the schema is valid, so the next problem is the resolved spec's: no name
    s2 = "archc: 1\nnetwork:\n  - {name: c, op: relu}\n"
    e = one(tree({"s.yaml": s2}))
    assert (e["line"], e["col"], e["msg"]) == (1, 1, "missing required field 'name'")
    s3 = "name: t\nnetwork:\n  - {name: c, op: relu}\n"
    e = one(tree({"s.yaml": s3}))
    assert (e["line"], e["col"], e["msg"]) == (1, 1, "missing required field 'archc'")


def test_wrong_types(tree):
    s = """\
archc: 1
name: t
network:
  - {name: c, op: {op: conv, kernel: [3, 3, 3], out: 8, padding: sme}}
classes: [10]
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    errs = [(d["line"], d["col"], d["msg"]) for d in r.errors]
    assert errs == [
        (*at(s, "kernel"), "network[0].op.kernel: expected an integer, a $parameter expression or a list of 2 integers, "
                           "got the list [3, 3, 3]"),
        (*at(s, "sme"), "network[0].op.padding: expected 'same', 'valid' or 'tf_same', an integer, "
                        "a $parameter expression or a list, got the string 'sme'; did you mean 'same'?"),
        (*at(s, "classes"), "classes: expected an integer, got the list [10]"),
    ]


def test_strict_true_is_not_a_channel_count(tree):
    s = "archc: 1\nname: t\nnetwork:\n  - {name: c, op: {op: conv, kernel: 3, out: true}}\n"
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, "out:")
    assert e["msg"] == ("network[0].op.out: expected an integer or a $parameter expression, got "
                        "the boolean true")


def test_strict_quoted_64_is_not_an_integer(tree):
    s = "archc: 1\nname: t\nnetwork:\n  - {name: c, op: {op: conv, kernel: 3, out: \"64\"}}\n"
    e = one(tree({"s.yaml": s}))
    assert (e["line"], e["col"]) == at(s, '"64"')
    assert e["msg"] == ("network[0].op.out: expected a number or a $parameter expression, got the "
                        "string '64' (numbers are written without quotes)")
    s2 = "archc: 1\nname: t\nclasses: '1000'\nnetwork:\n  - {name: c, op: relu}\n"
    e = one(tree({"s.yaml": s2}))
    assert (e["line"], e["col"], e["msg"]) == (
        3, 10, "classes: expected an integer, got the string '1000' (numbers are written "
               "without quotes)")


def test_strict_float_is_not_an_integer(tree):
    s = "archc: 1\nname: t\nnetwork:\n  - {name: c, op: {op: conv, kernel: 3, out: 64.0}}\n"
    e = one(tree({"s.yaml": s}))
    assert e["line"] == 4
    assert e["msg"].startswith("network[0].op.out: expected an integer")


def test_all_errors_of_a_file_in_line_order(tree):
    s = """\
archc: 1
name: t
classes: yes
network:
  - {name: c, op: {op: conv, kernel: 3, out: true}}
  - {name: d, op: convv 3x3 8}
head: [global_avgpool, {op: linear, out: 012}]
"""
    r = tree({"s.yaml": s})
    assert r.rc == 1
    lines = [d["line"] for d in r.errors]
    assert lines == sorted(lines) and len(lines) == 2  # YAML-level problems come first
    assert lines == [3, 7]
    s2 = s.replace("classes: yes\n", "").replace("012", "12")
    r = tree({"s.yaml": s2})
    assert [d["line"] for d in r.errors] == [4, 5]
    assert "unknown op 'convv'; did you mean 'conv'?" in r.errors[1]["msg"]


# --- included files ----------------------------------------------------------------------

def test_error_in_included_file_names_it_and_the_include_line(tree):
    s = """\
archc: 1
name: t
input: 3x32x32
imports:
  - blocks/lib.yaml
network:
  - {block: b}
"""
    lib = """\
archc: 1
blocks:
  b:
    seq:
      - conv 3x3 8
      - {op: conv, kernel: 3, out: 8, strid: 2}
"""
    r = tree({"s.yaml": s, "blocks/lib.yaml": lib})
    assert r.rc == 1
    assert r.err.splitlines() == [
        f"blocks/lib.yaml:6:{col_of(lib, 'strid')}: error: blocks.b.seq[1]: unknown field 'strid'; "
        "did you mean 'stride'?",
        "s.yaml:5:5: note: included from here",
    ]


def test_semantic_error_in_included_file(tree):
    s = "archc: 1\nname: t\ninput: 3x32x32\nimports: [lib.yaml]\nnetwork:\n  - {block: b}\n"
    lib = "archc: 1\nblocks:\n  b: {seq: [conv 3x3 8, conv 3x3 0]}\n"
    r = tree({"s.yaml": s, "lib.yaml": lib})
    e = one(r, "lib.yaml")
    assert (e["line"], e["col"]) == at(lib, "conv 3x3 0")
    assert e["msg"] == "stage b: conv out must be >= 1, got 0"
    notes = [(d["file"], d["line"], d["col"], d["msg"]) for d in r.diags if d["sev"] == "note"]
    assert notes == [("s.yaml", 6, 6, "in block 'b', used here"),
                     ("s.yaml", 4, 11, "included from here")]


def test_error_in_base_spec_of_a_variant(tree):
    base = "archc: 1\nname: base\ninput: 3x32x32\nnetwork:\n  - {name: c, op: conv 3x3 8 sideways}\n"
    v = "archc: 1\nextends: ../base.yaml\nname: v\n"
    r = tree({"base.yaml": base, "variants/v.yaml": v}, "variants/v.yaml")
    assert r.rc == 1
    assert r.err.splitlines() == [
        "base.yaml:5:19: error: network[0].op: 'conv 3x3 8 sideways': unexpected 'sideways' "
        "(form: conv KxK[/S] OUT [same|valid|tf_same|pad=P|pad=PHxPW] [dw|groups=G] [dilation=D] "
        "[act=ACT] [linear|bias|nobias|nobn|noact])",
        "variants/v.yaml:2:10: note: included from here",
    ]


def test_yaml_error_in_included_file(tree):
    s = "archc: 1\nname: t\nimports: [lib.yaml]\nnetwork:\n  - {block: b}\n"
    r = tree({"s.yaml": s, "lib.yaml": "archc: 1\nblocks:\n  b: {seq: [relu]\n"})
    assert r.rc == 1
    e = r.only_error()
    assert (e["file"], e["line"]) == ("lib.yaml", 4)
    assert e["msg"].startswith("YAML syntax error: expected ',' or '}'")
    assert "s.yaml:3:11: note: included from here" in r.err


def test_json_and_github_formats_carry_the_notes(tree):
    s = "archc: 1\nname: t\nimports: [lib.yaml]\nnetwork:\n  - {block: b}\n"
    files = {"s.yaml": s, "lib.yaml": "archc: 1\nblocks:\n  b: {seq: [{op: relu, x: 1}]}\n"}
    r = tree(files, "s.yaml", "--json")
    (obj,) = json.loads(r.out)
    (d,) = obj["diagnostics"]
    assert (d["file"], d["line"], d["column"]) == ("lib.yaml", 3, col_of(files["lib.yaml"], "x:"))
    assert d["message"] == "blocks.b.seq[0]: unknown field 'x'"
    assert d["notes"] == [{"file": "s.yaml", "line": 3, "column": 11, "message": "included from here"}]
    r = tree(files, "s.yaml", "--error-format", "github")
    assert r.rc == 1
    assert r.err.splitlines() == [
        f"::error file=lib.yaml,line=3,col={col_of(files['lib.yaml'], 'x:')}::blocks.b.seq[0]: "
        "unknown field 'x'"
        "%0As.yaml:3:11: included from here"]


# --- the committed broken specs in tests/specs/ ------------------------------------------

def _broken_specs():
    from spec_helpers import TEST_SPECS

    return sorted(p.name for p in TEST_SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", _broken_specs())
def test_committed_broken_spec(name):
    """Every file in tests/specs/ is rejected (exit 1); those with `# expect-error: L:C: msg`
    header lines report exactly those errors, in that order."""
    import re

    from spec_helpers import ROOT

    rel = f"tests/specs/{name}"
    text = (ROOT / rel).read_text(encoding="utf-8")
    assert "DELIBERATELY BROKEN" in text
    expected = [(int(m.group(1)), int(m.group(2)), m.group(3))
                for m in re.finditer(r"^# expect-error: (\d+):(\d+): (.*)$", text, re.M)]
    r = archc("validate", rel, cwd=ROOT)
    assert r.rc == 1, r.err
    assert "Traceback" not in r.err
    if expected:
        got = [(d["line"], d["col"], d["msg"]) for d in r.errors]
        assert got == expected
        assert {d["file"] for d in r.errors} == {rel}
