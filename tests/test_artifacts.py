"""Artifacts are clean and reproducible: the generated .py passes pyflakes and offers
timm's interface, and the same spec gives byte-identical .py, ONNX and .safetensors files
wherever it is built from (no machine path inside)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
timm = pytest.importorskip("timm")

import archcompiler as ac  # noqa: E402
from archcompiler.backends.torch import build, prepare  # noqa: E402
from archcompiler.backends.torch.codegen import generate_source  # noqa: E402
from archcompiler.weights import state_entries, write_checkpoint  # noqa: E402

from support import SPECS, randomized_state  # noqa: E402

SHIPPED = sorted(str(p.relative_to(SPECS)) for p in SPECS.glob("**/*.yaml") if "blocks" not in p.parts)


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _network_class(mod):
    return next(v for v in vars(mod).values()
                if isinstance(v, type) and getattr(v, "pretrained_cfg", None) is mod.PRETRAINED_CFG)


def test_generated_source_of_every_shipped_spec_passes_pyflakes(tmp_path):
    pytest.importorskip("pyflakes")
    for rel in SHIPPED:
        sp = ac.load_spec(SPECS / rel)
        (tmp_path / f"{sp.name}.py").write_text(generate_source(sp))
        (tmp_path / f"{sp.name}_w.py").write_text(generate_source(sp, weights_file="w.safetensors"))
    r = subprocess.run([sys.executable, "-m", "pyflakes", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def test_generated_source_reads_cleanly():
    text = generate_source(ac.load_spec("inception_v4"))
    assert "getattr(self, '" not in text  # no numeric submodule access
    assert "if 'none' == 'relu'" not in text and "== 'relu' else" not in text
    assert "/work/" not in text and "import os" not in text
    assert "x = self.reduction_a(x)  # 1024x17x17" in text  # stage shapes in the forward
    assert "class InceptionA(nn.Module):" in text and "class ReductionA(nn.Module):" in text
    # a block built with other values takes them as arguments, with no paper defaults
    assert "def __init__(self, in_channels, k, l, m, n):" in text


def test_num_classes_constant_follows_num_classes():
    text = generate_source(ac.load_spec("inception_v4"), num_classes=10)
    assert "NUM_CLASSES = 10\n" in text and "NUM_CLASSES = 1000" not in text


def test_generated_class_has_timm_interface(tmp_path):
    sp = ac.load_spec("inception_v3")
    path = tmp_path / "v3gen.py"
    path.write_text(generate_source(sp))
    cls = _network_class(_load_module(path, "v3gen"))
    gen, api = cls().eval(), build(sp, seed=2).eval()
    gen.load_state_dict(api.state_dict())
    x = torch.randn(1, 3, 75, 75, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(gen.forward_features(x), api.forward_features(x))
        feats = gen.forward_features(x)
        assert gen.forward_head(feats, pre_logits=True).shape == (1, gen.num_features)
        assert torch.allclose(gen.forward_head(feats), gen(x))
    assert gen.num_features == 2048 == api.num_features
    assert [f["reduction"] for f in gen.feature_info] == [f["reduction"] for f in api.feature_info]
    assert gen.get_classifier().out_features == 1000
    cfg = timm.data.resolve_model_data_config(gen)
    assert cfg["input_size"] == (3, 299, 299) and cfg["mean"] == (0.5, 0.5, 0.5)
    gen.reset_classifier(10)
    with torch.no_grad():
        assert gen(x).shape == (1, 10)
    gen.reset_classifier(0)
    with torch.no_grad():
        assert gen(x).shape == (1, 2048)


def _build_all(cwd, spec_path, weights, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    for args in (["--backend", "torch", "--weights", str(weights), "-o", str(out_dir / "m.py")],
                 ["--backend", "onnx", "--weights", str(weights), "-o", str(out_dir / "m.onnx")]):
        r = subprocess.run([sys.executable, "-m", "archcompiler.cli", "build", str(spec_path), *args],
                           cwd=cwd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    return {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}


@pytest.mark.slow
def test_artifacts_are_byte_identical_wherever_built(tmp_path):
    """The same spec, built from two working directories and from a copy of specs/
    elsewhere (by relative and by absolute path), gives the same bytes."""
    sp = ac.load_spec("googlenet")
    weights = tmp_path / "w.safetensors"
    write_checkpoint(str(weights), randomized_state(state_entries(*prepare(sp)), seed=7))
    copy = tmp_path / "elsewhere" / "deep" / "specs"
    shutil.copytree(SPECS, copy)
    (tmp_path / "a").mkdir()
    runs = [
        _build_all(SPECS.parent, "specs/googlenet.yaml", weights, tmp_path / "out1"),
        _build_all(tmp_path / "a", SPECS / "googlenet.yaml", weights, tmp_path / "out2"),
        _build_all(copy.parent, "specs/googlenet.yaml", weights, tmp_path / "out3"),
    ]
    assert set(runs[0]) == {"m.py", "m.safetensors", "m.onnx"}
    for other in runs[1:]:
        for name, data in runs[0].items():
            assert other[name] == data, name
    for name, data in runs[0].items():
        for machine_path in (str(tmp_path), str(SPECS), os.getcwd()):
            assert machine_path.encode() not in data, (name, machine_path)


def test_onnx_dynamic_dims_are_named_after_the_input():
    model = ac.build("inception_v4", backend="onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    params = {d.dim_param for vi in [*inferred.graph.value_info, *inferred.graph.output]
              for d in vi.type.tensor_type.shape.dim if d.dim_param}
    assert not any(p.startswith("unk__") for p in params), params
    assert {"height_35", "height_17", "height_8", "width_35"} <= params


def test_onnx_load_report_lists_only_the_built_configuration(tmp_path):
    from safetensors.numpy import save_file

    sp = ac.load_spec("inception_v3")
    full = randomized_state(state_entries(*prepare(sp, aux=True)), seed=3)
    path = tmp_path / "v3.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in full.items() if not k.startswith("aux_logits")},
              str(path))
    from archcompiler.backends.onnx import build_with_report

    _, report, notes = build_with_report(sp, weights=str(path))
    assert report.skipped == [] and not any("aux_logits" in n for n in [*notes, *report.notes])
