"""The `archc` verbs that show a spec to people (archcompiler.views): `show`, `summary`,
`graph` (its own module, cli_graph.py), `diff`.

`add_commands(sub, common)` adds their parsers to `archc`'s; `HANDLERS` maps each verb
to its handler. Exit codes as `archc validate`'s (0 ok, 1 an invalid spec, 2 usage),
except `diff`, whose 1 means "the specs differ": there an invalid spec is exit 2.
"""

from __future__ import annotations

import argparse
import sys

from .cli import EXIT_OK, EXIT_SPEC, EXIT_USAGE, _check_path, _emit, _size
from .errors import SpecError

EXIT_DIFFERENT = 1  # diff: the specs differ (as diff(1) and cmp(1) say it)


def positive_depth(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return n


def _spec_options(p, json_help: str) -> None:
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--root", help="spec root (default: the nearest directory holding .archc-root, "
                                  ".git or pyproject.toml)")
    p.add_argument("--error-format", choices=["text", "github"], default="text",
                   help="github: GitHub Actions annotations")


def add_commands(sub, common) -> None:
    from .cli_graph import add_graph_command
    from .views import DEFAULT_SUMMARY_DEPTH as DEFAULT_DEPTH

    spec_help = "a spec file, or a shipped spec's name (inception_v4 or archc:inception_v4)"
    sh = sub.add_parser("show", parents=[common],
                        help="a spec's parameters, blocks and stages (what a variant can change)")
    sh.add_argument("spec", metavar="SPEC", help=spec_help)
    sh.add_argument("--expand", action="store_true",
                    help="print the whole resolved spec (imports and extends applied) as YAML")
    _spec_options(sh, "the report as JSON on stdout")

    s = sub.add_parser("summary", parents=[common],
                       help="a table of a spec's stages and blocks: shapes, parameters, MACs")
    s.add_argument("spec", metavar="SPEC", help=spec_help)
    s.add_argument("--depth", type=positive_depth, default=DEFAULT_DEPTH, metavar="N",
                   help=f"rows down to this depth: 1 the stages, 2 what they hold, ... "
                        f"(default {DEFAULT_DEPTH})")
    s.add_argument("--input-size", type=_size, metavar="HxW", help="shapes and MACs at another input size")
    s.add_argument("--expand", action="store_true",
                   help="a row for every copy of a repeated block (default: identical copies "
                        "as one row)")
    _spec_options(s, "the rows and totals as JSON on stdout")

    add_graph_command(sub, common)

    d = sub.add_parser("diff", parents=[common],
                       help="compare two specs: settings, stages, blocks, and their numbers "
                            "(exit 0 equal, 1 different)")
    d.add_argument("a", metavar="A", help=spec_help)
    d.add_argument("b", metavar="B", help="the spec to compare it with")
    _spec_options(d, "the differences as JSON on stdout")


def load_for_view(path: str, args, input_size=None):
    """The loaded spec, or None once its diagnostics are printed; warnings printed too."""
    from . import load_spec

    try:
        spec = load_spec(path, root=args.root, input_size=input_size)
    except SpecError as exc:
        _emit(exc.diagnostics, args.error_format)
        return None
    _emit(list(spec.analysis.diagnostics), args.error_format)
    return spec


def _json(value) -> str:
    import json  # only --json needs it (every archc run pays for an import at the top)

    return json.dumps(value, indent=2)


def cmd_show(args) -> int:
    from .views.show import expanded, expanded_yaml, show

    _check_path(args.spec)
    spec = load_for_view(args.spec, args)
    if spec is None:
        return EXIT_SPEC
    if args.expand:
        sys.stdout.write(_json(expanded(spec)) + "\n" if args.json
                         else expanded_yaml(spec))
    else:
        report = show(spec)
        print(_json(report.to_json()) if args.json else report)
    return EXIT_OK


def cmd_summary(args) -> int:
    from .views.summary import format_summary, summarize

    _check_path(args.spec)
    spec = load_for_view(args.spec, args, args.input_size)
    if spec is None:
        return EXIT_SPEC
    result = summarize(spec.analysis, args.depth)
    print(_json(result.to_json()) if args.json
          else format_summary(result, expand=args.expand))
    return EXIT_OK


def cmd_diff(args) -> int:
    from .views.diff import compare

    _check_path(args.a)
    _check_path(args.b)
    specs = [load_for_view(path, args) for path in (args.a, args.b)]  # both: every problem at once
    if None in specs:
        return EXIT_USAGE
    result = compare(*specs)
    print(_json(result.to_json()) if args.json else result)
    return EXIT_OK if result.equal else EXIT_DIFFERENT


def cmd_graph(args) -> int:
    from .cli_graph import cmd_graph as run

    return run(args)


HANDLERS = {"show": cmd_show, "summary": cmd_summary, "graph": cmd_graph, "diff": cmd_diff}
