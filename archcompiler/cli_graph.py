"""`archc graph SPEC [-o FILE]`: a picture of a spec's structure (DOT, Mermaid or SVG).

Kept apart from cli.py so that the verb is one import and two lines there.
"""

from __future__ import annotations

import os
import sys

from .errors import UsageError

# the output's extension names the format; without -o, DOT goes to stdout
_EXT_FORMAT = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".svg": "svg"}
_FORMATS = ("dot", "mermaid", "svg")


def add_graph_command(sub, common) -> None:
    g = sub.add_parser("graph", parents=[common],
                       help="draw a spec's structure: Graphviz DOT, Mermaid or SVG")
    g.add_argument("spec", metavar="SPEC", help="a spec file or a shipped spec's name")
    g.add_argument("-o", "--output", help="output file; its extension (.dot/.gv, .mmd/.mermaid, "
                                          ".svg) picks the format (default: DOT on stdout)")
    g.add_argument("--format", choices=_FORMATS, help="the output format (default: from -o)")
    from .cli_views import positive_depth

    g.add_argument("--depth", type=positive_depth, metavar="N",
                   help="1: each stage as one node; 2: also blocks used inside blocks "
                        "(default: everything)")
    g.add_argument("--root", help="spec root")
    g.add_argument("--error-format", choices=["text", "github"], default="text",
                   help="github: GitHub Actions annotations")


def _pick_format(fmt, output) -> str:
    """--format, or the format -o's extension names; a contradiction is a usage error."""
    ext = os.path.splitext(output or "")[1].lower()
    named = _EXT_FORMAT.get(ext)
    if fmt is not None:
        if named is not None and named != fmt:
            raise UsageError(f"-o {output}: a {ext} file is {named}, not --format {fmt}")
        return fmt
    if output is None:
        return "dot"
    if named is None:
        raise UsageError(f"-o {output}: cannot tell the format from {ext or 'no extension'}: "
                         "use .dot, .gv, .mmd, .mermaid or .svg, or say --format")
    return named


def cmd_graph(args) -> int:
    from .cli import EXIT_OK, EXIT_SPEC, _check_path, write_text_output
    from .cli_views import load_for_view
    from .views.graph import render

    _check_path(args.spec)
    fmt = _pick_format(args.format, args.output)
    spec = load_for_view(args.spec, args)
    if spec is None:
        return EXIT_SPEC
    text = render(spec, fmt, args.depth)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    write_text_output(args.output, text)
    print(f"wrote {args.output}")
    return EXIT_OK
