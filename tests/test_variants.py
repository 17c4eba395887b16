"""Variants that change anything (issue 12): stage edits by name, inherited expectations,
and the spec-root rule. Expected numbers come from the papers' figures (Inception-v4's
Figure 4 block, Figure 7 + Table 1) or from the base spec's promises, not from our output."""

from __future__ import annotations

import os

import pytest

import archcompiler
from spec_helpers import SPECS, archc, col_of, line_of, write_tree

V4_PARAMS, V4_LAYERS = 42_679_816, 76
# Figure 4 (Inception-A) on 384 channels: conv weights + BN (gamma, beta) per conv
INCEPTION_A = (384 * 96 + 384 * 64 + 64 * 9 * 96 + 384 * 64 + 64 * 9 * 96 + 96 * 9 * 96 + 384 * 96
               + 2 * (96 + 64 + 96 + 64 + 96 + 96 + 96))


def variant(tmp_path, body: str, name: str = "v.yaml"):
    """A variant of the shipped inception_v4 in a fresh spec root."""
    text = "archc: 1\nextends: archc:inception_v4\nname: v\n" + body
    write_tree(tmp_path, {name: text})
    return tmp_path / name, text


def stage_names(spec) -> list[str]:
    return [s.name for s in spec.analysis.stages if s.kind == "trunk"]


# --- stage edits ---------------------------------------------------------------------------

def test_edit_repeat(tmp_path):
    path, _ = variant(tmp_path, "stages:\n  inception_a: {repeat: 2}\n")
    a = archcompiler.load_spec(path).analysis
    assert a.params == V4_PARAMS - 2 * INCEPTION_A
    assert a.layers == V4_LAYERS - 2 * 3  # Figure 4's deepest branch: three convolutions
    assert {n.name.split(".")[1] for n in a.graph.nodes if n.stage == "inception_a"} == {"0", "1"}


def test_edit_with_merges(tmp_path):
    # n is Figure 7's strided 3x3 branch: 384 -> 256 channels; k, l, m stay Table 1's values
    path, _ = variant(tmp_path, "stages:\n  reduction_a: {with: {n: 256}}\n")
    a = archcompiler.load_spec(path).analysis
    shape = next(s.shape for s in a.stages if s.name == "reduction_a")
    assert shape == (256 + 256 + 384, 17, 17)  # n + m + the max-pooled 384 input channels
    red = {n.name for n in a.graph.nodes if n.stage == "reduction_a" and n.op == "conv2d"}
    assert "reduction_a.branch1.2.conv" in red  # the k, l, m branch is still there


def test_edit_one_copy_keeps_its_name(tmp_path):
    path, _ = variant(tmp_path, "stages:\n  inception_b.2: {block: inception_a}\n")
    a = archcompiler.load_spec(path).analysis
    copy2 = [n for n in a.graph.nodes if n.name.startswith("inception_b.2.")]
    assert copy2 and {n.scope[0].block for n in copy2} == {"inception_a"}
    assert {n.scope[0].block for n in a.graph.nodes
            if n.stage == "inception_b" and not n.name.startswith("inception_b.2.")} == {"inception_b"}
    assert next(s.shape for s in a.stages if s.name == "inception_b") == (1024, 17, 17)


def test_edit_one_copy_with(tmp_path):
    # the IR-v2 final scale, and copy 3 of Inception-ResNet-B at another scale
    write_tree(tmp_path, {"v.yaml": "archc: 1\nextends: archc:inception_resnet_v2\nname: v\n"
                                    "stages:\n  inception_resnet_b.3: {with: {scale: 0.05}}\n"})
    g = archcompiler.load_spec(tmp_path / "v.yaml").analysis.graph
    scales = {n.name: n.attrs["scale"] for n in g.nodes if n.op == "scale_add"}
    assert scales["inception_resnet_b.3.add"] == 0.05
    assert scales["inception_resnet_b.2.add"] == scales["inception_resnet_b.4.add"] == 0.10


