"""How long `archc validate` takes for every shipped spec and variant (issue 11: a CI gate
should cost under 0.3 s of CPU for all of them, as one process).

    python benchmarks/validate_speed.py [--repeat N] [--against OTHER_CHECKOUT] [--in-process]

Prints, without asserting anything:
- the CPU time (user + system of the child, from getrusage: microseconds, not clock
  ticks) and the wall time of `python -m archcompiler.cli validate specs/*.yaml
  specs/variants/*.yaml` as a subprocess, the median of N runs, interleaved with
  reference processes so that a slow phase of the machine shows in all of them alike:
  the bare interpreter (`python -c pass`), the import of the CLI, and a fixed amount of
  pure-Python work (the machine's speed: on a shared VM it drifts by 20-40%);
- the same validate run a second time in each round, and the ratio of the two medians:
  the self-vs-self control (how far apart two identical runs land);
- with --against DIR (another checkout of this repository, e.g. `git worktree add DIR
  <commit>`): that checkout's validate of the same files, the ratio this/that, beside
  the control;
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


def _children_cpu() -> float:
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime
    except ImportError:  # pragma: no cover - not Unix: clock ticks (10 ms)
        t = os.times()
        return t.children_user + t.children_system


def child_run(argv: list[str], cwd: str = ROOT) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit code) of one subprocess."""
    before, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=CHILD_ENV)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - before
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


FIXED_WORK = "s = 0\nfor i in range(2_000_000): s += i * i"  # the machine's speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--against", metavar="DIR", help="another checkout: its validate, interleaved")
    ap.add_argument("--in-process", action="store_true", help="also time main() in this process")
    args = ap.parse_args()
    rel = spec_paths()
    os.chdir(ROOT)
    print(f"{len(rel)} files: {', '.join(rel)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}")

    py = sys.executable
    validate = [py, "-m", "archcompiler.cli", "validate", *rel]
    runs = {  # name -> (argv, cwd): `python -m` imports the package of its cwd first
        "python -c pass": ([py, "-c", "pass"], ROOT),
        "fixed work (machine speed)": ([py, "-c", FIXED_WORK], ROOT),
        "import archcompiler.cli": ([py, "-c", "import archcompiler.cli"], ROOT),
        "archc validate (all files)": (validate, ROOT),
        "archc validate, again": (validate, ROOT),
    }
    if args.against:
        other = os.path.abspath(args.against)
        runs[f"--against {args.against}"] = (validate, other)
    for argv, cwd in runs.values():  # warm-up, not counted: bytecode written, page cache
        child_run(argv, cwd)
    got: dict = {k: [] for k in runs}
    codes = set()
    for _ in range(args.repeat):  # interleaved: a slow phase hits every row alike
        for name, (argv, cwd) in runs.items():
            cpu, wall, rc = child_run(argv, cwd)
            got[name].append((cpu, wall))
            if argv is validate:
                codes.add(rc)
    print(f"subprocess, median of {args.repeat} interleaved runs (CPU = user + system):")
    med = {}
    for name, values in got.items():
        cpus = [c for c, _ in values]
        walls = [w for _, w in values]
        med[name] = statistics.median(cpus)
        print(f"    {name:30s} CPU {med[name]:6.3f} s (min {min(cpus):.3f})   "
              f"wall {statistics.median(walls):6.3f} s")
    first, again = med["archc validate (all files)"], med["archc validate, again"]
    print(f"self-vs-self control: {again / first:.2f} (validate, again / validate)")
    per_round = [v[0] / f[0] for v, f in zip(got["archc validate (all files)"],
                                             got["fixed work (machine speed)"])]
    print(f"validate / fixed work, median over rounds: {statistics.median(per_round):.2f} "
          "(the machine's drift cancels within a round)")
    if args.against:
        print(f"this checkout / {args.against}: {first / med[f'--against {args.against}']:.2f}")
    cpu = first
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
