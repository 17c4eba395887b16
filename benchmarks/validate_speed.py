"""How long `archc validate` takes for every shipped spec (issue 2: "well under a second").

    python benchmarks/validate_speed.py [--repeat N]

Prints, without asserting anything:
- in-process: `archcompiler.cli.main(["validate", ...all specs])`, the first call (cold:
  imports, schema build) and the median of N further calls (warm), plus per spec;
- subprocess: `python -m archcompiler.cli validate ...all specs` (what a user or CI sees,
  interpreter start-up and imports included), median of N runs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spec_paths() -> list[str]:
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    paths += sorted(glob.glob(os.path.join(ROOT, "specs", "variants", "*.yaml")))
    return paths


def in_process(argv: list[str]) -> tuple[float, int]:
    from archcompiler.cli import main

    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        rc = main(argv)
    return time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    paths = spec_paths()
    rel = [os.path.relpath(p, ROOT) for p in paths]
    os.chdir(ROOT)
    print(f"{len(paths)} specs: {', '.join(rel)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    import archcompiler.cli  # noqa: F401

    print(f"import archcompiler.cli: {1000 * (time.perf_counter() - t0):8.1f} ms")
    cold, rc = in_process(["validate", *rel])
    print(f"in-process, all specs, first call:  {1000 * cold:8.1f} ms (exit {rc})")
    warm = [in_process(["validate", *rel])[0] for _ in range(args.repeat)]
    print(f"in-process, all specs, warm median: {1000 * statistics.median(warm):8.1f} ms "
          f"(min {1000 * min(warm):.1f}, {args.repeat} runs)")
    for p in rel:
        times = [in_process(["validate", p])[0] for _ in range(args.repeat)]
        print(f"    {p:48s} {1000 * statistics.median(times):8.1f} ms")

    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "archcompiler.cli", "validate", *rel],
                              cwd=ROOT, capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
    print(f"subprocess `python -m archcompiler.cli validate` all specs: median "
          f"{1000 * statistics.median(runs):8.1f} ms (min {1000 * min(runs):.1f}, exit "
          f"{proc.returncode}, {args.repeat} runs)")


if __name__ == "__main__":
    main()
