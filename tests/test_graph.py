"""`archc graph`: the structure picture in DOT, Mermaid and SVG (archcompiler/views/graph*.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import pytest

import archcompiler
from archcompiler.cli import main
from archcompiler.spec import model as m
from archcompiler.views.graph import op_label, render

REPO = Path(__file__).resolve().parent.parent
SVG_NS = "{http://www.w3.org/2000/svg}"


@lru_cache(maxsize=None)
def spec(name: str):
    return archcompiler.load_spec(name)


@lru_cache(maxsize=None)
def drawn(name: str, fmt: str) -> str:
    return render(spec(name), fmt)


def repeat_marks(text: str, n: int) -> int:
    """How often `xN` stands alone (not inside 3x3 or 384x35x35)."""
    return len(re.findall(rf"(?<![0-9A-Za-z])x{n}(?![0-9])", text))


def concats_in(obj) -> int:
    """Concat items and concat bodies under a spec model (a block template, drawn once)."""
    if isinstance(obj, list):
        return sum(concats_in(x) for x in obj)
    if not isinstance(obj, m.Located):
        return 0
    own = 1 if getattr(obj, "concat", None) is not None else 0
    return own + sum(concats_in(getattr(obj, f)) for f in type(obj).model_fields)


# --- DOT ---------------------------------------------------------------------------------

_DOT_STMT = re.compile(
    r'(subgraph cluster_\d+ \{|\}|label=".*"; class="\w+"; .*|'
    r'n\d+ \[label=".*"(, [a-z]+=("[^"]*"|[\w.]+))*\];|n\d+ -> n\d+;|'
    r'rankdir=TB; newrank=true;|(graph|node|edge) \[.*\];|digraph archc \{)\Z')


def check_dot(text: str) -> None:
    """A small DOT check (no parser is installed): every line one known statement,
    balanced braces, every edge between declared nodes, quotes balanced."""
    depth, declared, edges = 0, set(), []
    for line in text.splitlines():
        stmt = line.strip()
        assert _DOT_STMT.match(stmt), f"not a DOT statement we write: {stmt!r}"
        assert len(re.findall(r'(?<!\\)"', stmt)) % 2 == 0, stmt
        depth += stmt.count("{") - stmt.count("}") if not stmt.startswith("label=") else 0
        assert depth >= 0
        if re.match(r"n\d+ \[", stmt):
            declared.add(stmt.split()[0])
        if re.match(r"n\d+ -> ", stmt):
            edges.append(stmt.rstrip(";").split(" -> "))
    assert depth == 0
    assert edges and all(a in declared and b in declared for a, b in edges)


def test_inception_v4_dot_names_figures_repeats_and_shapes():
    dot = drawn("inception_v4", "dot")
    check_dot(dot)
    s = spec("inception_v4")
    for st in s.network:
        assert st.stage_name in dot
        figure = s.blocks[st.block].figure
        assert figure and figure in dot
    for n in (4, 7, 3):
        assert repeat_marks(dot, n) == 1, n
    assert "inception_a x4" in dot and "inception_c x3" in dot
    for stage in s.analysis.stages:  # every stage's output shape, CxHxW
        shape = "x".join(map(str, stage.shape))
        assert f"→ {shape}" in dot
    # one cluster per stage; the network, the head and the stem's named groups are others
    assert dot.count('class="stage"') == len(s.network)
    # each template is drawn once: one concat merge node per concat it holds
    want = sum(concats_in(s.blocks[st.block]) for st in s.network)
    assert want == 10  # stem 3, A, Red-A, B, Red-B, C (1 + 2 nested)
    assert dot.count('class="merge concat"') == want


def test_op_labels_read_like_the_spec():
    dot = drawn("inception_v4", "dot")
    for label in ("conv 3x3/2 32 valid", "conv 1x7 224", "avgpool 3x3", "maxpool 3x3/2 valid",
                  "conv 3x3/2 $n valid", "dropout $drop_rate", "fc: linear $classes"):
        assert f'label="{label}"' in dot.replace("\\$", "$"), label


@pytest.mark.parametrize("text", [
    "conv 3x3/2 32 valid", "conv 1x7 224", "avgpool 3x3", "maxpool 3x3/2 valid",
    "conv 1x1 $in linear", "global_avgpool keepdim", "dropout $drop_rate", "maxpool 3x3/2 ceil",
    "linear 10 nobias", "conv 3x3 64 dw", "avgpool 3x3 count_pad", "conv 3x3 $(2*k) pad=1",
    "groupnorm 8", "adaptive_avgpool 4x4", "conv 3x3/$stride $width"])
def test_op_label_round_trips_the_op_string(text):
    from pydantic import TypeAdapter

    assert op_label(TypeAdapter(m.Item).validate_python(text)) == text


def test_residual_blocks_show_their_scale_and_repeats_once():
    dot = drawn("inception_resnet_v2", "dot")
    check_dot(dot)
    for n in (10, 20, 9):
        assert repeat_marks(dot, n) == 1, n
    for scale in ("0.17", "0.1", "0.2", "1"):  # the final block: scale 1.0, no ReLU
        assert f'label="residual add, scale {scale}"' in dot
    assert dot.count('class="merge residual"') == 4  # A, B, C, C-final: drawn once each
    assert "Figure 16 (scaled as in Figure 20)" in dot


def test_conditional_shortcut_says_what_was_built():
    dot = drawn("resnet50", "dot")
    check_dot(dot)
    conds = re.findall(r'label="when \$\(stride != 1 or in != 4\*width\)\\n([^"]*)"; class="cond"', dot)
    # the template is drawn once per stage; the analysis built the shortcut in copy 0 only
    assert conds == ["built in copy 0 of 3", "built in copy 0 of 4", "built in copy 0 of 6",
                     "built in copy 0 of 3"]
    assert 'class="cond"; style="dashed"' in dot


def test_block_inside_a_block_is_a_nested_box():
    dot = render(spec("variants/se_inception_v4"), "dot")
    check_dot(dot)
    nested = re.findall(r'subgraph cluster_\d+ \{\n\s*label="se[\\"n]', dot)
    assert nested, "the SE block inside the Inception blocks is a cluster of its own"
    assert 'class="block"' in dot and 'class="merge multiply"' in dot
    shallow = render(spec("variants/se_inception_v4"), "dot", depth=2)
    assert 'class="merge multiply"' not in shallow and 'label="se' in shallow


def test_depth_one_draws_stages_only():
    dot = render(spec("inception_v4"), "dot", depth=1)
    check_dot(dot)
    assert "conv 1x1" not in dot and 'class="stage"' not in dot
    assert len(re.findall(r"^\s*n\d+ \[", dot, re.M)) == 1 + 6 + 1  # input, stages, head
    assert repeat_marks(dot, 4) == 1


# --- Mermaid and SVG -----------------------------------------------------------------------

def test_mermaid_flowchart():
    text = drawn("inception_v4", "mermaid")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "flowchart TB"
    assert lines.count("end") == sum(line.startswith("subgraph ") for line in lines)
    declared = {re.match(r"(n\d+)[\[(]", x).group(1) for x in lines if re.match(r"n\d+[\[(]", x)}
    edges = [x.split(" --> ") for x in lines if "-->" in x]
    assert edges and all(a in declared and b in declared for a, b in edges)
    assert "inception_a x4<br/>Figure 4" in text
    assert '"' not in "".join(re.findall(r'\["(.*)"\]', text))  # quotes are escaped


def test_svg_parses_and_holds_the_labels():
    svg = drawn("inception_v4", "svg")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    for label in ("conv 3x3/2 32 valid", "conv 1x7 224", "avgpool 3x3", "maxpool 3x3/2 valid",
                  "inception_a x4", "inception_b x7", "inception_c x3", "Figure 3", "Figure 8",
                  "→ 1536x8x8", "input 3x299x299"):
        assert label in texts, label
    assert sum(repeat_marks(t, 4) for t in texts) == 1
    # readable: monospace 11px, nothing outside the canvas
    assert root.get("font-size") == "11" and "monospace" in root.get("font-family")
    w, h = int(root.get("width")), int(root.get("height"))
    for r in root.iter(f"{SVG_NS}rect"):
        x, y = int(r.get("x")), int(r.get("y"))
        assert 0 <= x and x + int(r.get("width")) <= w and 0 <= y and y + int(r.get("height")) <= h


def test_svg_op_text_fits_its_box():
    """Each op node's text is centred in a rect wide enough for it (no clipped labels)."""
    from archcompiler.views import graph_svg as gs

    root = ET.fromstring(drawn("inception_resnet_v2", "svg"))
    rects = [(int(r.get("x")), int(r.get("y")), int(r.get("width")), int(r.get("height")))
             for r in root.iter(f"{SVG_NS}rect")]
    for t in root.iter(f"{SVG_NS}text"):
        if t.get("text-anchor") != "middle":
            continue
        cx, y, half = int(t.get("x")), int(t.get("y")), len(t.text) * gs.CW / 2
        assert any(x <= cx - half and cx + half <= x + w and by < y <= by + bh
                   for x, by, w, bh in rects), t.text


