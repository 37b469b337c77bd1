"""Selector accuracy and mixture quality of multi-source mining, every number from a `ganlode` run.

Three parts, each over seeds 0, 1 and 2 (mean and standard deviation):

1. ``coverage`` -- disjoint domains. Two-part targets whose parts come from classes exactly one
   source covers (digit 3: digits-0to4; zebra: animals-5to9; letter B: glyphs-AtoF; letter P:
   glyphs-MtoR), at 10/90 ... 90/10, mined from 4 sources (one per part domain, plus glyphs)
   and from all 8 zoo sources. The coverage estimate needs no mining, so these are
   `ganlode mine --mining-steps 1 --finetune-steps 0` runs; the error is |p_i - true share|
   for every source, from RUN/shares.json.
2. ``overlap`` -- the README's digit-3 case: the 4 digit and animal sources (digits-5to9 can be
   mined to make 3s), target 3 / zebra at 30/70, full mining runs: joint mining (the critic's
   best row, and rows drawn from the shares) and routed mining, with fine-tuning, and routed
   mining alone. For each: the shares of every selector, and the class composition of 2000
   samples of the mined model, labelled by the evaluation classifier, against the same
   classifier's labels of the target's test images.
3. ``quality`` -- FID / KMMD / MV on the mixed target's test split at equal budgets (the same
   steps of the same batch): the routed mixture (from part 2), `ganlode transfer` finetune and
   minegan from each single source, and scratch.

Runs go two at a time, one torch thread each. Writes ``OUT/<part>.parquet``, ``OUT/summary.md``
and keeps every run under ``OUT/runs/``; a run already finished there is read, not re-run.

    python benchmarks/selector_accuracy.py --out benchmarks/results/selector_accuracy
    python benchmarks/selector_accuracy.py --parts coverage --seeds 0   # one part, one seed
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

ZOO8 = ("digits-0to4", "digits-5to9", "animals-0to4", "animals-5to9",
        "glyphs-AtoF", "glyphs-GtoL", "glyphs-MtoR", "glyphs-StoZ")
ZOO4_DISJOINT = ("digits-0to4", "animals-5to9", "glyphs-AtoF", "glyphs-MtoR")
ZOO4_OVERLAP = ("digits-0to4", "digits-5to9", "animals-0to4", "animals-5to9")
PAIRS = (("mnist5k:3", "animals:zebra"), ("glyphs:B", "animals:zebra"), ("mnist5k:3", "glyphs:P"))
RATIOS = (10, 30, 50, 70, 90)  # percent of the first part
TOTAL = 100  # target training images
OVERLAP_TARGET = "mnist5k:3@30+animals:zebra@70"
VARIANTS = {  # name -> extra `ganlode mine` flags (mining + fine-tuning steps come from the command line)
    "joint": [],
    "joint, rows from shares": ["--rows", "shares"],
    "routed": ["--route"],
    "routed, mining only": ["--route", "--finetune-steps", "0"],
}


def ganlode(*args: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "ganlode")
    return [script if os.path.exists(script) else "ganlode", *args]


def run_json(cmd: list[str], run: str) -> dict:
    """Run a `ganlode ... --json` command (unless ``run`` is finished already) and return its record."""
    done = os.path.join(run, "config.json")
    if os.path.exists(done) and json.load(open(done)).get("status") == "done":
        return json.load(open(done))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    print(f"  {time.time() - t0:5.0f} s  {' '.join(cmd[1:4])} ... {run}", flush=True)
    return json.load(open(done))


def mine(sources: list[str], target: str, run: str, seed: int, steps: tuple[int, int], *extra: str) -> dict:
    cmd = ganlode("mine", *[a for s in sources for a in ("--source", f"zoo:{s}")], "--target", target, "--out", run,
                  "--seed", str(seed), "--mining-steps", str(steps[0]), "--finetune-steps", str(steps[1]),
                  "--in-process", "--threads", "1", "--checkpoint-every", "0", "--no-progress", "--json", *extra)
    record = run_json(cmd, run)
    record["shares_json"] = json.load(open(os.path.join(run, "shares.json")))
    return record


def spec(pair: tuple[str, str], pct: int) -> str:
    a = TOTAL * pct // 100
    return f"{pair[0]}@{a}+{pair[1]}@{TOTAL - a}"


def part_coverage(out: str, seeds: list[int], pool: ThreadPoolExecutor) -> list[dict]:
    jobs = []
    for label, sources in (("4", ZOO4_DISJOINT), ("8", ZOO8)):
        for pair in PAIRS:
            for pct in RATIOS:
                for seed in seeds:
                    target = spec(pair, pct)
                    run = os.path.join(out, "runs", "coverage", f"{label}-{target.replace(':', '_')}-s{seed}")
                    jobs.append((label, sources, target, pct, seed, pool.submit(mine, list(sources), target, run, seed,
                                                                                 (1, 0), "--eval-n", "50")))
    rows = []
    for label, sources, target, pct, seed, job in jobs:
        doc = job.result()["shares_json"]
        for name, est in doc["by_selector"].items():
            for i, s in enumerate(doc["sources"]):
                p, t = est[s], doc["true_shares"][s]
                rows.append({"sources": label, "target": target, "first_pct": pct, "seed": seed, "selector": name,
                             "source": s, "index": i, "share": p, "true_share": t, "abs_error": abs(p - t)})
    return rows


def composition(run: str, target: str, n: int = 2000) -> dict:
    """Class fractions of n samples of the mined model and of the target's test images (both labelled
    by the evaluation classifier), over the target's classes plus 'other'."""
    import torch

    from ganlode.orchestrator.artifacts.loaders import load_model
    from ganlode.orchestrator.data.spec import eval_reference
    from ganlode.orchestrator.evaluation import classifier

    net = classifier.feature_net()
    names = json.load(open(os.path.join(classifier.asset_dir(), "config.json")))["classes"]
    test = eval_reference(target, split="test")
    wanted = sorted({f"{ds}:{label}" for ds, label in test.counts()})

    def fractions(images: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            labels = [names[i] for i in net.head(classifier.extract(images).float()).argmax(1).tolist()]
        out = {c: labels.count(c) / len(labels) for c in wanted}
        out["other"] = 1.0 - sum(out.values())
        return out

    model = load_model(run)
    return {"mixture": fractions(model.sampler(n, torch.Generator().manual_seed(0))), "target": fractions(test.images)}


def part_overlap(out: str, seeds: list[int], steps: tuple[int, int], pool: ThreadPoolExecutor) -> list[dict]:
    jobs = []
    for variant, extra in VARIANTS.items():
        for seed in seeds:
            run = os.path.join(out, "runs", "overlap", f"{variant.replace(', ', '-').replace(' ', '-')}-s{seed}")
            jobs.append((variant, seed, run, pool.submit(mine, list(ZOO4_OVERLAP), OVERLAP_TARGET, run, seed, steps, *extra)))
    rows = []
    for variant, seed, run, job in jobs:
        record = job.result()
        doc = record["shares_json"]
        comp = composition(run, OVERLAP_TARGET)
        gap = {c: comp["mixture"][c] - comp["target"][c] for c in comp["target"]}
        row = {"variant": variant, "seed": seed, "selector": doc["selector"], "shares": json.dumps(doc["shares"]),
               "by_selector": json.dumps(doc["by_selector"]), "max_share_error": doc["max_error"][doc["selector"]],
               "composition": json.dumps(comp), "max_composition_gap": max(abs(v) for v in gap.values()),
               "tv_composition": 0.5 * sum(abs(v) for v in gap.values()),
               "fid": record["metrics"]["fid"], "kmmd": record["metrics"]["kmmd"], "mv": record["metrics"]["mv"],
               "steps": sum(steps), "wall_s": record.get("wall_s")}
        for name, err in doc["max_error"].items():
            row[f"max_error_{name}"] = err
        rows.append(row)
    return rows


def part_quality(out: str, seeds: list[int], steps: tuple[int, int], overlap: list[dict],
                 pool: ThreadPoolExecutor) -> list[dict]:
    rows = [{"model": "mined mixture (routed)", "seed": r["seed"], "fid": r["fid"], "kmmd": r["kmmd"], "mv": r["mv"]}
            for r in overlap if r["variant"] == "routed"]
    jobs = []
    total = sum(steps)
    for method, sources in (("finetune", ZOO4_OVERLAP), ("minegan", ZOO4_OVERLAP), ("scratch", ZOO4_OVERLAP[:1])):
        for source in sources:
            for seed in seeds:
                run = os.path.join(out, "runs", "quality", f"{method}-{source}-s{seed}")
                extra = ["--mining-steps", str(steps[0])] if method == "minegan" else []
                cmd = ganlode("transfer", "--source", f"zoo:{source}", "--target", OVERLAP_TARGET, "--method", method,
                              "--steps", str(total), "--seed", str(seed), "--out", run, "--no-progress", "--json", *extra)
                name = "scratch" if method == "scratch" else f"{method} from {source}"
                jobs.append((name, seed, pool.submit(run_json, cmd, run)))
    for name, seed, job in jobs:
        m = job.result()["metrics"]
        rows.append({"model": name, "seed": seed, "fid": m["fid"], "kmmd": m["kmmd"], "mv": m["mv"]})
    return rows


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summary(parts: dict[str, list[dict]], seeds: list[int], steps: tuple[int, int]) -> str:
    lines = [f"# Selector accuracy (seeds {', '.join(map(str, seeds))}; mean ± sd over seeds)", ""]
    cov = parts.get("coverage")
    if cov:
        lines += ["## Disjoint domains: max over sources of |p_i - true share|", "",
                  "| sources | target | selector | " + " | ".join(f"{p}/{100 - p}" for p in RATIOS) + " | worst |",
                  "|---|---|---|" + "---|" * (len(RATIOS) + 1)]
        for label in ("4", "8"):
            for pair in PAIRS:
                name = f"{pair[0]} / {pair[1]}"
                for selector in ("coverage",):
                    cells, worst = [], 0.0
                    for pct in RATIOS:
                        target = spec(pair, pct)
                        per_seed = [max(r["abs_error"] for r in cov if r["sources"] == label and r["target"] == target
                                        and r["seed"] == s and r["selector"] == selector) for s in seeds]
                        cells.append(mean_sd(per_seed))
                        worst = max(worst, max(per_seed))
                    lines.append(f"| {label} | {name} | {selector} | " + " | ".join(cells) + f" | {worst:.3f} |")
        lines.append("")
    ov = parts.get("overlap")
    if ov:
        lines += [f"## Overlapping sources: {OVERLAP_TARGET}, {steps[0]} mining + {steps[1]} fine-tuning steps", "",
                  "| variant | max share error (coverage) | max share error (mixture-fit) | max share error (count) "
                  "| composition: max class gap | composition: TV | FID |", "|---|---|---|---|---|---|---|"]
        for variant in VARIANTS:
            sel = [r for r in ov if r["variant"] == variant]
            cells = [mean_sd([r.get(f"max_error_{k}") for r in sel]) if all(r.get(f"max_error_{k}") is not None for r in sel)
                     else "-" for k in ("coverage", "mixture-fit", "count")]
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {mean_sd([r['max_composition_gap'] for r in sel])} "
                         f"| {mean_sd([r['tv_composition'] for r in sel])} | {mean_sd([r['fid'] for r in sel])} |")
        lines.append("")
    qu = parts.get("quality")
    if qu:
        lines += [f"## Mixture quality on {OVERLAP_TARGET} (test split), {sum(steps)} steps each", "",
                  "| model | FID | KMMD | MV |", "|---|---|---|---|"]
        for model in dict.fromkeys(r["model"] for r in qu):
            sel = [r for r in qu if r["model"] == model]
            lines.append(f"| {model} | {mean_sd([r['fid'] for r in sel])} | {mean_sd([r['kmmd'] for r in sel])} "
                         f"| {mean_sd([r['mv'] for r in sel])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/selector_accuracy")
    ap.add_argument("--parts", default="coverage,overlap,quality")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--mining-steps", type=int, default=400)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ganlode.orchestrator.artifacts.zoo import zoo_names

    missing = sorted(set(ZOO8) - set(zoo_names()))
    if missing:
        print(f"error: zoo models {', '.join(missing)} are missing: build them with "
              "`python -m ganlode.orchestrator.tools.build_zoo`", file=sys.stderr)
        return 2
    wanted = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not wanted or set(wanted) - {"coverage", "overlap", "quality"}:
        print(f"error: --parts takes coverage, overlap and quality, got {args.parts!r}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = (args.mining_steps, args.finetune_steps)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    parts: dict[str, list[dict]] = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        if "coverage" in wanted:
            parts["coverage"] = part_coverage(args.out, seeds, pool)
        if "overlap" in wanted or "quality" in wanted:
            parts["overlap"] = part_overlap(args.out, seeds, steps, pool)
        if "quality" in wanted:
            parts["quality"] = part_quality(args.out, seeds, steps, parts["overlap"], pool)
    for name, rows in parts.items():
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(args.out, f"{name}.parquet"))
    text = summary(parts, seeds, steps)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {args.out}/summary.md and {', '.join(f'{p}.parquet' for p in parts)} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
