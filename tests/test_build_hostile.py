"""Issue 5, build part: `archc build` and checkpoints on hostile input.

Every failure has its exit code (1: the spec or the checkpoint is wrong, with a located
`path:line:col: error: message`; 2: usage; 3: internal error, the traceback only with
--debug) and writes nothing: the directory holds the same files, byte for byte, before
and after (no output, no `.archc-*` temporary file; an existing output is untouched).
Pickle payloads never run. Ctrl-C and SIGTERM leave no partial file.

Most cases build a tiny spec in-process for speed, for each backend/format: torch .py
(with --weights: the .py and its .safetensors, both or neither), torch .pt2 and ONNX.
Signals and things that could hang run as subprocesses with a timeout."""

from __future__ import annotations

import glob
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
onnx = pytest.importorskip("onnx")

import archcompiler as ac  # noqa: E402
from archcompiler.ir.lower import LowerOptions, lower  # noqa: E402
from archcompiler.passes.shapes import infer_shapes  # noqa: E402
from archcompiler.weights import CheckpointError, read_checkpoint, state_entries  # noqa: E402

from spec_helpers import ROOT, archc, write_tree  # noqa: E402
from support import randomized_state  # noqa: E402

torch.set_num_threads(2)

# A tiny spec (builds in milliseconds) with a timm-style naming: c1 -> stem.0, head.1 -> fc
TINY = """\
archc: 1
name: t
input: 3x32x32
classes: 10
network:
  - {name: c1, op: conv 3x3 8}
  - {name: c2, op: conv 3x3 8}
head: [global_avgpool, linear 10]
checkpoints:
  timm:
    rename:
      c1: stem.0
      head.1: fc
"""

# (id, extra argv, the files a successful build writes)
TARGETS = [
    pytest.param(["--backend", "torch", "-o", "m.py"], ["m.py", "m.safetensors"], id="torch-py"),
    pytest.param(["--backend", "torch", "--format", "pt2", "-o", "m.pt2"], ["m.pt2"], id="torch-pt2"),
    pytest.param(["--backend", "onnx", "-o", "m.onnx"], ["m.onnx"], id="onnx"),
]

INTERNAL = ("archc: internal error: this is a bug, please report it (run with --debug for the "
            "traceback)")


# --- helpers -------------------------------------------------------------------------------

def snapshot(directory: Path) -> dict:
    """Every entry of a directory: regular files by content, others by kind (never read:
    a FIFO would block)."""
    out = {}
    for p in sorted(directory.iterdir()):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[p.name] = p.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            out[p.name] = ("link", os.readlink(p))
        else:
            out[p.name] = ("kind", stat.S_IFMT(st.st_mode))
    return out


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".archc-")
                  and p.name != ".archc-root")


@pytest.fixture
def tiny(tmp_path):
    """A directory with the tiny spec and its our-named state (randomised)."""
    write_tree(tmp_path, {"s.yaml": TINY})
    spec = ac.load_spec(str(tmp_path / "s.yaml"))
    graph = lower(spec, LowerOptions())
    shapes, _ = infer_shapes(graph)
    return tmp_path, randomized_state(state_entries(graph, shapes), seed=1)


def save_st(path: Path, tensors: dict) -> str:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path.name


