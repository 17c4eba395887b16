"""The SVG picture of a spec: our own nested-box layout of the structure tree (graph.py).

No Graphviz: its output changes with its version, and this must install from the
project's own files and give the same bytes for the same spec. The tree is
series-parallel, so a layout is two numbers per subtree (width, height) and one
recursion that places it: a sequence stacks vertically on one axis, parallel branches sit
side by side between a fork bus and a join bus that leads to the merge node, a box
(stage, block, condition) is a labelled rectangle around its body. Every subtree enters
and leaves at its horizontal centre, so every edge is straight or orthogonal.
All coordinates are integers: text widths come from a fixed monospace advance.
"""

from __future__ import annotations

from .graph import Box, Network, Op, Par, Seq

FONT = 11  # px, monospace
CW = 7  # advance of one character (DejaVu Sans Mono 11px is 6.6: a little room)
LH = 14  # line height
NPX, NPY = 8, 4  # an op node's padding around its text
PAD = 8  # a box's padding around its header and body
GAP = 18  # vertical room between consecutive items (holds an arrow)
HGAP = 14  # between parallel branches
FORK = 16  # from a Par's entry to its branch tops (the fork bus halfway)
JOIN = 10  # from the tallest branch to the join bus, and from it to the merge node
LANE = 16  # the width of an identity branch (`[]`, a residual's plain shortcut)
MARGIN = 12

_BOX_STYLE = {  # fill, stroke, dashed
    "network": ("#ffffff", "#c8c8c8", False),
    "stage": ("#eef3fa", "#6b7f99", False),
    "head": ("#eef7ee", "#6b996b", False),
    "block": ("#fbf6ea", "#a08850", False),
    "group": ("none", "#9a9a9a", False),
    "cond": ("none", "#b05050", True),
    "aux": ("#f6f6f6", "#6b996b", True),
}
_MERGE_FILL = {"concat": "#fdf0c8", "add": "#d9f0d9", "residual": "#d9f0d9", "multiply": "#f6d9e8"}


def _lines(text: str) -> list:
    return text.split("\n")


def _text_w(lines) -> int:
    return max(len(line) for line in lines) * CW


def _node_size(lines) -> tuple:
    return _text_w(lines) + 2 * NPX, len(lines) * LH + 2 * NPY


def _header(box: Box) -> list:
    return [box.title, *box.notes]


def _body(box: Box) -> Seq:
    return box.body if box.body.items else Seq((Op("identity"),))


def measure(node, memo: dict) -> tuple:
    """(width, height) of a subtree, memoised by identity (a tree is walked twice)."""
    key = id(node)
    if key not in memo:
        memo[key] = _measure(node, memo)
    return memo[key]


def _measure(node, memo) -> tuple:
    if isinstance(node, Op):
        return _node_size([node.label, *node.notes])
    if isinstance(node, Seq):
        if not node.items:
            return LANE, 0
        sizes = [measure(it, memo) for it in node.items]
        return max(w for w, _ in sizes), sum(h for _, h in sizes) + GAP * (len(sizes) - 1)
    if isinstance(node, Par):
        sizes = [measure(br, memo) for br in node.branches]
        mw, mh = _node_size(_lines(node.merge))
        row = sum(w for w, _ in sizes) + HGAP * (len(sizes) - 1)
        return max(row, mw), FORK + max(h for _, h in sizes) + 2 * JOIN + mh
    bw, bh = measure(_body(node), memo)
    head = _header(node)
    return max(bw, _text_w(head)) + 2 * PAD, PAD + len(head) * LH + PAD + bh + PAD


