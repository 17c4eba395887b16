"""The ONNX backend: checked graphs, ONNX's shape inference = ours, onnxruntime = torch
backend = timm, torch not needed, atomic writes."""

from __future__ import annotations

import functools
import json
import os
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import archcompiler as ac  # noqa: E402
from archcompiler.backends import onnx as onnx_backend  # noqa: E402
from archcompiler.errors import UsageError  # noqa: E402
from archcompiler.cli import main  # noqa: E402
from archcompiler.ir.graph import Graph, Node  # noqa: E402
from archcompiler.passes.fold_bn import fold_bn  # noqa: E402
from archcompiler.weights import CheckpointError, to_format  # noqa: E402

from support import (ALL_SPECS, ROOT, SPECS, TIMM_SPECS, python_without, randomize_reference,
                     spec_state)  # noqa: E402

VARIANTS = sorted(f"specs/variants/{p.name}" for p in (SPECS / "variants").glob("*.yaml"))
EVERY_SPEC = ALL_SPECS + VARIANTS
SPECS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs")
TOL = 1e-4


@functools.lru_cache(maxsize=None)
def spec(name):
    return ac.load_spec(str(ROOT / name) if name.endswith(".yaml") else name)


@functools.lru_cache(maxsize=len(EVERY_SPEC))  # bounded: a model is 100-220 MB
def seeded(name, input_size=None):
    return ac.build(spec(name), backend="onnx", input_size=input_size)


@functools.lru_cache(maxsize=len(ALL_SPECS))
def randomized(name):
    """(graph, shapes, randomised our-named state): the issue's randomised weights."""
    return spec_state(spec(name), seed=1)


def session(model) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(model, x):
    return session(model).run(None, {"input": x})


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- structure -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", EVERY_SPEC)
def test_checker_full(name):
    model = seeded(name)
    onnx.checker.check_model(model, full_check=True)
    assert [o.domain for o in model.opset_import] == [""]
    assert model.opset_import[0].version == onnx_backend.DEFAULT_OPSET
    ops = {n.op_type for n in model.graph.node}
    assert ops <= set(onnx_backend.ONNX_OPS)
    assert "Dropout" not in ops
    # batch is dynamic, and so is the spatial size unless fixed or the network accepts
    # only a list of sizes (then it is exported at the spec's own size)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sp = spec(name)
    dynamic = onnx_backend.dynamic_spatial_ok(onnx_backend.export_graph(sp, None, False, None)[0])
    assert dynamic == (name not in ("bn_inception", "vgg16_bn"))  # a list of sizes; an adaptive pool
    want = ["height", "width"] if dynamic else list(sp.input_shape[1:])
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, *want]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("name", EVERY_SPEC)
def test_names_are_ir_names_and_metadata(name):
    sp = spec(name)
    model = seeded(name)
    graph = onnx_backend.export_graph(sp, None, False, None)[0]
    ir_names = {n.name for n in graph.nodes}
    for node in model.graph.node:
        assert node.name.split("/")[0] in ir_names, node.name
        assert node.doc_string
    state_names = {f"{n.name}.{p}" for n in graph.nodes for p in
                   ("weight", "bias", "running_mean", "running_var", "scale", "gamma")}
    inits = {t.name for t in model.graph.initializer}
    # parameters by their state names; an op's constants (GELU's, relu6's bounds) by its name
    assert {i for i in inits if i.rsplit(".", 1)[0] not in ir_names} <= state_names
    # aux heads are training-only: never exported
    assert not any(n.stage.startswith("aux") for n in graph.nodes)
    assert not any(i.startswith("aux_logits") for i in inits)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["spec"] == sp.name
    # the path relative to the spec root: no machine path inside artifacts
    rel = os.path.relpath(os.path.abspath(sp.path), SPECS_DIR).replace(os.sep, "/")
    assert meta["spec_file"] == (rel if os.path.isfile(sp.path) else sp.path)  # or the shipped name
    assert not os.path.isabs(meta["spec_file"])
    assert meta["source"] == sp.source
    assert meta["classes"] == str(sp.classes)
    assert meta["input_size"] == "x".join(map(str, sp.input_shape))
    pp = sp.preprocess
    assert json.loads(meta["preprocess_mean"]) == [float(v) for v in pp.mean]
    assert json.loads(meta["preprocess_std"]) == [float(v) for v in pp.std]
    assert float(meta["preprocess_crop_pct"]) == float(pp.crop_pct)
    assert meta["preprocess_interpolation"] == pp.interpolation
    assert model.producer_name == "archcompiler"
    assert sp.title in model.doc_string


