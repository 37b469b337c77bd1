"""How long `ganlode demo` takes, whole command from the shell: `--quick` and the full demo.

Each variant runs ``--repeats`` times (default 3) into a fresh directory, one after the other,
timed from process start to exit (Python start-up, Ray start, every phase and the report), and
the median is compared with its limit (``--quick``: 120 s, full: 600 s). The demo's own phase
lines (on stderr) are kept per run. Writes ``OUT/times.parquet`` and ``OUT/summary.md``.

    python benchmarks/demo_time.py --out benchmarks/results/demo_time
    python benchmarks/demo_time.py --variants quick --repeats 1     # one quick run
    python benchmarks/demo_time.py --keep /tmp/demos                # ...and keep the last run of each
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LIMITS = {"quick": 120.0, "full": 600.0}
FLAGS = {"quick": ["--quick"], "full": []}


def ganlode(*args: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "ganlode")
    return [script if os.path.exists(script) else "ganlode", *args]


def run_once(variant: str, scratch: str, i: int, keep: str | None = None) -> dict:
    out = os.path.join(scratch, f"{variant}-{i}")
    t0 = time.perf_counter()
    proc = subprocess.run(ganlode("demo", *FLAGS[variant], "--out", out, "--no-progress", "--json"),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"demo {variant} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    doc = json.loads(proc.stdout)
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(out, keep)
    else:
        shutil.rmtree(out, ignore_errors=True)
    rows = {r["method"]: r["fid"] for r in doc["rows"]}
    print(f"  {variant} #{i + 1}: {wall:.1f} s (demo's own clock {doc['wall_s']:.1f} s)", flush=True)
    return {"variant": variant, "repeat": i, "wall_s": wall, "demo_wall_s": doc["wall_s"],
            "recommended": " + ".join(doc["recommendation"]["sources"]), "fids": json.dumps(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/demo_time")
    ap.add_argument("--variants", nargs="+", choices=sorted(LIMITS), default=["quick", "full"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="keep each variant's last run as DIR/<variant> (for the report's screenshot)")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(args.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="ganlode-demo-time-")
    rows = []
    try:
        for variant in args.variants:
            for i in range(args.repeats):
                last = args.keep and i == args.repeats - 1
                rows.append(run_once(variant, scratch, i, os.path.join(args.keep, variant) if last else None))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(args.out, "times.parquet"))
    lines = ["# `ganlode demo` wall time", "",
             f"Whole command from the shell, {args.repeats} runs each, one after the other, on "
             f"{os.cpu_count()} CPU cores ({platform.machine()}, {platform.python_version()}), no GPU.", "",
             "| variant | runs (s) | median (s) | limit (s) | within |", "|---|---|---|---|---|"]
    for variant in args.variants:
        times = [r["wall_s"] for r in rows if r["variant"] == variant]
        med = statistics.median(times)
        lines.append(f"| `ganlode demo{' --quick' if variant == 'quick' else ''}` | "
                     f"{', '.join(f'{t:.0f}' for t in times)} | {med:.0f} | {LIMITS[variant]:.0f} | "
                     f"{'yes' if med <= LIMITS[variant] else 'no'} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
