"""Issue 12: `archc summary` and `archc diff` (archcompiler.views), CLI and Python API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import archcompiler
from spec_helpers import MINIMAL, archc, col_of, line_of, write_tree

GOOGLENET_AUX = """\
archc: 1
extends: archc:googlenet
name: googlenet_aux
set: {aux_logits: true}
expect: {params: 13004888}
"""


def validate_json(spec: str, *argv: str, cwd=None) -> dict:
    r = archc("validate", "--json", *argv, spec, cwd=cwd)
    assert r.rc == 0, r.err
    return json.loads(r.out)[0]


# --- summary ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["inception_v4", "inception_resnet_v2", "variants/inception_v4_half",
                                  "variants/inception_v3_aux", "googlenet_aux"])
def test_summary_totals_are_validates_numbers(spec, tmp_path):
    if spec == "googlenet_aux":  # aux heads turned on by a variant
        write_tree(tmp_path, {"g.yaml": GOOGLENET_AUX})
        spec = str(tmp_path / "g.yaml")
    want = validate_json(spec)
    r = archc("summary", "--json", spec)
    assert r.rc == 0, r.err
    got = json.loads(r.out)
    assert (got["totals"]["params"], got["totals"]["macs"]) == (want["params"], want["macs"])
    assert got["totals"]["layers"] == want["layers"]
    stages = [row for row in got["rows"] if row["depth"] == 1]
    # depth 1 is validate's stage table, numbers and shapes (aux heads included)
    assert [(s["name"], s["shape"], s["params"], s["macs"]) for s in stages] == \
        [(s["name"], s["shape"], s["params"], s["macs"]) for s in want["stages"]]
    text = archc("summary", spec).out
    total = [line for line in text.splitlines() if line.startswith("total")]
    assert total and f"{want['params']:,}" in total[0] and f"{want['macs']:,}" in total[0]


def test_summary_aux_heads_appear_when_on(tmp_path):
    write_tree(tmp_path, {"g.yaml": GOOGLENET_AUX})
    on = archcompiler.summary(str(tmp_path / "g.yaml"), depth=1)
    off = archcompiler.summary("googlenet", depth=1)
    assert {"aux1", "aux2"} <= {r.name for r in on.rows}
    assert not {"aux1", "aux2"} & {r.name for r in off.rows}
    assert on.totals["params"] == 13_004_888 and off.totals["params"] == 6_624_904  # README
    assert "training only" in next(r.kind for r in on.rows if r.name == "aux1")


def test_summary_rows_form_a_tree_whose_children_add_up():
    s = archcompiler.summary("inception_v4", depth=3)
    rows = s.rows
    for i, r in enumerate(rows):
        if r.depth == 3:
            continue
        kids = []
        for x in rows[i + 1:]:
            if x.depth <= r.depth:
                break
            if x.depth == r.depth + 1:
                kids.append(x)
                assert x.name.startswith(r.name + ".")
        if kids:  # a parent is the sum of its children, and ends with its last child's shape
            assert sum(k.params for k in kids) == r.params, r.name
            assert sum(k.macs for k in kids) == r.macs, r.name
            assert kids[-1].shape == r.shape, r.name
    by = {r.name: r for r in rows}
    assert by["inception_a"].kind == "inception_a x4"
    assert [n for n in by if n.startswith("inception_a.") and by[n].depth == 2] == \
        [f"inception_a.{i}" for i in range(4)]
    assert by["inception_a.0"].kind == "inception_a"
    side = (299 - 3) // 2 + 1  # the stem's first conv, 3x3/2 valid (Figure 3)
    assert (by["stem.0"].kind, by["stem.0"].shape) == ("conv 3x3/2", (32, side, side))
    assert by["reduction_a.concat"].kind == "concat" and by["reduction_a.branch0"].kind == "branch"
    assert by["head.fc"].kind == "linear" and by["head.fc"].shape == (1000,)


def test_summary_depth_selects_rows_down_to_ir_ops():
    one = archcompiler.summary("inception_v4", depth=1)
    assert {r.depth for r in one.rows} == {1} and len(one.rows) == 7
    deep = archcompiler.summary("inception_v4", depth=5)
    conv = next(r for r in deep.rows if r.name == "inception_a.0.branch0.0.conv")
    assert (conv.depth, conv.kind) == (5, "conv2d")
    assert max(r.depth for r in deep.rows) == 5
    assert one.totals == deep.totals
    with pytest.raises(ValueError, match="depth"):
        archcompiler.summary("inception_v4", depth=0)


def test_summary_table_is_aligned_and_collapses_identical_copies():
    r = archc("summary", "inception_resnet_v2")
    assert r.rc == 0
    lines = r.out.splitlines()
    body = lines[1:]  # the header row, rules, rows, total: the MACs column ends each line
    assert len({len(line) for line in body}) == 1, r.out
    assert any(line.split()[:3] == ["inception_resnet_b.1-19", "inception_resnet_b", "x19,"]
               for line in lines), r.out
    assert "inception_resnet_b.7 " not in r.out
    full = archc("summary", "--expand", "inception_resnet_v2").out
    assert "  inception_resnet_b.19 " in full
    rows = json.loads(archc("summary", "--json", "inception_resnet_v2").out)["rows"]
    copies = [x["name"] for x in rows if x["name"].startswith("inception_resnet_b.")]
    assert copies == [f"inception_resnet_b.{i}" for i in range(20)]  # JSON: every copy


def test_summary_input_size_is_validates(tmp_path):
    want = validate_json("inception_v4", "--input-size", "150")
    s = archcompiler.summary("inception_v4", input_size=(150, 150))
    assert (s.totals["params"], s.totals["macs"]) == (want["params"], want["macs"])
    assert s.input_shape == (3, 150, 150)
    spec = archcompiler.load_spec("inception_v4")
    archcompiler.summary(spec, input_size=(150, 150))
    assert spec.analysis.input_shape == (3, 299, 299)  # the Spec given is left as it was
    r = archc("summary", "--json", "--input-size", "150x150", "inception_v4")
    assert json.loads(r.out)["totals"]["macs"] == want["macs"]


def test_summary_bad_input_is_located_or_usage(tmp_path):
    bad = MINIMAL.replace("conv 3x3 8", "conv 3x3 $zzz")
    write_tree(tmp_path, {"s.yaml": bad})
    r = archc("summary", "s.yaml", cwd=tmp_path)
    assert r.rc == 1 and r.out == ""
    e = r.only_error()
    assert (e["line"], e["col"]) == (line_of(bad, "$zzz"), col_of(bad, "conv 3x3 $zzz"))
    assert "unknown parameter 'zzz'" in e["msg"]
    assert archc("summary", "--depth", "0", "inception_v4").rc == 2
    missing = archc("summary", "no_such_spec")
    assert missing.rc == 2 and "no such file" in missing.err and "Traceback" not in missing.err


def test_views_import_neither_torch_nor_onnx():
    code = ("import sys, io, contextlib\n"
            "from archcompiler.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['summary', 'inception_v4']) == 0\n"
            "    assert main(['diff', 'resnet50', 'archc:variants/se_resnet50']) == 1\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'networkx'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# --- diff -------------------------------------------------------------------------------

def test_diff_of_a_spec_with_itself_is_empty(capsys):
    d = archcompiler.diff("inception_v4", "archc:inception_v4")
    assert d.equal and d.stages == () and d.blocks == () and d.settings == ()
    assert d.to_json()["equal"] is True
    assert archcompiler.cli.main(["diff", "inception_v4", "inception_v4"]) == 0
    out = capsys.readouterr().out
    assert "no differences" in out


def test_diff_half_width_reports_the_issues_numbers(capsys):
    d = archcompiler.diff("inception_v4", "variants/inception_v4_half")
    assert not d.equal
    t = d.totals
    assert (t["a"]["params"], t["b"]["params"]) == (42_679_816, 11_070_712)
    assert (t["a"]["macs"], t["b"]["macs"]) == (12_253_974_624, 3_068_673_072)
    assert [(c.path, c.a, c.b) for c in d.settings] == [("width", None, 0.5)]
    assert d.blocks == ()  # the same templates, at another width
    stem = next(s for s in d.stages if s.name == "stem")
    assert (stem.a["shape"], stem.b["shape"]) == ([384, 35, 35], [192, 35, 35])  # the variant's expect
    assert sum(s.b["params"] - s.a["params"] for s in d.stages) == 11_070_712 - 42_679_816

    assert archcompiler.cli.main(["diff", "inception_v4", "archc:variants/inception_v4_half"]) == 1
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.lstrip().startswith("total"))
    assert "params 42,679,816 -> 11,070,712 (-31,609,104)" in total
    assert "MACs 12,253,974,624 -> 3,068,673,072 (-9,185,301,552)" in total
    assert "384x35x35 -> 192x35x35" in out and "width" in out

    assert archcompiler.cli.main(["diff", "--json", "inception_v4", "variants/inception_v4_half"]) == 1
    j = json.loads(capsys.readouterr().out)
    assert j["equal"] is False and j["totals"]["delta"] == {"params": -31_609_104,
                                                            "macs": -9_185_301_552}


def test_diff_names_the_changed_block_and_its_stages():
    d = archcompiler.diff("resnet50", "variants/se_resnet50")
    assert [(b.name, b.status) for b in d.blocks] == [("bottleneck", "changed")]
    assert any(c.path == "residual.seq" for c in d.blocks[0].changes)  # the SE gate is added
    assert [s.name for s in d.stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert all(s.b["params"] > s.a["params"] for s in d.stages)
    assert d.totals["b"]["params"] == 28_088_024  # se_resnet50's expect.params
    assert "block template bottleneck changed" in str(d)


BASE = """\
archc: 1
name: t
input: 3x32x32
blocks:
  b:
    params: [c]
    seq: [conv 3x3 $c, conv 3x3 $c]