def test_committed_pictures_are_current(tmp_path, monkeypatch):
    """docs/*.svg are what `archc graph` draws now, byte for byte, from any directory."""
    for name in ("inception_v4", "inception_resnet_v2"):
        outs = []
        for where in ("a", "b/c"):
            cwd = tmp_path / where
            cwd.mkdir(parents=True, exist_ok=True)
            monkeypatch.chdir(cwd)
            assert main(["graph", str(REPO / "specs" / f"{name}.yaml"), "-o", f"{name}.svg"]) == 0
            outs.append((cwd / f"{name}.svg").read_bytes())
        monkeypatch.chdir(tmp_path)
        for sub in ("a", "b/c"):
            (tmp_path / sub / f"{name}.svg").unlink()
        assert outs[0] == outs[1]
        assert str(REPO).encode() not in outs[0] and str(tmp_path).encode() not in outs[0]
        assert outs[0] == (REPO / "docs" / f"{name}.svg").read_bytes(), (
            f"regenerate: archc graph specs/{name}.yaml -o docs/{name}.svg")


def test_aux_heads_the_analysis_built():
    on = render(spec("variants/inception_v3_aux"), "dot")
    check_dot(on)
    assert 'label="aux_logits\\ntraining only, from mixed_6e' in on
    assert "aux_logits" not in drawn("inception_v3", "dot")  # off: nothing was built


