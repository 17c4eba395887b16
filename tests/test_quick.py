"""The quick loop's own checks (`python -m pytest -q -m "not slow"`): one reference parity
per backend on a small input, and one test per CLI verb. The full-size parity tests are
in test_torch_backend.py, test_onnx.py and test_lineage.py (CI runs them all)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")

import archcompiler as ac  # noqa: E402

from support import ROOT, randomize_reference  # noqa: E402


@pytest.fixture(scope="module")
def googlenet_checkpoint(tmp_path_factory):
    """torchvision's GoogLeNet, every tensor randomised, its own state_dict as safetensors."""
    from safetensors.torch import save_file

    ref = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                       init_weights=True)
    randomize_reference(ref, seed=5)
    path = tmp_path_factory.mktemp("ref") / "googlenet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    return ref.eval(), str(path)


def _x(size=64):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_torch_parity_with_the_reference(googlenet_checkpoint):
    ref, path = googlenet_checkpoint
    ours = ac.build("googlenet", backend="torch", weights=path).eval()
    assert ours.load_report.format == "torchvision"
    with torch.no_grad():
        want, got = ref(_x()), ours(_x())
    assert float((want - got).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


def test_onnx_parity_with_the_reference(googlenet_checkpoint):
    ref, path = googlenet_checkpoint
    model = ac.build("googlenet", backend="onnx", weights=path)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = ref(_x()).numpy()
    got = sess.run(None, {"input": _x().numpy()})[0]
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def _archc(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "archcompiler.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_validate():
    r = _archc("validate", "--json", "specs/resnet50.yaml", "archc:googlenet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(o["name"], o["layers"], o["params"]) for o in out] == [
        ("resnet50", 51, 25_557_032), ("googlenet", 26, 6_624_904)]


def test_cli_schema_and_list():
    r = _archc("schema")
    assert r.returncode == 0 and json.loads(r.stdout)["title"].startswith("archc spec")
    r = _archc("list")
    assert r.returncode == 0 and "resnet152" in r.stdout and "bn_inception" in r.stdout


def test_cli_build_both_backends(tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text("archc: 1\nname: t\ninput: 3x16x16\nnetwork:\n  - {name: c, op: conv 3x3 4}\n"
                    "head: [global_avgpool, linear 3]\n")
    for out in ("t.py", "t.onnx"):
        backend = "onnx" if out.endswith("onnx") else "torch"
        r = _archc("build", spec, "--backend", backend, "-o", tmp_path / out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / out).stat().st_size > 0
    r = _archc("build", spec, "--backend", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