@pytest.mark.parametrize("name", ALL_SPECS)
def test_pooling_semantics_as_the_ir_says(name):
    graph = onnx_backend.export_graph(spec(name), None, False, None)[0]
    nodes = {n.name: n for n in seeded(name).graph.node}
    for ir in graph.nodes:
        if ir.op in ("avgpool", "maxpool"):
            onode = nodes[ir.name]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in onode.attribute}
            ph, pw = ir.attrs["padding"]
            assert attrs["pads"] == [ph, pw, ph, pw]
            assert attrs["kernel_shape"] == list(ir.attrs["kernel"])
            assert attrs["strides"] == list(ir.attrs["stride"])
            if ir.op == "avgpool":
                assert onode.op_type == "AveragePool"
                assert attrs["count_include_pad"] == int(ir.attrs["count_include_pad"])


@pytest.mark.parametrize("name", EVERY_SPEC)
@pytest.mark.parametrize("size", [None, (331, 259)], ids=["default", "331x259"])
def test_onnx_shape_inference_agrees_with_ours(name, size):
    """ONNX's own shape inference (value_info stripped, strict) gives our shape for every
    stage output, and indeed for every node, at a fixed input size."""
    sp = spec(name)
    if size is not None and not sp.analysis.sizes[0].contains(size[0]):
        size = (sp.analysis.sizes[0].sizes[-1], sp.analysis.sizes[1].sizes[0])  # bn_inception
    in_hw = tuple(size or sp.input_shape[1:])
    model = onnx.ModelProto()
    model.CopyFrom(seeded(name, in_hw))
    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    got = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        got[vi.name] = tuple(d.dim_param or d.dim_value for d in dims)
    graph, shapes = onnx_backend.export_graph(sp, None, False, in_hw)
    assert graph.stages
    for st in graph.stages:
        assert got[st.output] == ("batch", *shapes[st.output]), st.name
    for node in graph.nodes:
        if node.op not in ("dropout", "drop_path", "identity"):  # no ONNX node
            assert got[node.name] == ("batch", *shapes[node.name]), node.name


def test_dynamic_build_infers_channels_and_runs_any_size():
    model = seeded("inception_v3")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph, shapes = onnx_backend.export_graph(spec("inception_v3"), None, False, None)
    got = {vi.name: vi.type.tensor_type.shape.dim for vi in inferred.graph.value_info}
    for st in graph.stages[:-1]:
        dims = got[st.output]
        assert dims[0].dim_param == "batch" and dims[1].dim_value == shapes[st.output][0]
    sess = session(model)
    for hw in ((75, 75), (160, 203)):
        (y,) = sess.run(None, {"input": normal(3, 3, *hw)})
        assert y.shape == (3, 1000) and np.isfinite(y).all()


def test_fixed_input_size_and_opset():
    model = ac.build(spec("inception_v3"), backend="onnx", input_size=(224, 200), opset=17)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 224, 200]
    assert dict((p.key, p.value) for p in model.metadata_props)["input_spatial"] == "fixed"
    (y,) = run(model, normal(2, 3, 224, 200))
    assert y.shape == (2, 1000)
    with pytest.raises(UsageError, match="opset"):
        ac.build(spec("inception_v3"), backend="onnx", opset=16)


def test_too_small_input_is_a_spec_error():
    with pytest.raises(ac.SpecError, match="smallest input this network accepts is 75x75"):
        ac.build(spec("inception_v3"), backend="onnx", input_size=(64, 64))


def test_features_outputs():
    model = ac.build(spec("inception_v4"), backend="onnx", features=True, input_size=(299, 299))
    onnx.checker.check_model(model, full_check=True)
    shapes = [tuple(d.dim_value for d in o.type.tensor_type.shape.dim)[1:] for o in model.graph.output]
    assert [s[1:] for s in shapes] == [(35, 35), (17, 17), (8, 8)]
    assert not any(n.name.startswith("head") for n in model.graph.node)


