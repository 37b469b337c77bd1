"""Benchmark: does a Tune search over FreezeD + L2-SP settings beat the default fine-tuning settings?

1. ``ganlode tune`` searches ``freezed+l2sp`` (freeze_depth 0..3, l2sp_weight log 1e-3..1e2,
   lr log 1e-5..1e-3) for zoo:digits-0to4 -> mnist5k:7@100 with Optuna + ASHA (>= 12 trials),
   optimising KMMD on the held-out split.
2. The best settings and the defaults (``ganlode transfer --method finetune`` without options:
   lr 1e-4, nothing frozen, no L2-SP) are each trained again with 3 fresh training seeds
   (seeds the search never used) and scored by ``ganlode eval`` (FID, KMMD, MV, seed 0).
3. Writes ``OUT/results.parquet`` (one row per configuration and seed), ``OUT/summary.md`` (a
   README-ready table: mean +- std over seeds) and keeps the search in ``OUT/search``.

Cost (2 CPUs, 1 thread per trial): a fine-tuning step of the zoo nets at batch 64 costs about
0.125 CPU-s, a protocol evaluation (150 held-out images) about 1.4 CPU-s. With the defaults
below (12 trials x 500 steps, ASHA stopping roughly half early, then 2 x 3 runs of 500 steps)
the whole benchmark is about 20-25 CPU-minutes, 12-15 minutes of wall time on 2 cores.

    python benchmarks/tune_search.py                 # the full benchmark
    python benchmarks/tune_search.py --smoke-test    # seconds-scale run of every stage, tiny nets
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from ganlode.orchestrator.cli.main import main as ganlode

METRICS = ("kmmd", "fid", "mv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="zoo:digits-0to4")
    p.add_argument("--target", default="mnist5k:7@100")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3, help="fresh training seeds per configuration")
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/tune_search")
    p.add_argument("--smoke-test", action="store_true", help="tiny source, 2 trials of 4 steps, 2 seeds")
    return p.parse_args(argv)


def run(argv: list[str]) -> str:
    """Run one ganlode command; returns its stdout (a non-zero exit is fatal)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = ganlode(argv)
    if code != 0:
        raise SystemExit(f"`ganlode {' '.join(argv)}` exited {code}")
    return buf.getvalue()


def tiny_source(directory: str) -> str:
    """A small random GAN (smoke test only: the run checks the stages, not quality)."""
    import torch

    from ganlode.methods.nets import GANConfig, build_gan
    from ganlode.orchestrator.artifacts import checkpoint

    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    torch.manual_seed(0)
    g, d = build_gan(arch)
    path = os.path.join(directory, "tiny-source")
    checkpoint.save_checkpoint(path, {"kind": "gan", "arch": arch.to_dict(), "train": {"loss": "ns-r1"}}, g, d)
    return path


def transfer_flags(options: dict) -> list[str]:
    flags = []
    for name in ("freeze_depth", "l2sp_weight", "lr"):
        if options.get(name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(options[name])]
    return flags


def train_and_score(label: str, flags: list[str], seed: int, args: argparse.Namespace, out: str) -> dict:
    run_dir = os.path.join(out, "runs", f"{label}-seed{seed}")
    t0 = time.time()
    if not os.path.exists(os.path.join(run_dir, "checkpoints", "final")):
        run(["transfer", "--source", args.source, "--target", args.target, "--method", "finetune", *flags,
             "--steps", str(args.steps), "--seed", str(seed), "--eval-every", "0", "--no-progress", "--out", run_dir])
    wall = time.time() - t0
    printed = run(["eval", run_dir, "--seed", "0"])
    values = {line.split()[0]: float(line.split()[1]) for line in printed.splitlines()
              if line.split() and line.split()[0] in METRICS}
    return {"config": label, "seed": seed, **values, "train_wall_s": round(wall, 1),
            "options": json.dumps(flags)}


def markdown(rows: list[dict], best: dict, args: argparse.Namespace, search_wall: float) -> str:
    lines = [f"Tune search: `freezed+l2sp`, {best['trials']} trials x {args.steps} steps, "
             f"{args.source} -> {args.target}; best trial {best['trial_id']} "
             f"({', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}' for k, v in best['config'].items())}), "
             f"validation KMMD {best['value']:.4f}; search wall time {search_wall / 60:.1f} min.", "",
             f"Re-trained with {args.seeds} fresh seeds, scored by `ganlode eval` (held-out split, mean +- std):", "",
             "| settings | KMMD | FID | MV |", "|---|---|---|---|"]
    for label in ("defaults", "tuned"):
        sel = [r for r in rows if r["config"] == label]

        def cell(k: str) -> str:
            vals = [r[k] for r in sel]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):.4g} +- {sd:.2g}"

        name = "defaults (finetune, lr 1e-4)" if label == "defaults" else "tuned (best of the search)"
        lines.append(f"| {name} | {cell('kmmd')} | {cell('fid')} | {cell('mv')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = None
    if args.smoke_test:
        tmp = tempfile.mkdtemp(prefix="ganlode-tune-smoke-")
        args.out = os.path.join(tmp, "out")
        args.source = tiny_source(tmp)
        args.target, args.trials, args.steps, args.eval_every, args.seeds = "mnist5k:7@16", 2, 4, 2, 2
    os.makedirs(args.out, exist_ok=True)
    search = os.path.join(args.out, "search")
    t0 = time.time()
    if os.path.exists(os.path.join(search, "best.json")):
        print(f"search: reusing {search}")
    else:
        resume = ["--resume", search] if os.path.exists(os.path.join(search, "tune.json")) else [
            "--source", args.source, "--target", args.target, "--method", "freezed+l2sp", "--trials", str(args.trials),
            "--concurrent", str(args.concurrent), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
            "--seed", str(args.search_seed), "--out", search]
        print(run(["tune", *resume, "--quiet"]))
    search_wall = time.time() - t0
    best = json.load(open(os.path.join(search, "best.json")))
    tuned_flags = transfer_flags(best["options"])
    rows = []
    for seed in range(1, args.seeds + 1):  # the search trained with seed 0: these are fresh
        rows.append(train_and_score("defaults", [], seed, args, args.out))
        rows.append(train_and_score("tuned", tuned_flags, seed, args, args.out))
        print(f"seed {seed}: " + "  ".join(f"{r['config']} KMMD {r['kmmd']:.4f} FID {r['fid']:.2f}" for r in rows[-2:]))
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(args.out, "results.parquet"))
    md = markdown(rows, best, args, search_wall)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {args.out}/results.parquet and summary.md ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
