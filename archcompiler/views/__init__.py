"""Views of a spec for people: show, summary, graph, diff (core only: no torch, no onnx)."""

# here, not in summary.py: `archc --help` and `archc list` build the parser without the spec models
DEFAULT_SUMMARY_DEPTH = 2
