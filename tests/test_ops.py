"""Tiny-graph tests for this round's ops and constructs: batchnorm, ceil-mode pools,
adaptive pools, global pools (flat and keepdim), flatten -> linear, the generalised
residual (identity / projection shortcut with `when`, optional project and scale, act
none), `$i` and `$in`, `$` kernels / strides / paddings, and the expression forms.

For each tiny network:
  (a) the analysis' stage shapes equal the torch module's actual stage outputs;
  (b) the analysis' parameter count equals the torch module's parameters (and a number
      worked out by hand);
  (c) the analysis' MACs equal torch's FlopCounterMode / 2 (conv and linear; pooling,
      BN, activations count 0 in both);
  (d) the ONNX graph (opsets 17 and 18) under onnxruntime equals the torch module, with
      the same randomised weights (BN running statistics included).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archcompiler as ac  # noqa: E402
from archcompiler.backends.torch import prepare  # noqa: E402
from archcompiler.weights import state_entries  # noqa: E402

from spec_helpers import archc, line_of, write_tree  # noqa: E402
from support import randomized_state  # noqa: E402

torch.set_num_threads(2)

OPSETS = (17, 18)
# the ops FlopCounterMode counts for a convolution or a fully connected layer
COUNTED = {"convolution", "addmm", "mm", "_convolution", "conv2d"}


# --- helpers ------------------------------------------------------------------------------

def write_spec(tmp_path, text: str, name: str = "s.yaml"):
    write_tree(tmp_path, {name: text})
    return tmp_path / name


def weights_for(spec, seed: int = 0) -> dict:
    """Randomised weights in our names (BN gamma/beta and running statistics too); None
    for a network without any."""
    return randomized_state(state_entries(*prepare(spec)), seed) or None


def normal(*shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def stage_outputs(model, spec, x) -> tuple[dict, "torch.Tensor"]:
    """{stage name: the output shape (without batch) its module actually produced}."""
    got: dict = {}
    hooks = []
    for st in spec.analysis.stages:
        mod = model.get_submodule(st.name)

        def hook(_m, _i, out, name=st.name):
            got[name] = tuple(out.shape[1:])

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return got, y


def apply(model, path: str, x):
    """Run the submodule at `path` on x; an intermediate container (a conv's conv/bn/act,
    no forward of its own) runs its children in order."""
    mod = model.get_submodule(path)
    if type(mod).forward is not torch.nn.Module.forward:
        return mod(x)
    for name, _ in mod.named_children():
        x = apply(model, f"{path}.{name}", x)
    return x


def torch_flops(model, x) -> dict[str, int]:
    """FlopCounterMode's per-op FLOPs of one eval forward (op name -> flops)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return {str(k).split(".")[-1]: int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}


