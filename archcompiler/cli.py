"""`archc`: validate specs, print the schema, build models.

Exit codes: 0 ok; 1 a spec (or a file it references) is wrong; 2 usage error (bad option,
missing or unreadable top-level path, an output that cannot be written, a missing extra);
3 internal error (a bug: the traceback only with --debug); 130 / 143 interrupted by
SIGINT / SIGTERM (outputs left as they were). Diagnostics go to stderr as
`path:line:col: error: message`.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Optional

from .cli_process import HelpFormatter, leave_now, without_pydantic_plugins
from .errors import Diagnostic, MissingExtraError, SpecError, UsageError

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT / SIGTERM, as shells report them


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's own errors are usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1 or max(parts) > 4096:
        raise argparse.ArgumentTypeError(f"expected N or HxW with sizes in 1..4096, got {text!r}")
    return parts[0], parts[1]


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archc", description="Compile neural-network architectures written as YAML.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # --debug is accepted after the subcommand too (SUPPRESS: absent there, the top-level
    # value stands)
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", parents=[common],
                       help="check specs against the paper's numbers and their own promises")
    v.add_argument("specs", nargs="+", metavar="SPEC",
                   help="spec files, or shipped spec names (inception_v4 or archc:inception_v4)")
    v.add_argument("--json", action="store_true", help="a JSON array on stdout, one object per spec")
    v.add_argument("--input-size", type=_size, metavar="HxW", help="try another input size")
    v.add_argument("--error-format", choices=["text", "github"], default="text",
                   help="github: GitHub Actions annotations")
    v.add_argument("--root", help="spec root (default: the nearest directory holding .archc-root, "
                                  ".git or pyproject.toml, else the spec's own)")

    s = sub.add_parser("schema", parents=[common], help="print the JSON Schema of spec files")
    s.add_argument("-o", "--output", help="write to a file instead of stdout")

    b = sub.add_parser("build", parents=[common], help="compile a spec to a PyTorch module or an ONNX graph")
    b.add_argument("spec", metavar="SPEC")
    b.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    b.add_argument("-o", "--output", help="output file (default: <spec name>.py / .pt2 / .onnx)")
    b.add_argument("--format", choices=["py", "pt2"], default=None,
                   help="torch: generated source (py, default) or a torch.export program (pt2)")
    b.add_argument("--weights", help="checkpoint: .safetensors (or a .pt/.pth state_dict)")
    b.add_argument("--num-classes", type=int, help="a fresh classifier with this many outputs")
    b.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    b.add_argument("--input-size", type=_size, metavar="HxW",
                   help="onnx: fix the spatial size (default: dynamic)")
    b.add_argument("--opset", type=int, default=None, help="onnx opset (default 18)")
    b.add_argument("--optimize", action="store_true", help="inference optimizations (BN folding, ...)")
    b.add_argument("--error-format", choices=["text", "github"], default="text")
    b.add_argument("--root", help="spec root")

    sub.add_parser("list", parents=[common], help="list the shipped specs")
    from .cli_views import add_commands  # the views: show, summary, graph, diff
    add_commands(sub, common)
    return p


def _emit(diags: list[Diagnostic], fmt: str) -> None:
    for d in diags:
        print(d.format_github() if fmt == "github" else d.format(), file=sys.stderr)


def _check_path(spec: str) -> None:
    """A top-level path must be a readable regular file (or a shipped spec's name):
    anything else is a usage error (exit 2), found before any spec is read."""
    from .spec.shipped import find_named_spec

    if spec.startswith("archc:"):
        if find_named_spec(spec) is None:
            raise UsageError(f"{spec}: no shipped spec named {spec[len('archc:'):]!r} "
                             "(see 'archc list')")
        return
    try:
        st = os.stat(spec)
    except (OSError, ValueError):
        st = None
    if st is not None:
        _check_regular(spec, st, spec, f"give spec files, e.g. {spec}/*.yaml")
        return
    if find_named_spec(spec) is None:
        raise UsageError(f"{spec}: no such file, and no shipped spec of that name (see 'archc list')")


def cmd_validate(args) -> int:
    from . import load_spec

    for spec in args.specs:
        _check_path(spec)
    results, status = [], EXIT_OK
    for path in args.specs:
        try:
            spec = load_spec(path, root=args.root, input_size=args.input_size)
        except SpecError as exc:
            status = EXIT_SPEC
            _emit(exc.diagnostics, args.error_format)
            results.append({"spec": path, "name": None, "valid": False,
                            "diagnostics": [d.to_json() for d in exc.diagnostics]})
            if not args.json:
                print(f"{path}: invalid ({len(exc.errors)} error{'s' * (len(exc.errors) != 1)})")
            continue
        a = spec.analysis
        _emit(list(a.diagnostics), args.error_format)
        if args.json:
            results.append(a.to_json())
        else:
            print(format_table(a))
        # spec and analysis refer to each other: without this, every spec's graph would
        # live until a cycle collection, and memory (page faults) grow with each file
        spec.analysis = a = None
    if args.json:
        import json

        print(json.dumps(results, indent=2))
    return status


def format_table(a) -> str:
    from .ir.ops import fmt_shape

    head = (f"{a.spec.path}: {a.spec.name} ok   input {fmt_shape(a.input_shape)} -> "
            f"{fmt_shape(a.output_shape)}   layers {a.layers}   params {a.params:,}   "
            f"MACs {a.macs / 1e9:.3f} G   min input {a.min_input}x{a.min_input}")
    rows = [f"  {'stage':<28} {'output':>12} {'layers':>7} {'params':>12}"]
    for s in a.stages:
        name = s.name + (" (aux, training only)" if s.kind == "aux" else "")
        rows.append(f"  {name:<28} {fmt_shape(s.shape):>12} {s.layers:>7} {s.params:>12,}")
    return "\n".join([head, *rows])


def cmd_schema(args) -> int:
    from .spec.model import json_schema

    import json

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        write_text_output(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def write_text_output(path: str, text: str) -> None:
    """Write `-o PATH` atomically; what the OS refuses is a usage error (exit 2) naming the
    path and the reason."""
    from .util import OutputError, atomic_write_text

    try:
        atomic_write_text(path, text)
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write: {exc.strerror or exc}") from None


def cmd_list(args) -> int:
    from .spec.shipped import package_specs_dir, shipped_spec_names

    print(f"shipped specs ({package_specs_dir()}):")
    for name in shipped_spec_names():
        print(f"  {name}")
    return EXIT_OK


def _check_weights_path(path: str) -> None:
    """--weights must name a readable regular file (never open a FIFO or a device: it
    could block forever): anything else is a usage error (exit 2), found before any
    spec is read. A file of the wrong format is a checkpoint error (exit 1), later."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"--weights {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--weights {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    _check_regular(path, st, f"--weights {path}", "give the checkpoint file")


def _check_regular(path: str, st, label: str, dir_hint: str) -> None:
    """A stat'ed input must be a readable regular file: never open a FIFO or a device."""
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{label}: is a directory ({dir_hint})")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{label}: not a regular file (a device, FIFO or socket): refused")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{label}: permission denied")


# what each output format is, and the extensions that clearly mean another kind of file
_FORMAT_EXT = {"py": ".py", "pt2": ".pt2", "onnx": ".onnx"}
_KNOWN_EXT = {".py", ".pt2", ".onnx", ".safetensors", ".pt", ".pth", ".bin", ".npz", ".yaml",
              ".yml", ".json"}


def _plan_outputs(spec, args) -> list[str]:
    """The files this build will write (args.output is set to the first), checked before
    anything is built: usage errors (exit 2) for an output that cannot be written, that
    is an input of the build, or whose extension says it is another kind of file."""
    from .util import OutputError, check_output

    if args.backend == "torch":
        fmt = args.format or ("pt2" if (args.output or "").endswith(".pt2") else "py")
        args.format = fmt
    else:
        fmt = "onnx"
    out = args.output or f"{spec.name}{_FORMAT_EXT[fmt]}"
    args.output = out
    ext = os.path.splitext(out)[1].lower()
    if ext in _KNOWN_EXT and ext != _FORMAT_EXT[fmt]:
        what = {"py": "--backend torch writes Python source (.py; --format pt2 for a .pt2)",
                "pt2": "--format pt2 writes a .pt2 program",
                "onnx": "--backend onnx writes a .onnx model"}[fmt]
        hint = " (did you mean --backend onnx?)" if ext == ".onnx" else ""
        raise UsageError(f"-o {out}: {what}, not a {ext} file{hint}")
    outputs = [out]
    if fmt == "py" and args.weights is not None:
        outputs.append(os.path.join(os.path.dirname(out),
                                    os.path.splitext(os.path.basename(out))[0] + ".safetensors"))
    inputs = [p for p in (spec.path, args.spec, args.weights) if p]
    for path in outputs:
        try:
            check_output(path)
        except OutputError as exc:
            raise UsageError(str(exc)) from None
        for inp in inputs:  # an output that is a symlink is replaced, not written through
            if os.path.lexists(path) and _same_entry(inp, path):
                raise UsageError(f"-o {out}: the build would overwrite its own input {inp}")
    return outputs


def _same_entry(inp: str, out: str) -> bool:
    """Whether replacing directory entry `out` would replace the file `inp` reads (an
    input given through a symlink reads the link's target)."""
    try:
        return os.path.samestat(os.stat(inp), os.lstat(out)) or os.path.samestat(
            os.lstat(inp), os.lstat(out))
    except (OSError, ValueError):
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def cmd_build(args) -> int:
    from . import load_spec

    _check_path(args.spec)
    if args.weights is not None:
        _check_weights_path(args.weights)
    if args.num_classes is not None and not (1 <= args.num_classes <= 1_000_000):
        raise UsageError("--num-classes must be between 1 and 1000000")
    if args.backend == "onnx" and args.format is not None:
        raise UsageError(f"--format {args.format} is for --backend torch; --backend onnx writes .onnx")
    if args.backend == "torch":
        if args.opset is not None:
            raise UsageError("--opset is for --backend onnx")
        if args.input_size is not None:
            raise UsageError("--input-size is for --backend onnx (torch models accept any input size)")
    try:
        spec = load_spec(args.spec, root=args.root)
    except SpecError as exc:
        _emit(exc.diagnostics, args.error_format)
        return EXIT_SPEC
    _plan_outputs(spec, args)
    if args.backend == "torch" and args.format == "py" and args.optimize:
        raise UsageError("--optimize builds an inference program: use it with --format pt2 "
                         "(or --backend onnx); the generated .py is the trainable module")
    from .backends import cli_build
    from .util import OutputError

    # SIGTERM (a CI job cancelled) cleans up like Ctrl-C: no temporary file is left
    import signal
    import threading

    restore = False
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        restore = True
    from .progress import Progress

    what = f"--backend {args.backend}" + (f" --format {args.format}" if args.backend == "torch" else "")
    if args.weights is not None:
        what += f", weights {args.weights}"
    show = args.error_format == "text"
    try:
        with Progress(f"building {spec.name} ({what})", enabled=show):
            written = cli_build(spec, args)
    except SpecError as exc:
        _emit(exc.diagnostics, args.error_format)
        return EXIT_SPEC
    except OutputError as exc:
        _WRITE_FAILED.append(exc)
        raise UsageError(str(exc)) from None
    finally:
        if restore:
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    from .cli_views import HANDLERS
    handlers = {"validate": cmd_validate, "schema": cmd_schema, "build": cmd_build, "list": cmd_list,
                **HANDLERS}
    try:
        return handlers[args.command](args)
    except (UsageError, MissingExtraError) as exc:
        print(f"archc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as exc:
        _emit(exc.diagnostics, getattr(args, "error_format", "text"))
        return EXIT_SPEC
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a build: outputs are atomic
        terminated = isinstance(exc, Terminated)
        print(f"archc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception:  # noqa: BLE001 - the contract: never a traceback unless --debug
        if args.debug:
            import traceback

            traceback.print_exc()
        else:
            print("archc: internal error: this is a bug, please report it (run with --debug "
                  "for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


_WRITE_FAILED: list = []


def entry() -> None:
    # A short-lived process whose objects (spec models, IR nodes) mostly live until it
    # exits: the cycle collector's passes over them cost ~15% of validating every shipped
    # spec (~110k objects) and free little. Collect only every 500k new objects (as mypy
    # does, with 200k): memory stays bounded, a large run pays the same per object.
    gc.set_threshold(500_000, 50, 100)
    without_pydantic_plugins()
    code = main()
    if _WRITE_FAILED:
        # A writer that failed (a full disk) may still be referenced, and torch's zip writer
        # aborts the process when destroyed at exit: leave without running destructors.
        leave_now(code)
    # Every output is complete (or removed) by now: leave at once. Exit handlers and
    # flushes run; the interpreter's teardown (a collector pass over every spec model and
    # IR node, freeing them one by one) does not, for memory the OS reclaims anyway. And
    # leave deaf to a second signal: a Ctrl-C that passed through code run by exec() of a
    # string (a dataclass being made, say) leaves CPython's "unhandled KeyboardInterrupt"
    # flag set, and `python -m` would then kill itself with SIGINT instead of exiting 130.
    leave_now(code, run_exit_handlers=True)


if __name__ == "__main__":
    entry()