# --- the command and the API ---------------------------------------------------------------

def test_cli_formats_from_the_extension(tmp_path, capsys):
    for ext, start in ((".dot", "digraph"), (".gv", "digraph"), (".mmd", "flowchart TB"),
                       (".mermaid", "flowchart TB"), (".svg", "<svg ")):
        out = tmp_path / f"g{ext}"
        assert main(["graph", "inception_v4", "-o", str(out)]) == 0
        assert out.read_text(encoding="utf-8").startswith(start), ext
    capsys.readouterr()
    assert main(["graph", "inception_v4", "--depth", "1"]) == 0
    assert capsys.readouterr().out.startswith("digraph")  # no -o: DOT on stdout


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["graph", "inception_v4", "-o", str(tmp_path / "missing" / "g.svg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "d.svg").mkdir()
    assert main(["graph", "inception_v4", "-o", str(tmp_path / "d.svg")]) == 2
    assert main(["graph", "inception_v4", "-o", str(tmp_path / "g.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["graph", "inception_v4", "--format", "svg", "-o", str(tmp_path / "g.dot")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["graph", "inception_v4", "--depth", "0"])
    assert exc.value.code == 2


def test_cli_invalid_spec(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: bad\nnetwork:\n  - {name: a, op: conv 3x3 $nope}\n")
    out = tmp_path / "bad.svg"
    assert main(["graph", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:4:" in err and "unknown parameter 'nope'" in err
    assert not out.exists()
    assert main(["graph", str(bad), "--error-format", "github"]) == 1
    assert capsys.readouterr().err.startswith("::error file=")


def test_python_api():
    text = archcompiler.graph("inception_v4", format="mermaid")
    assert text.startswith("flowchart TB") and "graph" in archcompiler.__all__
    assert archcompiler.graph(spec("inception_v4")) == drawn("inception_v4", "dot")
    with pytest.raises(archcompiler.UsageError):
        archcompiler.graph(spec("inception_v4"), format="png")
