"""Backends (installed as `archcompiler.backends`): each imports its library lazily."""

from __future__ import annotations


def cli_build(spec, args) -> list[str]:
    """Run `archc build` for the chosen backend; returns the paths written."""
    from archcompiler.errors import extra_guard

    with extra_guard(f"--backend {args.backend}"):
        if args.backend == "torch":
            from .torch import cli_build as build
        else:
            from .onnx import cli_build as build
        return build(spec, args)
