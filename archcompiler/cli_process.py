"""How the `archc` process starts and ends: what a short-lived command-line process may do
that a library imported into someone else's program may not (archcompiler.cli.entry)."""

from __future__ import annotations

import argparse
import os
import sys


def terminal_columns() -> int:
    """The terminal's width, as shutil.get_terminal_size() finds it (COLUMNS, then the
    terminal, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter without its `import shutil` (and bz2, lzma, zlib: ~3 ms of
    every run, as argparse makes a formatter per argument even when no help is shown)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


def without_pydantic_plugins() -> None:
    """archc's models use no pydantic plugin. Looking for plugins, when the first validator
    is built, imports importlib.metadata and scans every installed distribution: ~18 ms
    of a 0.3 s `archc validate`. Unless the user set PYDANTIC_DISABLE_PLUGINS, this
    process disables them (pydantic's documented switch) and gives pydantic a loader that
    has none to find, so that importlib.metadata is never imported."""
    if "PYDANTIC_DISABLE_PLUGINS" in os.environ or "pydantic.plugin._loader" in sys.modules:
        return
    import types

    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    name = "pydantic.plugin._loader"
    loader = types.ModuleType(name, "archc: no pydantic plugins")
    loader.get_plugins = lambda: ()  # what pydantic's own loader returns when disabled

    def real(attr):  # anything else a later pydantic asks of it: the real loader, after all
        if attr.startswith("__"):  # what the import system probes (__path__, ...): absent
            raise AttributeError(attr)
        sys.modules.pop(name, None)
        import importlib

        return getattr(importlib.import_module(name), attr)

    loader.__getattr__ = real
    sys.modules[name] = loader


def leave_now(code: int, run_exit_handlers: bool = False) -> None:
    import signal

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    except ValueError:  # not the main thread (entry() called by an embedding program)
        pass
    if run_exit_handlers:
        import atexit

        atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs (temp dirs, logging)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
