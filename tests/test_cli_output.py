"""Issue 11: outputs that never turn on the user (symlinks, full disks, temporary files),
missing extras, and progress on a terminal."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spec_helpers import ROOT, archc, write_tree

TINY = """\
archc: 1
name: t
input: 3x32x32
classes: 10
network:
  - {name: c1, op: conv 3x3 64}
  - {name: c2, op: conv 3x3 256}
  - {name: c3, op: conv 3x3 256}
head: [global_avgpool, linear 10]
"""
TARGETS = [
    pytest.param(["-o", "out/m.py", "--weights", "w.safetensors"], ["m.py", "m.safetensors"],
                 id="torch-py-and-safetensors"),
    pytest.param(["--format", "pt2", "-o", "out/m.pt2"], ["m.pt2"], id="torch-pt2"),
    pytest.param(["--backend", "onnx", "-o", "out/m.onnx"], ["m.onnx"], id="onnx"),
]


@pytest.fixture
def tiny(tmp_path):
    write_tree(tmp_path, {"s.yaml": TINY})
    return tmp_path


def weights(d: Path) -> None:
    """A checkpoint for the tiny spec (the torch module's own state, our names)."""
    import archcompiler as ac
    from safetensors.numpy import save_file

    model = ac.build(str(d / "s.yaml"))
    save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, str(d / "w.safetensors"))


def temp_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".archc-") and p.name != ".archc-root")


# --- symlinks ------------------------------------------------------------------------------

def test_symlinked_output_is_replaced_like_mv_and_its_target_untouched(tiny, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "precious.py"
    outside.write_text("precious")
    (tiny / "link.py").symlink_to(outside)
    r = archc("build", "s.yaml", "-o", "link.py", cwd=tiny)
    assert r.rc == 0, r.err
    assert not os.path.islink(tiny / "link.py")
    assert "class T" in (tiny / "link.py").read_text()
    assert outside.read_text() == "precious"
    assert temp_files(tiny) == []


def test_symlink_to_the_spec_itself_is_replaced_and_the_spec_kept(tiny):
    (tiny / "link.py").symlink_to(tiny / "s.yaml")
    r = archc("build", "s.yaml", "-o", "link.py", cwd=tiny)
    assert r.rc == 0, r.err
    assert (tiny / "s.yaml").read_text() == TINY and not os.path.islink(tiny / "link.py")


# --- OS write errors -----------------------------------------------------------------------

def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs (unshare)")


def _in_small_fs(d: Path, argv: list, options: str = "size=300k") -> subprocess.CompletedProcess:
    """`archc build ...` with out/ a small tmpfs (a real full disk: ENOSPC from the
    kernel) in a private mount namespace; prints what out/ holds afterwards."""
    (d / "out").mkdir(exist_ok=True)
    args = " ".join(argv)
    script = (f"mount -t tmpfs -o {options} tmpfs out && echo keep > out/m.py && "
              f"{sys.executable} -m archcompiler.cli build s.yaml {args}; rc=$?; "
              "echo; echo '--- out:'; ls -A out; cat out/m.py; exit $rc")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=d, capture_output=True,
                          text=True, timeout=600, env=env)


@needs_tmpfs
@pytest.mark.parametrize("argv, outputs", TARGETS)
def test_full_disk_exits_2_with_the_reason_and_leaves_nothing(tiny, argv, outputs):
    weights(tiny)
    p = _in_small_fs(tiny, argv)
    assert p.returncode == 2, p.stderr
    first = outputs[0]
    assert p.stderr.startswith(f"archc: error: out/{first}")
    assert p.stderr.rstrip().endswith("cannot write: no space left on device"), p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    listing = p.stdout.split("--- out:\n", 1)[1].split()
    assert listing == ["m.py", "keep"]  # the earlier output untouched, no temporary file


@needs_tmpfs
def test_read_only_file_system_exits_2_with_the_reason(tiny):
    script = ("mkdir -p out && mount -t tmpfs -o size=300k,ro tmpfs out && "
              f"{sys.executable} -m archcompiler.cli build s.yaml -o out/x.py")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tiny, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == "archc: error: out/x.py: cannot write: read-only file system"


# --- temporary files -----------------------------------------------------------------------

