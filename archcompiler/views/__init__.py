"""Views of a spec for people: show, summary, graph, diff (core only: no torch, no onnx)."""
