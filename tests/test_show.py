"""`archc show` (issue 12): a spec's parameters, blocks and stages; `--expand` prints the
resolved spec, which validates to the same graph (same names, ops, shapes, parameters)."""

from __future__ import annotations

import json

import pytest

import archcompiler
from archcompiler.spec.shipped import shipped_spec_names
from spec_helpers import archc, write_tree


def graph_facts(spec):
    a = spec.analysis
    return ([(n.name, n.op, n.inputs, dict(n.attrs)) for n in a.graph.nodes], a.shapes,
            a.node_params, a.layers, [(s.name, s.shape) for s in a.stages], a.sizes)


@pytest.mark.parametrize("name", [n for n in shipped_spec_names()])
def test_expand_validates_to_the_same_graph(tmp_path, name):
    spec = archcompiler.load_spec(name)
    text = archcompiler.show(spec, expand=True)
    assert "imports:" not in text and "extends:" not in text
    write_tree(tmp_path, {"expanded.yaml": text})
    again = archcompiler.load_spec(tmp_path / "expanded.yaml")
    assert graph_facts(again) == graph_facts(spec)
    assert again.stage_expect.keys() == spec.stage_expect.keys()
    assert (again.expect.params, again.expect.layers) == (spec.expect.params, spec.expect.layers)


def test_expand_of_an_edited_variant(tmp_path):
    write_tree(tmp_path, {"v.yaml": "archc: 1\nextends: archc:inception_resnet_v2\nname: v\n"
                                    "stages:\n  inception_resnet_b.3: {with: {scale: 0.05}}\n"
                                    "  inception_resnet_a: {repeat: 5}\n  conv2d_7b: remove\n"})
    spec = archcompiler.load_spec(tmp_path / "v.yaml")
    r = archc("show", "--expand", "v.yaml", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "  copies:\n    '3':\n      with: {scale: 0.05}\n" in r.out
    write_tree(tmp_path, {"e.yaml": r.out})
    assert graph_facts(archcompiler.load_spec(tmp_path / "e.yaml")) == graph_facts(spec)


def test_show_lists_parameters_blocks_and_stages():
    r = archc("show", "inception_resnet_v2")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    row = next(line for line in lines if line.split()[:2] == ["scale_final", "1.0"])
    assert "stage inception_resnet_c_final" in row  # where it is used
    assert any(line.split()[:2] == ["scale_a", "0.17"] and "stage inception_resnet_a" in line
               for line in lines)
    block = next(line for line in lines if line.split()[:1] == ["reduction_a"])
    assert "k, l, m, n" in block and "Figure 7" in block and "mixed_6a" in block
    stages = lines[next(i for i, line in enumerate(lines) if line.startswith("stages")):]
    stage = next(line for line in stages if line.split()[:1] == ["inception_resnet_b"])
    assert stage.split()[1:4] == ["inception_resnet_b", "scale=$scale_b", "20"]
    assert "1088x17x17" in stage


def test_show_json_and_the_api_agree():
    r = archc("show", "--json", "inception_v4")
    data = json.loads(r.out)
    report = archcompiler.show("inception_v4")
    assert data == report.to_json()
    assert [s["name"] for s in data["stages"]] == ["stem", "inception_a", "reduction_a", "inception_b",
                                                    "reduction_b", "inception_c", "head"]
    red = next(s for s in data["stages"] if s["name"] == "reduction_a")
    assert red["with"] == {"k": 192, "l": 224, "m": 256, "n": 384}  # Table 1, Inception-v4
    assert red["output"] == [1024, 17, 17]
    assert data["params_total"] == 42_679_816 and data["layers"] == 76
    assert next(b for b in data["blocks"] if b["name"] == "inception_a")["figure"] == "Figure 4"


def test_show_of_an_invalid_spec_is_located(tmp_path):
    write_tree(tmp_path, {"s.yaml": "archc: 1\nname: t\ninput: 3x32x32\nnetwork:\n"
                                    "  - {name: c1, op: conv 3x3 $widht}\n"})
    r = archc("show", "s.yaml", cwd=tmp_path)
    assert r.rc == 1 and r.only_error()["line"] == 5


def test_help_and_list_need_no_spec_models():
    # the parser holds every verb; building it must not import pydantic or the op registry
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom archcompiler.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['list'])\n"
            "print(sorted(m for m in ('pydantic', 'archcompiler.ops', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
