"""``ganlode demo``: the main job, on the shipped zoo and built-in data, with pictures.

The story a user with several source GANs and a small mixed target goes through, in order, on a
local Ray cluster:

1. **Recommend** (:mod:`.recommend`): every zoo source of the target's size is weighed for a
   target built from two classes with known shares (digit 3 from digits-0to4, zebra from
   animals-5to9, 30/70): coverage share, unmined validation FID and (in the full demo) a short
   fine-tuning probe, one Ray task per candidate. The recommendation is the set to mine.
2. **Mine the recommended set**: routed multi-source mining (the coverage selector's shares,
   estimated before mining; a generator actor and a critic per kept source), shares shown
   against the truth.
3. **Single-source baselines on the same target at the same budget** (mining plus fine-tuning
   steps): fine-tuning (and, in the full demo, MineGAN) from the top-ranked single source, and
   fine-tuning from the runner-up.
4. Everything scored under the evaluation protocol (test split), gathered into one run
   directory: ``recommend.json`` and ``recommend.parquet``, ``metrics.parquet``, ``shares.json``
   and ``shares.parquet``, sample grids beside real target images, and ``report.html``.

The demo holds the lock of its ``--out`` (:mod:`.ownership`) for the whole run; its mining and
baseline runs (``OUT/mine``, ``OUT/transfer/<name>``) take their own, and its report is
written under the demo's.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass

import torch

from .. import storage
from ..artifacts.records import RunRecord
from ..artifacts.rundir import SHARES_FILE, SHARES_JSON, RunDir
from ..cluster import ensure_ray
from ..data.images import grid_png
from ..data.spec import load_target
from ..errors import UserError
from ..report.html import build_report
from . import recommend as R
from .mine import mine_config, run_mine
from .ownership import LockedRunDir, owning
from .transfer import run_transfer

TARGET = "mnist5k:3@30+animals:zebra@70"


@dataclass(frozen=True)
class Budget:
    """Step budgets of one demo run."""

    mining_steps: int
    finetune_steps: int
    probe_steps: int  # recommend's probe per candidate (0: none)
    eval_every: int
    eval_n: int | None  # cap on reference images per evaluation (None: the whole held-out split)
    # single-source baselines: (method, which ranked single source: 0 the top one, 1 the runner-up)
    baselines: tuple[tuple[str, int], ...] = (("finetune", 0),)

    @property
    def steps(self) -> int:
        """Every run's budget: the mining run's steps, and each baseline's."""
        return self.mining_steps + self.finetune_steps


BUDGETS = {
    "default": Budget(mining_steps=400, finetune_steps=200, probe_steps=100, eval_every=100, eval_n=None,
                      baselines=(("finetune", 0), ("minegan", 0), ("finetune", 1))),
    "quick": Budget(mining_steps=100, finetune_steps=100, probe_steps=0, eval_every=100, eval_n=None,
                    baselines=(("finetune", 0),)),
}

RUN_KIND = "demo"


def _copy_samples(src: RunDir, dst: RunDir, prefix: str) -> None:
    for name in src.sample_names():
        dst.write_sample(f"{prefix}{name}", src.read_sample(name))


def _short(source: str) -> str:
    return source.split(":", 1)[-1]


def run_demo(out: str, budget: Budget, *, seed: int = 0, show_progress: bool = True,
             force_unlock: bool = False) -> dict:
    """Run the demo into ``out``; returns {"rows": summary rows, "report": path, "wall_s": s, ...}.

    ``force_unlock`` removes the lock of ``out`` even if its holder may be alive (``--force-unlock``).
    """
    with owning(out, force_unlock=force_unlock) as lock:
        return _demo(LockedRunDir(out, lock), budget, seed=seed, show_progress=show_progress)


