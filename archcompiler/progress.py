"""Progress on stderr for slow steps (a few lines, no dependency).

Shown only when stderr is a terminal, and only once a step has run for `delay` seconds:
one line, rewritten in place (`archc: building inception_v4 ... 12 s`), cleared when the
step ends. The writing step is seen through archcompiler.util (the temporary files and
their size so far). Never used with --json or --error-format github.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional, TextIO


_ACTIVE: list = []  # the progress lines being shown


def poke() -> None:
    """A new step began (writing an output): redraw the progress line now, not at the
    next tick, so that a short step is seen too."""
    for p in list(_ACTIVE):
        p._draw()


class Progress:
    def __init__(self, label: str, stream: Optional[TextIO] = None, delay: float = 1.0,
                 interval: float = 0.2, enabled: bool = True):
        self.label = label
        self.stream = stream or sys.stderr
        try:  # ARCHC_PROGRESS_DELAY: seconds before the line appears (tests set 0)
            delay = float(os.environ.get("ARCHC_PROGRESS_DELAY", delay))
        except ValueError:
            pass
        self.delay, self.interval = delay, interval
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = enabled and tty and os.environ.get("TERM") != "dumb"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown = False
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def _text(self, elapsed: float) -> str:
        from . import util

        text = self.label
        writing = list(util.WRITING)
        if writing:
            size = 0
            for tmp, _ in writing:
                try:
                    size += os.stat(tmp).st_size
                except OSError:
                    pass
            text = f"writing {', '.join(out for _, out in writing)} ({size / 2**20:.1f} MiB)"
        return f"archc: {text} ... {elapsed:.0f} s"

    def _draw(self) -> bool:
        """Write the line once (from the ticking thread, or at once through `poke`)."""
        with self._lock:
            elapsed = time.monotonic() - self._start
            if self._stop.is_set() or elapsed < self.delay:
                return True
            try:
                self.stream.write("\r\033[K" + self._text(elapsed))
                self.stream.flush()
                self._shown = True
            except (OSError, ValueError):
                return False
            return True

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while self._draw():
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        if self.enabled:
            _ACTIVE.append(self)
            self._thread = threading.Thread(target=self._run, name="archc-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            _ACTIVE.remove(self)
            with self._lock:
                self._stop.set()
            self._thread.join()
            if self._shown:
                try:
                    self.stream.write("\r\033[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