# --- BN folding ------------------------------------------------------------------------------

def test_fold_bn_is_pure_and_folds_only_what_it_may():
    conv = {"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "out_channels": 4, "bias": False,
            "groups": 1}
    nodes = (
        Node("a.conv", "conv2d", ("input",), conv),
        Node("a.bn", "batchnorm", ("a.conv",), {"eps": 1e-3, "momentum": 0.1}),
        Node("b.conv", "conv2d", ("a.bn",), conv),
        Node("b.bn", "batchnorm", ("b.conv",), {"eps": 1e-3, "momentum": 0.1}),
        Node("cat", "concat", ("b.bn", "b.conv"), {}),  # b.conv is read twice: not foldable
    )
    graph = Graph("t", nodes, "input", (3, 5, 5), ("cat",))
    rng = np.random.default_rng(0)
    w = {"a.conv.weight": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
         "b.conv.weight": rng.standard_normal((4, 4, 1, 1)).astype(np.float32)}
    for bn in ("a.bn", "b.bn"):
        w[f"{bn}.weight"] = rng.uniform(0.5, 1.5, 4).astype(np.float32)
        w[f"{bn}.bias"] = rng.standard_normal(4).astype(np.float32)
        w[f"{bn}.running_mean"] = rng.standard_normal(4).astype(np.float32)
        w[f"{bn}.running_var"] = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    before = {k: v.copy() for k, v in w.items()}
    new, nw = fold_bn(graph, w)
    assert [n.name for n in graph.nodes] == ["a.conv", "a.bn", "b.conv", "b.bn", "cat"]
    assert all(np.array_equal(w[k], before[k]) for k in w) and w.keys() == before.keys()
    assert [n.name for n in new.nodes] == ["a.conv", "b.conv", "b.bn", "cat"]
    assert new.by_name["a.conv"].attrs["bias"] is True
    assert new.by_name["b.conv"].inputs == ("a.conv",)
    assert "a.bn.weight" not in nw and "a.conv.bias" in nw and "b.bn.weight" in nw
    # the algebra: conv(x) then BN == folded conv(x)
    x = rng.standard_normal((3, 7)).astype(np.float64)
    y = w["a.conv.weight"][:, :, 0, 0].astype(np.float64) @ x
    s = w["a.bn.weight"] / np.sqrt(w["a.bn.running_var"] + 1e-3)
    ref = (y - w["a.bn.running_mean"][:, None]) * s[:, None] + w["a.bn.bias"][:, None]
    folded = nw["a.conv.weight"][:, :, 0, 0].astype(np.float64) @ x + nw["a.conv.bias"][:, None]
    np.testing.assert_allclose(folded, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL_SPECS)
def test_optimize_folds_bn_and_equals_unfolded(name):
    """--optimize (ONNX_PASSES), and every inference pass including those that add ops
    (slice_channels, bias_add), keep the function."""
    from archcompiler.passes.optimize import PASSES

    _, _, state = randomized(name)
    plain = ac.build(spec(name), backend="onnx", weights=state)
    size = 160 if spec(name).analysis.square_sizes.contains(160) else spec(name).input_shape[1]
    x = normal(1, 3, size, size, seed=3)
    want = run(plain, x)[0]
    tol = TOL * max(1.0, float(np.abs(want).max()))  # relative: ResNet-152's logits reach 1e3
    from archcompiler.passes.fold_bn import foldable_pairs

    graph = onnx_backend.export_graph(spec(name), None, False, None)[0]
    # BNs that follow a conv fold; DenseNet's pre-activation BNs (after a concat) stay
    unfoldable = sum(n.op == "batchnorm" for n in graph.nodes) - len(foldable_pairs(graph))
    muls = {"mul", "layer_scale", "silu", "gelu", "gelu_tanh", "groupnorm"}  # Mul of their own
    if any(n.op == "batchnorm" for n in graph.nodes):
        assert "BatchNormalization" in {n.op_type for n in plain.graph.node}
    for passes in (True, tuple(PASSES)):
        folded = ac.build(spec(name), backend="onnx", weights=state, optimize=passes)
        onnx.checker.check_model(folded, full_check=True)
        ops = {n.op_type for n in folded.graph.node}
        assert sum(n.op_type == "BatchNormalization" for n in folded.graph.node) == unfoldable
        assert ops <= set(onnx_backend.ONNX_OPS)
        if passes is True:
            if not any(n.op in muls for n in graph.nodes):
                assert "Mul" not in ops  # residual scales folded into the projections
            assert len(folded.graph.node) <= len(plain.graph.node)
        meta = {p.key: p.value for p in folded.metadata_props}
        assert "fold_bn" in meta["optimizations"]
        assert np.abs(run(folded, x)[0] - want).max() <= tol
    with pytest.raises(UsageError, match="unknown passes"):
        ac.build(spec(name), backend="onnx", weights=state, optimize=("fold_everything",))