def _demo(run: LockedRunDir, budget: Budget, *, seed: int, show_progress: bool) -> dict:
    t0 = time.time()
    out = run.path
    if run.is_run():
        raise UserError(f"{out} already holds a run: pass a new --out, or delete it first")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if show_progress else (lambda s: None)
    record = RunRecord(run_kind=RUN_KIND, target=TARGET, seed=seed, features="classifier",
                       extra={"budget": dataclasses.asdict(budget)})
    run.write_config(record)
    ensure_ray()
    rows = []

    # 1. which sources to start from (one Ray task per zoo source)
    log(f"[1/3] recommend: weighing the zoo for {TARGET} (true shares 30/70)"
        + (f", {budget.probe_steps}-step probe each" if budget.probe_steps else ", no probe"))
    rec = R.recommend(TARGET, probe_steps=budget.probe_steps, seed=seed, eval_n=budget.eval_n,
                      show_progress=show_progress)
    R.write(rec, out)
    log(R.summary(rec))
    singles = [c.source for c in rec.candidates]

    # 2. mine the recommended set (routed, on Ray)
    mine_run = RunDir(run.file("mine"))
    mined_name = f"minegan ({len(rec.sources)} sources: {' + '.join(_short(s) for s in rec.sources)})"
    log(f"[2/3] mining {', '.join(rec.sources)} for {TARGET}, {budget.mining_steps} + {budget.finetune_steps} steps")
    if len(rec.sources) >= 2:
        cfg = mine_config("ns-r1", mining_steps=budget.mining_steps, finetune_steps=budget.finetune_steps, seed=seed)
        mined = run_mine(list(rec.sources), TARGET, mine_run.path, cfg, eval_every=budget.eval_every,
                         eval_n=budget.eval_n, show_progress=show_progress, selector="coverage", route=True)
        metrics, shares = mined.metrics, dict(zip(rec.sources, mined.shares))
        true = dict(zip(rec.sources, mined.true_shares)) if mined.true_shares else None
    else:  # one source explains the target: single-source MineGAN
        res = run_transfer(rec.sources[0], TARGET, "minegan", {"mining_steps": budget.mining_steps},
                           steps=budget.steps, out=mine_run.path, seed=seed, eval_every=budget.eval_every,
                           eval_n=budget.eval_n, show_progress=show_progress)
        metrics, shares, true = res.metrics, {rec.sources[0]: 1.0}, None
    _collect_metrics(run, mine_run, mined_name, TARGET)
    _copy_samples(mine_run, run, "mine-")
    for name in (SHARES_FILE, SHARES_JSON):
        if storage.exists(mine_run.file(name)):
            storage.write_bytes_atomic(run.file(name), storage.read_bytes(mine_run.file(name)))
    rows.append({"method": mined_name, "target": TARGET, **_pick(metrics),
                 "shares": " ".join(f"{p:.2f}" for p in shares.values())})

    # 3. single-source baselines: same target, same budget
    for i, (method, rank) in enumerate(budget.baselines, 1):
        source = singles[min(rank, len(singles) - 1)]
        name = f"{method} from {_short(source)}"
        log(f"[3/3] baseline {i}/{len(budget.baselines)}: {name}, {budget.steps} steps")
        sub = RunDir(run.file("transfer", f"{method}-{_short(source)}"))
        options = {"mining_steps": budget.mining_steps} if method == "minegan" else {}
        res = run_transfer(source, TARGET, method, options, steps=budget.steps, out=sub.path, seed=seed,
                           eval_every=budget.eval_every, eval_n=budget.eval_n, show_progress=show_progress)
        _collect_metrics(run, sub, name, TARGET)
        if "final.png" in sub.sample_names():
            run.write_sample(name.replace(" ", "-"), sub.read_sample("final.png"))
        rows.append({"method": name, "target": TARGET, **_pick(res.metrics), "shares": ""})

    # real images beside the samples
    g = torch.Generator().manual_seed(seed)
    real = load_target(TARGET, seed=seed).images
    run.write_sample("target", grid_png(real[torch.randperm(len(real), generator=g)[:64]]))
    run.write_config(run.read_record().replace(true_shares=true, wall_s=round(time.time() - t0, 1),
                                               sources=list(rec.sources)))
    report = build_report(out, title="ganlode demo", lock=run.lock)
    return {"rows": rows, "report": report, "wall_s": time.time() - t0, "true_shares": true, "shares": shares,
            "selector": "coverage", "recommendation": {"kind": rec.kind, "sources": rec.sources,
                                                       "reason": rec.reason}}


def _pick(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in ("fid", "kmmd", "mv")}


def _collect_metrics(run: RunDir, sub: RunDir, method: str, target: str) -> None:
    """Copy a sub-run's validation curve and its final model's test scores into the demo's
    metrics.parquet under ``method`` (the demo compares final models: one row per method)."""
    rows = [r for r in sub.read_metrics().to_pylist() if r["metric"] in ("fid", "kmmd", "mv")]
    final = max((r["step"] for r in rows if r["split"] == "test"), default=None)
    run.append_metrics([{**r, "method": method, "target": target} for r in rows
                        if r["split"] == "val" or (r["split"] == "test" and r["step"] == final)])


def summary_table(rows: list[dict]) -> str:
    width = max([len(r["method"]) for r in rows] + [6])
    head = f"{'method':<{width}} {'target':<32} {'FID':>9} {'KMMD':>8} {'MV':>6}  shares"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<{width}} {r['target']:<32} {r['fid']:>9.2f} {r['kmmd']:>8.4f} {r['mv']:>6.2f}  {r['shares']}")
    return "\n".join(lines)
