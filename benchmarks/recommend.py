"""Does `ganlode recommend` rank the sources the way fine-tuning them does?

For each target, every zoo source of the target's size is fine-tuned at an equal budget
(`ganlode transfer --method finetune --steps STEPS`, seeds 0, 1, 2) and ranked by its final
model's **test** FID (mean over seeds): the true ranking. `ganlode recommend` (which reads only
the validation split) is run once per target with seed 0, and its ranking is compared with the
true one: Spearman's rho, and whether its top pick is the true best or within the best's spread
(its mean test FID no higher than the best source's worst seed). The same rho is given for each
of recommend's signals alone: the coverage share, the unmined validation FID, the probe's
validation FID.

Runs go two at a time, one torch thread each. Writes ``OUT/truth.parquet``,
``OUT/recommend.parquet``, ``OUT/summary.md``, and keeps every run under ``OUT/runs/``; a run
already finished there is read, not re-run.

    python benchmarks/recommend.py --out benchmarks/results/recommend
    python benchmarks/recommend.py --targets mnist5k:7@25 --seeds 0 --steps 100   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TARGETS = ("mnist5k:7@25", "glyphs:7@25", "animals:cat@25")
STEPS = 400  # the true ranking's fine-tuning budget
PROBE_STEPS = 200  # recommend's default


def ganlode(*args: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "ganlode")
    return [script if os.path.exists(script) else "ganlode", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_json(cmd: list[str], done_file: str) -> dict:
    """Run a `ganlode ... --json` command unless ``done_file`` exists already; return the JSON it printed."""
    if os.path.exists(done_file):
        return json.load(open(done_file))
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    doc = json.loads(proc.stdout)
    os.makedirs(os.path.dirname(done_file), exist_ok=True)
    with open(done_file + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(done_file + ".tmp", done_file)
    print(f"  {time.time() - t0:5.0f} s  {' '.join(cmd[1:6])} ...", flush=True)
    return doc


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def zoo_sources() -> list[str]:
    from ganlode.orchestrator.artifacts.zoo import zoo_names

    return [f"zoo:{n}" for n in zoo_names()]


def truth(out: str, targets: list[str], sources: list[str], seeds: list[int], steps: int,
          pool: ThreadPoolExecutor) -> list[dict]:
    jobs = []
    for target in targets:
        for source in sources:
            for seed in seeds:
                run = os.path.join(out, "runs", slug(target), f"{slug(source)}-s{seed}")
                cmd = ganlode("transfer", "--source", source, "--target", target, "--method", "finetune",
                              "--steps", str(steps), "--eval-every", "0", "--seed", str(seed), "--out", run,
                              "--no-progress", "--json")
                jobs.append((target, source, seed, pool.submit(run_json, cmd, run + ".json")))
    return [{"target": t, "source": s, "seed": seed, "steps": steps, "test_fid": j.result()["metrics"]["fid"],
             "test_kmmd": j.result()["metrics"]["kmmd"], "wall_s": j.result()["wall_s"]} for t, s, seed, j in jobs]


def recommendations(out: str, targets: list[str], probe_steps: int) -> dict[str, dict]:
    docs = {}
    for target in targets:
        rec_out = os.path.join(out, "runs", slug(target), "recommend")
        cmd = ganlode("recommend", "--target", target, "--probe-steps", str(probe_steps), "--out", rec_out,
                      "--no-progress", "--json")
        docs[target] = run_json(cmd, rec_out + ".json")
    return docs


def ranks(values: dict[str, float]) -> dict[str, float]:
    """Average ranks (1 = smallest), ties shared."""
    order = sorted(values, key=lambda k: values[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    """Spearman's rho of two scores over the same keys (lower = better in both): Pearson on ranks."""
    ra, rb = ranks(a), ranks(b)
    keys = sorted(ra)
    xa, xb = [ra[k] for k in keys], [rb[k] for k in keys]
    ma, mb = statistics.fmean(xa), statistics.fmean(xb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(xa, xb))
    var = (sum((x - ma) ** 2 for x in xa) * sum((y - mb) ** 2 for y in xb)) ** 0.5
    return cov / var if var else float("nan")