# --- numbers: onnxruntime == torch backend == timm -------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SPECS)
def test_parity_onnxruntime_vs_torch_backend(name):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    _, _, state = randomized(name)
    model = ac.build(spec(name), backend="onnx", weights=state)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:]]
    x = normal(2, 3, *(dims if all(dims) else (299, 299)))  # fixed-size exports at their size
    (ours,) = run(model, x)
    module = ac.build(spec(name), backend="torch", weights=state).eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (2, spec(name).classes)
    diff = float(np.abs(ours - ref).max())
    print(f"\n{name}: max |onnxruntime - torch| = {diff:.3g} (logits up to {np.abs(ref).max():.3g})")
    assert diff <= TOL * max(1.0, float(np.abs(ref).max()))  # relative: ResNet-152's reach 1e3


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_SPECS)
def test_logits_equal_timm_from_timm_checkpoint(name, tmp_path):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    ref = timm.create_model(name, pretrained=False).eval()
    randomize_reference(ref, seed=2)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model, report, notes = onnx_backend.build_with_report(spec(name), weights=str(path))
    assert report.format == "timm" and not notes
    assert all(k.startswith("aux_logits.") for k in report.skipped)  # optional, never exported
    x = normal(2, 3, 299, 299, seed=4)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    (got,) = run(model, x)
    diff = float(np.abs(got - want).max())
    print(f"\n{name}: max |onnxruntime - timm| = {diff:.3g} (logits up to {np.abs(want).max():.3g})")
    assert diff <= TOL


def test_torchvision_style_checkpoint_with_aux_head_loads(tmp_path):
    """torchvision/timm `tv_in1k` inception_v3 checkpoints carry AuxLogits: accepted, and
    not exported."""
    from safetensors.numpy import save_file

    sp = spec("specs/variants/inception_v3_aux.yaml")
    _, _, state = spec_state(sp, seed=5)
    assert any(k.startswith("aux_logits") for k in state)
    path = tmp_path / "tv.safetensors"
    save_file(to_format(sp, state, "timm"), str(path))
    model, report, notes = onnx_backend.build_with_report(spec("inception_v3"), weights=str(path))
    assert report.format == "timm" and not notes
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert not any(k.startswith("aux") for k in inits)
    np.testing.assert_array_equal(inits["mixed_6e.branch0.0.conv.weight"],
                                  state["mixed_6e.branch0.0.conv.weight"])


def test_num_classes_keeps_a_fresh_head_and_says_so(tmp_path):
    from safetensors.numpy import save_file

    sp = spec("inception_v3")
    _, _, state = randomized("inception_v3")
    path = tmp_path / "v3.safetensors"
    save_file(to_format(sp, state, "timm"), str(path))
    with pytest.warns(UserWarning, match="kept fresh.*head.fc.weight"):
        model = ac.build(sp, backend="onnx", weights=str(path), num_classes=10)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["head.fc.weight"].shape == (10, 2048)
    np.testing.assert_array_equal(inits["conv2d_1a.conv.weight"], state["conv2d_1a.conv.weight"])
    assert dict((p.key, p.value) for p in model.metadata_props)["classes"] == "10"
    with pytest.raises(CheckpointError, match="no key of this checkpoint matches"):
        ac.build(spec("inception_v4"), backend="onnx", weights=str(path))
    bad = dict(state)
    bad["conv2d_1a.conv.weight"] = bad["conv2d_1a.conv.weight"][:16]
    del bad["conv2d_2a.conv.weight"]
    with pytest.raises(CheckpointError, match="(?s)missing.*conv2d_2a.*wrong shape.*conv2d_1a"):
        ac.build(sp, backend="onnx", weights=bad)


