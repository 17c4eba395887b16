"""How long `archc validate` takes for every shipped spec and variant (issue 11: a CI gate
should cost under 0.3 s of CPU for all of them, as one process).

    python benchmarks/validate_speed.py [--repeat N] [--in-process]

Prints, without asserting anything:
- the CPU time (user + system, from os.times() of the children) and the wall time of
  `python -m archcompiler.cli validate specs/*.yaml specs/variants/*.yaml` as a subprocess,
  the median of N runs, interleaved with two reference processes so that a busy machine
  shows in all three alike: the bare interpreter (`python -c pass`) and the import of the
  CLI (`python -c "import archcompiler.cli"`);
- the load average before and after (other jobs on the machine inflate every number);
- with --in-process: `archcompiler.cli.main(["validate", ...])` cold and warm, per spec.
Every file shipped when it runs is validated: specs/*.yaml and specs/variants/*.yaml.
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
TARGET_CPU_S = 0.3


def spec_paths() -> list[str]:
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    paths += sorted(glob.glob(os.path.join(ROOT, "specs", "variants", "*.yaml")))
    return [os.path.relpath(p, ROOT) for p in paths]


# As an installed package runs: with its bytecode cached. (Some environments set
# PYTHONDONTWRITEBYTECODE, and every run would then compile archcompiler's sources again.)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def child_run(argv: list[str]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit code) of one subprocess."""
    before, t0 = os.times(), time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=CHILD_ENV)
    wall, after = time.perf_counter() - t0, os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return cpu, wall, proc.returncode


def in_process(argv: list[str]) -> tuple[float, int]:
    from archcompiler.cli import main

    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        rc = main(argv)
    return time.perf_counter() - t0, rc


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--in-process", action="store_true", help="also time main() in this process")
    args = ap.parse_args()
    rel = spec_paths()
    os.chdir(ROOT)
    print(f"{len(rel)} files: {', '.join(rel)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}")

    py = sys.executable
    runs = {
        "python -c pass": [py, "-c", "pass"],
        "import archcompiler.cli": [py, "-c", "import archcompiler.cli"],
        "archc validate (all files)": [py, "-m", "archcompiler.cli", "validate", *rel],
    }
    for argv in runs.values():  # warm-up, not counted: bytecode written, files in the page cache
        child_run(argv)
    got: dict = {k: [] for k in runs}
    codes = set()
    for _ in range(args.repeat):  # interleaved: a burst of load hits all three alike
        for name, argv in runs.items():
            cpu, wall, rc = child_run(argv)
            got[name].append((cpu, wall))
            if name.startswith("archc"):
                codes.add(rc)
    print(f"subprocess, median of {args.repeat} interleaved runs (CPU = user + system):")
    for name, values in got.items():
        cpus = [c for c, _ in values]
        walls = [w for _, w in values]
        print(f"    {name:28s} CPU {statistics.median(cpus):6.3f} s (min {min(cpus):.3f})   "
              f"wall {statistics.median(walls):6.3f} s")
    cpu = statistics.median(c for c, _ in got["archc validate (all files)"])
    verdict = "under" if cpu < TARGET_CPU_S else "OVER"
    print(f"archc validate, all {len(rel)} files, one process: {cpu:.3f} s CPU ({verdict} the "
          f"{TARGET_CPU_S} s target; exit {sorted(codes)}); load average now {load()}")

    if args.in_process:
        t0 = time.perf_counter()
        import archcompiler.cli  # noqa: F401

        print(f"in-process import archcompiler.cli: {1000 * (time.perf_counter() - t0):8.1f} ms")
        cold, rc = in_process(["validate", *rel])
        print(f"in-process, all files, first call:  {1000 * cold:8.1f} ms (exit {rc})")
        warm = [in_process(["validate", *rel])[0] for _ in range(args.repeat)]
        print(f"in-process, all files, warm median: {1000 * statistics.median(warm):8.1f} ms")
        for p in rel:
            times = [in_process(["validate", p])[0] for _ in range(args.repeat)]
            print(f"    {p:48s} {1000 * statistics.median(times):8.1f} ms")


if __name__ == "__main__":
    main()
