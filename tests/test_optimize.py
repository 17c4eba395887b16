"""Inference-optimization passes: each keeps the function, applies where it must and
nowhere else (issue 6)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import archcompiler as ac  # noqa: E402
from archcompiler.backends.torch import build, load_numpy_state, prepare  # noqa: E402
from archcompiler.backends.torch.module import ArchcModel  # noqa: E402
from archcompiler.passes.optimize import PASSES, optimize_for_inference  # noqa: E402
from archcompiler.passes.shapes import infer_shapes  # noqa: E402
from archcompiler.weights import state_entries  # noqa: E402

from support import ALL_SPECS, randomized_state  # noqa: E402

torch.set_num_threads(2)


def run(graph, state, x):
    shapes, problems = infer_shapes(graph)
    assert not problems
    model = ArchcModel(graph, shapes, {}, None)
    own = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert own == set(state), sorted(own ^ set(state))[:5]
    load_numpy_state(model, state)
    with torch.no_grad():
        return model.eval()(x)


def tiny(tmp_path, body: str):
    (tmp_path / "t.yaml").write_text(textwrap.dedent(f"""\
        archc: 1
        name: tiny
        input: 8x9x9
        {textwrap.indent(textwrap.dedent(body), '        ').strip()}
        """))
    spec = ac.load_spec(str(tmp_path / "t.yaml"))
    graph, shapes = prepare(spec)
    return graph, randomized_state(state_entries(graph, shapes), seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SPECS)
def test_every_pass_keeps_every_spec_function(name):
    spec = ac.load_spec(name)
    graph, shapes = prepare(spec)
    state = randomized_state(state_entries(graph, shapes), seed=1)
    size = 139 if spec.analysis.square_sizes.contains(139) else spec.input_shape[1]  # BN-Inception: 223..230
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    want = run(graph, state, x)
    tol = 1e-4 * max(1.0, float(want.abs().max()))  # relative: ResNet-152's logits reach 1e3
    assert float(want.abs().max()) > 1.0
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    for pass_name in (*PASSES, None):
        passes = (pass_name,) if pass_name else tuple(PASSES)
        g2, s2 = optimize_for_inference(graph, state, passes=passes)
        assert s2 is not state
        got = run(g2, s2, x)
        assert float((want - got).abs().max()) <= tol, pass_name


def test_fold_bn_applies_only_to_a_conv_whose_sole_reader_is_the_bn(tmp_path):
    graph, state = tiny(tmp_path, """
        network:
          - {name: a, op: conv 3x3 8}
          - name: b
            concat: [[conv 1x1 4], [relu]]
        """)
    g2, s2 = optimize_for_inference(graph, state, passes=("fold_bn",))
    assert [n.op for n in g2.nodes].count("batchnorm") == 0
    assert "a.conv.bias" in s2 and "a.bn.weight" not in s2
    x = torch.randn(1, 8, 9, 9)
    assert float((run(graph, state, x) - run(g2, s2, x)).abs().max()) <= 1e-5
    # a conv after a pool folds too; nothing else changes
    graph2, state2 = tiny(tmp_path, """
        network:
          - name: a
            seq: [maxpool 3x3 same, {op: conv, kernel: 1, out: 8}]
        """)
    g3, _ = optimize_for_inference(graph2, state2, passes=("fold_bn",))
    assert [n.op for n in g3.nodes] == ["maxpool", "conv2d", "relu"]


def test_fold_bn_folds_a_standalone_bn_after_a_conv_and_nothing_it_cannot_prove(tmp_path):
    """BN-Inception's form: a biased conv, then a batchnorm written on its own. A BN first
    in the network (pre-activation: no conv before it) and a BN after a pool stay."""
    graph, state = tiny(tmp_path, """
        network:
          - name: pre
            seq: [{op: batchnorm, eps: 1.0e-5}, conv 3x3 8 bias nobn noact, {op: batchnorm, eps: 1.0e-5}, relu]
          - name: pooled
            seq: [maxpool 3x3 same, {op: batchnorm}]
        """)
    bns = [n.name for n in graph.nodes if n.op == "batchnorm"]
    assert bns == ["pre.0", "pre.2", "pooled.1"]
    g2, s2 = optimize_for_inference(graph, state, passes=("fold_bn",))
    assert [n.name for n in g2.nodes if n.op == "batchnorm"] == ["pre.0", "pooled.1"]
    assert "pre.2.weight" not in s2 and "pre.1.conv.bias" in s2
    x = torch.randn(2, 8, 9, 9, generator=torch.Generator().manual_seed(5))
    assert float((run(graph, state, x) - run(g2, s2, x)).abs().max()) <= 1e-5


def test_commute_pool_conv_moves_the_bias_after_a_pool_counting_zeros(tmp_path):
    graph, state = tiny(tmp_path, """
        network:
          - name: a
            seq: [avgpool 3x3 count_pad, conv 1x1 4 bias nobn noact]
        """)
    g2, s2 = optimize_for_inference(graph, state, passes=("commute_pool_conv",))
    assert [n.op for n in g2.nodes] == ["conv2d", "avgpool", "bias_add"]
    assert g2.nodes[0].inputs == ("input",) and not g2.nodes[0].attrs["bias"]
    x = torch.randn(2, 8, 9, 9)
    assert float((run(graph, state, x) - run(g2, s2, x)).abs().max()) <= 1e-5
    # the bias inside the conv would be wrong at the border (padded zeros count): check that
    wrong = dict(s2)
    conv = g2.nodes[0]
    g_wrong = g2.replace_nodes([conv.with_(attrs={**conv.attrs, "bias": True}), g2.nodes[1]])
    from dataclasses import replace as dc_replace

    g_wrong = dc_replace(g_wrong, outputs=(g2.nodes[1].name,), stages=())
    wrong[f"{conv.name}.bias"] = wrong.pop(f"{g2.nodes[2].name}.bias")
    diff = (run(graph, state, x) - run(g_wrong, wrong, x)).abs()
    assert float(diff[..., 1:-1, 1:-1].max()) <= 1e-5 < float(diff.max())


def test_commute_pool_conv_leaves_other_windows_alone(tmp_path):
    graph, state = tiny(tmp_path, """
        network:
          - name: a
            seq: [avgpool 3x3, conv 3x3 4]
        """)
    g2, _ = optimize_for_inference(graph, state, passes=("commute_pool_conv",))
    assert [n.op for n in g2.nodes] == [n.op for n in graph.nodes]


def test_fold_residual_scale(tmp_path):
    graph, state = tiny(tmp_path, """
        network:
          - name: r
            residual: {concat: [[conv 1x1 4], [conv 3x3 4]], project: conv 1x1 8 linear, scale: 0.3}
          - name: s
            residual: {concat: [[conv 1x1 4]], project: conv 1x1 8 linear, scale: 1.0}
        """)
    g2, s2 = optimize_for_inference(graph, state, passes=("fold_residual_scale",))
    scales = [n.attrs["scale"] for n in g2.nodes if n.op == "scale_add"]
    assert scales == [1.0, 1.0]
    np.testing.assert_allclose(s2["r.project.conv.weight"], 0.3 * state["r.project.conv.weight"], rtol=1e-6)
    np.testing.assert_array_equal(s2["s.project.conv.weight"], state["s.project.conv.weight"])
    x = torch.randn(1, 8, 9, 9)
    assert float((run(graph, state, x) - run(g2, s2, x)).abs().max()) <= 1e-5


def test_fuse_siblings_merges_same_window_convs_only(tmp_path):
    graph, state = tiny(tmp_path, """
        network:
          - name: b
            concat:
              - [conv 1x1 4]
              - [conv 1x1 6, conv 3x3 5]
              - [conv 3x3 3]
              - [conv 1x1 2 valid]
        """)
    g2, s2 = optimize_for_inference(graph, state, passes=("fuse_siblings",))
    convs = [n for n in g2.nodes if n.op == "conv2d"]
    fused = [n for n in convs if n.name.endswith("fused0")]
    assert len(fused) == 1 and fused[0].attrs["out_channels"] == 4 + 6 + 2
    assert s2[f"{fused[0].name}.weight"].shape == (12, 8, 1, 1)
    assert len(convs) == 3  # the fused 1x1, the 3x3 reading the input, the 3x3 after a 1x1
    x = torch.randn(2, 8, 9, 9)
    assert float((run(graph, state, x) - run(g2, s2, x)).abs().max()) <= 1e-5


def test_build_optimize_equals_plain_build():
    spec = ac.load_spec("inception_v3")
    graph, shapes = prepare(spec)
    state = randomized_state(state_entries(graph, shapes), seed=2)
    plain = build(spec, weights=state).eval()
    fast = build(spec, weights=state, optimize=True)
    assert not fast.training
    assert len(fast.state_dict()) < len(plain.state_dict())
    x = torch.randn(1, 3, 150, 150)
    with torch.no_grad():
        assert float((plain(x) - fast(x)).abs().max()) <= 1e-4