class _Canvas:
    def __init__(self):
        self.shapes, self.texts = [], []  # edges and boxes first, text on top

    def line(self, points, arrow: bool) -> None:
        d = "M" + " L".join(f"{x},{y}" for x, y in points)
        end = ' marker-end="url(#arrow)"' if arrow else ""
        self.shapes.append(f'<path d="{d}" fill="none" stroke="#555555" stroke-width="1.2"{end}/>')

    def rect(self, x, y, w, h, fill, stroke, rx=4, dashed=False) -> None:
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        self.shapes.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}" '
                           f'fill="{fill}" stroke="{stroke}"{dash}/>')

    def text(self, x, y, s, anchor="middle", bold=False) -> None:
        weight = ' font-weight="bold"' if bold else ""
        self.texts.append(f'<text x="{x}" y="{y}" text-anchor="{anchor}"{weight}>{_esc(s)}</text>')


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _node(c: _Canvas, lines, cx, y, fill, stroke, pill=False) -> None:
    w, h = _node_size(lines)
    c.rect(cx - w // 2, y, w, h, fill, stroke, rx=h // 2 if pill else 3)
    for i, line in enumerate(lines):
        c.text(cx, y + NPY + (i + 1) * LH - 3, line)


def _arrow_into(node) -> bool:
    # a Par's entry is a fork point, not a node: a line meets it, an arrow would not
    return not isinstance(node, Par) and not (isinstance(node, Seq) and node.items
                                               and isinstance(node.items[0], Par))


def place(node, cx: int, y: int, c: _Canvas, memo: dict, lead: bool = True) -> None:
    """Draw a subtree with its top centre at (cx, y); `lead`: an edge arrives there (the
    first item of a box has none: a Par there starts at its fork bus)."""
    w, h = measure(node, memo)
    if isinstance(node, Op):
        _node(c, [node.label, *node.notes], cx, y, "#ffffff", "#555555")
    elif isinstance(node, Seq):
        for i, it in enumerate(node.items):
            if i:
                c.line([(cx, y - GAP), (cx, y)], _arrow_into(it))
            place(it, cx, y, c, memo, lead or i > 0)
            y += measure(it, memo)[1] + GAP
    elif isinstance(node, Par):
        _place_par(node, cx, y, c, memo, lead)
    else:
        fill, stroke, dashed = _BOX_STYLE[node.kind]
        c.rect(cx - w // 2, y, w, h, fill, stroke, rx=6, dashed=dashed)
        for i, line in enumerate(_header(node)):
            c.text(cx - w // 2 + PAD, y + PAD + (i + 1) * LH - 3, line, "start", bold=i == 0)
        place(_body(node), cx, y + PAD + len(_header(node)) * LH + PAD, c, memo, False)


def _place_par(par: Par, cx: int, y: int, c: _Canvas, memo: dict, lead: bool) -> None:
    sizes = [measure(br, memo) for br in par.branches]
    row = sum(w for w, _ in sizes) + HGAP * (len(sizes) - 1)
    left, centres = cx - row // 2, []
    for bw, _ in sizes:
        centres.append(left + bw // 2)
        left += bw + HGAP
    top, fork_y = y + FORK, y + FORK // 2
    bus_y = top + max(h for _, h in sizes) + JOIN
    if lead:
        c.line([(cx, y), (cx, fork_y)], False)
    if len(centres) > 1:
        c.line([(centres[0], fork_y), (centres[-1], fork_y)], False)
        c.line([(centres[0], bus_y), (centres[-1], bus_y)], False)
    for br, bx, (bw, bh) in zip(par.branches, centres, sizes):
        if not br.items:  # the identity: one straight lane from the fork to the join
            c.line([(bx, fork_y), (bx, bus_y)], False)
            continue
        c.line([(bx, fork_y), (bx, top)], _arrow_into(br))
        place(br, bx, top, c, memo)
        c.line([(bx, top + bh), (bx, bus_y)], False)
    c.line([(cx, bus_y), (cx, bus_y + JOIN)], True)
    _node(c, _lines(par.merge), cx, bus_y + JOIN, _MERGE_FILL[par.kind], "#7a6a3a", pill=True)


def to_svg(net: Network) -> str:
    """The whole picture: the network box, then the aux heads the analysis built below it
    (each says which stage feeds it: the trunk column stays one straight line)."""
    memo: dict = {}
    parts = [net.box, *(box for _, box in net.aux)]
    sizes = [measure(p, memo) for p in parts]
    width = max(w for w, _ in sizes) + 2 * MARGIN
    height = sum(h for _, h in sizes) + GAP * (len(parts) - 1) + 2 * MARGIN
    c, y = _Canvas(), MARGIN
    for part, (_, h) in zip(parts, sizes):
        place(part, width // 2, y, c, memo)
        y += h + GAP
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
        f'font-size="{FONT}">',
        f"<title>{_esc(net.box.title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555555"/></marker></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    return "\n".join(head + c.shapes + c.texts + ["</svg>"]) + "\n"