def test_stale_temp_files_are_removed_and_live_ones_kept(tiny):
    stale = tiny / ".archc-0123456789ab.tmp.onnx"
    stale.write_bytes(b"x" * 1000)
    live = tiny / ".archc-ba9876543210.tmp.py"
    live.write_bytes(b"being written")
    other = tiny / ".archc-notours.txt"
    other.write_text("not a temporary file of ours")
    with open(live, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # a concurrent build holds its lock
        r = archc("build", "s.yaml", "-o", "m.py", cwd=tiny)
        assert r.rc == 0, r.err
        assert not stale.exists()
        assert live.read_bytes() == b"being written"
    assert other.exists()
    assert temp_files(tiny) == [".archc-ba9876543210.tmp.py", ".archc-notours.txt"]


def test_temp_file_is_recognisable_and_locked_while_written(tmp_path):
    from archcompiler.util import atomic_output, remove_stale_temps

    with atomic_output(str(tmp_path / "m.onnx"), suffix=".onnx") as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".archc-") and name.endswith(".tmp.onnx")
        Path(tmp).write_bytes(b"half")
        with open(tmp, "rb") as fh:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert remove_stale_temps(str(tmp_path)) == []
        assert os.path.exists(tmp)
    assert (tmp_path / "m.onnx").read_bytes() == b"half"
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_killed_build_leaves_a_file_the_next_build_removes(tiny):
    """SIGKILL while the temporary file exists: its lock dies with the process."""
    code = ("import os, sys\nfrom archcompiler.util import atomic_output\n"
            "with atomic_output('big.onnx', suffix='.onnx') as tmp:\n"
            "    open(tmp, 'wb').write(b'x' * 4096)\n    os.kill(os.getpid(), 9)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tiny, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == -9
    left = temp_files(tiny)
    assert len(left) == 1 and left[0].endswith(".tmp.onnx")
    r = archc("build", "s.yaml", "-o", "m.py", cwd=tiny)
    assert r.rc == 0, r.err
    assert temp_files(tiny) == []


# --- missing extras ------------------------------------------------------------------------

BLOCKER = (
    "import sys\n"
    "class _Hide:\n"
    "    def __init__(self, names): self.names = names\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.partition('.')[0] in self.names:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _Hide({names!r}))\n"
)


def without(names: tuple, code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER.replace("{names!r}", repr(names)) + code],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


CLI = "import sys; from archcompiler.cli import main; sys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize("hidden, argv, extra", [
    (("onnx", "onnxruntime"), ["--backend", "onnx", "-o", "m.onnx"], "onnx"),
    (("torch",), ["--format", "pt2", "-o", "m.pt2"], "torch"),
])
def test_missing_extra_exits_2_with_the_install_command(tiny, hidden, argv, extra):
    code = "sys.argv = ['archc', 'build', 's.yaml', " + ", ".join(map(repr, argv)) + "]\n" + CLI
    p = without(hidden, code, tiny)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == (f"archc: error: the {extra} backend needs the '{extra}' extra "
                                f"({extra} is not installed): pip install 'archcompiler[{extra}]'")
    assert sorted(os.listdir(tiny)) == [".archc-root", "s.yaml"]


def test_missing_extra_in_the_api_is_an_import_error_with_the_same_text(tiny):
    code = ("import archcompiler as ac\n"
            "try:\n    ac.build('s.yaml', backend='onnx')\n"
            "except ac.MissingExtraError as exc:\n"
            "    assert isinstance(exc, ImportError) and exc.name == 'onnx'\n"
            "    print(exc)\n")
    p = without(("onnx", "onnxruntime"), code, tiny)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("the onnx backend needs the 'onnx' extra (onnx is not installed): "
                                "pip install 'archcompiler[onnx]'")


def test_core_only_still_validates_and_writes_py(tiny):
    code = "sys.argv = ['archc', 'build', 's.yaml', '-o', 'm.py']\n" + CLI
    p = without(("torch", "onnx", "onnxruntime"), code, tiny)
    assert p.returncode == 0, p.stderr
    assert (tiny / "m.py").exists()


# --- progress ------------------------------------------------------------------------------

def _in_pty(argv: list, cwd) -> tuple[int, str]:
    import pty

    env = dict(os.environ, PYTHONPATH=str(ROOT), ARCHC_PROGRESS_DELAY="0", TERM="xterm")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "archcompiler.cli", *argv], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    proc.wait(timeout=300)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace") + "\n--- stdout:\n" + out


def test_progress_on_a_terminal(tiny):
    rc, text = _in_pty(["build", "s.yaml", "--format", "pt2", "-o", "m.pt2"], tiny)
    assert rc == 0, text
    assert "archc: building t (--backend torch --format pt2) ... " in text
    assert "archc: writing m.pt2 (" in text
    assert text.split("--- stdout:\n")[0].rstrip(" \r\n").endswith("\x1b[K")  # the line cleared
    assert "wrote m.pt2" in text


@pytest.mark.parametrize("extra", [["--error-format", "github"]])
def test_no_progress_in_github_mode(tiny, extra):
    rc, text = _in_pty(["build", "s.yaml", "-o", "m.py", *extra], tiny)
    assert rc == 0, text
    assert "archc: building" not in text and "\x1b[K" not in text


def test_no_progress_when_stderr_is_not_a_terminal(tiny):
    p = subprocess.run([sys.executable, "-m", "archcompiler.cli", "build", "s.yaml", "-o", "m.py"],
                       cwd=tiny, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT), ARCHC_PROGRESS_DELAY="0"))
    assert p.returncode == 0 and p.stderr == ""
