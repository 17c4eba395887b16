"""The PyTorch backend against timm/torchvision (the references), and its contract."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import archcompiler as ac  # noqa: E402
from archcompiler.backends.torch import build, prepare  # noqa: E402
from archcompiler.backends.torch.codegen import write_source  # noqa: E402
from archcompiler.cli import main  # noqa: E402
from archcompiler.weights import CheckpointError, state_entries, to_format  # noqa: E402

from support import ALL_SPECS, SPECS, TIMM_SPECS, randomize_reference, randomized_state  # noqa: E402

torch.set_num_threads(2)

# Fact sheet 10.1: keys of a freshly built timm model (num_batches_tracked included)
TIMM_KEYS = {"inception_v4": 896, "inception_resnet_v2": 1306, "inception_v3": 566}


@pytest.fixture(scope="module")
def specs():
    return {name: ac.load_spec(name) for name in ALL_SPECS}


@pytest.fixture(scope="module")
def x299():
    return torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", TIMM_SPECS)
def test_state_dict_matches_timm_key_for_key(specs, name):
    ours = build(specs[name])
    ref = timm.create_model(name, pretrained=False)
    assert len(ref.state_dict()) == TIMM_KEYS[name]
    assert len(ours.state_dict()) == TIMM_KEYS[name]
    mapped = to_format(specs[name], {k: v.shape for k, v in ours.state_dict().items()}, "timm")
    assert {k: tuple(v) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_SPECS)
def test_logits_equal_timm_from_timm_checkpoint(specs, name, x299, tmp_path):
    """timm's state_dict, saved as safetensors, loads with no flag (names detected)."""
    from safetensors.torch import save_file

    ref = timm.create_model(name, pretrained=False)
    randomize_reference(ref, seed=1)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    ours = build(specs[name], weights=str(path)).eval()
    assert ours.load_report.format == "timm"
    assert ours.load_report.loaded == len(state_entries(ours.ir, prepare(specs[name])[1]))
    ref.eval()
    with torch.no_grad():
        want, got = ref(x299), ours(x299)
    assert want.shape == got.shape == (2, 1000)
    assert float(want.abs().max()) > 1.0  # randomised BN makes logits non-trivial
    assert float((want - got).abs().max()) <= 1e-4