def timm_named(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k = k.replace("c1.", "stem.0.", 1) if k.startswith("c1.") else k
        k = k.replace("head.1.", "fc.", 1) if k.startswith("head.1.") else k
        out[k] = v
    return out


def assert_nothing_written(directory: Path, before: dict, result) -> None:
    assert snapshot(directory) == before, f"files changed:\n{result.err}"
    assert temp_files(directory) == []
    assert "Traceback" not in result.err + result.out


def build_fails(directory: Path, argv: list, rc: int, keep_existing: list = ()) -> "object":
    """Run `archc build` in `directory` over existing outputs; assert exit code `rc` and
    that no file changed. Returns the result."""
    for name in keep_existing:
        (directory / name).write_bytes(b"an earlier build: keep me")
    before = snapshot(directory)
    r = archc("build", *argv, cwd=directory)
    assert r.rc == rc, r.err
    assert_nothing_written(directory, before, r)
    assert not r.out.strip(), r.out  # no "wrote ..." line
    return r


# --- checkpoints that are wrong: exit 1, a located message, nothing written -----------------

def _truncated(offset_of):
    def make(d: Path, state: dict) -> str:
        save_st(d / "full.safetensors", state)
        data = (d / "full.safetensors").read_bytes()
        (d / "full.safetensors").unlink()
        (d / "w.safetensors").write_bytes(data[:offset_of(data)])
        return "w.safetensors"
    return make


def _header_len(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def _raw(data: bytes, name: str = "w.safetensors"):
    def make(d: Path, state: dict) -> str:
        (d / name).write_bytes(data)
        return name
    return make


def _huge_claim(d: Path, state: dict) -> str:
    header = json.dumps({"c1.conv.weight": {"dtype": "F32", "shape": [100000, 100000, 1000],
                                            "data_offsets": [0, 40_000_000_000_000]}}).encode()
    (d / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    return "w.safetensors"


def _with(change):
    def make(d: Path, state: dict) -> str:
        s = dict(state)
        change(s)
        return save_st(d / "w.safetensors", s)
    return make


def _mismatch(s):
    s.pop("c2.bn.running_var")
    s["head.1.weight"] = np.zeros((5, 8), np.float32)
    s["extra.weight"] = np.zeros(3, np.float32)


def _timm_mismatch(d: Path, state: dict) -> str:
    s = timm_named(state)
    s.pop("stem.0.bn.running_var")
    s["fc.weight"] = np.zeros((5, 8), np.float32)
    s["aux.fc.weight"] = np.zeros(3, np.float32)
    return save_st(d / "w.safetensors", s)


def _torch_file(obj_of, name: str = "w.pt"):
    def make(d: Path, state: dict) -> str:
        torch.save(obj_of(state), str(d / name))
        return name
    return make


def _dtype(key: str, to):
    def change(s):
        s[key] = to(s[key])
    return change


def _truncated_pt(d: Path, state: dict) -> str:
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(d / "full.pt"))
    data = (d / "full.pt").read_bytes()
    (d / "full.pt").unlink()
    (d / "w.pt").write_bytes(data[: len(data) // 2])
    return "w.pt"


def _f8(d: Path, state: dict) -> str:
    from safetensors.torch import save_file

    s = {k: torch.from_numpy(v) for k, v in state.items()}
    s["c1.conv.weight"] = s["c1.conv.weight"].to(torch.float8_e4m3fn)
    save_file(s, str(d / "w.safetensors"))
    return "w.safetensors"


NOT_VALID = "not a valid safetensors file (corrupt or truncated?): Error while deserializing header: "

# (id, make(directory, our-named state) -> file name, the message after "<file>:1:1: error: ")
BAD_CHECKPOINTS = [
    ("truncated-empty", _truncated(lambda d: 0), NOT_VALID + "header too small"),
    ("truncated-in-length", _truncated(lambda d: 5), NOT_VALID + "header too small"),
    ("truncated-in-header", _truncated(lambda d: _header_len(d) // 2), NOT_VALID),
    ("truncated-after-header", _truncated(_header_len), NOT_VALID),
    ("truncated-in-data", _truncated(lambda d: (_header_len(d) + len(d)) // 2), NOT_VALID),
    ("truncated-last-byte", _truncated(lambda d: len(d) - 1), NOT_VALID),
    ("garbage-header", _raw(struct.pack("<Q", 10) + b"\xff\xfe garbage"), NOT_VALID + "invalid UTF-8"),
    ("header-claims-huge-length", _raw(struct.pack("<Q", 1 << 62) + b"{}"), NOT_VALID + "header too large"),
    ("header-claims-huge-tensor", _huge_claim, NOT_VALID),
    ("torch-zip-named-safetensors", _torch_file(lambda s: {k: torch.from_numpy(v) for k, v in s.items()},
                                                "w.safetensors"),
     "(this looks like a PyTorch zip checkpoint: name it .pt)"),
    ("no-tensors", _with(lambda s: s.clear()), "the checkpoint holds no tensors (spec 't' needs 12)"),
    ("int-tensor", _with(_dtype("c1.conv.weight", lambda a: (a * 10).astype(np.int32))),
     "checkpoint does not match spec 't' (read as 'archc' names: 12 of 12 tensors found)\n"
     "  wrong dtype or layout (1):\n"
     "    c1.conv.weight: int32, expected floating point (F16, BF16, F32 or F64)"),
    ("bool-tensor", _with(_dtype("c2.bn.weight", lambda a: a > 1)),
     "    c2.bn.weight: bool, expected floating point (F16, BF16, F32 or F64)"),
    ("float8-tensor", _f8, "    c1.conv.weight: F8_E4M3, expected floating point (F16, BF16, F32 or F64)"),
    ("nan-and-inf", _with(_dtype("c2.bn.running_var", lambda a: np.where(a > 1, np.inf, np.nan)
                                 .astype(np.float32))),
     "checkpoint does not match spec 't' (read as 'archc' names: 12 of 12 tensors found)\n"
     "  not finite (1):\n"
     "    c2.bn.running_var: 8 of 8 values are NaN or infinite"),
    ("our-names-mismatch", _with(_mismatch),
     "checkpoint does not match spec 't' (read as 'archc' names: 11 of 12 tensors found)\n"
     "  missing (1):\n"
     "    c2.bn.running_var [8]\n"
     "  unexpected (1):\n"
     "    extra.weight\n"
     "  wrong shape (1):\n"
     "    head.1.weight: checkpoint [5, 8], spec [10, 8]"),
    ("timm-names-mismatch", _timm_mismatch,
     "checkpoint does not match spec 't' (read as 'timm' names: 11 of 12 tensors found)\n"
     "  missing (1):\n"
     "    stem.0.bn.running_var (ours: c1.bn.running_var) [8]\n"
     "  unexpected (1):\n"
     "    aux.fc.weight\n"
     "  wrong shape (1):\n"
     "    fc.weight: checkpoint [5, 8], spec [10, 8]"),
    ("no-name-matches", lambda d, s: save_st(d / "w.safetensors", {f"model.{k}": v for k, v in s.items()}),
     "no key of this checkpoint matches spec 't' in any known naming (archc, timm); first keys: "
     "model.c1.bn.bias, model.c1.bn.running_mean, model.c1.bn.running_var"),
    ("pt-pickle-payload", None, "refused: the file holds Python objects other than tensors, and "
     "archc never unpickles them (torch.load with weights_only=True): Trying to load unsupported "
     "GLOBAL"),
    ("pt-not-a-torch-file", _raw(b"hello, world\n" * 10, "w.pt"),
     "not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); use .safetensors "
     "or a state_dict saved with torch.save"),
    ("pt-truncated", _truncated_pt, "not a readable PyTorch checkpoint (corrupt or truncated?): "
     "PytorchStreamReader failed reading zip archive: failed finding central directory"),
    ("pt-is-safetensors", lambda d, s: os.replace(d / save_st(d / "x.safetensors", s), d / "w.pt")
     or "w.pt", "this is a safetensors file, not a PyTorch checkpoint: name it .safetensors"),
    ("pt-list", _torch_file(lambda s: [torch.zeros(1)]),
     "expected a state_dict (a mapping of names to tensors), got list"),
    ("pt-int-keys", _torch_file(lambda s: {1: torch.zeros(1)}),
     "expected a state_dict: keys must be strings, got 1 (int)"),
    ("pt-training-checkpoint", _torch_file(lambda s: {"model": {k: torch.from_numpy(v) for k, v in s.items()},
                                                      "epoch": 3}),
     "expected a state_dict (a mapping of names to tensors); these entries are not tensors: "
     "'model' (dict), 'epoch' (int) (a training checkpoint? save model.state_dict())"),
    ("pt-sparse-tensor", _torch_file(lambda s: {**{k: torch.from_numpy(v) for k, v in s.items()},
                                                "c1.conv.weight": torch.from_numpy(s["c1.conv.weight"]).to_sparse()}),
     "    c1.conv.weight: float32 sparse_coo tensor, expected a dense floating-point tensor"),
    ("bin-extension", _raw(b"\0" * 64, "w.bin"),
     "unknown checkpoint format (.bin): use .safetensors, or a .pt/.pth state_dict (a "
     "pytorch_model.bin saved with torch.save: rename it to .pt; it is then read with "
     "torch.load(weights_only=True))"),
    ("npz-extension", lambda d, s: (np.savez(d / "w.npz", **{k.replace(".", "_"): v for k, v in s.items()}),
                                    "w.npz")[1],
     "unknown checkpoint format (.npz): use .safetensors, or a .pt/.pth state_dict (save the "
     "arrays with safetensors.numpy.save_file instead)"),
    ("unknown-extension", _raw(b"\0" * 64, "weights"),
     "unknown checkpoint format (no extension): use .safetensors, or a .pt/.pth state_dict"),
]


def _pickle_payload(d: Path, state: dict) -> str:
    marker = d / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"c1.conv.weight": Payload()}, str(d / "w.pt"))
    return "w.pt"


@pytest.mark.parametrize("target, outputs", TARGETS)
@pytest.mark.parametrize("case", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_bad_checkpoint(tiny, case, target, outputs):
    d, state = tiny
    _, make, message = case
    name = (make or _pickle_payload)(d, state)
    r = build_fails(d, ["s.yaml", "--weights", name, *target], 1, keep_existing=outputs)
    first, _, rest = r.err.partition(": error: ")
    assert first == f"{name}:1:1", r.err
    body = rest.rstrip("\n")
    if message.startswith("    ") or message.startswith("("):
        assert message in body, body
    else:
        assert body.startswith(message), body
    assert not (d / "pwned").exists()
    for out in outputs:
        assert (d / out).read_bytes() == b"an earlier build: keep me"


def test_at_least_twenty_five_checkpoint_cases():
    assert len(BAD_CHECKPOINTS) >= 25


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_pickle_payload_never_runs_through_the_api(tiny, backend):
    d, state = tiny
    name = _pickle_payload(d, state)
    with pytest.raises(CheckpointError, match="never unpickles"):
        ac.build(str(d / "s.yaml"), backend=backend, weights=str(d / name))
    with pytest.raises(CheckpointError, match="never unpickles"):
        read_checkpoint(str(d / name))
    assert not (d / "pwned").exists()


def test_pickle_payload_never_runs_in_a_real_process(tiny):
    d, state = tiny
    name = _pickle_payload(d, state)
    for backend in ("torch", "onnx"):
        proc = subprocess.run([sys.executable, "-m", "archcompiler.cli", "build", "s.yaml",
                               "--backend", backend, "--weights", name], cwd=d, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        assert "never unpickles" in proc.stderr
    assert not (d / "pwned").exists()
    assert sorted(os.listdir(d)) == [".archc-root", "s.yaml", "w.pt"]


@pytest.mark.parametrize("cast", ["F16", "BF16", "F64"])
def test_other_float_dtypes_are_read_exactly(tiny, cast):
    """Half, bfloat16 and double checkpoints load (as float32), the same values torch
    reads, whichever modules happen to be imported (numpy has no bfloat16 of its own)."""
    from safetensors.torch import save_file

    d, state = tiny
    dtype = {"F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}[cast]
    tensors = {k: torch.from_numpy(v).to(dtype) for k, v in state.items()}
    save_file(tensors, str(d / "w.safetensors"))
    got = read_checkpoint(str(d / "w.safetensors"))
    for k, v in tensors.items():
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], v.float().numpy())
    r = archc("build", "s.yaml", "--weights", "w.safetensors", "-o", "m.py", cwd=d)
    assert r.rc == 0, r.err
    from safetensors.numpy import load_file

    written = load_file(str(d / "m.safetensors"))
    np.testing.assert_array_equal(written["c1.conv.weight"], tensors["c1.conv.weight"].float().numpy())


def test_timm_named_checkpoint_builds(tiny):
    d, state = tiny
    save_st(d / "w.safetensors", timm_named(state))
    for target, outputs in ((["-o", "m.py"], ["m.py", "m.safetensors"]),
                            (["--backend", "onnx", "-o", "m.onnx"], ["m.onnx"])):
        r = archc("build", "s.yaml", "--weights", "w.safetensors", *target, cwd=d)
        assert r.rc == 0, r.err
        assert all((d / name).is_file() for name in outputs)
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(load_file(str(d / "m.safetensors"))["c1.conv.weight"],
                                  state["c1.conv.weight"])
    assert temp_files(d) == []


# --- paths that are not files: usage errors, never a hang -----------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_as_weights_does_not_hang(tiny):
    d, _ = tiny
    os.mkfifo(d / "w.safetensors")
    before = snapshot(d)
    for backend in ("torch", "onnx"):
        proc = subprocess.run([sys.executable, "-m", "archcompiler.cli", "build", "s.yaml",
                               "--backend", backend, "--weights", "w.safetensors"], cwd=d,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip() == ("archc: error: --weights w.safetensors: not a regular file "
                                       "(a device, FIFO or socket): refused")
    code = ("import archcompiler as ac\nfrom archcompiler.weights import CheckpointError\n"
            "for backend in ('torch', 'onnx'):\n"
            "    try:\n        ac.build('s.yaml', backend=backend, weights='w.safetensors')\n"
            "    except CheckpointError as e:\n        print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "w.safetensors:1:1: error: not a regular file (a device, FIFO or socket): refused"] * 2
    assert snapshot(d) == before


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_as_weights_does_not_hang(tiny):
    d, _ = tiny
    (d / "zero.pt").symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-m", "archcompiler.cli", "build", "s.yaml",
                           "--weights", "zero.pt"], cwd=d, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--weights zero.pt: not a regular file" in proc.stderr
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(str(d / "zero.pt"))


# --- usage errors: exit 2, nothing written ---------------------------------------------------

def _mkfifo(d: Path, name: str) -> None:
    os.mkfifo(d / name)


# (id, setup(directory) or None, argv after "build", the whole stderr line after "archc: error: ")
USAGE = [
    ("weights-missing", None, ["s.yaml", "--weights", "nope.safetensors"],
     "--weights nope.safetensors: no such file"),
    ("weights-directory", lambda d: (d / "ckpt").mkdir(), ["s.yaml", "--weights", "ckpt"],
     "--weights ckpt: is a directory (give the checkpoint file)"),
    ("spec-missing", None, ["nope.yaml"],
     "nope.yaml: no such file, and no shipped spec of that name (see 'archc list')"),
    ("output-dir-missing", None, ["s.yaml", "-o", "no/such/dir/m.py"],
     "no/such/dir/m.py: cannot write: directory no/such/dir does not exist"),
    ("output-is-a-directory", lambda d: (d / "out").mkdir(), ["s.yaml", "-o", "out"],
     "out: is a directory (give a file name)"),
    ("output-is-a-fifo", lambda d: _mkfifo(d, "m.py"), ["s.yaml", "-o", "m.py"],
     "m.py: not a regular file (a device, FIFO or socket): refused, archc replaces its outputs"),
    ("weights-beside-output-is-a-directory", lambda d: (d / "m.safetensors").mkdir(),
     ["s.yaml", "-o", "m.py", "--weights", "w.safetensors"], "m.safetensors: is a directory (give a file name)"),
    ("optimize-with-py", None, ["s.yaml", "--optimize"],
     "--optimize builds an inference program: use it with --format pt2 (or --backend onnx); the "
     "generated .py is the trainable module"),
    ("optimize-with-explicit-py", None, ["s.yaml", "--optimize", "--format", "py", "-o", "m.py"],
     "--optimize builds an inference program: use it with --format pt2 (or --backend onnx); the "
     "generated .py is the trainable module"),
    ("format-with-onnx", None, ["s.yaml", "--backend", "onnx", "--format", "pt2"],
     "--format pt2 is for --backend torch; --backend onnx writes .onnx"),
    ("opset-with-torch", None, ["s.yaml", "--opset", "18"], "--opset is for --backend onnx"),
    ("input-size-with-torch", None, ["s.yaml", "--input-size", "64"],
     "--input-size is for --backend onnx (torch models accept any input size)"),
    ("onnx-name-for-torch", None, ["s.yaml", "-o", "m.onnx"],
     "-o m.onnx: --backend torch writes Python source (.py; --format pt2 for a .pt2), not a .onnx "
     "file (did you mean --backend onnx?)"),
    ("py-name-for-onnx", None, ["s.yaml", "--backend", "onnx", "-o", "m.py"],
     "-o m.py: --backend onnx writes a .onnx model, not a .py file"),
    ("py-name-for-pt2", None, ["s.yaml", "--format", "pt2", "-o", "m.py"],
     "-o m.py: --format pt2 writes a .pt2 program, not a .py file"),
    ("output-overwrites-the-spec", lambda d: (d / "s.spec").write_text(TINY), ["s.spec", "-o", "s.spec"],
     "-o s.spec: the build would overwrite its own input s.spec"),
    ("weights-beside-output-overwrite-the-checkpoint", None,
     ["s.yaml", "--weights", "w.safetensors", "-o", "w.py"],
     "-o w.py: the build would overwrite its own input w.safetensors"),
    ("onnx-opset-too-old", None, ["s.yaml", "--backend", "onnx", "--opset", "5"], None),
    ("num-classes-zero", None, ["s.yaml", "--num-classes", "0"], "--num-classes must be between 1 and 1000000"),
]


@pytest.mark.parametrize("case", USAGE, ids=[c[0] for c in USAGE])
def test_usage_error(tiny, case):
    d, state = tiny
    _, setup, argv, message = case
    save_st(d / "w.safetensors", state)
    if setup:
        setup(d)
    r = build_fails(d, argv, 2)
    line = r.err.strip().splitlines()[-1]
    if message is None:
        assert line.startswith("archc: error: --opset must be between 17 and "), line
    else:
        assert line == f"archc: error: {message}"


@pytest.mark.parametrize("argv, message", [
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
    (["--format", "onnx"], "invalid choice: 'onnx'"),
    (["--seed", "x"], "invalid int value: 'x'"),
    ([], None),
])
def test_argparse_errors_exit_2(tiny, argv, message):
    d, _ = tiny
    r = build_fails(d, ([] if argv == [] else ["s.yaml"]) + argv, 2)
    assert (message or "the following arguments are required: SPEC") in r.err


@pytest.mark.skipif(sys.platform != "linux" or not os.path.isdir("/proc/self"), reason="Linux /proc")
def test_output_on_a_filesystem_that_refuses_files(tiny):
    d, _ = tiny
    r = build_fails(d, ["s.yaml", "-o", "/proc/archc-test.py"], 2)
    assert r.err.startswith("archc: error: /proc/archc-test.py: cannot write: ")
    assert not os.path.exists("/proc/archc-test.py")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_directory(tiny):
    d, _ = tiny
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)
    try:
        r = build_fails(d, ["s.yaml", "-o", "ro/m.py"], 2)
        assert r.err.strip() == "archc: error: ro/m.py: cannot write: permission denied in directory ro"
    finally:
        os.chmod(d / "ro", 0o755)


# --- spec errors at build time: exit 1, located, nothing written ------------------------------

@pytest.mark.parametrize("target, outputs", TARGETS)
def test_bad_spec_writes_nothing(tiny, target, outputs):
    d, _ = tiny
    (d / "s.yaml").write_text(TINY.replace("conv 3x3 8}", "conv 3x3 0}", 1))
    r = build_fails(d, ["s.yaml", *target], 1, keep_existing=outputs)
    assert r.err.splitlines()[0] == "s.yaml:6:20: error: stage c1: conv out must be >= 1, got 0"


def test_checkpoint_error_as_github_annotation(tiny):
    d, state = tiny
    s = dict(state)
    s.pop("c2.conv.weight")
    save_st(d / "w.safetensors", s)
    r = build_fails(d, ["s.yaml", "--weights", "w.safetensors", "--error-format", "github"], 1)
    assert r.err.startswith("::error file=w.safetensors,line=1,col=1::checkpoint does not match "
                            "spec 't'")
    assert "%0A  missing (1):%0A    c2.conv.weight [8, 8, 3, 3]" in r.err


def test_too_small_fixed_input_size_writes_nothing(tiny):
    d, _ = tiny
    (d / "s.yaml").write_text(TINY.replace("conv 3x3 8}", "conv 3x3/2 8 valid}"))
    r = build_fails(d, ["s.yaml", "--backend", "onnx", "--input-size", "2", "-o", "m.onnx"], 1,
                    keep_existing=["m.onnx"])
    assert r.err.startswith("s.yaml:6:20: error: stage c1: ")


# --- internal errors: exit 3, the traceback only with --debug, nothing written ----------------

def _boom(*args, **kwargs):
    raise RuntimeError("simulated bug")


@pytest.mark.parametrize("target, outputs, where", [
    (["-o", "m.py", "--weights", "w.safetensors"], ["m.py", "m.safetensors"],
     "archcompiler.backends.torch.codegen.generate_source"),
    (["--format", "pt2", "-o", "m.pt2"], ["m.pt2"], "archcompiler.backends.torch.export.export_program"),
    (["--backend", "onnx", "-o", "m.onnx"], ["m.onnx"], "archcompiler.backends.onnx.lower_to_onnx"),
], ids=["torch-py", "torch-pt2", "onnx"])
def test_internal_error_exit_3(tiny, monkeypatch, target, outputs, where):
    d, state = tiny
    save_st(d / "w.safetensors", state)
    monkeypatch.setattr(where, _boom)
    r = build_fails(d, ["s.yaml", *target], 3, keep_existing=outputs)
    assert r.err.strip() == INTERNAL
    before = snapshot(d)
    r = archc("--debug", "build", "s.yaml", *target, cwd=d)
    assert r.rc == 3
    assert "Traceback (most recent call last)" in r.err and "RuntimeError: simulated bug" in r.err
    assert snapshot(d) == before and temp_files(d) == []


def _temp_arg(args) -> Path:
    """The temporary path among a writer's arguments."""
    return next(Path(a) for a in args if isinstance(a, str) and ".archc-" in a)


@pytest.mark.parametrize("target, outputs, writer", [
    (["-o", "m.py", "--weights", "w.safetensors"], ["m.py", "m.safetensors"],
     "archcompiler.weights.save_safetensors"),
    (["--format", "pt2", "-o", "m.pt2"], ["m.pt2"], "torch.export.save"),
    (["--backend", "onnx", "-o", "m.onnx"], ["m.onnx"], "onnx.save_model"),
], ids=["torch-py", "torch-pt2", "onnx"])
def test_failure_while_writing_leaves_no_partial_file(tiny, monkeypatch, target, outputs, writer):
    """The writer dies half-way through (a bug, or a full disk): the temporary file is
    removed and existing outputs stay as they were."""
    d, state = tiny
    save_st(d / "w.safetensors", state)

    def half_then_die(*args, **kwargs):
        _temp_arg(args).write_bytes(b"half a file")
        raise RuntimeError("writer died")

    monkeypatch.setattr(writer, half_then_die)
    r = build_fails(d, ["s.yaml", *target], 3, keep_existing=outputs)
    assert r.err.strip() == INTERNAL

    def disk_full(*args, **kwargs):
        _temp_arg(args).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, disk_full)
    r = build_fails(d, ["s.yaml", *target], 2, keep_existing=outputs)
    assert r.err.strip().endswith(": cannot write: no space left on device")


# --- both files or neither --------------------------------------------------------------------

def test_py_and_safetensors_are_replaced_together(tiny):
    d, state = tiny
    save_st(d / "w.safetensors", state)
    r = archc("build", "s.yaml", "-o", "m.py", "--weights", "w.safetensors", cwd=d)
    assert r.rc == 0, r.err
    assert r.out.splitlines() == ["wrote m.py", f"wrote {d / 'm.safetensors'}"]
    first = snapshot(d)
    assert oct(os.stat(d / "m.py").st_mode & 0o777) != "0o600"  # not mkstemp's private mode
    # a second build (another seed does not matter: same checkpoint) replaces both, cleanly
    (d / "m.py").write_text("old")
    (d / "m.safetensors").write_bytes(b"old")
    assert archc("build", "s.yaml", "-o", "m.py", "--weights", "w.safetensors", cwd=d).rc == 0
    again = snapshot(d)
    assert again.keys() == first.keys() and temp_files(d) == []
    assert again["m.py"] == first["m.py"]
    # (safetensors writes its metadata in no fixed order: compare what it holds)
    from safetensors import safe_open

    with safe_open(str(d / "m.safetensors"), framework="numpy") as f:
        # one metadata key: safetensors writes several in hash-map order (not reproducible)
        assert json.loads(f.metadata()["archc"]) == {"spec": "t", "format": "archc"}
        assert set(f.keys()) == set(state)
        np.testing.assert_array_equal(f.get_tensor("c1.conv.weight"), state["c1.conv.weight"])


def test_rename_failure_rolls_back_the_group(tmp_path, monkeypatch):
    from archcompiler.util import OutputError, atomic_outputs

    a, b = tmp_path / "m.py", tmp_path / "m.safetensors"
    a.write_text("old py")
    b.write_text("old weights")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len([c for c in calls if not str(c).endswith(".bak")]) == 2 and not str(src).endswith(".bak"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OutputError, match="cannot write: input/output error"):
        with atomic_outputs([str(a), str(b)], [".py", ".safetensors"]) as (ta, tb):
            Path(ta).write_text("new py")
            Path(tb).write_text("new weights")
    monkeypatch.undo()
    assert a.read_text() == "old py" and b.read_text() == "old weights"
    assert temp_files(tmp_path) == []


def test_ctrl_c_during_the_renames_is_held_until_both_are_done(tmp_path, monkeypatch):
    from archcompiler.util import atomic_outputs

    a, b = tmp_path / "m.py", tmp_path / "m.safetensors"
    real_replace = os.replace

    def interrupted(src, dst):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C between the two renames
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs([str(a), str(b)], [".py", ".safetensors"]) as (ta, tb):
            Path(ta).write_text("new py")
            Path(tb).write_text("new weights")
    monkeypatch.undo()
    assert a.read_text() == "new py" and b.read_text() == "new weights"  # both, not one
    assert temp_files(tmp_path) == []


# --- Ctrl-C and SIGTERM in a real process ------------------------------------------------------

# runs `archc build` with one writer paused after it wrote its temporary file, so that the
# signal arrives while the temporary file exists
PAUSED = r"""
import sys, time
which = sys.argv[1]
if which == "safetensors":
    import archcompiler.weights as mod; attr = "save_safetensors"
elif which == "pt2":
    import torch.export as mod; attr = "save"
else:
    import onnx as mod; attr = "save_model"
real = getattr(mod, attr)
def paused(*args, **kwargs):
    result = real(*args, **kwargs)
    print("STAGED", flush=True)
    time.sleep(300)
    return result
setattr(mod, attr, paused)
from archcompiler.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _wait_for_line(proc, text: str, timeout: float) -> bool:
    found = threading.Event()

    def reader():
        for line in proc.stdout:
            if line.strip() == text:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    return found.wait(timeout)


@pytest.mark.parametrize("signum, rc, word", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")],
                         ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("which, target, outputs", [
    ("safetensors", ["-o", "m.py", "--weights", "w.safetensors"], ["m.py", "m.safetensors"]),
    ("pt2", ["--format", "pt2", "-o", "m.pt2"], ["m.pt2"]),
    ("onnx", ["--backend", "onnx", "-o", "m.onnx"], ["m.onnx"]),
], ids=["torch-py", "torch-pt2", "onnx"])
def test_signal_while_the_temporary_file_exists(tiny, which, target, outputs, signum, rc, word):
    d, state = tiny
    save_st(d / "w.safetensors", state)
    for name in outputs:
        (d / name).write_bytes(b"an earlier build: keep me")
    before = snapshot(d)
    proc = subprocess.Popen([sys.executable, "-c", PAUSED, which, "build", "s.yaml", *target],
                            cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_line(proc, "STAGED", 240), "the build never reached its writer"
        staged = temp_files(d)
        assert staged and all(n.startswith(".archc-") for n in staged)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == rc, err
    assert err.strip() == f"archc: {word}"
    assert snapshot(d) == before
    assert temp_files(d) == []


@pytest.mark.parametrize("target, when", [
    (["--backend", "onnx", "-o", "m.onnx"], "temp"),
    (["--backend", "torch", "--format", "pt2", "-o", "m.pt2"], 3.0),
], ids=["onnx-while-writing", "pt2-while-exporting"])
def test_ctrl_c_on_a_real_build(tmp_path, target, when):
    """Ctrl-C on `archc build inception_resnet_v2` (several seconds): exit 130, no
    traceback, and the directory as it was."""
    (tmp_path / "m.onnx").write_bytes(b"keep me")
    before = snapshot(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "archcompiler.cli", "build",
                             "inception_resnet_v2", *target], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, sent = time.monotonic(), False
    try:
        while proc.poll() is None and time.monotonic() - t0 < 300:
            if (temp_files(tmp_path) if when == "temp" else time.monotonic() - t0 >= when):
                proc.send_signal(signal.SIGINT)
                sent = True
                break
            time.sleep(0.002)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sent, f"the build finished before the signal: {err}"
    assert proc.returncode == 130, err
    assert err.strip() == "archc: interrupted"
    assert out == ""
    assert snapshot(tmp_path) == before


SIGINT_INSIDE_EXEC = """
import sys
import archcompiler.cli as cli

def main():  # Ctrl-C lands while a library runs exec() of a string (a dataclass being made)
    try:
        exec("import signal; signal.raise_signal(signal.SIGINT)")
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return cli.EXIT_INTERRUPTED

cli.main = main
cli.entry()
"""


def test_ctrl_c_inside_exec_still_exits_130_under_python_m(tmp_path):
    """CPython's `python -m` runner kills itself with SIGINT at exit (returncode -2) when a
    KeyboardInterrupt once left code run by exec() of a string, even though archc caught it
    (the flake CI saw in test_ctrl_c_on_a_real_build[pt2-while-exporting])."""
    (tmp_path / "ctrl_c_inside_exec.py").write_text(SIGINT_INSIDE_EXEC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "ctrl_c_inside_exec"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.strip()) == (130, "archc: interrupted")


# --- what a good build writes, and only that -----------------------------------------------

@pytest.mark.parametrize("target, outputs", TARGETS)
def test_successful_build_writes_exactly_its_outputs(tiny, target, outputs):
    d, state = tiny
    save_st(d / "w.safetensors", state)
    argv = ["s.yaml", *target] + (["--weights", "w.safetensors"] if len(outputs) > 1 else [])
    before = set(os.listdir(d))
    r = archc("build", *argv, cwd=d)
    assert r.rc == 0, r.err
    assert set(os.listdir(d)) - before == set(outputs)
    for name in outputs:
        assert os.stat(d / name).st_size > 0


def test_output_through_a_symlink_replaces_the_link(tiny):
    """-o LINK replaces the link itself, as mv does; the file it pointed to is kept."""
    d, _ = tiny
    (d / "real.py").write_text("old")
    (d / "link.py").symlink_to("real.py")
    r = archc("build", "s.yaml", "-o", "link.py", cwd=d)
    assert r.rc == 0, r.err
    assert not os.path.islink(d / "link.py") and "class" in (d / "link.py").read_text()
    assert (d / "real.py").read_text() == "old"
    assert temp_files(d) == []


def test_shipped_specs_are_not_touched(tmp_path):
    """Building a shipped spec by name never writes into the package."""
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "specs").rglob("*") if p.is_file()}
    r = archc("build", "inception_v3", "-o", str(tmp_path / "v3.py"))
    assert r.rc == 0, r.err
    after = {p: p.stat().st_mtime_ns for p in (ROOT / "specs").rglob("*") if p.is_file()}
    assert before == after
    assert glob.glob(str(ROOT / "specs" / ".archc-*.*")) == []
