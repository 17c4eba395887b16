"""Issue 10: the vocabulary of the common classification CNNs (grouped / depthwise /
dilated / TF-SAME convs, activations, norms, add / multiply / layer scale / drop path),
each op on a tiny graph (shape, parameters vs numel, MACs vs torch's flop counter, torch
vs ONNX at opsets 17 and 18, fx tracing, generated source), and the bad inputs."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import archcompiler as ac  # noqa: E402
from archcompiler.errors import SpecError  # noqa: E402

from support import randomized_state, spec_state  # noqa: E402

torch.set_num_threads(2)


def tiny_spec(tmp_path, seq: str, input: str = "8x12x12", extra: str = "", name="tiny"):
    text = f"archc: 1\nname: {name}\ninput: {input}\n{extra}\nnetwork:\n  - name: body\n    seq: {seq}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return ac.load_spec(str(path))


def errors_of(tmp_path, seq, **kw) -> str:
    with pytest.raises(SpecError) as exc:
        tiny_spec(tmp_path, seq, **kw)
    return "\n".join(d.message for d in exc.value.diagnostics)


def check_tiny(sp, opsets=(17, 18), atol=1e-4):
    """shape, parameter count, MACs, torch = ONNX (opsets 17, 18), fx trace, generated code."""
    from torch.utils.flop_counter import FlopCounterMode

    a = sp.analysis
    _, _, state = spec_state(sp, seed=3)
    model = ac.build(sp, backend="torch", weights=state).eval()
    c, h, w = sp.input_shape
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            y = model(x)
    out_shape = a.shapes[a.graph.outputs[0]]
    assert tuple(y.shape[1:]) == tuple(out_shape)
    assert a.params == sum(p.numel() for p in model.parameters())
    assert 2 * a.macs * 2 == fc.get_total_flops()  # batch 2, 2 FLOPs per MAC
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(traced(x), y, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    for opset in opsets:
        proto = ac.build(sp, backend="onnx", weights=state, opset=opset)
        assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(got, y.numpy(), atol=atol, rtol=1e-4)
    return model, y


def check_source(sp, tmp_path, state=None):
    """The generated .py builds the same function."""
    import importlib.util

    from archcompiler.backends.torch.codegen import write_source

    _, _, state = spec_state(sp, seed=3)
    model = ac.build(sp, backend="torch", weights=state).eval()
    out = tmp_path / f"{sp.name}_gen.py"
    write_source(sp, str(out))
    mod_spec = importlib.util.spec_from_file_location(f"{sp.name}_gen", out)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    cls = next(v for k, v in vars(mod).items() if isinstance(v, type) and issubclass(v, torch.nn.Module)
               and v.__module__ == mod.__name__ and k.lower().replace("_", "") == sp.name.replace("_", ""))
    gen = cls().eval()
    gen.load_state_dict(model.state_dict())
    x = torch.randn(1, *sp.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), model(x), atol=1e-5, rtol=1e-5)


# --- convolutions ---------------------------------------------------------------------------

CONVS = {
    "grouped": "[conv 3x3 16 groups=4]",
    "depthwise": "[{op: conv, kernel: 3, stride: 2, padding: 1, out: 8, groups: depthwise}]",
    "depthwise_mult": "[conv 3x3 16 dw]",
    "dilated": "[{op: conv, kernel: 3, out: 8, dilation: 2}]",
    "dilated_valid": "[conv 3x3 8 dilation=3 valid]",
    "asymmetric": "[{op: conv, kernel: 3, stride: 2, out: 8, padding: [0, 1, 1, 0]}]",
    "tf_same_s2": "[conv 3x3/2 8 tf_same, conv 1x1/2 8 tf_same, conv 5x5/2 4 tf_same dilation=2]",
    "tf_same_s1": "[conv 4x4 8 tf_same]",
    "conv_layernorm": "[{op: conv, kernel: 2, stride: 2, out: 16, padding: valid, norm: layernorm, bias: true, act: none}]",
    "conv_groupnorm": "[{op: conv, kernel: 3, out: 16, norm: groupnorm, norm_groups: 4, act: silu}]",
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv_forms(case, tmp_path):
    check_tiny(tiny_spec(tmp_path, CONVS[case], input="8x13x11"))


def test_tf_same_at_run_time_equals_static(tmp_path):
    """TF SAME's padding depends on the size: the torch module computes it at run time, and
    ONNX (dynamic H, W) uses SAME_UPPER; both equal the static shapes at other sizes."""
    ort = pytest.importorskip("onnxruntime")
    sp = tiny_spec(tmp_path, CONVS["tf_same_s2"], input="8x13x11")
    _, _, state = spec_state(sp, seed=1)
    model = ac.build(sp, backend="torch", weights=state).eval()
    proto = ac.build(sp, backend="onnx", weights=state)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for h, w in ((16, 16), (17, 9), (9, 20)):
        x = torch.randn(1, 8, h, w)
        with torch.no_grad():
            y = model(x)
        assert tuple(y.shape[2:]) == (-(-(-(-(-(-h // 2)) // 2)) // 2), -(-(-(-(-(-w // 2)) // 2)) // 2))
        np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], y.numpy(), atol=1e-4)
        ref = tiny_spec(tmp_path, CONVS["tf_same_s2"], input=f"8x{h}x{w}", name=f"t{h}_{w}")
        assert ref.analysis.shapes[ref.analysis.graph.outputs[0]][1:] == tuple(y.shape[2:])


def test_conv_generated_source(tmp_path):
    sp = tiny_spec(tmp_path, "[conv 3x3 16 groups=4, conv 3x3/2 16 tf_same dw, "
                             "{op: conv, kernel: 3, out: 8, padding: [0, 2, 1, 1], act: hardswish}, "
                             "{op: conv, kernel: 3, out: 8, dilation: 2, act: gelu}]")
    check_source(sp, tmp_path)


def test_bad_convs_name_both_numbers(tmp_path):
    msg = errors_of(tmp_path, "[conv 3x3 16 groups=3]")
    assert "3 groups" in msg and "8 input channels" in msg
    msg = errors_of(tmp_path, "[conv 3x3 12 dw]")
    assert "8 groups" in msg and "12 output channels" in msg
    msg = errors_of(tmp_path, "[conv 3x3 8 dilation=5 valid]", input="8x6x6")
    assert "6x6" in msg and "11x11" in msg
    msg = errors_of(tmp_path, "[maxpool 3x3/2 tf_same]")
    assert "tf_same" in msg


# --- activations ------------------------------------------------------------------------------

ACTS = ["relu", "relu6", "leaky_relu", "leaky_relu 0.2", "silu", "gelu", "gelu_tanh", "sigmoid",
        "hardsigmoid", "hardswish", "tanh", "identity"]


@pytest.mark.parametrize("act", ACTS)
def test_activation_ops(act, tmp_path):
    model, _ = check_tiny(tiny_spec(tmp_path, f"[conv 3x3 8 noact, {act}]"), atol=2e-5)


@pytest.mark.parametrize("act", ["relu6", "leaky_relu=0.1", "silu", "gelu", "hardswish", "none"])
def test_activation_as_conv_and_residual_act(act, tmp_path):
    seq = (f"[{{op: conv, kernel: 3, out: 8, act: {act}}}, "
           f"{{residual: {{seq: [conv 3x3 8 act={act}], act: {act}}}}}]")
    check_tiny(tiny_spec(tmp_path, seq))


def test_relu_keeps_its_names(tmp_path):
    sp = tiny_spec(tmp_path, "[conv 3x3 8, relu]")
    ops = [(n.name, n.op) for n in sp.analysis.graph.nodes]
    assert ops == [("body.0.conv", "conv2d"), ("body.0.bn", "batchnorm"), ("body.0.act", "relu"),
                   ("body.1", "relu")]


def test_bad_act_is_located(tmp_path):
    msg = errors_of(tmp_path, "[{op: conv, kernel: 3, out: 8, act: swish}]")
    assert "swish" in msg


# --- norms --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq", [
    "[layernorm]", "[{op: layernorm, over: channels, eps: 1.0e-5}]",
    "[global_avgpool, {op: layernorm, over: vector}]", "[groupnorm 4]", "[groupnorm 1 eps=1e-6]",
])
def test_norms(seq, tmp_path):
    check_tiny(tiny_spec(tmp_path, seq), opsets=(17, 18, 21) if "group" in seq else (17, 18))


def test_bad_norms(tmp_path):
    msg = errors_of(tmp_path, "[global_avgpool, {op: layernorm, over: channels}]")
    assert "over: vector" in msg and "8" in msg
    msg = errors_of(tmp_path, "[{op: layernorm, over: vector}]")
    assert "8x12x12" in msg
    msg = errors_of(tmp_path, "[groupnorm 3]")
    assert "3 groups" in msg and "8 channels" in msg


# --- merges ---------------------------------------------------------------------------------

SE = "{multiply: [[], [global_avgpool keepdim, conv 1x1 4 bias nobn, conv 1x1 8 bias nobn act=sigmoid]], name: se}"


@pytest.mark.parametrize("seq", [
    "[{add: [[], [conv 3x3 8], [conv 1x1 8 noact]]}]",
    f"[{SE}]",
    "[layer_scale, {op: layer_scale, init: 0.5}]",
    "[{residual: {seq: [conv 3x3 8, layer_scale 0.1, drop_path 0.2]}}]",
    "[global_avgpool, layer_scale]",
])
def test_merges(seq, tmp_path):
    check_tiny(tiny_spec(tmp_path, seq))


def test_merge_source(tmp_path):
    sp = tiny_spec(tmp_path, f"[{{add: [[], [conv 3x3 8]]}}, {SE}, layernorm, groupnorm 2, "
                             "{residual: {seq: [conv 3x3 8, layer_scale 0.1, drop_path 0.2]}}]")
    check_source(sp, tmp_path)


def test_se_gate_does_not_count_as_depth(tmp_path):
    sp = tiny_spec(tmp_path, f"[conv 3x3 8, {SE}]")
    assert sp.analysis.layers == 1
    gates = [n.attrs["gates"] for n in sp.analysis.graph.nodes if n.op == "mul"]
    assert gates == [(1,)]


def test_bad_multiply_names_both_shapes(tmp_path):
    msg = errors_of(tmp_path, "[{multiply: [[], [conv 3x3/2 8 pad=1]]}]")
    assert "8x12x12" in msg and "8x6x6" in msg


def test_layer_scale_init_and_drop_path_training(tmp_path):
    sp = tiny_spec(tmp_path, "[{residual: {seq: [conv 3x3 8, layer_scale 0.25, drop_path 0.5], act: none}}]")
    model = ac.build(sp, backend="torch")
    gammas = [v for k, v in model.state_dict().items() if k.endswith("gamma")]
    assert len(gammas) == 1 and torch.all(gammas[0] == 0.25)
    x = torch.randn(64, 8, 12, 12)
    model.train()
    with torch.no_grad():
        y = model(x)
    # some samples got only the shortcut (x itself: act none), some the scaled branch
    same = [(y[i] == x[i]).all().item() for i in range(64)]
    assert 5 < sum(same) < 59
    model.eval()
    with torch.no_grad():
        ye = model(x)
    assert not any((ye[i] == x[i]).all().item() for i in range(64))
    proto = ac.build(sp, backend="onnx")
    assert {n.op_type for n in proto.graph.node} == {"Conv", "BatchNormalization", "Relu", "Mul", "Add"}


def test_drop_path_rate_from_i(tmp_path):
    extra = textwrap.dedent("""
        blocks:
          unit:
            params: [rate]
            residual: {seq: [conv 3x3 8, {op: drop_path, p: $rate}]}
    """)
    path = tmp_path / "dp.yaml"
    path.write_text("archc: 1\nname: dp\ninput: 8x12x12\n" + extra +
                    "network:\n  - {block: unit, name: s, repeat: 4, with: {rate: $(0.1 * i)}}\n")
    sp = ac.load_spec(str(path))
    ps = [n.attrs["p"] for n in sp.analysis.graph.nodes if n.op == "drop_path"]
    assert ps == pytest.approx([0.0, 0.1, 0.2, 0.3])


# --- --optimize ------------------------------------------------------------------------------

def test_optimize_folds_bn_into_grouped_and_keeps_different_siblings(tmp_path):
    seq = ("[{concat: [[conv 3x3 8 dw], [conv 3x3 8 groups=2], [conv 3x3 8 act=silu], "
           "[conv 3x3 8 dilation=2], [conv 3x3 8]]}]")
    sp = tiny_spec(tmp_path, seq)
    _, _, state = spec_state(sp, seed=2)
    x = torch.randn(2, 8, 12, 12)
    plain = ac.build(sp, backend="torch", weights=state).eval()
    opt = ac.build(sp, backend="torch", weights=state, optimize=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(opt(x), plain(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in opt.modules())
    convs = [m for m in opt.modules() if isinstance(m, torch.nn.Conv2d)]
    # nothing fuses: different activations (relu / silu), groups or dilations
    assert sorted((m.groups, m.dilation[0], m.out_channels) for m in convs) == [
        (1, 1, 8), (1, 1, 8), (1, 2, 8), (2, 1, 8), (8, 1, 8)]
    # equal windows, groups 1 and the same activation still fuse
    sp = tiny_spec(tmp_path, "[{concat: [[conv 3x3 8], [conv 3x3 8]]}]", name="fuse")
    _, _, state = spec_state(sp, seed=2)
    opt = ac.build(sp, backend="torch", weights=state, optimize=True).eval()
    assert [m.out_channels for m in opt.modules() if isinstance(m, torch.nn.Conv2d)] == [16]


ALL_OPS = ("[conv 3x3 16 groups=4 act=relu6, conv 3x3/2 16 tf_same dw act=leaky_relu=0.1, "
           "{op: conv, kernel: 3, out: 16, padding: [0, 2, 1, 1], act: hardswish}, "
           "{op: conv, kernel: 3, out: 16, dilation: 2, act: gelu_tanh, norm: groupnorm, norm_groups: 4}, "
           "gelu, silu, hardsigmoid, tanh, identity, leaky_relu, "
           "{add: [[], [conv 1x1 16]]}, {multiply: [[], [global_avgpool keepdim, conv 1x1 4 bias nobn, "
           "conv 1x1 16 bias nobn act=sigmoid]]}, layernorm, groupnorm 2, "
           "{residual: {seq: [conv 3x3 16, layer_scale 0.1, drop_path 0.2]}}, "
           "global_avgpool, {op: layernorm, over: vector}, layer_scale, sigmoid]")


def test_every_new_op_in_pt2_and_generated_source(tmp_path):
    """torch.export (dynamic batch) and the generated .py compute what the module does."""
    from archcompiler.backends.torch.export import export_program

    sp = tiny_spec(tmp_path, ALL_OPS, input="8x13x11")
    check_tiny(sp)
    check_source(sp, tmp_path)
    _, _, state = spec_state(sp, seed=3)
    model = ac.build(sp, backend="torch", weights=state).eval()
    program = export_program(model)
    x = torch.randn(3, 8, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "convnext_tiny", "densenet121"])
def test_generated_source_of_the_new_specs(name, tmp_path):
    check_source(ac.load_spec(name), tmp_path)
