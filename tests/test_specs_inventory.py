"""The spec inventory of issue 2: every shipped spec validates, and its numbers are the
ones the issue's inventory table and the fact sheet (../shared/reference/reference_impls.md,
sections 2-7) give. Expected values are written here from those documents (with the
arithmetic that derives them), never copied from our own output; where timm or
torchvision is installed, their models are counted too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import archcompiler
from spec_helpers import ROOT, SPECS, TEST_SPECS, archc, line_of

FIVE = ["inception_v4", "inception_resnet_v1", "inception_resnet_v2",
        "inception_resnet_v2_paper", "inception_v3"]
VARIANTS = ["inception_v4_half", "inception_resnet_v2_scale03", "inception_v3_aux"]

# issue 2, "The specs" table: layers, params, widths at 35/17/8
INVENTORY = {
    "inception_v4": (76, 42_679_816, (384, 1024, 1536)),
    "inception_resnet_v1": (94, 22_756_328, (256, 896, 1792)),
    "inception_resnet_v2": (178, 55_843_464, (320, 1088, 2080)),
    "inception_resnet_v2_paper": (96, 32_433_928, (384, 1152, 2144)),
    "inception_v3": (50, 23_834_568, (288, 768, 2048)),
}

# fact sheet section 6, "conv+FC MACs (my count)", in G (rounded to 3 decimals)
MACS_G = {
    "inception_v3": 5.713,
    "inception_v4": 12.254,
    "inception_resnet_v2": 13.156,
    "inception_resnet_v1": 6.206,
    "inception_resnet_v2_paper": 9.258,
}

# fact sheet section 7 (and sections 2-5): stage output shapes for a 3x299x299 input
STAGE_SHAPES = {
    "inception_v4": {
        "stem": (384, 35, 35), "inception_a": (384, 35, 35), "reduction_a": (1024, 17, 17),
        "inception_b": (1024, 17, 17), "reduction_b": (1536, 8, 8), "inception_c": (1536, 8, 8),
        "head": (1000,),
    },
    "inception_resnet_v1": {
        "stem": (256, 35, 35), "inception_resnet_a": (256, 35, 35),
        "reduction_a": (896, 17, 17), "inception_resnet_b": (896, 17, 17),
        "reduction_b": (1792, 8, 8), "inception_resnet_c": (1792, 8, 8), "head": (1000,),
    },
    "inception_resnet_v2": {
        "conv2d_1a": (32, 149, 149), "conv2d_2a": (32, 147, 147), "conv2d_2b": (64, 147, 147),
        "maxpool_3a": (64, 73, 73), "conv2d_3b": (80, 73, 73), "conv2d_4a": (192, 71, 71),
        "maxpool_5a": (192, 35, 35), "mixed_5b": (320, 35, 35),
        "inception_resnet_a": (320, 35, 35), "mixed_6a": (1088, 17, 17),
        "inception_resnet_b": (1088, 17, 17), "mixed_7a": (2080, 8, 8),
        "inception_resnet_c": (2080, 8, 8), "inception_resnet_c_final": (2080, 8, 8),
        "conv2d_7b": (1536, 8, 8), "head": (1000,),
    },
    "inception_resnet_v2_paper": {
        "stem": (384, 35, 35), "inception_resnet_a": (384, 35, 35),
        "reduction_a": (1152, 17, 17), "inception_resnet_b": (1152, 17, 17),
        "reduction_b": (2144, 8, 8), "inception_resnet_c": (2144, 8, 8), "head": (1000,),
    },
    "inception_v3": {
        "conv2d_1a": (32, 149, 149), "conv2d_2a": (32, 147, 147), "conv2d_2b": (64, 147, 147),
        "maxpool1": (64, 73, 73), "conv2d_3b": (80, 73, 73), "conv2d_4a": (192, 71, 71),
        "maxpool2": (192, 35, 35), "mixed_5b": (256, 35, 35), "mixed_5c": (288, 35, 35),
        "mixed_5d": (288, 35, 35), "mixed_6a": (768, 17, 17), "mixed_6b": (768, 17, 17),
        "mixed_6c": (768, 17, 17), "mixed_6d": (768, 17, 17), "mixed_6e": (768, 17, 17),
        "mixed_7a": (1280, 8, 8), "mixed_7b": (2048, 8, 8), "mixed_7c": (2048, 8, 8),
        "head": (1000,),
    },
}

# fact sheet section 6, "Per-module parameter counts (exact, 1000 classes)"
STAGE_PARAMS = {
    "inception_v4": {
        "stem": 928 + 9_280 + 18_560 + 55_488 + 189_312 + 332_160,  # features.0-5
        "inception_a": 4 * 317_632,
        "reduction_a": 2_306_112,
        "inception_b": 7 * 2_936_256,
        "reduction_b": 2_747_392,
        "inception_c": 3 * 4_553_088,
        "head": 1_537_000,  # last_linear
    },
    "inception_resnet_v2": {
        "conv2d_1a": 928, "conv2d_2a": 9_280, "conv2d_2b": 18_560, "conv2d_3b": 5_280,
        "conv2d_4a": 138_624, "mixed_5b": 268_320,
        "inception_resnet_a": 10 * 123_168,  # Block35
        "mixed_6a": 2_664_960,
        "inception_resnet_b": 20 * 1_126_784,  # Block17
        "mixed_7a": 3_880_960,
        "inception_resnet_c": 9 * 2_035_424, "inception_resnet_c_final": 2_035_424,  # Block8
        "conv2d_7b": 3_197_952,
        "head": 1_537_000,  # classif
    },
    "inception_v3": {
        "mixed_5b": 255_904, "mixed_5c": 277_472, "mixed_5d": 285_152, "mixed_6a": 1_153_280,
        "mixed_6b": 1_297_408, "mixed_6c": 1_691_008, "mixed_6d": 1_691_008,
        "mixed_6e": 2_141_952, "mixed_7a": 1_698_304, "mixed_7b": 5_044_608,
        "mixed_7c": 6_076_800, "head": 2_049_000,  # fc
    },
}

# issue 2, "Layer count": the rule gives, stage by stage (stem, blocks x repeats, ..., fc)
STAGE_LAYERS = {
    # 9 + 3*4 + 3 + 5*7 + 4 + 4*3 + 1 = 76
    "inception_v4": {"stem": 9, "inception_a": 3 * 4, "reduction_a": 3, "inception_b": 5 * 7,
                     "reduction_b": 4, "inception_c": 4 * 3, "head": 1},
    # 7 + 4*5 + 3 + 4*10 + 3 + 4*5 + 1 = 94
    "inception_resnet_v1": {"stem": 7, "inception_resnet_a": 4 * 5, "reduction_a": 3,
                            "inception_resnet_b": 4 * 10, "reduction_b": 3,
                            "inception_resnet_c": 4 * 5, "head": 1},
}


def load(name):
    return archcompiler.load_spec(str(SPECS / f"{name}.yaml"))


def load_variant(name):
    return archcompiler.load_spec(str(SPECS / "variants" / f"{name}.yaml"))


def stage_map(a):
    return {s.name: s for s in a.stages}


@pytest.fixture(scope="module")
def analyses():
    return {name: load(name).analysis for name in FIVE}


@pytest.mark.parametrize("name", FIVE)
def test_inventory_numbers(analyses, name):
    a = analyses[name]
    layers, params, (w35, w17, w8) = INVENTORY[name]
    assert a.layers == layers
    assert a.params == params
    assert a.input_shape == (3, 299, 299)
    assert a.output_shape == (1000,)
    trunk = [s for s in a.stages if s.kind == "trunk"]
    widths = {}
    for s in trunk:  # the last stage at each spatial size
        widths[s.shape[1]] = s.shape[0]
    if name == "inception_resnet_v2":  # the 8x8 stream is 2080 before conv2d_7b's 1x1 to 1536
        widths[8] = stage_map(a)["inception_resnet_c_final"].shape[0]
    if name == "inception_v3":  # the 35x35 blocks are 256, 288, 288 wide
        assert [s.shape[0] for s in trunk if s.shape[1] == 35 and s.name.startswith("mixed")] == \
            [256, 288, 288]
    assert (widths[35], widths[17], widths[8]) == (w35, w17, w8)


@pytest.mark.parametrize("name", FIVE)
def test_macs(analyses, name):
    assert round(analyses[name].macs / 1e9, 3) == MACS_G[name]


@pytest.mark.parametrize("name", FIVE)
def test_stage_shapes(analyses, name):
    got = {s.name: tuple(s.shape) for s in analyses[name].stages if s.kind != "aux"}
    assert got == STAGE_SHAPES[name]


@pytest.mark.parametrize("name", sorted(STAGE_PARAMS))
def test_stage_params_match_fact_sheet(analyses, name):
    got = {s.name: s.params for s in analyses[name].stages}
    for stage, want in STAGE_PARAMS[name].items():
        assert got[stage] == want, stage
    # stages the fact sheet does not list (pools) own no parameters
    assert sum(got.values()) == INVENTORY[name][1]


@pytest.mark.parametrize("name", sorted(STAGE_LAYERS))
def test_stage_layers_follow_the_rule(analyses, name):
    got = {s.name: s.layers for s in analyses[name].stages}
    assert got == STAGE_LAYERS[name]
    assert sum(got.values()) == INVENTORY[name][0]


@pytest.mark.parametrize("name", FIVE)
def test_smallest_input_is_75(analyses, name):
    # fact sheet 7: 75x75 for all of them (Keras min_size=75, torchvision min_size (75, 75))
    assert analyses[name].min_input == 75
    ok = archc("validate", "--input-size", "75", SPECS / f"{name}.yaml")
    assert ok.rc == 0, ok.err
    bad = archc("validate", "--input-size", "74", SPECS / f"{name}.yaml")
    assert bad.rc == 1
    assert "the smallest input this network accepts is 75x75" in bad.err
    assert "input 3x74x74" in bad.err


@pytest.mark.parametrize("size, final", [(224, 5), (256, 6), (299, 8), (330, 8), (331, 9), (384, 10)])
@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2", "inception_v3"])
def test_final_map_at_other_input_sizes(name, size, final):
    # fact sheet 7: 5x5 at 224, 6x6 at 256, 8x8 for 299-330, 9x9 from 331, 10x10 at 384
    a = archcompiler.load_spec(str(SPECS / f"{name}.yaml"), input_size=(size, size)).analysis
    last = [s for s in a.stages if s.kind == "trunk"][-1]
    assert last.shape[1:] == (final, final)
    assert a.output_shape == (1000,)
    assert a.params == INVENTORY[name][1]  # parameters do not depend on the input size


def test_grid_sizes_299_35_17_8(analyses):
    for name in FIVE:
        sizes = []
        for s in analyses[name].stages:
            if s.kind == "trunk" and s.shape[1] in (35, 17, 8) and s.shape[1] not in sizes:
                sizes.append(s.shape[1])
        assert sizes == [35, 17, 8], name


def test_variants_validate_with_exit_0():
    r = archc("validate", *(SPECS / "variants" / f"{v}.yaml" for v in VARIANTS))
    assert r.rc == 0, r.err
    # no error or warning; a variant's note says which of its base's promises it drops
    assert all(": note: this variant changes " in line or line.startswith(" ")
               for line in r.err.splitlines()), r.err
    for v in VARIANTS:
        assert f"{v} ok" in r.out


def test_all_specs_validate_at_once_and_the_table_lists_stages():
    paths = [SPECS / f"{n}.yaml" for n in FIVE]
    r = archc("validate", *paths)
    assert r.rc == 0, r.err
    assert r.err == ""
    for n in FIVE:
        assert f"{n} ok" in r.out
    assert "reduction_a" in r.out and "1024x17x17" in r.out and "42,679,816" in r.out
    assert "min input 75x75" in r.out


def test_half_width_variant_halves_every_stage():
    full = {s.name: s.shape for s in load("inception_v4").analysis.stages if s.kind == "trunk"}
    half = load_variant("inception_v4_half").analysis
    assert half.layers == 76
    for s in half.stages:
        if s.kind == "trunk":
            assert s.shape == (full[s.name][0] // 2, *full[s.name][1:])


def test_scale03_variant_changes_only_the_scales():
    base = load("inception_resnet_v2").analysis
    v = load_variant("inception_resnet_v2_scale03").analysis
    assert (v.layers, v.params, v.macs) == (base.layers, base.params, base.macs)
    scales = {n.attrs["scale"] for n in v.graph.nodes if n.op == "scale_add"}
    # all four scales, the final block's too: a deliberate departure from TF-slim, whose
    # last block is unscaled (fact sheet 8.1, item 7; the base's scale_final: 1.0)
    assert scales == {0.3}
    base_scales = sorted({n.attrs["scale"] for n in base.graph.nodes if n.op == "scale_add"})
    assert base_scales == [0.1, 0.17, 0.2, 1.0]


def test_v3_aux_variant():
    # fact sheet 6: torchvision num_params 27,161,264 = 23,834,568 + 3,326,696 (aux);
    # conv+FC MACs 5.719 G including the aux head
    a = load_variant("inception_v3_aux").analysis
    assert a.params == 27_161_264
    assert round(a.macs / 1e9, 3) == 5.719
    aux = [s for s in a.stages if s.kind == "aux"]
    assert [s.name for s in aux] == ["aux_logits"]
    assert aux[0].params == 3_326_696
    assert aux[0].shape == (1000,)
    assert a.layers == 50  # the aux head is a side output: the main path's count
    # the aux head's 5x5/3 pool and 5x5 valid conv need a 17x17 map at Mixed_6e
    assert a.min_input == 299


def test_v3_aux_by_parameter_equals_the_variant():
    spec = load("inception_v3")
    with_aux = archcompiler.load_spec(spec.with_params(aux_logits=True)).analysis
    assert with_aux.params == 27_161_264


def test_shipped_spec_by_name():
    spec = archcompiler.load_spec("inception_v4")
    assert spec.analysis.params == 42_679_816
    r = archc("validate", "inception_v4", "variants/inception_v4_half")
    assert r.rc == 0, r.err
    r = archc("list")
    assert r.rc == 0
    for n in FIVE + [f"variants/{v}" for v in VARIANTS]:
        assert f"  {n}\n" in r.out


def test_metadata_bn_eps_classes_preprocessing(analyses):
    for name in FIVE:
        spec = load(name)
        assert spec.classes == 1000
        assert spec.preprocess.mean == [0.5, 0.5, 0.5] and spec.preprocess.std == [0.5, 0.5, 0.5]
        eps = {n.attrs["eps"] for n in analyses[name].graph.nodes if n.op == "batchnorm"}
        assert eps == {0.001}, name
    # fact sheet 3: crop_pct 0.8975 for inception_resnet_v2, 0.875 for v3 and v4
    assert load("inception_resnet_v2").preprocess.crop_pct == 0.8975
    assert load("inception_v4").preprocess.crop_pct == 0.875
    assert load("inception_v3").preprocess.crop_pct == 0.875


def test_avgpool_count_pad_differs_between_v3_and_v4(analyses):
    # fact sheet 1: v3 uses count_include_pad=True, v4 and IR-v2 False
    def flags(name):
        return {n.attrs["count_include_pad"] for n in analyses[name].graph.nodes if n.op == "avgpool"}

    assert flags("inception_v3") == {True}
    assert flags("inception_v4") == {False}
    assert flags("inception_resnet_v2") == {False}


def test_residual_up_projection_is_linear_with_bias(analyses):
    # fact sheet 3: conv2d 1x1 with bias, no BN, no activation, then *scale + x
    g = analyses["inception_resnet_v2"].graph
    by_name = g.by_name
    adds = [n for n in g.nodes if n.op == "scale_add"]
    assert len(adds) == 10 + 20 + 10
    for add in adds:
        proj = by_name[add.inputs[1]]
        assert proj.op == "conv2d" and proj.attrs["bias"] and proj.attrs["kernel"] == (1, 1)
    final = by_name["inception_resnet_c_final.add"]
    assert final.attrs["scale"] == 1.0
    assert "inception_resnet_c_final.act" not in by_name  # no ReLU after the last block


def test_json_output_fields():
    r = archc("validate", "--json", SPECS / "inception_v4.yaml")
    assert r.rc == 0
    (obj,) = json.loads(r.out)
    assert obj["spec"].endswith("inception_v4.yaml")
    assert obj["name"] == "inception_v4" and obj["valid"] is True
    assert obj["input"] == [3, 299, 299] and obj["output"] == [1000]
    assert obj["layers"] == 76 and obj["params"] == 42_679_816
    assert round(obj["macs"] / 1e9, 3) == 12.254
    stages = {s["name"]: s for s in obj["stages"]}
    assert stages["reduction_a"]["shape"] == [1024, 17, 17]
    assert stages["reduction_a"]["layers"] == 3 and stages["reduction_a"]["params"] == 2_306_112
    assert obj["diagnostics"] == []


def test_json_output_of_an_invalid_spec():
    r = archc("validate", "--json", TEST_SPECS / "inception_resnet_v2_paper_literal.yaml",
              SPECS / "inception_v4.yaml")
    assert r.rc == 1
    bad, good = json.loads(r.out)
    assert bad["valid"] is False and good["valid"] is True
    d = bad["diagnostics"][0]
    assert set(d) >= {"file", "line", "column", "severity", "message"}
    assert d["severity"] == "error" and "1154" in d["message"]


def test_paper_literal_widths_rejected():
    """Figures 17 and 19 taken literally (1154 and 2048): rejected, naming the blocks and
    both widths, located at the up-projection's line (with the stage that uses it)."""
    rel = "tests/specs/inception_resnet_v2_paper_literal.yaml"
    text = (ROOT / rel).read_text()
    r = archc("validate", rel, cwd=ROOT)
    assert r.rc == 1
    errs = r.errors
    assert len(errs) == 2, r.err
    b, c = errs
    assert (b["file"], b["line"]) == (rel, line_of(text, "project: conv 1x1 1154 linear"))
    assert "stage inception_resnet_b" in b["msg"]
    assert "1154 channels" in b["msg"] and "gives 1152" in b["msg"]
    assert (c["file"], c["line"]) == (rel, line_of(text, "project: conv 1x1 2048 linear"))
    assert "stage inception_resnet_c" in c["msg"]
    assert "2048 channels" in c["msg"] and "gives 2144" in c["msg"]
    notes = [d for d in r.diags if d["sev"] == "note"]
    assert (notes[0]["file"], notes[0]["line"]) == (rel, line_of(text, "{block: inception_resnet_b"))
    assert "block 'inception_resnet_b'" in notes[0]["msg"]
    assert (notes[1]["file"], notes[1]["line"]) == (rel, line_of(text, "{block: inception_resnet_c"))
    # the repaired spec with the same structure validates
    assert archc("validate", SPECS / "inception_resnet_v2_paper.yaml").rc == 0