def test_remove_and_insert(tmp_path):
    path, _ = variant(tmp_path, "stages:\n  inception_c: remove\n"
                                "  squeeze: {after: reduction_b, op: conv 1x1 512, expect: 512x8x8}\n"
                                "  first: {before: stem, op: conv 1x1 3}\n")
    spec = archcompiler.load_spec(path)
    assert stage_names(spec) == ["first", "stem", "inception_a", "reduction_a", "inception_b",
                                 "reduction_b", "squeeze"]
    fc = next(n for n in spec.analysis.graph.nodes if n.name == "head.fc")
    assert spec.analysis.shapes[fc.inputs[0]] == (512,)


def test_every_residual_scale_in_a_few_lines():
    spec = archcompiler.load_spec(SPECS / "variants" / "inception_resnet_v2_scale03.yaml")
    scales = {n.attrs["scale"] for n in spec.analysis.graph.nodes if n.op == "scale_add"}
    assert scales == {0.3}
    base = archcompiler.load_spec("inception_resnet_v2")
    assert base.params["scale_final"] == 1.0  # TF-slim's unscaled last block
    assert base.analysis.graph.by_name["inception_resnet_c_final.add"].attrs["scale"] == 1.0


def test_copies_in_a_base_spec_build_and_generate(tmp_path):
    torch = pytest.importorskip("torch")
    write_tree(tmp_path, {"c.yaml": (
        "archc: 1\nname: tiny\ninput: 3x32x32\nblocks:\n"
        "  b: {params: {w: 8}, seq: [conv 3x3 $w]}\n  d: {seq: [conv 1x1 4]}\n"
        "network:\n  - {block: b, repeat: 3, copies: {'1': {with: {w: 16}}, '2': {block: d}}}\n"
        "head: [global_avgpool, {op: linear, out: 10, name: fc}]\n")})
    spec = archcompiler.load_spec(tmp_path / "c.yaml")
    # 3x3 conv 3->8, 3x3 conv 8->16, 1x1 conv 16->4 (BN: 2 per channel), fc 4->10
    assert spec.analysis.params == (27 * 8 + 16) + (72 * 16 + 32) + (16 * 4 + 8) + (40 + 10)
    model = archcompiler.build(spec, backend="torch").eval()
    assert "D(" in repr(model)
    from archcompiler.backends.torch.codegen import generate_source

    ns: dict = {}
    exec(compile(generate_source(spec), "tiny.py", "exec"), ns)  # our own generated file
    gen = ns["Tiny"]().eval()
    gen.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(gen(x), model(x))


@pytest.mark.parametrize("edit, where, message", [
    ("  inception_q: {repeat: 2}\n", "inception_q",
     "stages.inception_q: the base has no stage named 'inception_q' (did you mean 'inception_c'?); "
     "a new stage needs 'before:' or 'after:' naming where it goes; the base's stages: stem, "
     "inception_a, reduction_a, inception_b, reduction_b, inception_c"),
    ("  inception_b.9: {with: {x: 1}}\n", "inception_b.9",
     "stages.inception_b.9: stage 'inception_b' has copies 0 to 6, so there is no copy 9"),
    ("  reduction_b.1: {block: inception_a}\n", "reduction_b.1",
     "stages.reduction_b.1: stage 'reduction_b' is not repeated, so it has no copy 1: edit "
     "'reduction_b' itself"),
    ("  inception_c.1: {repeat: 2}\n", "inception_c.1",
     "stages.inception_c.1: one copy of a repeated stage takes only 'block' and 'with' (repeat "
     "applies to the whole stage: edit 'inception_c')"),
    ("  new1: {before: nope, op: relu}\n", "before",
     "stages.new1: the base has no stage named 'nope'; its stages: stem, inception_a, "
     "reduction_a, inception_b, reduction_b, inception_c"),
    ("  new2: {after: stem}\n", "{after",
     "stages.new2: a new stage needs one body: block, op, seq, concat or residual"),
    ("  stem: {after: stem, op: relu}\n", "{after",
     "stages.stem: the base already has a stage named 'stem'; edit it without 'before'/'after', "
     "or give the new stage another name"),
    ("  reduction_a: {with: {q: 256}}\n", "q:",
     "stage reduction_a: block 'reduction_a' has no parameter 'q' (its parameters: k, l, m, n)"),
])
def test_edit_errors_are_located_at_the_edit(tmp_path, edit, where, message):
    path, text = variant(tmp_path, "stages:\n" + edit)
    r = archc("validate", "v.yaml", cwd=tmp_path)
    e = r.only_error()
    assert r.rc == 1 and e["file"] == "v.yaml"
    assert (e["line"], e["col"]) == (line_of(text, where), col_of(text, where))
    assert e["msg"] == message


