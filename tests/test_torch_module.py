"""The module `archcompiler.build(spec, backend="torch")` returns, as the ecosystem uses it
(issue 13, part A): copy / pickle / torch.save, EMA and SWA, torch.fx and torchvision's
feature extraction, torch.export and torch.compile, timm's model interface, the features
rule, and print(model)."""

from __future__ import annotations

import copy
import pickle
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

import archcompiler as ac  # noqa: E402
from archcompiler.backends.torch import build, prepare  # noqa: E402
from archcompiler.weights import state_entries  # noqa: E402

from support import randomized_state  # noqa: E402

torch.set_num_threads(2)

# 4 stages at 64x64 (strides 2, 2, 4, 8, 16), a repeated residual block, concats, an aux head
TINY = """\
archc: 1
name: tiny_net
input: 3x64x64
classes: 7
preprocess: {mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3], crop_pct: 0.9, interpolation: bilinear}
blocks:
  res:
    residual:
      concat:
        - [conv 1x1 8]
        - [conv 1x1 8, conv 3x3 8]
      project: conv 1x1 16 linear
      scale: 0.5
  down:
    params: [n]
    concat:
      - [conv 3x3/2 $n pad=1]
      - [maxpool 3x3/2 pad=1]
network:
  - {name: stem, op: conv 3x3/2 16 pad=1}
  - {block: res, repeat: 2}
  - {block: down, with: {n: 16}}
  - {block: down, name: down2, with: {n: 32}}
  - {name: last, op: conv 3x3/2 48 valid}
head: [global_avgpool, dropout 0.1, {op: linear, out: $classes, name: fc}]
aux:
  - name: aux_logits
    after: down
    seq: [global_avgpool, {op: linear, out: $classes, name: fc}]
"""
# stage shapes: stem 16x32x32, res 16x32x32, down 32x16x16, down2 64x8x8, last 48x3x3
# (the smallest input: 17x17)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    (d / ".archc-root").write_text("")
    (d / "tiny.yaml").write_text(TINY)
    return d


@pytest.fixture(scope="module")
def tiny_spec(tiny_dir):
    return ac.load_spec(str(tiny_dir / "tiny.yaml"))


def tiny_model(spec, **options):
    """Randomised weights (BN statistics too), so numerical differences show."""
    weights = randomized_state(state_entries(*prepare(spec)), seed=11)
    return build(spec, weights=weights, **options)


@pytest.fixture()
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def stage_outputs(model, names, x):
    """What the named stage modules return in an eager forward (forward hooks)."""
    got = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, a, out, n=n: got.__setitem__(n, out))
             for n in names]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return got


# -- copying and pickling --------------------------------------------------------------

def test_deepcopy_pickle_and_torch_save_round_trips_give_equal_outputs(tiny_spec, x, tmp_path):
    model = tiny_model(tiny_spec).eval()
    with torch.no_grad():
        want = model(x)
        path = tmp_path / "m.pt"
        torch.save(model, path)
        copies = {"deepcopy": copy.deepcopy(model), "pickle": pickle.loads(pickle.dumps(model)),
                  "torch.save": torch.load(path, weights_only=False)}
        for how, other in copies.items():
            assert type(other) is type(model), how
            assert list(other.state_dict()) == list(model.state_dict()), how
            assert torch.equal(other(x), want), how
    # the copy owns its parameters
    with torch.no_grad():
        copies["deepcopy"].head.fc.weight.add_(1.0)
    assert not torch.equal(copies["deepcopy"].head.fc.weight, model.head.fc.weight)
    assert not torch.equal(copies["deepcopy"](x), want)


def test_pickle_round_trip_in_a_fresh_process_without_the_spec_file(tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    (d / ".archc-root").write_text("")
    (d / "tiny.yaml").write_text(TINY)
    model = tiny_model(ac.load_spec(str(d / "tiny.yaml"))).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    torch.save({"x": x, "want": want}, tmp_path / "io.pt")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    shutil.rmtree(d)
    code = (
        "import pickle, sys, torch\n"
        "d = sys.argv[1]\n"
        "model = pickle.load(open(d + '/model.pkl', 'rb'))\n"
        "io = torch.load(d + '/io.pt')\n"
        "with torch.no_grad():\n"
        "    got = model(io['x'])\n"
        "assert type(model).__name__ == 'ArchcModel'\n"
        "print(bool(torch.equal(got, io['want'])), float((got - io['want']).abs().max()))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[0] == "True", res.stdout


def test_an_optimized_model_pickles_too(tmp_path):
    """optimize=True moves a conv's bias after an average pool (a bias_add module)."""
    (tmp_path / "o.yaml").write_text(
        "archc: 1\nname: opt\ninput: 8x9x9\nnetwork:\n"
        "  - {name: a, seq: [avgpool 3x3 count_pad, conv 1x1 4 bias nobn noact]}\n")
    spec = ac.load_spec(str(tmp_path / "o.yaml"))
    model = build(spec, weights=randomized_state(state_entries(*prepare(spec)), seed=2), optimize=True)
    assert "bias_add" in [n.op for n in model.ir.nodes]
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))


