"""Located errors for this round's constructs: each at `file:line:col` of the offending
spec line, with a message naming both numbers or shapes: an adaptive pool larger than
its input, a residual shortcut that does not match the body (channels; stride), an input
size outside the accepted set, checkpoint `reshape` rules (one that fits, one that does
not), an unknown name in an expression, and a `when:` that is not a boolean."""

from __future__ import annotations

import numpy as np
import pytest

import archcompiler as ac

from spec_helpers import archc, col_of, line_of, write_tree


@pytest.fixture
def tree(tmp_path):
    """run(text) -> `archc validate [options] s.yaml` in a fresh spec root."""

    def run(text: str, *options):
        write_tree(tmp_path, {"s.yaml": text})
        return archc("validate", *options, "s.yaml", cwd=tmp_path)

    run.path = tmp_path
    return run


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    return line_of(text, needle, nth), col_of(text, needle, nth)


def one(r, file: str = "s.yaml") -> dict:
    assert r.rc == 1, r.err
    e = r.only_error()
    assert e["file"] == file
    return e


# --- adaptive pooling larger than its input ------------------------------------------------

def test_adaptive_output_larger_than_its_input(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
network:
  - {name: c, op: conv 3x3/2 4 valid}
  - {name: a, op: adaptive_avgpool 6x4}
head: [global_avgpool, linear 2]
"""
    # 12 -> (12 - 3) // 2 + 1 = 5: a 6x4 output does not fit a 5x5 map
    e = one(tree(s))
    assert (e["line"], e["col"]) == at(s, "adaptive_avgpool 6x4")
    assert e["msg"].startswith("stage a: ")
    assert "6x4" in e["msg"] and "5x5" in e["msg"]
    # the accepted sizes: 6 rows need h >= 13 ((13-3)//2+1 = 6); 4 columns need w >= 9
    assert "13" in e["msg"] and "9" in e["msg"]


def test_adaptive_maxpool_larger_in_a_block_notes_the_use(tree):
    s = """\
archc: 1
name: t
input: 3x8x8
blocks:
  pool:
    seq: [conv 3x3/2 4 valid, {op: adaptive_maxpool, out: [2, 5]}]
network:
  - {block: pool, name: p}
head: [global_avgpool, linear 2]
"""
    # 8 -> 3: 2 rows fit, 5 columns do not
    r = tree(s)
    e = one(r)
    assert (e["line"], e["col"]) == at(s, "{op: adaptive_maxpool")
    assert "2x5" in e["msg"] and "3x3" in e["msg"]
    notes = [d for d in r.diags if d["sev"] == "note"]
    assert notes and notes[0]["line"] == line_of(s, "{block: pool")


# --- residual shortcut mismatches ---------------------------------------------------------

def _residual_lines(s: str) -> set:
    """The lines a residual-add error may point at: the body's first key or the shortcut."""
    return {line_of(s, "seq: [conv 3x3"), line_of(s, "shortcut:")}


def test_shortcut_channels_differ_from_the_body(tree):
    s = """\
archc: 1
name: t
input: 8x12x12
network:
  - name: r
    residual:
      seq: [conv 3x3 8]
      shortcut: [conv 1x1 6 noact]
"""
    e = one(tree(s))
    assert e["line"] in _residual_lines(s)
    assert e["col"] == col_of(s, "seq:" if e["line"] == line_of(s, "seq:") else "shortcut:")
    msg = e["msg"]
    assert msg.startswith("stage r: residual add")
    assert "8 channels (8x12x12)" in msg and "6 (6x12x12)" in msg


def test_shortcut_stride_differs_from_the_body(tree):
    s = """\
archc: 1
name: t
input: 8x12x12
params: {stride: 2}
network:
  - name: r
    residual:
      seq: [conv 3x3/$stride 8 pad=1]
      shortcut: {seq: [conv 1x1 8 noact]}
"""
    # body: (12 + 2 - 3) // 2 + 1 = 6; shortcut: stride 1, 12
    e = one(tree(s))
    assert e["line"] in _residual_lines(s)
    assert "8x6x6" in e["msg"] and "8x12x12" in e["msg"]
    assert "stride" in e["msg"]


def test_identity_shortcut_when_false_then_channels_differ(tree):
    """`when` false leaves the identity shortcut, which then cannot be added."""
    s = """\
archc: 1
name: t
input: 4x10x10
blocks:
  res:
    params: {out: 8}
    residual:
      seq: [conv 3x3 $out]
      shortcut: {seq: [conv 1x1 $out noact], when: $(in == out)}
network:
  - {block: res, name: r}
"""
    r = tree(s)
    e = one(r)
    assert e["line"] in _residual_lines(s)
    assert "8 channels (8x10x10)" in e["msg"] and "4 (4x10x10)" in e["msg"]
    note = [d for d in r.diags if d["sev"] == "note"][0]
    assert note["line"] == line_of(s, "{block: res")


# --- unsupported input size ---------------------------------------------------------------

REDUCTIONS = """\
archc: 1
name: t
input: 3x32x32
blocks:
  red:
    concat:
      - [conv 3x3/2 4 pad=1]
      - [maxpool 3x3/2 ceil]
network:
  - {block: red, name: r1}
  - {block: red, name: r2}
head: [global_avgpool, linear 2]
"""


def test_input_size_outside_the_accepted_set(tree):
    # a floor conv (pad 1) and a ceil pool (pad 0) agree only on even sizes: twice, so
    # the sizes are multiples of 4 (30 -> conv 15 / pool 15 -> conv 8 / pool 7)
    # the first reduction still works (15 both ways), the second does not (8 vs 7): the
    # error is at the concat that fails, with the accepted rule, and a note at the stage
    r = tree(REDUCTIONS, "--input-size", "30")
    e = one(r)
    assert (e["line"], e["col"]) == at(REDUCTIONS, "concat:")
    assert e["msg"].startswith("stage r2: ")
    assert "4x8x8" in e["msg"] and "7x7x7" in e["msg"]  # r1 gives 4 + 3 channels
    assert "3x30x30" in e["msg"]
    assert "% 4 == 0" in e["msg"]
    notes = [d for d in r.diags if d["sev"] == "note"]
    assert notes and notes[0]["line"] == line_of(REDUCTIONS, "name: r2")
    assert tree(REDUCTIONS, "--input-size", "28").rc == 0


def test_input_size_outside_a_finite_set_lists_the_sizes(tree):
    s = """\
archc: 1
name: t
input: 3x8x8
network:
  - {name: c, op: conv 3x3/2 4 valid}
  - {name: f, op: flatten}
head: [linear 5]
"""
    # conv 3x3/2 valid gives 3x3 from 7 and 8 only: the linear after flatten needs 36
    e = one(tree(s, "--input-size", "9"))
    assert (e["line"], e["col"]) == at(s, "input:")
    assert "3x9x9" in e["msg"] and "7, 8" in e["msg"]


def test_onnx_export_at_an_unsupported_size_is_located(tmp_path):
    pytest.importorskip("onnx")
    write_tree(tmp_path, {"s.yaml": REDUCTIONS})
    spec = ac.load_spec(str(tmp_path / "s.yaml"))
    with pytest.raises(ac.SpecError) as exc:
        ac.build(spec, backend="onnx", input_size=(30, 30))
    text = str(exc.value)
    assert f"s.yaml:{line_of(REDUCTIONS, 'concat:')}:" in text
    assert "3x30x30" in text and "% 4 == 0" in text


# --- checkpoint reshape rules ---------------------------------------------------------------

RESHAPE = """\
archc: 1
name: t
input: 3x6x6
network:
  - {name: c, op: conv 3x3 4}
head: [global_avgpool, {op: linear, out: 5, name: fc}]
checkpoints:
  ref:
    rename: {head.fc: classifier}
    reshape: [head.fc]
"""


def _ref_checkpoint(spec, weight_shape):
    """A 'ref'-named checkpoint: our tensors, with head.fc.* as classifier.* and the
    classifier weight stored with `weight_shape`."""
    from support import randomized_state
    from archcompiler.ir.lower import LowerOptions, lower
    from archcompiler.passes.shapes import infer_shapes
    from archcompiler.weights import state_entries

    graph = lower(spec, LowerOptions())
    shapes, _ = infer_shapes(graph)
    state = randomized_state(state_entries(graph, shapes), seed=5)
    w = state.pop("head.fc.weight")
    b = state.pop("head.fc.bias")
    assert w.shape == (5, 4)  # linear 4 -> 5
    n = int(np.prod(weight_shape))
    flat = np.resize(w.reshape(-1), n).astype(np.float32)
    state["classifier.weight"] = flat.reshape(weight_shape)
    state["classifier.bias"] = b
    return state, w


def _save(path, state):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    return path


def test_checkpoint_reshape_rule_that_fits(tmp_path):
    pytest.importorskip("torch")
    write_tree(tmp_path, {"s.yaml": RESHAPE})
    spec = ac.load_spec(str(tmp_path / "s.yaml"))
    state, w = _ref_checkpoint(spec, (20,))  # [out * in] -> [out, in]
    ckpt = _save(tmp_path / "ref.safetensors", state)
    model = ac.build(spec, backend="torch", weights=str(ckpt))
    assert model.load_report.format == "ref"
    got = model.get_submodule("head.fc").weight.detach().numpy()
    assert got.shape == (5, 4)
    np.testing.assert_array_equal(got, w)
    np.testing.assert_array_equal(model.get_submodule("c.conv").weight.detach().numpy(),
                                  state["c.conv.weight"])


def test_checkpoint_reshape_rule_with_the_wrong_element_count(tmp_path):
    pytest.importorskip("torch")
    write_tree(tmp_path, {"s.yaml": RESHAPE})
    spec = ac.load_spec(str(tmp_path / "s.yaml"))
    state, _ = _ref_checkpoint(spec, (21,))  # 21 values cannot become 5x4
    ckpt = _save(tmp_path / "ref.safetensors", state)
    from archcompiler.weights import CheckpointError

    with pytest.raises(CheckpointError) as exc:
        ac.build(spec, backend="torch", weights=str(ckpt))
    text = str(exc.value)
    assert text.startswith(str(ckpt) + ":") or "ref.safetensors:" in text.splitlines()[0]
    assert "classifier.weight" in text
    assert "[21]" in text and "[5, 4]" in text
    # the same through the CLI: exit 1, the error located at the checkpoint
    r = archc("build", "s.yaml", "--backend", "torch", "--weights", "ref.safetensors",
              "-o", "out.py", cwd=tmp_path)
    assert r.rc == 1
    assert "[21]" in r.err and "[5, 4]" in r.err
    assert r.errors and r.errors[0]["file"].endswith("ref.safetensors")
    assert not (tmp_path / "out.py").exists()


def test_checkpoint_without_reshape_rule_refuses_the_flat_weight(tmp_path):
    """Without the rule the same flat tensor is a shape mismatch naming both shapes."""
    pytest.importorskip("torch")
    text = RESHAPE.replace("    reshape: [head.fc]\n", "")
    write_tree(tmp_path, {"s.yaml": text})
    spec = ac.load_spec(str(tmp_path / "s.yaml"))
    state, _ = _ref_checkpoint(spec, (20,))
    ckpt = _save(tmp_path / "ref.safetensors", state)
    with pytest.raises(ac.SpecError) as exc:
        ac.build(spec, backend="torch", weights=str(ckpt))
    assert "[20]" in str(exc.value) and "[5, 4]" in str(exc.value)


# --- expressions -------------------------------------------------------------------------

def test_unknown_name_in_an_expression(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
params: {width: 4}
network:
  - {name: c, op: "conv 3x3 $(width + depth)"}
"""
    e = one(tree(s))
    assert (e["line"], e["col"]) == at(s, '"conv 3x3 $(width + depth)"')  # the scalar
    assert "'depth'" in e["msg"] and "unknown" in e["msg"]


def test_unknown_name_in_a_with_value(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
params: {width: 4}
blocks:
  b:
    params: [k]
    seq: [conv 1x1 $k]
network:
  - {block: b, with: {k: $(widht * 2)}}
"""
    e = one(tree(s))
    assert e["line"] == line_of(s, "$(widht * 2)")
    assert e["col"] in (col_of(s, "k: $(widht"), col_of(s, "$(widht * 2)"))  # key or value
    assert "'widht'" in e["msg"]


def test_i_outside_a_repeated_stage_is_unknown(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
blocks:
  b:
    params: [k]
    seq: [conv 1x1 $k]
network:
  - {block: b, with: {k: $(4 + i)}}
"""
    e = one(tree(s))
    assert e["line"] == line_of(s, "$(4 + i)")
    assert e["col"] in (col_of(s, "k: $(4"), col_of(s, "$(4 + i)"))  # key or value
    assert "'i'" in e["msg"]


def test_in_outside_a_block_is_unknown(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
network:
  - {name: c, op: conv 1x1 $in}
"""
    e = one(tree(s))
    assert (e["line"], e["col"]) == at(s, "conv 1x1 $in")
    assert "'in'" in e["msg"]


@pytest.mark.parametrize("cond,shown", [("$(c + 1)", "5"), ("$c", "4"), ("$(c * 0.5)", "2")])
def test_when_that_is_not_a_boolean(tree, cond, shown):
    s = f"""\
archc: 1
name: t
input: 3x12x12
params: {{c: 4}}
network:
  - {{name: c0, op: conv 1x1 4}}
  - {{name: w, seq: [{{op: conv, kernel: 1, out: 4, when: {cond}}}]}}
"""
    e = one(tree(s))
    assert e["line"] == line_of(s, "when:")
    assert e["col"] in (col_of(s, "when:"), col_of(s, cond))
    assert "when" in e["msg"] and "true or false" in e["msg"]
    assert shown in e["msg"]


def test_when_not_boolean_on_a_shortcut(tree):
    s = """\
archc: 1
name: t
input: 3x12x12
params: {c: 4}
network:
  - name: r
    residual:
      seq: [conv 3x3 3]
      shortcut: {seq: [conv 1x1 3], when: $(c * 2)}
"""
    e = one(tree(s))
    assert e["line"] == line_of(s, "when:")
    assert e["col"] in (col_of(s, "when:"), col_of(s, "$(c * 2)"))
    assert "true or false" in e["msg"] and "8" in e["msg"]