def compare(target: str, rows: list[dict], doc: dict) -> dict:
    by_source: dict[str, list[float]] = {}
    for r in rows:
        if r["target"] == target:
            by_source.setdefault(r["source"], []).append(r["test_fid"])
    mean = {s: statistics.fmean(v) for s, v in by_source.items()}
    std = {s: statistics.stdev(v) if len(v) > 1 else 0.0 for s, v in by_source.items()}
    cands = {c["source"]: c for c in doc["candidates"]}
    rec_rank = {s: float(cands[s]["rank"]) for s in mean}
    signals = {
        "recommend rank": rec_rank,
        "coverage": {s: -cands[s]["coverage"] for s in mean},
        "unmined FID": {s: cands[s]["fid"] for s in mean},
    }
    if doc["probe_steps"]:
        signals["probe FID"] = {s: cands[s]["probe_fid"] for s in mean}
    best = min(mean, key=mean.get)
    top = min(rec_rank, key=rec_rank.get)
    worst_seed_of_best = max(by_source[best])
    return {"target": target, "true_best": best, "top_pick": top, "recommendation": doc["recommendation"],
            "top_is_best": top == best, "top_within_spread": mean[top] <= worst_seed_of_best,
            "rho": {k: spearman(v, mean) for k, v in signals.items()}, "mean": mean, "std": std,
            "rec_rank": rec_rank, "cands": cands, "seeds": len(next(iter(by_source.values()))),
            "recommend_wall_s": doc["wall_s"]}


def summary_md(results: list[dict], steps: int, probe_steps: int, wall_s: float) -> str:
    lines = [
        "# `ganlode recommend` against the true ranking",
        "",
        f"Truth: `ganlode transfer --method finetune --steps {steps} --eval-every 0` from every zoo source, seeds "
        f"{', '.join(map(str, range(results[0]['seeds'])))}, ranked by the final model's test FID (mean over seeds). "
        f"Recommend: `ganlode recommend --probe-steps {probe_steps}` (seed 0; validation split only). "
        "'Within spread': the top pick's mean test FID is no higher than the true best's worst seed. "
        f"Runs two at a time, one torch thread each, on a 2-core machine; {wall_s / 60:.0f} min in all.",
        "",
        "| target | true best | recommend's top pick | top = best | within spread | ρ (rank) | ρ coverage | ρ unmined FID | ρ probe FID | recommend s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rho = r["rho"]
        lines.append(f"| {r['target']} | {r['true_best']} | {r['top_pick']} | {'yes' if r['top_is_best'] else 'no'} | "
                     f"{'yes' if r['top_within_spread'] else 'no'} | {rho['recommend rank']:.2f} | {rho['coverage']:.2f} | "
                     f"{rho['unmined FID']:.2f} | {rho.get('probe FID', float('nan')):.2f} | {r['recommend_wall_s']:.0f} |")
    for r in results:
        lines += ["", f"## {r['target']}", "",
                  f"Recommendation: {r['recommendation']['kind']} {', '.join(r['recommendation']['sources'])}: "
                  f"{r['recommendation']['reason']}", "",
                  "| source | true rank | test FID (mean ± std) | recommend rank | coverage | unmined val FID | probe val FID |",
                  "|---|---|---|---|---|---|---|"]
        true_rank = ranks(r["mean"])
        for s in sorted(r["mean"], key=r["mean"].get):
            c = r["cands"][s]
            probe = "" if c["probe_fid"] is None else f"{c['probe_fid']:.1f}"
            lines.append(f"| {s} | {true_rank[s]:.0f} | {r['mean'][s]:.1f} ± {r['std'][s]:.1f} | {r['rec_rank'][s]:.0f} | "
                         f"{c['coverage']:.2f} | {c['fid']:.1f} | {probe} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/recommend")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--probe-steps", type=int, default=PROBE_STEPS)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    sources = zoo_sources()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = truth(args.out, args.targets, sources, args.seeds, args.steps, pool)
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(args.out, "truth.parquet"))
    docs = recommendations(args.out, args.targets, args.probe_steps)
    pq.write_table(pa.Table.from_pylist([{"target": t, **c} for t, d in docs.items() for c in d["candidates"]]),
                   os.path.join(args.out, "recommend.parquet"))
    results = [compare(t, rows, docs[t]) for t in args.targets]
    text = summary_md(results, args.steps, args.probe_steps, time.time() - t0)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