def test_ema_and_swa_update_and_evaluate(tiny_spec, x):
    from timm.utils import ModelEmaV3
    from torch.optim.swa_utils import AveragedModel

    model = tiny_model(tiny_spec)
    ema = ModelEmaV3(model, decay=0.9)
    swa = AveragedModel(model)
    swa.update_parameters(model)  # the first update copies
    before = model.head.fc.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    logits, aux = model(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])) + aux.square().mean()
    loss.backward()
    opt.step()
    after = model.head.fc.weight.detach()
    assert not torch.equal(before, after)
    ema.update(model)
    swa.update_parameters(model)
    torch.testing.assert_close(ema.module.head.fc.weight, 0.9 * before + 0.1 * after, rtol=0, atol=1e-6)
    swa_w = swa.module.head.fc.weight
    torch.testing.assert_close(swa_w, (before + after) / 2, rtol=0, atol=1e-6)
    assert int(swa.n_averaged) == 2
    ema.module.eval()
    swa.eval()
    with torch.no_grad():
        assert ema.module(x).shape == swa(x).shape == (2, 7)
        assert not torch.equal(ema.module(x), swa(x))


# -- tracing, feature extraction, export, compile ------------------------------------

def test_fx_symbolic_trace_equals_eager_in_eval_and_train_mode(tiny_spec, x):
    model = tiny_model(tiny_spec).eval()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    model.train()
    traced = torch.fx.symbolic_trace(model)
    torch.manual_seed(3)
    want = model(x)
    torch.manual_seed(3)
    got = traced(x)
    assert isinstance(got, tuple) and len(got) == 2  # (logits, aux_logits), as eager
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # the input check is part of the traced program, with its message
    with pytest.raises(ValueError, match=r"tiny_net: input 3x16x16 is too small: in stage last, .*smallest "
                                         r"input this network accepts is 17x17"):
        traced(torch.randn(1, 3, 16, 16))


def test_create_feature_extractor_takes_stage_names(tiny_spec, x):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = tiny_model(tiny_spec).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    for stage in ("stem", "res", "down", "down2", "last", "head"):
        assert any(n == stage or n.startswith(stage + ".") for n in eval_nodes), stage
    assert any(n.startswith("aux_logits.") for n in train_nodes)
    assert not any(n.startswith("aux_logits.") for n in eval_nodes)
    extractor = create_feature_extractor(model, {"res": "r", "down": "f", "last": "l"})
    with torch.no_grad():
        got = extractor(x)
        want = stage_outputs(model, ["res", "down", "last"], x)
    assert [tuple(v.shape) for v in got.values()] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 48, 3, 3)]
    for key, stage in (("r", "res"), ("f", "down"), ("l", "last")):
        assert torch.equal(got[key], want[stage]), stage


def test_torch_export_and_compile_fullgraph(tiny_spec, x):
    from archcompiler.backends.torch.export import export_program

    model = tiny_model(tiny_spec).eval()
    with torch.no_grad():
        want = model(x)
        program = export_program(model)
        assert float((program.module()(x) - want).abs().max()) <= 1e-5
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        assert float((compiled(x) - want).abs().max()) <= 1e-5
        with pytest.raises(Exception, match="the smallest input this network accepts is 17x17"):
            compiled(torch.randn(2, 3, 16, 16))


def test_input_check_messages(tiny_spec):
    model = tiny_model(tiny_spec).eval()
    with pytest.raises(ValueError, match=r"expected input N x 3 x H x W, got \(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError) as info:
        model(torch.randn(1, 3, 64, 16))
    assert model.min_input == 17
    assert "3x64x16 is too small" in str(info.value) and "in stage" in str(info.value)
    smallest = model.min_input
    assert model(torch.randn(1, 3, smallest, smallest)).shape == (1, 7)


# -- timm's model interface ------------------------------------------------------------

def test_timm_interface_forward_features_and_head(tiny_spec, x):
    model = tiny_model(tiny_spec).eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(feats, stage_outputs(model, ["last"], x)["last"])
        assert feats.shape == (2, model.num_features, 3, 3) and model.num_features == 48
        assert torch.equal(model.forward_head(feats), model(x))
        pre = model.forward_head(feats, pre_logits=True)
        assert torch.equal(pre, feats.mean((2, 3)))  # pooling (dropout is off in eval)
        assert torch.equal(model.get_classifier()(pre), model(x))
    assert model.get_classifier() is model.head.fc
    assert model.num_classes == 7
    assert isinstance(model.get_classifier(), torch.nn.Linear)


def test_timm_helpers_and_reset_classifier(tiny_spec, x):
    from timm.data import resolve_model_data_config

    model = tiny_model(tiny_spec)
    cfg = resolve_model_data_config(model)
    assert cfg["input_size"] == (3, 64, 64)
    assert cfg["mean"] == (0.4, 0.5, 0.6) and cfg["std"] == (0.2, 0.25, 0.3)
    assert cfg["crop_pct"] == 0.9 and cfg["interpolation"] == "bilinear"
    trunk_before = model.last.conv.weight.detach().clone()
    model.reset_classifier(10)
    assert model.num_classes == 10 and model.pretrained_cfg["num_classes"] == 10
    assert model.get_classifier().out_features == 10 and model.aux_logits.fc.out_features == 10
    logits, aux = model.train()(x)  # training mode: the aux head was reset too
    assert logits.shape == aux.shape == (2, 10)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        assert torch.equal(model.last.conv.weight, trunk_before)
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), torch.nn.Identity)
        assert torch.equal(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    assert model(x).shape == (2, 48)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)
    # the reset model still pickles and deep-copies with its new head
    with torch.no_grad():
        model.reset_classifier(3)
        model.eval()
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))


