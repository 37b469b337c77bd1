"""Mining overhead: time per multi-source mining step on Ray actors against the in-process reference.

For N = 1, 2, 4 and 8 sources, at the same batch, one run measures the time per step of
(a) the in-process reference (every G_i, M_i and the critic in this process) and (b) the Ray
path (one generator actor per source plus a coordinator; only u, x_i and dL/dx_i move, one
call per actor and step). It reports the ratio Ray / in-process per N, how each path's step
time grows with N, and the critic/selector's share of a step: the time spent in
``CriticSelector.step`` (on the coordinator for Ray, where ``wait`` is the share spent waiting
for the generator actors) over the step time.

Every process uses ``--threads`` torch threads (default 1), so the in-process path is one
core's work while the Ray path may spread N + 1 processes over the machine's cores. The two
paths' timed blocks alternate (median of ``--repeats``), so that a drift in the machine's speed
(a shared host) touches both alike.

Writes ``OUT/mining_overhead.parquet`` and ``OUT/mining_overhead.png``.

    python benchmarks/mining_overhead.py --out benchmarks/results/mining_overhead
    python benchmarks/mining_overhead.py --smoke-test       # seconds; N=1,2, tiny sources if the zoo is absent
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

ZOO = ("digits-0to4", "animals-5to9", "digits-5to9", "animals-0to4",
       "glyphs-AtoF", "glyphs-GtoL", "glyphs-MtoR", "glyphs-StoZ")


def sources(n: int, tiny: bool):
    """(arches, generator states, critic state) of the first n zoo models, or tiny random ones."""
    import torch

    from ganlode.methods.nets import GANConfig, build_gan
    from ganlode.orchestrator.artifacts.checkpoint import load_checkpoint

    if not tiny:
        ckpts = [load_checkpoint(f"zoo:{name}") for name in ZOO[:n]]
        return ([c.arch for c in ckpts], [c.generator.state_dict() for c in ckpts], ckpts[0].critic.state_dict())
    arch = GANConfig(latent_dim=8, g_width=8, d_width=8)
    gens, critic = [], None
    for i in range(n):
        torch.manual_seed(i)
        g, d = build_gan(arch)
        gens.append(g.state_dict())
        critic = critic or d.state_dict()
    return [arch] * n, gens, critic


def time_paths(paths: dict, warmup: int, steps: int, repeats: int) -> dict[str, tuple[float, dict[str, float]]]:
    """Per path (name: (engine, totals)): the median seconds per step over ``repeats`` blocks of
    ``steps`` steps after ``warmup`` steps, and for each running total of seconds that
    ``totals()`` returns, the median share of a block it grew by. The paths' blocks alternate,
    so a drift in the machine's speed touches every path alike."""
    for engine, _ in paths.values():
        engine.run_until(engine.steps_done + warmup)
    blocks = {name: [] for name in paths}
    for _ in range(repeats):
        for name, (engine, totals) in paths.items():
            before, t0 = totals(), time.perf_counter()
            engine.run_until(engine.steps_done + steps)
            wall = time.perf_counter() - t0
            after = totals()
            blocks[name].append((wall / steps, {k: (after[k] - before[k]) / wall for k in after}))
    return {name: (statistics.median(b for b, _ in runs), {k: statistics.median(s[k] for _, s in runs) for k in runs[0][1]})
            for name, runs in blocks.items()}


def timed_selector(miner):
    """Make ``miner``'s selector add up the seconds its ``step`` takes; returns ``{"selector_s": total}``'s getter."""
    step, total = miner.selector.step, {"selector_s": 0.0}

    def timed(fakes):
        t0 = time.perf_counter()
        try:
            return step(fakes)
        finally:
            total["selector_s"] += time.perf_counter() - t0

    miner.selector.step = timed
    return lambda: dict(total)