def test_paper_literal_rejected_as_subprocess():
    r = subprocess.run([sys.executable, "-m", "archcompiler.cli", "validate",
                        "tests/specs/inception_resnet_v2_paper_literal.yaml"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "tests/specs/inception_resnet_v2_paper_literal.yaml:" in r.stderr
    assert "1154" in r.stderr and "1152" in r.stderr and "Traceback" not in r.stderr


def test_committed_schema_matches_archc_schema():
    r = archc("schema")
    assert r.rc == 0
    committed = (SPECS / "schema" / "archc.schema.json").read_text()
    assert json.loads(r.out) == json.loads(committed), \
        "regenerate: archc schema -o specs/schema/archc.schema.json"
    assert r.out == committed


def test_specs_reference_the_schema():
    for p in [*SPECS.glob("*.yaml"), *SPECS.glob("*/*.yaml")]:
        first = p.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), p
        target = (p.parent / first.split("$schema=")[1]).resolve()
        assert target == (SPECS / "schema" / "archc.schema.json").resolve(), p


def test_core_does_not_import_torch_or_onnx():
    code = (
        "import sys, glob\n"
        "import archcompiler, archcompiler.cli\n"
        "paths = sorted(glob.glob('specs/*.yaml') + glob.glob('specs/variants/*.yaml'))\n"
        "assert len(paths) == 20, paths\n"
        "rc = archcompiler.cli.main(['validate', '--json', *paths])\n"
        "assert rc == 0, rc\n"
        "for name in paths: archcompiler.load_spec(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', "
        "'onnxruntime', 'timm', 'torchvision'))\n"
        "assert not bad, bad\n"
        "print('CLEAN')\n"
    )
    assert _python(code).strip().endswith("CLEAN")


def _python(code: str) -> str:
    """The stdout of `python -c code` in the repository (a fresh interpreter: sys.modules
    shows what the code imported)."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_validate_imports_only_what_it_uses():
    """`archc validate` (the CI gate, issue 11's 0.3 s) leaves out what it never uses:
    numpy (the size search is plain Python), importlib.metadata (pydantic's plugin
    search, off in the CLI process), json (only --json), difflib (only for a did-you-
    mean) and shutil (argparse's terminal width); and it still validates every file."""
    code = (
        "import sys, glob, io, contextlib\n"
        "sys.argv = ['archc', 'validate', *sorted(glob.glob('specs/*.yaml') + glob.glob('specs/variants/*.yaml'))]\n"
        "import archcompiler.cli as cli\n"
        "cli.without_pydantic_plugins()\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out): rc = cli.main(sys.argv[1:])\n"
        "heavy = ('numpy', 'importlib.metadata', 'json', 'difflib', 'shutil', 'networkx')\n"
        "print(rc, out.getvalue().count(' ok   input '), sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert _python(code).split("\n")[-2] == "0 20 []"


# --- timm / torchvision: the reference implementations count the same ----------------------

def _torch_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2", "inception_v3"])
def test_params_equal_timm(analyses, name):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False)
    assert _torch_params(model) == analyses[name].params == INVENTORY[name][1]


def test_v3_aux_params_equal_torchvision():
    tv = pytest.importorskip("torchvision")
    model = tv.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    assert _torch_params(model) == load_variant("inception_v3_aux").analysis.params == 27_161_264


def test_timm_stage_widths_equal_ours(analyses):
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    model = timm.create_model("inception_v4", pretrained=False, features_only=True)
    model.eval()
    with torch.no_grad():
        feats = model(torch.zeros(1, 3, 299, 299))
    got = [tuple(f.shape[1:]) for f in feats]
    ours = STAGE_SHAPES["inception_v4"]
    assert got[-3:] == [ours["inception_a"], ours["inception_b"], ours["inception_c"]]