# -- the features rule ---------------------------------------------------------------

def test_feature_info_lists_every_stride_change_point(tiny_spec):
    model = tiny_model(tiny_spec)
    assert model.feature_info == [
        {"num_chs": 16, "reduction": 2, "module": "res"},
        {"num_chs": 32, "reduction": 4, "module": "down"},
        {"num_chs": 64, "reduction": 8, "module": "down2"},
        {"num_chs": 48, "reduction": 16, "module": "last"},
    ]


def test_features_default_out_indices_and_errors(tiny_spec, x):
    full = tiny_model(tiny_spec).eval()
    want = stage_outputs(full, ["res", "down", "down2", "last"], x)
    feats = tiny_model(tiny_spec, features=True).eval()  # default: the last three points
    with torch.no_grad():
        got = feats(x)
    assert isinstance(got, tuple) and [tuple(f.shape[1:]) for f in got] == [(32, 16, 16), (64, 8, 8), (48, 3, 3)]
    assert all(torch.equal(g, want[n]) for g, n in zip(got, ["down", "down2", "last"]))
    assert [f["module"] for f in feats.feature_info] == ["down", "down2", "last"]
    picked = tiny_model(tiny_spec, features=True, out_indices=(0, -1)).eval()
    with torch.no_grad():
        got = picked(x)
    assert torch.equal(got[0], want["res"]) and torch.equal(got[1], want["last"])
    assert [f["reduction"] for f in picked.feature_info] == [2, 16]
    with pytest.raises(ValueError, match="selects no feature map"):
        build(tiny_spec, features=True, out_indices=())
    with pytest.raises(ValueError, match=r"out_indices: 4 is not a feature index; the feature points "
                                         r"are 0: res \(stride 2\), 1: down"):
        build(tiny_spec, features=True, out_indices=(4,))
    with pytest.raises(ValueError, match="use it with features=True"):
        build(tiny_spec, out_indices=(0,))


def test_features_marked_in_the_spec_win_over_the_default(tiny_dir, x):
    text = TINY.replace("{name: stem, op: conv 3x3/2 16 pad=1}", "{name: stem, op: conv 3x3/2 16 pad=1, feature: true}")
    (tiny_dir / "marked.yaml").write_text(text.replace("name: tiny_net", "name: tiny_marked"))
    model = build(ac.load_spec(str(tiny_dir / "marked.yaml")), features=True).eval()
    with torch.no_grad():
        (only,) = model(x)
    assert only.shape == (2, 16, 32, 32)


# -- print -------------------------------------------------------------------------------

def test_print_shows_block_class_names(tiny_spec):
    text = str(tiny_model(tiny_spec))
    assert text.startswith("TinyNet(")
    for line in ("(res): Sequential(", "(0): Res(", "(1): Res(", "(down): Down(", "(down2): Down(",
                 "(stem): ConvBnAct(", "(head): Sequential(", "(aux_logits): Sequential(",
                 "(branch1): Sequential("):
        assert line in text, line
    assert "Module(" not in text


# -- a shipped network -------------------------------------------------------------------

@pytest.mark.slow
def test_inception_v4_at_75_traces_extracts_copies_and_takes_timm_helpers():
    from timm.data import resolve_model_data_config
    from torchvision.models.feature_extraction import create_feature_extractor

    model = build(ac.load_spec("inception_v4"), seed=5).eval()
    x = torch.randn(2, 3, 75, 75, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = model(x)
        assert torch.equal(torch.fx.symbolic_trace(model)(x), want)
        assert torch.equal(copy.deepcopy(model)(x), want)
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), want)
        got = create_feature_extractor(model, {"reduction_a": "f", "inception_c": "c"})(x)
        hooks = stage_outputs(model, ["reduction_a", "inception_c"], x)
        assert torch.equal(got["f"], hooks["reduction_a"]) and got["f"].shape == (2, 1024, 3, 3)
        assert torch.equal(got["c"], model.forward_features(x))
    assert [f["num_chs"] for f in model.feature_info] == [384, 1024, 1536]
    assert [f["reduction"] for f in model.feature_info] == [8, 16, 32]
    assert "InceptionA(" in str(model) and "ReductionA(" in str(model) and "StemV4(" in str(model)
    assert resolve_model_data_config(model)["input_size"] == (3, 299, 299)
    model.reset_classifier(10)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