def test_seeded_weights_equal_torch_backend():
    """The same seed gives the same fresh weights in both backends."""
    pytest.importorskip("torch")
    model = seeded("inception_resnet_v1")
    module = ac.build(spec("inception_resnet_v1"), backend="torch", seed=0)
    sd = module.state_dict()
    for t in model.graph.initializer:
        if t.name in sd:
            np.testing.assert_array_equal(onnx.numpy_helper.to_array(t), sd[t.name].numpy())


# --- torch absent, CLI, atomic writes --------------------------------------------------------

def test_build_with_torch_hidden(tmp_path):
    """The whole ONNX path (timm-named safetensors read with numpy, lowering, writing)
    runs in a Python where `import torch` fails, and gives the same graph."""
    from safetensors.numpy import save_file

    sp = spec("inception_resnet_v2_paper")
    _, _, state = randomized("inception_resnet_v2_paper")
    ckpt = tmp_path / "w.safetensors"
    save_file(state, str(ckpt))
    out = tmp_path / "m.onnx"
    cmd = python_without("torch") + ["archcompiler.cli", "build", "inception_resnet_v2_paper",
                                     "--backend", "onnx", "--weights", str(ckpt), "-o", str(out)]
    probe = subprocess.run(python_without("torch") + ["archcompiler.cli", "list"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    x = normal(1, 3, 160, 160)
    want = run(ac.build(sp, backend="onnx", weights=state), x)[0]
    np.testing.assert_array_equal(run(model, x)[0], want)
    # and the interpreter really has no torch
    check = subprocess.run(python_without("torch") + ["torch"], capture_output=True, text=True)
    assert check.returncode != 0 and "hidden" in check.stderr


def test_cli_build_options(tmp_path, capsys):
    out = tmp_path / "v3.onnx"
    assert main(["build", "inception_v3", "--backend", "onnx", "-o", str(out), "--input-size",
                 "224", "--opset", "17", "--seed", "3", "--optimize"]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 224, 224]
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    meta = {p.key: p.value for p in model.metadata_props}
    assert "seed 3" in meta["weights"] and "folded" in meta["batchnorm"]
    assert main(["build", "inception_v3", "--backend", "onnx", "-o", str(out), "--opset", "5"]) == 2
    assert "opset" in capsys.readouterr().err


def test_cli_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "inception_resnet_v1", "--backend", "onnx"]) == 0
    assert (tmp_path / "inception_resnet_v1.onnx").is_file()


def _leftovers(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith(".archc-"))


def test_failed_build_leaves_existing_output_untouched(tmp_path, capsys):
    out = tmp_path / "v3.onnx"
    out.write_bytes(b"previous model")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)  # not a checkpoint
    assert main(["build", "inception_v3", "--backend", "onnx", "-o", str(out),
                 "--weights", str(bad)]) == 1
    assert "not a valid safetensors file" in capsys.readouterr().err
    assert out.read_bytes() == b"previous model"
    new = tmp_path / "new.onnx"
    assert main(["build", "inception_v3", "--backend", "onnx", "-o", str(new),
                 "--input-size", "32"]) == 1
    assert not new.exists()
    assert _leftovers(tmp_path) == []


def test_failure_while_writing_removes_the_partial_file(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    with pytest.raises(Exception):
        onnx_backend.save("not a model", str(out), external_data=False)
    with pytest.raises(Exception):
        onnx_backend.save("not a model", str(out), external_data=True)
    assert out.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_external_data_round_trip(tmp_path):
    """Models over 2 GB need ONNX external data; forced here on a small one."""
    model = seeded("inception_v3")
    out = tmp_path / "v3.onnx"
    written = onnx_backend.save(model, str(out), external_data=True)
    assert written == [str(out), str(out) + ".data"]
    assert out.stat().st_size < 10_000_000 < os.path.getsize(str(out) + ".data")
    onnx.checker.check_model(str(out), full_check=True)
    x = normal(1, 3, 96, 96)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    got = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_array_equal(got[0], run(model, x)[0])
    assert _leftovers(tmp_path) == []
    assert onnx_backend.tensor_bytes(model) < onnx_backend.EXTERNAL_DATA_BYTES  # auto: one file