@pytest.mark.slow
def test_torchvision_v3_with_aux_logits_loads_every_key(x299, tmp_path):
    """The tv_in1k checkpoint layout (AuxLogits.* keys) loads into the aux-enabled v3, and
    training mode returns (logits, aux_logits) equal to torchvision's."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    randomize_reference(ref, seed=2)
    path = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), path)
    spec = ac.load_spec(SPECS / "variants" / "inception_v3_aux.yaml")
    ours = build(spec, weights=str(path))
    assert ours.load_report.format == "timm"
    ref.eval()
    ours.eval()
    with torch.no_grad():
        assert float((ref(x299) - ours(x299)).abs().max()) <= 1e-4
        ref.train()
        ours.train()
        ref_out, ours_out = ref(x299), ours(x299)
    assert isinstance(ours_out, tuple) and len(ours_out) == 2
    assert float((ref_out.aux_logits - ours_out[1]).abs().max()) <= 1e-4


@pytest.mark.parametrize("path", sorted(str(p.relative_to(SPECS)) for p in SPECS.glob("**/*.yaml")
                                       if "blocks" not in p.parts))
def test_generated_source_builds_the_same_module(path, tmp_path):
    spec = ac.load_spec(SPECS / path)
    out = tmp_path / f"{spec.name}.py"
    write_source(spec, str(out))
    text = out.read_text()
    assert "archcompiler" not in [ln.split()[1] for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    mod_spec = importlib.util.spec_from_file_location(f"gen_{spec.name}", out)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    gen = next(v for v in vars(mod).values()
               if isinstance(v, type) and getattr(v, "pretrained_cfg", None) is mod.PRETRAINED_CFG)()
    api = build(spec, weights=randomized_state(state_entries(*prepare(spec)), seed=3))
    assert {k: v.shape for k, v in gen.state_dict().items()} == {k: v.shape for k, v in api.state_dict().items()}
    gen.load_state_dict(api.state_dict())
    gen.eval()
    api.eval()
    size = api.min_input
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert float((gen(x) - api(x)).abs().max()) <= 1e-5
    assert gen.pretrained_cfg["mean"] == tuple(spec.preprocess.mean)


def test_cli_build_with_weights_writes_py_and_safetensors(tmp_path):
    w = tmp_path / "w.safetensors"
    spec = ac.load_spec("inception_v3")
    from archcompiler.weights import write_checkpoint

    write_checkpoint(str(w), randomized_state(state_entries(*prepare(spec)), seed=5))
    out = tmp_path / "v3.py"
    assert main(["build", "inception_v3", "--backend", "torch", "--weights", str(w), "-o", str(out)]) == 0
    assert out.is_file() and (tmp_path / "v3.safetensors").is_file()
    code = ("import sys, torch; sys.path.insert(0, %r); import v3; m = v3.InceptionV3.pretrained(); "
            "print(float(m.conv2d_1a.conv.weight.double().sum()))" % str(tmp_path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    expected = randomized_state(state_entries(*prepare(spec)), seed=5)["conv2d_1a.conv.weight"].astype(np.float64).sum()
    assert abs(float(res.stdout) - expected) < 1e-4


@pytest.mark.slow
def test_pt2_round_trip_in_a_fresh_process(tmp_path):
    out = tmp_path / "v4.pt2"
    assert main(["build", "inception_v4", "--format", "pt2", "--seed", "7", "-o", str(out)]) == 0
    model = build(ac.load_spec("inception_v4"), seed=7).eval()
    x = torch.randn(3, 3, 299, 299, generator=torch.Generator().manual_seed(8))
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "want.npy", model(x).numpy())
    code = (
        "import numpy as np, torch, sys; d = sys.argv[1]\n"
        "m = torch.export.load(d + '/v4.pt2').module()\n"
        "x = torch.from_numpy(np.load(d + '/x.npy'))\n"
        "got = m(x).detach().numpy(); assert m(x[:1]).shape == (1, 1000)\n"
        "print(float(np.abs(got - np.load(d + '/want.npy')).max()))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout) <= 1e-4


def test_mismatched_checkpoint_lists_what_differs(specs, tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model("inception_v4", pretrained=False).state_dict()
    ref.pop("features.6.branch0.conv.weight")
    ref["features.7.branch1.1.conv.weight"] = torch.zeros(5, 5, 3, 3)
    ref["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in ref.items()}, str(path))
    with pytest.raises(CheckpointError) as info:
        build(specs["inception_v4"], weights=str(path))
    msg = str(info.value)
    assert "missing (1)" in msg and "features.6.branch0.conv.weight" in msg
    assert "unexpected (1)" in msg and "extra.weight" in msg
    assert "wrong shape (1)" in msg and "features.7.branch1.1.conv.weight: checkpoint [5, 5, 3, 3], spec [96, 64, 3, 3]" in msg
    out = tmp_path / "model.py"
    out.write_text("keep me")
    assert main(["build", "inception_v4", "--weights", str(path), "-o", str(out)]) == 1
    assert out.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".archc-")] == []


def test_corrupt_and_pickled_checkpoints_are_refused(specs, tmp_path):
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        build(specs["inception_v3"], weights=str(bad))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"conv2d_1a.conv.weight": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights_only"):
        build(specs["inception_v3"], weights=str(evil))
    assert not marker.exists()


def test_num_classes_gives_a_fresh_head_and_loads_the_rest(specs, tmp_path):
    from archcompiler.weights import write_checkpoint

    spec = specs["inception_v3"]
    state = randomized_state(state_entries(*prepare(spec)), seed=9)
    path = tmp_path / "w.safetensors"
    write_checkpoint(str(path), state)
    with pytest.warns(UserWarning, match="head.fc"):
        model = build(spec, weights=str(path), num_classes=10)
    assert model.head.fc.weight.shape == (10, 2048)
    assert model.pretrained_cfg["num_classes"] == 10
    np.testing.assert_array_equal(model.state_dict()["mixed_7c.branch3.1.conv.weight"].numpy(),
                                  state["mixed_7c.branch3.1.conv.weight"])
    assert {"head.fc.weight", "head.fc.bias"} <= set(model.load_report.skipped)


def test_features_returns_the_three_grids(specs):
    model = build(specs["inception_resnet_v2"], features=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 299, 299))
    assert [tuple(f.shape[1:]) for f in feats] == [(320, 35, 35), (1088, 17, 17), (1536, 8, 8)]


def test_any_input_size_and_a_clear_error_below_the_minimum(specs):
    model = build(specs["inception_v4"]).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 331, 331)).shape == (1, 1000)
        assert model(torch.randn(1, 3, 75, 75)).shape == (1, 1000)
        with pytest.raises(ValueError) as info:
            model(torch.randn(1, 3, 74, 74))
    msg = str(info.value)
    assert "74x74 is too small" in msg and "smallest input this network accepts is 75x75" in msg
    assert "in stage" in msg


@pytest.mark.slow
@pytest.mark.parametrize("path", ["inception_v4", "inception_resnet_v2", "variants/inception_v3_aux"])
def test_training_smoke_loss_falls(path):
    spec = ac.load_spec(SPECS / f"{path}.yaml")
    torch.manual_seed(0)
    model = build(spec, seed=0, num_classes=5).train()
    size = model.min_input
    batch = 4 if size < 100 else 2
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 5
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        out = model(x)
        if isinstance(out, tuple):  # Inception-v3 aux head, as torchvision: (logits, aux)
            loss = torch.nn.functional.cross_entropy(out[0], y) + 0.4 * torch.nn.functional.cross_entropy(out[1], y)
        else:
            loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert spec.name != "inception_v3_aux" or isinstance(out, tuple)
    assert losses[-1] < losses[0], losses
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 6


def test_residual_scale_is_a_spec_parameter():
    spec = ac.load_spec(SPECS / "variants" / "inception_resnet_v2_scale03.yaml")
    model = build(spec)
    scales = {n.attrs["scale"] for n in model.ir.nodes if n.op == "scale_add"}
    assert scales == {0.3}  # every block, the final one too (its scale_final: 0.3)
    base = build(ac.load_spec("inception_resnet_v2"))
    assert {n.attrs["scale"] for n in base.ir.nodes if n.op == "scale_add"} == {0.17, 0.1, 0.2, 1.0}


def test_seeded_init_is_reproducible_and_follows_the_reference(specs):
    a = build(specs["inception_v4"], seed=1).state_dict()
    b = build(specs["inception_v4"], seed=1).state_dict()
    c = build(specs["inception_v4"], seed=2).state_dict()
    w = "stem.0.conv.weight"
    assert torch.equal(a[w], b[w]) and not torch.equal(a[w], c[w])
    # torch default (timm v4): U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = 3*3*3
    assert float(a[w].abs().max()) <= 27 ** -0.5 and float(a[w].abs().max()) > 0.9 * 27 ** -0.5
    # torchvision Inception3: trunc_normal std 0.1
    v3 = build(specs["inception_v3"], seed=1).state_dict()
    std = float(v3["mixed_7c.branch0.0.conv.weight"].std())
    assert 0.09 < std < 0.11
    assert float(v3["mixed_7c.branch0.0.bn.weight"].min()) == 1.0


def test_pretrained_cfg_carries_the_preprocessing(specs):
    cfg = build(specs["inception_resnet_v2"]).pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["crop_pct"] == 0.8975 and cfg["interpolation"] == "bicubic"
    assert cfg["input_size"] == (3, 299, 299) and cfg["num_classes"] == 1000


def test_api_entry_point_by_path_and_print():
    model = ac.build(str(SPECS / "inception_v4.yaml"), backend="torch")
    assert isinstance(model, torch.nn.Module)
    assert "inception_a" in str(model)
    assert sum(p.numel() for p in model.parameters()) == 42_679_816


def test_generated_source_handles_a_repeated_block_that_widens(tmp_path):
    (tmp_path / ".archc-root").write_text("")
    (tmp_path / "grow.yaml").write_text(
        "archc: 1\nname: grow\ninput: 3x32x32\n"
        "blocks:\n  widen:\n    concat: [[conv 1x1 8], [maxpool 3x3 same]]\n"
        "network:\n  - {name: stem, op: conv 3x3 8}\n  - {block: widen, repeat: 3, expect: 32x32x32}\n"
        "head: [global_avgpool, linear 10]\n")
    spec = ac.load_spec(str(tmp_path / "grow.yaml"))
    write_source(spec, str(tmp_path / "grow_gen.py"))
    mod_spec = importlib.util.spec_from_file_location("grow_gen", tmp_path / "grow_gen.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    gen, api = mod.Grow().eval(), build(spec, seed=3).eval()
    gen.load_state_dict(api.state_dict())  # strict: same keys and shapes (8, 16, 24 inputs)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert float((gen(x) - api(x)).abs().max()) <= 1e-6


def test_features_model_loads_a_full_timm_checkpoint(tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model("inception_v4", pretrained=False)
    randomize_reference(ref, seed=4)
    path = tmp_path / "v4.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = build(ac.load_spec("inception_v4"), weights=str(path), features=True).eval()
    ref.eval()
    x = torch.randn(1, 3, 299, 299)
    with torch.no_grad():
        want = ref.features(x)
        got = model(x)[-1]
    assert float((want - got).abs().max()) <= 1e-4


def test_features_follow_stages_marked_in_the_spec(tmp_path):
    (tmp_path / ".archc-root").write_text("")
    (tmp_path / "v.yaml").write_text(
        "archc: 1\nextends: archc:inception_v4\nname: v4_marked\n"
        "network:\n"
        "  - {block: stem_v4, name: stem, feature: true}\n"
        "  - {block: inception_a, repeat: 4}\n"
        "  - {block: reduction_a, with: {k: 192, l: 224, m: 256, n: 384}, feature: true}\n"
        "  - {block: inception_b, repeat: 7}\n"
        "  - {block: reduction_b}\n"
        "  - {block: inception_c, repeat: 3}\n")
    model = build(ac.load_spec(str(tmp_path / "v.yaml")), features=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 299, 299))
    assert [tuple(f.shape[1:]) for f in feats] == [(384, 35, 35), (1024, 17, 17)]
