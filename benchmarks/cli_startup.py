"""CLI start-up: wall time of ``ganlode --help`` (and each command's ``--help``) as whole processes.

The CLI must answer ``--help`` without importing torch or Ray. This runs each command line
``--repeat`` times as a fresh process, prints the median, minimum and maximum, and checks in
the same processes that neither torch nor ray was imported. Writes ``OUT/cli_startup.json``.

    python benchmarks/cli_startup.py --out benchmarks/results/cli_startup
    python benchmarks/cli_startup.py --smoke-test          # one run of `ganlode --help`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PROBE = ("import runpy, sys; sys.argv = ['ganlode'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('ganlode.orchestrator.cli.main', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('HEAVY:' + ','.join(m for m in ('torch', 'ray') if m in sys.modules), file=sys.stderr)")


def ganlode_exe() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "ganlode")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "ganlode.orchestrator.cli.main"]


def time_command(argv: list[str], repeat: int) -> dict:
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(ganlode_exe() + argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    probe = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    heavy = [line for line in probe.stderr.splitlines() if line.startswith("HEAVY:")][-1][len("HEAVY:"):]
    return {"argv": argv, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "runs": len(walls), "heavy_imports": [m for m in heavy.split(",") if m]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/cli_startup")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--commands", nargs="*", default=None, help="subcommands whose --help to time as well")
    ap.add_argument("--smoke-test", action="store_true")
    args = ap.parse_args()
    lines = [["--help"]] + [[c, "--help"] for c in (args.commands or [])]
    repeat = 1 if args.smoke_test else args.repeat
    rows = [time_command(argv, repeat) for argv in (lines[:1] if args.smoke_test else lines)]
    for r in rows:
        print(f"ganlode {' '.join(r['argv']):<22} median {r['median_s']:.3f} s  (min {r['min_s']:.3f}, "
              f"max {r['max_s']:.3f}, {r['runs']} runs)  heavy imports: {', '.join(r['heavy_imports']) or 'none'}")
    if not args.smoke_test:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "cli_startup.json"), "w") as f:
            json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