def test_stages_needs_a_base(tmp_path):
    write_tree(tmp_path, {"s.yaml": "archc: 1\nname: t\ninput: 3x32x32\nnetwork:\n"
                                    "  - {name: c1, op: conv 3x3 8}\nstages:\n  c1: remove\n"})
    e = archc("validate", "s.yaml", cwd=tmp_path).only_error()
    assert e["line"] == 6 and e["msg"].startswith("stages: edits a base spec's stages; this spec has no 'extends'")


# --- inherited expectations ----------------------------------------------------------------

def test_structural_edit_drops_stale_expectations_with_one_note(tmp_path):
    # before: `specs/inception_v4.yaml:64:10: error: expect.layers: expected 76, got 70`
    path, text = variant(tmp_path, "stages:\n  inception_a: {repeat: 2}\n")
    r = archc("validate", "v.yaml", cwd=tmp_path)
    assert r.rc == 0, r.err
    notes = [d for d in r.diags if d["sev"] == "note"]
    assert len(notes) == 1 and not r.errors
    n = notes[0]
    assert (n["file"], n["line"], n["col"]) == ("v.yaml", 2, 1)  # the extends: line
    assert "this variant changes stages inception_a" in n["msg"]
    assert "expect.layers, expect.params, expect.min_input" in n["msg"]
    assert "the output shapes of inception_a, reduction_a, inception_b, reduction_b, inception_c" in n["msg"]
    spec = archcompiler.load_spec(path)
    assert set(spec.stage_expect) == {"stem"}  # the stage before the edit keeps its promise


def test_stated_expectations_are_checked_at_the_variant(tmp_path):
    path, text = variant(tmp_path, "stages:\n  inception_a: {repeat: 2}\n"
                                   f"expect: {{layers: {V4_LAYERS}}}\n")
    e = archc("validate", "v.yaml", cwd=tmp_path).only_error()
    assert (e["file"], e["line"]) == ("v.yaml", line_of(text, "expect:"))
    assert e["msg"] == f"expect.layers: expected {V4_LAYERS}, got {V4_LAYERS - 6}"


def test_stage_expect_in_an_edit_is_the_variants_own(tmp_path):
    path, text = variant(tmp_path, "stages:\n  reduction_a: {with: {n: 256}, expect: 1024x17x17}\n")
    e = archc("validate", "v.yaml", cwd=tmp_path).only_error()
    assert e["file"] == "v.yaml" and e["line"] == line_of(text, "expect: 1024")
    assert e["msg"] == "stage reduction_a: expected 1024x17x17, got 896x17x17"


def test_metadata_only_variant_keeps_every_promise(tmp_path):
    path, _ = variant(tmp_path, "title: mine\npreprocess: {crop_pct: 0.9}\n")
    spec = archcompiler.load_spec(path)
    assert (spec.expect.layers, spec.expect.params, spec.expect.min_input) == (V4_LAYERS, V4_PARAMS, 75)
    assert set(spec.stage_expect) == {"stem", "inception_a", "reduction_a", "inception_b",
                                      "reduction_b", "inception_c"}
    assert not spec.analysis.diagnostics