def plot_png(rows: list[dict]) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.5))
    ax, ax2, ax3 = fig.subplots(1, 3)
    ns = sorted({r["n_sources"] for r in rows})

    def col(path: str, key: str) -> list[float]:
        return [next(r[key] for r in rows if r["n_sources"] == n and r["path"] == path) for n in ns]

    for path, color in (("in-process", "C0"), ("ray", "C1")):
        ax.plot(ns, [1000 * s for s in col(path, "step_s")], "o-", color=color, label=path)
        ax3.plot(ns, col(path, "selector_share"), "o-", color=color, label=f"{path}: critic/selector")
    ax3.plot(ns, col("ray", "wait_share"), "s--", color="C1", label="ray: waiting for actors")
    ax.set_xlabel("sources N")
    ax.set_ylabel("ms per mining step")
    ax.set_xticks(ns)
    ax.legend()
    ax.set_title("step time vs N")
    ax2.bar([str(n) for n in ns], col("ray", "ratio"), color="C1")
    ax2.axhline(1.0, color="k", linewidth=0.8)
    ax2.set_xlabel("sources N")
    ax2.set_ylabel("Ray / in-process")
    ax2.set_title("overhead ratio")
    ax3.set_xlabel("sources N")
    ax3.set_ylabel("share of a step")
    ax3.set_xticks(ns)
    ax3.set_ylim(0, 1)
    ax3.legend(fontsize=8)
    ax3.set_title("where a step goes")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/mining_overhead")
    ap.add_argument("--sources", help="values of N (default 1,2,4,8; 1,2 with --smoke-test)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per block (default 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    ap.add_argument("--smoke-test", action="store_true", help="a few steps; tiny sources if the zoo is absent")
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import torch

    from ganlode.actors.cluster import MiningCluster
    from ganlode.actors.placement import plan_resources
    from ganlode.methods.multisource import MultiSourceConfig, MultiSourceMiner
    from ganlode.orchestrator import data
    from ganlode.orchestrator.artifacts.zoo import zoo_names
    from ganlode.orchestrator.cluster import ensure_ray

    if args.smoke_test:
        args.batch, args.steps, args.warmup, args.repeats = 8, 4, 2, 1
    counts = [int(n) for n in (args.sources or ("1,2" if args.smoke_test else "1,2,4,8")).split(",")]
    tiny = not set(ZOO[:max(counts)]).issubset(zoo_names())
    if tiny and not args.smoke_test:
        print("error: the zoo models are missing (orchestrator/zoo/); train them first, or pass --smoke-test",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    images = data.load_target("mnist5k:3@30+animals:zebra@70").images
    total = args.warmup + args.steps * args.repeats
    cfg = MultiSourceConfig(mining_steps=total + 1, finetune_steps=0, batch=args.batch, loss="ns-r1")
    ensure_ray()
    rows = []
    t_all = time.time()
    for n in counts:
        arches, gens, critic = sources(n, tiny)
        local = MultiSourceMiner.build(arches, gens, critic, images, cfg)
        resources = plan_resources(n, threads=args.threads)
        with MiningCluster(arches, gens, critic, images, cfg, resources, snapshot_every=10**9) as cluster:
            timings = time_paths({"in-process": (local, timed_selector(local)),
                                  "ray": (cluster, cluster.coordinator_info)}, args.warmup, args.steps, args.repeats)
        in_process = timings["in-process"][0]
        for path, (step_s, shares) in timings.items():
            rows.append({"n_sources": n, "path": path, "step_s": step_s, "ratio": step_s / in_process,
                         "selector_share": shares["selector_s"], "wait_share": shares.get("wait_s"),
                         "batch": args.batch, "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
                         "gpus_per_source": resources.gpus_per_source, "sources": "tiny" if tiny else "zoo",
                         "cpus": os.cpu_count()})
        (local_s, local_shares), (ray_s, ray_shares) = timings["in-process"], timings["ray"]
        print(f"N={n}: in-process {1000 * local_s:.1f} ms/step (critic/selector {local_shares['selector_s']:.0%}), "
              f"Ray {1000 * ray_s:.1f} ms/step (coordinator's critic/selector {ray_shares['selector_s']:.0%}, "
              f"waiting for actors {ray_shares['wait_s']:.0%}), ratio {ray_s / local_s:.2f}")
    base = {p: next(r["step_s"] for r in rows if r["n_sources"] == counts[0] and r["path"] == p) for p in ("in-process", "ray")}
    for r in rows:
        r["growth_vs_first_n"] = r["step_s"] / base[r["path"]]
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(args.out, "mining_overhead.parquet"))
    with open(os.path.join(args.out, "mining_overhead.png"), "wb") as f:
        f.write(plot_png(rows))
    growth = ", ".join(f"{p} x{next(r['growth_vs_first_n'] for r in rows if r['n_sources'] == counts[-1] and r['path'] == p):.2f}"
                       for p in ("in-process", "ray"))
    print(f"step time from N={counts[0]} to N={counts[-1]}: {growth}; wrote {args.out}/mining_overhead.parquet and .png "
          f"({time.time() - t_all:.0f} s)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