network:
  - {name: c1, op: conv 3x3 8}
  - {block: b, repeat: 2, with: {c: 8}}
  - {name: gone, op: conv 1x1 8}
"""


def test_diff_of_a_changed_repeat_and_stages_added_and_removed(tmp_path, capsys):
    other = BASE.replace("repeat: 2", "repeat: 3").replace(
        "  - {name: gone, op: conv 1x1 8}\n", "  - {name: new, op: conv 1x1 16}\n")
    write_tree(tmp_path, {"a.yaml": BASE, "b.yaml": other})
    d = archcompiler.diff(str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    status = {s.name: s.status for s in d.stages}
    assert status == {"b": "changed", "gone": "removed", "new": "added"}
    b = next(s for s in d.stages if s.name == "b")
    assert [(c.path, c.a, c.b) for c in b.changes] == [("repeat", 2, 3)]
    one_copy = 2 * (8 * 8 * 9 + 2 * 8)  # two 3x3 convs of 8 -> 8 channels, each with BN
    assert b.b["params"] - b.a["params"] == one_copy
    assert d.blocks == () and d.settings == ()
    assert archcompiler.cli.main(["diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 1
    out = capsys.readouterr().out
    assert "repeat: 2 -> 3" in out and "removed" in out and "added" in out


def test_diff_exit_codes_and_invalid_specs(tmp_path):
    bad = MINIMAL.replace("conv 3x3 8", "conv 3x3 $zzz")
    write_tree(tmp_path, {"ok.yaml": MINIMAL, "bad.yaml": bad})
    assert archc("diff", "ok.yaml", "ok.yaml", cwd=tmp_path).rc == 0
    r = archc("diff", "ok.yaml", "bad.yaml", cwd=tmp_path)
    assert r.rc == 2 and r.out == ""
    e = r.only_error()
    assert e["file"].endswith("bad.yaml")
    assert (e["line"], e["col"]) == (line_of(bad, "$zzz"), col_of(bad, "conv 3x3 $zzz"))
    gh = archc("diff", "--error-format", "github", "bad.yaml", "ok.yaml", cwd=tmp_path)
    assert gh.rc == 2 and gh.err.startswith("::error file=")
    missing = archc("diff", "ok.yaml", "nope.yaml", cwd=tmp_path)
    assert missing.rc == 2 and "nope.yaml: no such file" in missing.err
    assert archc("diff", "ok.yaml", cwd=tmp_path).rc == 2  # one spec: a usage error
    assert "Traceback" not in r.err + missing.err