def test_set_drops_stage_promises_from_the_first_stage_using_it(tmp_path):
    write_tree(tmp_path, {"v.yaml": "archc: 1\nextends: archc:inception_resnet_v2\nname: v\n"
                                    "set: {scale_b: 0.2}\n"})
    spec = archcompiler.load_spec(tmp_path / "v.yaml")
    assert set(spec.stage_expect) == {"maxpool_5a", "mixed_5b", "inception_resnet_a", "mixed_6a"}
    assert spec.expect.params is None
    note = next(d for d in spec.analysis.diagnostics if d.severity == "note")
    assert "changes params scale_b" in note.message


# --- the spec root -------------------------------------------------------------------------

BASE = "archc: 1\nname: base\ninput: 3x32x32\nnetwork:\n  - {name: c1, op: conv 3x3 8}\n"


@pytest.mark.parametrize("marker", ["pyproject.toml", ".git", ".archc-root"])
def test_a_project_marker_makes_the_root(tmp_path, marker):
    write_tree(tmp_path, {"base.yaml": BASE,
                          "variants/v.yaml": "archc: 1\nextends: ../base.yaml\nname: v\n"}, marker=False)
    (tmp_path / marker).mkdir() if marker == ".git" else (tmp_path / marker).touch()
    r = archc("validate", "variants/v.yaml", cwd=tmp_path)
    assert r.rc == 0 and "v ok" in r.out, r.err


def test_without_a_marker_the_root_is_the_spec_directory(tmp_path):
    write_tree(tmp_path, {"base.yaml": BASE,
                          "variants/v.yaml": "archc: 1\nextends: ../base.yaml\nname: v\n"}, marker=False)
    if any(os.path.lexists(p / m) for p in tmp_path.parents for m in (".git", "pyproject.toml", ".archc-root")):
        pytest.skip("a marker above the temporary directory")
    e = archc("validate", "variants/v.yaml", cwd=tmp_path).only_error()
    root = (tmp_path / "variants").resolve()
    assert e["msg"] == (f"extends: '../base.yaml' resolves to {(tmp_path / 'base.yaml').resolve()}, "
                        f"outside the spec root {root} (the nearest directory holding .archc-root, "
                        ".git or pyproject.toml, else the spec's own directory): put a .archc-root "
                        "file in a directory above both files, or give --root")
    assert archc("validate", "--root", str(tmp_path), "variants/v.yaml", cwd=tmp_path).rc == 0


def test_a_misspelled_reference_is_no_such_file(tmp_path):
    write_tree(tmp_path, {"base.yaml": BASE,
                          "variants/v.yaml": "archc: 1\nextends: ../bsae.yaml\nname: v\n"}, marker=False)
    (tmp_path / "pyproject.toml").touch()
    e = archc("validate", "variants/v.yaml", cwd=tmp_path).only_error()
    assert (e["line"], e["col"]) == (2, 10)
    assert e["msg"] == "extends: '../bsae.yaml': no such file; did you mean '../base.yaml'?"


def test_escapes_stay_refused_with_a_project_marker(tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(BASE)
    proj = write_tree(tmp_path / "proj", {"v.yaml": "archc: 1\nextends: link.yaml\nname: v\n"},
                      marker=False)
    (proj / ".git").mkdir()
    (proj / "link.yaml").symlink_to(outside)
    e = archc("validate", "v.yaml", cwd=proj).only_error()
    assert "outside the spec root" in e["msg"] and str(outside.resolve()) in e["msg"]
    write_tree(proj, {"w.yaml": f"archc: 1\nextends: {outside}\nname: w\n"}, marker=False)
    e = archc("validate", "w.yaml", cwd=proj).only_error()
    assert "absolute paths are not allowed" in e["msg"]