def ort_run(model, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    return out


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    diff = float(np.abs(got - want).max())
    assert diff <= tol, f"max abs diff {diff} > {tol}"


def check_network(tmp_path, text: str, *, params: int | None = None, macs: int | None = None,
                  stages: dict | None = None, onnx_input_size=None, seed: int = 0,
                  onnx_sizes=()):
    """Runs checks (a)-(d) on a tiny spec; returns (spec, eval torch model, weights).

    params / macs / stages: numbers worked out by hand, checked against the analysis.
    onnx_input_size: passed to the ONNX build (overlapping adaptive pooling needs it).
    onnx_sizes: more square input sizes at which the (dynamic) ONNX graph must equal torch.
    """
    spec = ac.load_spec(str(write_spec(tmp_path, text)))
    a = spec.analysis
    w = weights_for(spec, seed)
    model = ac.build(spec, backend="torch", weights=w).eval()
    c, h, wd = spec.input_shape
    x1 = torch.from_numpy(normal(1, c, h, wd, seed=seed + 1))

    # (a) stage shapes: analysis vs what torch computed
    got, y = stage_outputs(model, spec, x1)
    assert got == {st.name: tuple(st.shape) for st in a.stages}
    assert tuple(y.shape[1:]) == tuple(a.output_shape)
    if stages is not None:
        assert {k: tuple(st.shape) for st in a.stages for k in [st.name] if k in stages} == stages

    # (b) parameters
    assert a.params == sum(p.numel() for p in model.parameters())
    if params is not None:
        assert a.params == params

    # (c) MACs: conv + linear, as torch's flop counter sees them (batch 1)
    flops = torch_flops(model, x1)
    counted = sum(v for k, v in flops.items() if k in COUNTED)
    assert counted % 2 == 0
    assert a.macs == counted // 2, flops
    if macs is not None:
        assert a.macs == macs

    # (d) ONNX (opset 17 and 18) under onnxruntime = torch, same weights
    x2 = normal(2, c, h, wd, seed=seed + 2)
    with torch.no_grad():
        want = model(torch.from_numpy(x2)).numpy()
    assert float(np.abs(want).max()) > 0
    for opset in OPSETS:
        om = ac.build(spec, backend="onnx", weights=w, opset=opset, input_size=onnx_input_size)
        close(ort_run(om, x2), want)
        for n in onnx_sizes:
            xn = normal(1, c, n, n, seed=seed + n)
            with torch.no_grad():
                close(ort_run(om, xn), model(torch.from_numpy(xn)).numpy())
    return spec, model, w


def conv_params(cin, cout, k, bias=False, bn=True) -> int:
    kh, kw = (k, k) if isinstance(k, int) else k
    return cout * cin * kh * kw + (cout if bias else 0) + (2 * cout if bn else 0)


def conv_macs(cin, cout, k, hout, wout) -> int:
    kh, kw = (k, k) if isinstance(k, int) else k
    return cout * hout * wout * cin * kh * kw


# --- batchnorm ----------------------------------------------------------------------------

BATCHNORM = """\
archc: 1
name: bn
input: 3x16x16
network:
  - {name: stem, seq: [conv 3x3/2 8 pad=1 bias nobn noact, {op: batchnorm, eps: 1.0e-5}, relu]}
  - {name: alone, op: batchnorm}
  - {name: pre, seq: [batchnorm eps=0.01, relu, conv 3x3 4]}
head: [global_avgpool, linear 5]
"""


def test_batchnorm_standalone_and_after_a_biased_conv(tmp_path):
    params = (conv_params(3, 8, 3, bias=True, bn=False) + 2 * 8   # stem: biased conv, BN
              + 2 * 8                                              # alone
              + 2 * 8 + conv_params(8, 4, 3)                       # pre: BN, conv+BN
              + 4 * 5 + 5)                                         # linear
    macs = conv_macs(3, 8, 3, 8, 8) + conv_macs(8, 4, 3, 8, 8) + 4 * 5
    spec, model, w = check_network(tmp_path, BATCHNORM, params=params, macs=macs,
                                   stages={"stem": (8, 8, 8), "alone": (8, 8, 8), "pre": (4, 8, 8)})
    bns = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    # the standalone BNs carry their own eps (string and mapping form) or defaults.conv's
    assert bns["stem.1"].eps == pytest.approx(1e-5)
    assert bns["alone"].eps == pytest.approx(1e-3)
    assert bns["pre.0"].eps == pytest.approx(1e-2)
    # the biased conv keeps its bias and has no BN of its own
    assert model.get_submodule("stem.0.conv").bias is not None
    assert not any(n.startswith("stem.0.") for n in bns)
    # the randomised running statistics reached the module (not fresh 0/1)
    assert torch.allclose(bns["alone"].running_var, torch.from_numpy(w["alone.running_var"]))
    assert float((bns["alone"].running_var - 1).abs().max()) > 0.01
    # no flop for BN/ReLU/pool in torch's counter either
    assert set(torch_flops(model, torch.zeros(1, 3, 16, 16))) <= COUNTED


def test_batchnorm_alone_equals_torch_functional(tmp_path):
    """The standalone BN computes (x - mean) / sqrt(var + eps) * gamma + beta (eval)."""
    text = """\
archc: 1
name: bn1
input: 4x5x5
network:
  - {name: b, op: "batchnorm eps=0.25"}
"""
    spec = ac.load_spec(str(write_spec(tmp_path, text)))
    w = weights_for(spec, seed=3)
    model = ac.build(spec, backend="torch", weights=w).eval()
    x = torch.from_numpy(normal(2, 4, 5, 5, seed=4))
    want = torch.nn.functional.batch_norm(
        x, torch.from_numpy(w["b.running_mean"]), torch.from_numpy(w["b.running_var"]),
        torch.from_numpy(w["b.weight"]), torch.from_numpy(w["b.bias"]), False, 0.0, 0.25)
    with torch.no_grad():
        close(model(x).numpy(), want.numpy())
    for opset in OPSETS:
        om = ac.build(spec, backend="onnx", weights=w, opset=opset)
        close(ort_run(om, x.numpy()), want.numpy())
    assert spec.analysis.params == 8 and spec.analysis.macs == 0


# --- ceil-mode pooling -------------------------------------------------------------------

# (kernel, stride, pad): (3, 2, 1) is GoogLeNet-like; (2, 2, 1) and (3, 3, 1) make torch's
# "drop a last window that would start in the padding" rule matter at some sizes
CEIL_CASES = [(3, 2, 0), (3, 2, 1), (2, 2, 1), (3, 3, 1)]
CEIL_SIZES = range(4, 13)
TINY_SIZES = range(1, 4)  # where torch refuses some windows outright


def _pool_spec(op: str, k: int, s: int, p: int, extra: str = "") -> str:
    return f"""\
archc: 1
name: pool
input: 3x12x12
network:
  - {{name: p, op: {op} {k}x{k}/{s} pad={p} ceil{extra}}}
"""


def _naive_ceil(n, k, s, p) -> int:
    return math.ceil((n + 2 * p - k) / s) + 1


def test_ceil_cases_include_the_dropped_window():
    """The cases below must exercise the rule: torch's size differs from the naive one."""
    differ = [(k, s, p, n) for k, s, p in CEIL_CASES for n in CEIL_SIZES
              if torch.nn.MaxPool2d(k, s, p, ceil_mode=True)(torch.zeros(1, 1, n, n)).shape[-1]
              != _naive_ceil(n, k, s, p)]
    assert differ  # e.g. (2, 2, 1) at odd sizes


@pytest.mark.parametrize("op,extra", [("maxpool", ""), ("avgpool", " count_pad"),
                                      ("avgpool", " exclude_pad")])
@pytest.mark.parametrize("k,s,p", CEIL_CASES)
def test_ceil_pool_shapes_equal_torch_at_every_size(tmp_path, op, extra, k, s, p):
    path = write_spec(tmp_path, _pool_spec(op, k, s, p, extra))
    spec = ac.load_spec(str(path))
    w = weights_for(spec)
    model = ac.build(spec, backend="torch", weights=w).eval()
    ref_cls = torch.nn.MaxPool2d if op == "maxpool" else torch.nn.AvgPool2d
    kw = {} if op == "maxpool" else {"count_include_pad": extra == " count_pad"}
    ref = ref_cls(k, s, p, ceil_mode=True, **kw)
    onnx_models = [ac.build(spec, backend="onnx", weights=w, opset=o) for o in OPSETS]
    for n in CEIL_SIZES:
        x = torch.from_numpy(normal(1, 3, n, n, seed=n))
        want = ref(x)
        ours = ac.load_spec(str(path), input_size=(n, n)).analysis.output_shape
        assert tuple(ours) == tuple(want.shape[1:]), f"size {n}"
        with torch.no_grad():
            got = model(x)
        assert torch.equal(got, want) if op == "maxpool" else torch.allclose(got, want, atol=1e-6)
        for om in onnx_models:
            close(ort_run(om, x.numpy()), want.numpy())
    for n in TINY_SIZES:  # torch refuses a map that would vanish; so does the analysis
        try:
            want = tuple(ref(torch.zeros(1, 3, n, n)).shape[1:])
        except RuntimeError:
            with pytest.raises(ac.SpecError):
                ac.load_spec(str(path), input_size=(n, n))
        else:
            assert tuple(ac.load_spec(str(path), input_size=(n, n)).analysis.output_shape) == want


def test_ceil_pool_in_a_network(tmp_path):
    text = """\
archc: 1
name: ceilnet
input: 3x15x15
network:
  - {name: c1, op: conv 3x3 8}
  - {name: p1, op: maxpool 3x3/2 ceil}
  - {name: c2, op: conv 1x1 6}
  - {name: p2, op: avgpool 2x2/2 pad=1 ceil count_pad}
head: [global_avgpool, linear 3]
"""
    # 15 -> maxpool ceil: ceil(12/2)+1 = 7 -> avgpool 2/2 pad 1: ceil(8/2)+1 = 5, but the
    # 5th window would start at 8 >= 7 + 1: dropped -> 4
    check_network(tmp_path, text, stages={"p1": (8, 7, 7), "p2": (6, 4, 4)},
                  params=conv_params(3, 8, 3) + conv_params(8, 6, 1) + 6 * 3 + 3,
                  macs=conv_macs(3, 8, 3, 15, 15) + conv_macs(8, 6, 1, 7, 7) + 6 * 3,
                  onnx_sizes=(13, 16))


# --- adaptive pooling --------------------------------------------------------------------

def _adaptive_spec(op: str, size: int) -> str:
    return f"""\
archc: 1
name: adapt
input: 3x{size}x{size}
network:
  - {{name: c, op: conv 3x3 4}}
  - {{name: a, op: {op} 4x4}}
head: [flatten, linear 5]
"""


@pytest.mark.parametrize("op", ["adaptive_avgpool", "adaptive_maxpool"])
def test_adaptive_pool_overlapping_windows(tmp_path, op):
    """14x14 -> 4x4: windows [0,4) [3,7) [7,11) [10,14) overlap (torch's rule)."""
    params = conv_params(3, 4, 3) + 4 * 16 * 5 + 5
    macs = conv_macs(3, 4, 3, 14, 14) + 64 * 5
    spec, model, w = check_network(tmp_path, _adaptive_spec(op, 14), params=params, macs=macs,
                                   stages={"a": (4, 4, 4)}, onnx_input_size=(14, 14))
    # the pooled map equals torch's own adaptive pooling of the conv's output
    x = torch.from_numpy(normal(1, 3, 14, 14, seed=9))
    fn = getattr(torch.nn.functional, op.replace("pool", "_pool2d"))
    with torch.no_grad():
        feats = apply(model, "c", x)
        got, _ = stage_outputs(model, spec, x)
        want = fn(feats, 4)
        assert got["a"] == tuple(want.shape[1:])
        # check the values through the head's linear: same logits from torch's pooling
        lin = model.get_classifier()
        close(model(x).numpy(), lin(torch.flatten(want, 1)).numpy())
    # without --input-size the ONNX export is fixed at the spec's own size (the windows
    # depend on the map size): H and W are numbers, not symbols
    om = ac.build(spec, backend="onnx", weights=w)
    dims = [d.dim_value or d.dim_param for d in om.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 14, 14]


@pytest.mark.parametrize("op", ["adaptive_avgpool", "adaptive_maxpool"])
def test_adaptive_pool_equal_windows(tmp_path, op):
    """8x8 -> 4x4: 2x2 windows, stride 2."""
    spec, model, w = check_network(tmp_path, _adaptive_spec(op, 8),
                                   params=conv_params(3, 4, 3) + 64 * 5 + 5,
                                   macs=conv_macs(3, 4, 3, 8, 8) + 64 * 5,
                                   stages={"a": (4, 4, 4)}, onnx_input_size=(8, 8))
    # an export without input_size either refuses (a fixed size is needed) or, if it keeps
    # H and W dynamic, must still be right at another accepted size (12: 3x3 windows)
    for opset in OPSETS:
        try:
            om = ac.build(spec, backend="onnx", weights=w, opset=opset)
        except ac.SpecError as exc:
            assert "needs a fixed input size" in str(exc)
            continue
        fixed = [d.dim_value for d in om.graph.input[0].type.tensor_type.shape.dim][2:]
        for n in ((8,) if all(fixed) else (8, 12, 10)):
            x = normal(1, 3, n, n, seed=n)
            with torch.no_grad():
                close(ort_run(om, x), model(torch.from_numpy(x)).numpy())


def test_adaptive_pool_counts_as_a_layer(tmp_path):
    spec = ac.load_spec(str(write_spec(tmp_path, _adaptive_spec("adaptive_avgpool", 14))))
    # conv 1 + adaptive pool 1 + linear 1 (flatten 0)
    assert spec.analysis.layers == 3


# --- global pooling, flatten -------------------------------------------------------------

def test_global_avgpool_keepdim_and_global_maxpool(tmp_path):
    text = """\
archc: 1
name: glob
input: 3x14x14
network:
  - {name: c, op: conv 3x3/2 8 valid}
  - name: se
    concat:
      - [global_avgpool keepdim, {op: conv, kernel: 1, out: 4, norm: none, act: none, bias: true}]
      - [{op: global_maxpool, keepdim: true}]
head: [global_maxpool, linear 3]
"""
    # 14 -> 6; se: 4x1x1 ++ 8x1x1 = 12x1x1; head: max -> 12 -> 3
    spec, model, _ = check_network(
        tmp_path, text, stages={"c": (8, 6, 6), "se": (12, 1, 1), "head": (3,)},
        params=conv_params(3, 8, 3) + (8 * 4 + 4) + 12 * 3 + 3,
        macs=conv_macs(3, 8, 3, 6, 6) + 8 * 4 + 12 * 3, onnx_sizes=(9, 20))
    x = torch.from_numpy(normal(1, 3, 14, 14, seed=5))
    with torch.no_grad():
        feats = apply(model, "c", x)
        got, _ = stage_outputs(model, spec, x)
    # the max branch is the map's max per channel, kept as Cx1x1
    want_max = torch.amax(feats, dim=(2, 3), keepdim=True)
    with torch.no_grad():
        se = model.get_submodule("se")(feats)
    assert torch.equal(se[:, 4:], want_max)


def test_global_maxpool_flat(tmp_path):
    text = """\
archc: 1
name: gmax
input: 3x10x10
network:
  - {name: c, op: conv 3x3 6}
  - {name: g, op: global_maxpool}
head: [linear 2]
"""
    check_network(tmp_path, text, stages={"g": (6,)},
                  params=conv_params(3, 6, 3) + 6 * 2 + 2,
                  macs=conv_macs(3, 6, 3, 10, 10) + 12, onnx_sizes=(7,))


FLATTEN = """\
archc: 1
name: flat
input: 3x8x8
network:
  - {name: c, op: conv 3x3/2 4 valid}
  - {name: f, op: flatten}
head: [linear 5]
"""


def test_flatten_then_linear(tmp_path):
    # 8 -> (8-3)//2+1 = 3; flatten 4*3*3 = 36; linear 36 -> 5
    spec, model, w = check_network(tmp_path, FLATTEN, stages={"c": (4, 3, 3), "f": (36,)},
                                   params=conv_params(3, 4, 3) + 36 * 5 + 5,
                                   macs=conv_macs(3, 4, 3, 3, 3) + 36 * 5)
    x = torch.from_numpy(normal(1, 3, 8, 8, seed=7))
    with torch.no_grad():
        feats = apply(model, "c", x)
        close(model(x).numpy(), model.get_classifier()(feats.reshape(1, -1)).numpy())


def test_flatten_fixes_the_accepted_sizes(tmp_path):
    """The linear after flatten fixes the map: only the sizes torch can run are accepted."""
    spec = ac.load_spec(str(write_spec(tmp_path, FLATTEN)))
    conv = torch.nn.Conv2d(3, 4, 3, stride=2)
    lin = torch.nn.Linear(36, 5)
    runs = []
    for n in range(1, 40):
        try:
            lin(torch.flatten(conv(torch.zeros(1, 3, n, n)), 1))
            runs.append(n)
        except RuntimeError:
            pass
    assert runs == [7, 8]
    hs, ws = spec.analysis.sizes
    assert [n for n in range(1, 40) if hs.contains(n)] == runs
    assert [n for n in range(1, 40) if ws.contains(n)] == runs
    model = ac.build(spec, backend="torch")
    with pytest.raises(ValueError, match="7, 8"):
        model(torch.zeros(1, 3, 9, 9))


# --- the generalised residual -------------------------------------------------------------

def test_residual_identity_shortcut(tmp_path):
    text = """\
archc: 1
name: resid
input: 3x12x12
network:
  - {name: stem, op: conv 3x3 8}
  - name: r
    residual:
      seq: [conv 3x3 8, conv 3x3 8 noact]
head: [global_avgpool, linear 4]
"""
    spec, model, w = check_network(
        tmp_path, text, stages={"r": (8, 12, 12)},
        params=conv_params(3, 8, 3) + 2 * conv_params(8, 8, 3) + 8 * 4 + 4,
        macs=conv_macs(3, 8, 3, 12, 12) + 2 * conv_macs(8, 8, 3, 12, 12) + 32)
    # y = relu(x + body(x)), checked with the module's own layers
    x = torch.from_numpy(normal(1, 3, 12, 12, seed=3))
    with torch.no_grad():
        s = apply(model, "stem", x)
        body = apply(model, "r.1", apply(model, "r.0", s))
        close(model.get_submodule("r")(s).numpy(), torch.relu(s + body).numpy())
    assert not [k for k in model.state_dict() if "shortcut" in k]


BOTTLENECK = """\
archc: 1
name: resnetlet
input: 3x16x16
blocks:
  bottleneck:
    params: {width: 4, stride: 1}
    residual:
      seq: [conv 1x1 $width, conv 3x3/$stride $width pad=1, conv 1x1 $(4 * width) noact]
      shortcut:
        seq: [conv 1x1/$stride $(4 * width) valid noact]
        when: $(stride != 1 or in != 4 * width)
network:
  - {name: stem, op: conv 3x3 8}
  - {block: bottleneck, name: layer, repeat: 3, with: {width: 4, stride: $(2 if i == 0 else 1)}}
head: [global_avgpool, linear 3]
"""


def test_residual_projection_shortcut_with_when_and_i(tmp_path):
    """Copy 0 ($i == 0) strides and changes width: projection; copies 1, 2: identity."""
    block = lambda cin: (conv_params(cin, 4, 1) + conv_params(4, 4, 3)  # noqa: E731
                         + conv_params(4, 16, 1))
    params = (conv_params(3, 8, 3) + block(8) + conv_params(8, 16, 1)
              + 2 * block(16) + 16 * 3 + 3)
    macs = (conv_macs(3, 8, 3, 16, 16)
            + conv_macs(8, 4, 1, 16, 16) + conv_macs(4, 4, 3, 8, 8) + conv_macs(4, 16, 1, 8, 8)
            + conv_macs(8, 16, 1, 8, 8)
            + 2 * (conv_macs(16, 4, 1, 8, 8) + conv_macs(4, 4, 3, 8, 8) + conv_macs(4, 16, 1, 8, 8))
            + 48)
    spec, model, w = check_network(tmp_path, BOTTLENECK, params=params, macs=macs,
                                   stages={"layer": (16, 8, 8)}, onnx_sizes=(9, 32))
    keys = model.state_dict().keys()
    assert any(k.startswith("layer.0.shortcut.") for k in keys)
    assert not any(k.startswith(("layer.1.shortcut", "layer.2.shortcut")) for k in keys)
    assert model.get_submodule("layer.0.1.conv").stride == (2, 2)
    assert model.get_submodule("layer.1.1.conv").stride == (1, 1)
    assert model.get_submodule("layer.0.shortcut.0.conv").stride == (2, 2)


def test_residual_project_scale_and_act_none(tmp_path):
    text = """\
archc: 1
name: irlet
input: 3x9x9
blocks:
  res:
    params: {scale: 0.25}
    residual:
      concat:
        - [conv 1x1 4]
        - [conv 1x1 4, conv 3x3 6]
      project: conv 1x1 $in linear
      scale: $scale
      act: none
network:
  - {name: stem, op: conv 3x3 8}
  - {block: res, name: r}
head: [global_avgpool, linear 2]
"""
    params = (conv_params(3, 8, 3) + conv_params(8, 4, 1) + conv_params(8, 4, 1)
              + conv_params(4, 6, 3) + conv_params(10, 8, 1, bias=True, bn=False) + 8 * 2 + 2)
    macs = (conv_macs(3, 8, 3, 9, 9) + 2 * conv_macs(8, 4, 1, 9, 9) + conv_macs(4, 6, 3, 9, 9)
            + conv_macs(10, 8, 1, 9, 9) + 16)
    spec, model, w = check_network(tmp_path, text, params=params, macs=macs,
                                   stages={"r": (8, 9, 9)}, onnx_sizes=(5,))
    # y = x + 0.25 * project(body(x)), no activation: negative values survive
    x = torch.from_numpy(normal(1, 3, 9, 9, seed=8))
    with torch.no_grad():
        s = apply(model, "stem", x)
        b0 = apply(model, "r.branch0", s)
        b1 = apply(model, "r.branch1", s)
        proj = apply(model, "r.project", torch.cat([b0, b1], 1))
        out = model.get_submodule("r")(s)
    close(out.numpy(), (s + 0.25 * proj).numpy())
    assert float(out.min()) < 0
    assert "r.act" not in dict(model.named_modules())


def test_residual_without_project(tmp_path):
    text = """\
archc: 1
name: plain
input: 4x6x6
network:
  - name: r
    residual: {seq: [conv 3x3 4 noact], scale: 0.5}
"""
    check_network(tmp_path, text, params=conv_params(4, 4, 3), macs=conv_macs(4, 4, 3, 6, 6),
                  stages={"r": (4, 6, 6)})


# --- $in, $ kernels, expressions -----------------------------------------------------------

def test_in_inside_blocks_and_a_nested_block_sees_its_own_input(tmp_path):
    text = """\
archc: 1
name: inner_in
input: 3x8x8
width: 1.0
blocks:
  inner:
    seq: [conv 1x1 $(in * 2)]
  outer:
    seq: [conv 1x1 6, {block: inner}, conv 1x1 $in]
network:
  - {name: stem, op: conv 3x3 5}
  - {block: outer}
head: [global_avgpool, linear 2]
"""
    # outer's input: 5; conv -> 6; inner sees 6 -> 12; conv 1x1 $in -> 5 (outer's input)
    params = (conv_params(3, 5, 3) + conv_params(5, 6, 1) + conv_params(6, 12, 1)
              + conv_params(12, 5, 1) + 5 * 2 + 2)
    spec, model, _ = check_network(tmp_path, text, params=params, stages={"outer": (5, 8, 8)})
    assert model.get_submodule("outer.1.0.conv").out_channels == 12


def test_kernel_stride_padding_as_expressions(tmp_path):
    text = """\
archc: 1
name: exprwin
input: 3x16x16
params: {k: 3, s: 2}
blocks:
  down:
    params: {kk: 5, ss: 1}
    seq:
      - conv $(kk)x$(kk)/$ss 6 pad=$(kk // 2)
      - {op: maxpool, kernel: $(kk - 2), stride: $(ss + 1), padding: $(kk // 4)}
      - avgpool $(kk-2)x$(kk-2)/$ss pad=1 ceil
network:
  - {name: c, op: "conv $(k)x$(k)/$s 8 pad=$(k // 2)"}
  - {block: down, with: {kk: $(k + 2), ss: $(s - 1)}}
head: [global_avgpool, linear 2]
"""
    # c: 16 -> (16+2-3)//2+1 = 8
    # down (kk 5, ss 1): conv 5x5/1 pad 2: 8; maxpool 3/2 pad 1: (8+2-3)//2+1 = 4;
    # avgpool 3/1 pad 1 ceil: 4
    params = conv_params(3, 8, 3) + conv_params(8, 6, 5) + 6 * 2 + 2
    macs = conv_macs(3, 8, 3, 8, 8) + conv_macs(8, 6, 5, 8, 8) + 12
    spec, model, _ = check_network(tmp_path, text, params=params, macs=macs,
                                   stages={"c": (8, 8, 8), "down": (6, 4, 4)}, onnx_sizes=(13,))
    conv = model.get_submodule("down.0.conv")
    assert (conv.kernel_size, conv.stride, conv.padding) == ((5, 5), (1, 1), (2, 2))
    pool = model.get_submodule("down.1")
    assert (pool.kernel_size, pool.stride, pool.padding) in (((3, 3), (2, 2), (1, 1)), (3, 2, 1))


@pytest.mark.parametrize("c,want", [
    # out = max(4, c // 4) ; min(c, 6) ; (8 if c > 10 and not (c == 12) else 4) ;
    # extra conv kept when (c >= 16 or c < 2)
    (12, (4, 6, 4, False)),
    (16, (4, 6, 8, True)),
    (40, (10, 6, 8, True)),
    (11, (4, 6, 8, False)),
    (1, (4, 1, 4, True)),
])
def test_expression_forms(tmp_path, c, want):
    text = f"""\
archc: 1
name: exprs
input: 3x6x6
params: {{c: {c}}}
network:
  - name: s
    concat:
      - ["conv 1x1 $(max(4, c // 4))"]     # quoted: a comma in a YAML flow list
      - ["conv 1x1 $(min(c, 6))"]
      - ["conv 1x1 $(8 if c > 10 and not (c == 12) else 4)"]
  - name: t
    seq:
      - {{op: conv, kernel: 1, out: 3, when: $(c >= 16 or c < 2)}}
      - {{op: conv, kernel: 1, out: 2, when: $(not (c >= 16 or c < 2))}}
head: [global_avgpool, linear 2]
"""
    a_, b_, d_, extra = want
    width = a_ + b_ + d_
    tout = 3 if extra else 2
    params = (conv_params(3, a_, 1) + conv_params(3, b_, 1) + conv_params(3, d_, 1)
              + conv_params(width, tout, 1) + tout * 2 + 2)
    check_network(tmp_path, text, params=params, stages={"s": (width, 6, 6), "t": (tout, 6, 6)})


# --- accepted input sizes: floor-mode conv concatenated with a ceil-mode pool -------------

REDUCTIONS = """\
archc: 1
name: reductions
input: 3x32x32
blocks:
  red:
    params: [c]
    concat:
      - [conv 3x3/2 $c pad=1]
      - [maxpool 3x3/2 ceil]
network:
  - {name: stem, op: conv 3x3 4}
  - {block: red, name: r1, with: {c: 4}}
  - {block: red, name: r2, with: {c: 4}}
head: [global_avgpool, linear 2]
"""


class _Reference(torch.nn.Module):
    """REDUCTIONS written directly in torch (no input check of ours)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
                                          torch.nn.Conv2d(8, 4, 3, stride=2, padding=1)])
        self.pool = torch.nn.MaxPool2d(3, 2, ceil_mode=True)

    def forward(self, x):
        x = self.stem(x)
        for conv in self.convs:
            x = torch.cat([conv(x), self.pool(x)], 1)
        return x


def _contains(rule: dict, n: int) -> bool:
    if "sizes" in rule:
        return n in rule["sizes"]
    if n < rule["min"]:
        return False
    return "step" not in rule or n % rule["step"] in rule["residues"]


def test_validate_json_input_sizes_equal_what_torch_runs(tmp_path):
    path = write_spec(tmp_path, REDUCTIONS)
    ref = _Reference().eval()
    runs = []
    for n in range(1, 81):
        try:
            with torch.no_grad():
                ref(torch.zeros(1, 3, n, n))
            runs.append(n)
        except RuntimeError:
            pass
    assert runs and len(runs) < 80 // 2  # the rule bites: not every size runs
    r = archc("validate", "--json", str(path))
    assert r.rc == 0, r.err
    (report,) = json.loads(r.out)
    sizes = report["input_sizes"]
    for axis in ("height", "width"):
        assert [n for n in range(1, 81) if _contains(sizes[axis], n)] == runs
    # outside the set: the torch model refuses, naming the accepted sizes, and so does
    # validate --input-size
    bad = next(n for n in range(28, 81) if n not in runs)
    good = next(n for n in range(28, 81) if n in runs)
    model = ac.build(ac.load_spec(str(path)), backend="torch").eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, good, good))
        with pytest.raises(ValueError) as exc:
            model(torch.zeros(1, 3, bad, bad))
    msg = str(exc.value)
    assert f"{bad}x{bad}" in msg
    rule = sizes["height"]
    if "step" in rule:
        assert f"% {rule['step']}" in msg
    r = archc("validate", "--input-size", str(bad), str(path))
    assert r.rc == 1
    assert f"{bad}x{bad}" in r.err and "accepts" in r.err
    assert archc("validate", "--input-size", str(good), str(path)).rc == 0


# --- width with $in, non-square maps and adaptive outputs ----------------------------------

def test_width_in_and_non_square_adaptive_pools(tmp_path):
    text = """\
archc: 1
name: wide
input: 3x10x7
width: 0.5
blocks:
  res:
    residual:
      seq: [conv 1x1 8, "conv 1x1 $(in * 2)"]
      project: conv 1x1 $in linear
network:
  - {name: stem, op: conv 3x3 8}
  - {block: res, name: r}
  - {name: a, op: {op: adaptive_maxpool, out: [3, 4]}}
  - {name: b, op: {op: adaptive_avgpool, out: [3, 2]}}
head: [flatten, linear 3]
"""
    # width 0.5: stem 4; body 1x1 4, then $(in * 2) = 8 (not scaled again); project to
    # $in = 4; 10x7 -> 3x4 (overlapping rows and columns) -> 3x2; flatten 24 -> 3
    params = (conv_params(3, 4, 3) + conv_params(4, 4, 1) + conv_params(4, 8, 1)
              + conv_params(8, 4, 1, bias=True, bn=False) + 24 * 3 + 3)
    macs = (conv_macs(3, 4, 3, 10, 7) + conv_macs(4, 4, 1, 10, 7) + conv_macs(4, 8, 1, 10, 7)
            + conv_macs(8, 4, 1, 10, 7) + 24 * 3)
    spec, model, _ = check_network(tmp_path, text, params=params, macs=macs,
                                   stages={"r": (4, 10, 7), "a": (4, 3, 4), "b": (4, 3, 2)},
                                   onnx_input_size=(10, 7))
    # heights need 3 rows for the adaptive pools, widths 4 columns: independently
    hs, ws = spec.analysis.sizes
    assert (hs.min, ws.min) == (3, 4)


def test_flop_counter_counts_nothing_but_conv_and_linear(tmp_path):
    """Pooling, BN, ReLU, concat, add, flatten: 0 MACs here and 0 FLOPs in torch's counter."""
    text = """\
archc: 1
name: noflop
input: 4x12x12
network:
  - {name: b, seq: [batchnorm, relu, maxpool 3x3/2 ceil, avgpool 3x3 count_pad]}
  - name: r
    residual: {seq: [maxpool 3x3 pad=1, avgpool 3x3], scale: 0.5, act: none}
  - {name: cat, concat: [[maxpool 3x3 pad=1], [avgpool 3x3]]}
  - {name: g, seq: [adaptive_maxpool 4x4, global_maxpool keepdim, flatten]}
"""
    spec = ac.load_spec(str(write_spec(tmp_path, text)))
    assert spec.analysis.macs == 0
    model = ac.build(spec, backend="torch").eval()
    flops = torch_flops(model, torch.from_numpy(normal(1, 4, 12, 12)))
    assert sum(flops.values()) == 0, flops


# --- bugs -------------------------------------------------------------------------------------

def test_torch_input_check_treats_heights_and_widths_independently(tmp_path):
    text = """\
archc: 1
name: asym
input: 3x8x8
network:
  - {name: c, op: {op: conv, kernel: [1, 5], out: 4, padding: valid}}
head: [global_avgpool, linear 2]
"""
    spec = ac.load_spec(str(write_spec(tmp_path, text)))
    hs, ws = spec.analysis.sizes
    assert (hs.min, ws.min) == (1, 5)
    torch.nn.Conv2d(3, 4, (1, 5))(torch.zeros(1, 3, 2, 8))  # torch runs a 2x8 input
    assert archc("validate", "--input-size", "2x8", str(tmp_path / "s.yaml")).rc == 0
    model = ac.build(spec, backend="torch").eval()
    with torch.no_grad():
        assert tuple(model(torch.zeros(1, 3, 2, 8)).shape) == (1, 2)


def test_empty_weights_for_a_network_without_tensors(tmp_path):
    spec = ac.load_spec(str(write_spec(tmp_path, _pool_spec("maxpool", 3, 2, 1))))
    assert state_entries(*prepare(spec)) == []
    model = ac.build(spec, backend="torch", weights={}).eval()
    x = torch.from_numpy(normal(1, 3, 12, 12))
    assert torch.equal(model(x), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)(x))


def _docs_bottleneck() -> str:
    """The `bottleneck:` block of docs/spec-language.md section 8, as written there."""
    from spec_helpers import ROOT

    doc = (ROOT / "docs" / "spec-language.md").read_text(encoding="utf-8")
    section = doc[doc.index("## 8. Residual blocks"):doc.index("## 9.")]
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("bottleneck:"))
    block = []
    for ln in lines[start:]:
        if ln.startswith("```"):
            break
        block.append("  " + ln.split("#")[0].rstrip())
    return "\n".join(block) + "\n"


def test_docs_section8_bottleneck_validates_with_stride_2(tmp_path):
    text = ("archc: 1\nname: docs8\ninput: 3x16x16\nblocks:\n" + _docs_bottleneck()
            + "network:\n  - {name: stem, op: conv 3x3 8}\n"
            "  - {block: bottleneck, name: layer, with: {width: 4, stride: 2}}\n")
    assert "shortcut:" in text and "when:" in text
    spec = ac.load_spec(str(write_spec(tmp_path, text)))
    assert tuple(spec.analysis.output_shape) == (16, 8, 8)
