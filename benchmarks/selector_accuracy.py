"""Selector accuracy: does multi-source mining learn how much each source serves the target?

Targets are built with known shares from classes that exactly one source covers: digit 3 (only
``zoo:digits-0to4`` was trained on it) and zebra (only ``zoo:animals-5to9``), at 30/70, 50/50
and 70/30. The sources are the four zoo models, so two of them (digits-5to9, animals-0to4)
should end with share 0. For every source the benchmark reports |p_i - true share|.

Writes ``OUT/selector_accuracy.parquet`` (one row per target, seed and source) and
``OUT/selector_accuracy.png``, and keeps each run directory under ``OUT/runs/``.

    python benchmarks/selector_accuracy.py --out benchmarks/results/selector_accuracy
    python benchmarks/selector_accuracy.py --smoke-test      # seconds; tiny sources if the zoo is absent
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

ZOO = ("digits-0to4", "digits-5to9", "animals-0to4", "animals-5to9")
ZOO_DATA = {"digits-0to4": "mnist5k:0-4", "digits-5to9": "mnist5k:5-9", "animals-0to4": "animals:0-4",
            "animals-5to9": "animals:5-9"}
RATIOS = ((30, 70), (50, 50), (70, 30))  # percent digit 3 / percent zebra


def target_spec(three_pct: int, zebra_pct: int, total: int) -> str:
    return f"mnist5k:3@{total * three_pct // 100}+animals:zebra@{total * zebra_pct // 100}"


def tiny_sources(root: str) -> list[str]:
    """Untrained tiny stand-ins for the zoo, with the zoo's data provenance (smoke tests only)."""
    import torch

    from ganlode.methods.nets import GANConfig, build_gan
    from ganlode.orchestrator import data
    from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint

    paths = []
    for i, name in enumerate(ZOO):
        arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
        torch.manual_seed(i)
        g, d = build_gan(arch)
        config = {"kind": "gan", "arch": arch.to_dict(), "train": {"loss": "ns-r1"},
                  "data": {"counts": data.load_target(ZOO_DATA[name]).provenance()["counts"]}}
        save_checkpoint(os.path.join(root, name), config, g, d)
        paths.append(os.path.join(root, name))
    return paths


def zoo_sources() -> list[str] | None:
    from ganlode.orchestrator.artifacts.zoo import zoo_names

    have = set(zoo_names())
    return [f"zoo:{n}" for n in ZOO] if have.issuperset(ZOO) else None


def plot_png(rows: list[dict]) -> bytes:
    from matplotlib.figure import Figure

    targets = sorted({r["target"] for r in rows}, key=lambda t: [r["true_share"] for r in rows if r["target"] == t][0])
    sources = sorted({r["source"] for r in rows}, key=lambda s: [r["index"] for r in rows if r["source"] == s][0])
    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    for ax, target in zip(axes, targets):
        sel = [r for r in rows if r["target"] == target]
        for j, source in enumerate(sources):
            got = [r["share"] for r in sel if r["source"] == source]
            true = [r["true_share"] for r in sel if r["source"] == source][0]
            ax.bar(j, sum(got) / len(got), color="C0", label="learned p_i" if j == 0 else None)
            ax.plot([j - 0.4, j + 0.4], [true, true], color="C3", label="true share" if j == 0 else None)
        ax.set_xticks(range(len(sources)), [s.split(":")[-1].split("/")[-1] for s in sources], rotation=30, fontsize=7)
        ax.set_title(target.replace("+", "\n+"), fontsize=8)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/selector_accuracy")
    ap.add_argument("--mining-steps", type=int, default=2000)
    ap.add_argument("--finetune-steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--total", type=int, default=200, help="target images per target set (default 200)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per target (default 1)")
    ap.add_argument("--ray", action="store_true", help="use the Ray actors (default: the in-process reference)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--ratios", default=None,
                    help="only these digit/zebra ratios, e.g. 30-70,50-50 (default: all three)")
    ap.add_argument("--smoke-test", action="store_true", help="a few steps; tiny sources if the zoo is absent")
    args = ap.parse_args(argv)
    ratios = RATIOS
    if args.ratios:
        wanted = {tuple(int(x) for x in r.split("-")) for r in args.ratios.split(",")}
        ratios = [r for r in RATIOS if tuple(r) in wanted]
        if not ratios:
            print(f"error: --ratios {args.ratios!r} names none of {', '.join(f'{a}-{b}' for a, b in RATIOS)}",
                  file=sys.stderr)
            return 2

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ganlode.orchestrator.pipelines.mine import mine_config, run_mine

    if args.smoke_test:
        args.mining_steps, args.finetune_steps, args.batch, args.total, args.seeds = 4, 2, 8, 40, 1
    os.makedirs(args.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="ganlode-bench-")
    sources = zoo_sources()
    kind = "zoo"
    if sources is None:
        if not args.smoke_test:
            print("error: the zoo models are missing (orchestrator/zoo/); train them first, or pass --smoke-test",
                  file=sys.stderr)
            return 2
        sources, kind = tiny_sources(scratch), "tiny-untrained"
    rows = []
    t_all = time.time()
    for three, zebra in ratios:
        target = target_spec(three, zebra, args.total)
        for seed in range(args.seeds):
            cfg = mine_config("ns-r1", mining_steps=args.mining_steps, finetune_steps=args.finetune_steps,
                              batch=args.batch, seed=seed)
            run = os.path.join(args.out if not args.smoke_test else scratch, "runs", f"{three}-{zebra}-s{seed}")
            t0 = time.time()
            result = run_mine(sources, target, run, cfg, in_process=not args.ray, threads=args.threads,
                              checkpoint_every=0, show_progress=False, resume=os.path.isdir(run))
            wall = time.time() - t0
            truth = result.true_shares
            if truth is None:
                raise RuntimeError(f"the sources' data does not cover {target} exactly once per class")
            for i, (source, p, true) in enumerate(zip(sources, result.shares, truth)):
                rows.append({"target": target, "three_pct": three, "zebra_pct": zebra, "seed": seed, "source": source,
                             "index": i, "true_share": true, "share": p, "abs_error": abs(p - true),
                             "fid": result.metrics.get("fid"), "steps": cfg.total_steps, "batch": args.batch,
                             "sources": kind, "engine": "ray" if args.ray else "in-process", "wall_s": wall})
            errs = ", ".join(f"{s.split(':')[-1].split('/')[-1]} {p:.3f} (true {t:.2f})"
                             for s, p, t in zip(sources, result.shares, truth))
            print(f"{target} seed {seed}: {errs}; max |p - true| {max(abs(p - t) for p, t in zip(result.shares, truth)):.3f}"
                  f" [{wall:.0f} s]")
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, os.path.join(args.out, "selector_accuracy.parquet"))
    with open(os.path.join(args.out, "selector_accuracy.png"), "wb") as f:
        f.write(plot_png(rows))
    mean_err = sum(r["abs_error"] for r in rows) / len(rows)
    print(f"wrote {args.out}/selector_accuracy.parquet and .png: mean |p_i - true share| {mean_err:.3f} over "
          f"{len(rows)} (target, seed, source) rows, sources {kind}, {time.time() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
