"""``ganlode demo``: the main job, on the shipped zoo and built-in data, with pictures.

1. Multi-source mining over the four digit and animal zoo sources for a target built from two of
   their classes with known shares (digit 3 from digits-0to4, zebra from animals-5to9, 30/70),
   on a local Ray cluster: the coverage selector estimates the shares before mining, and routed
   mining gives every source it keeps a generator actor and a critic of its own, against its own
   part of the target (the coordinator holds the critics).
2. Single-source baselines on an off-manifold target (digit 7, which digits-0to4 never saw):
   scratch, finetune, freezed and minegan with equal step budgets.
3. Everything scored under the evaluation protocol, gathered into one run directory:
   ``metrics.parquet``, ``shares.json`` and ``shares.parquet``, sample grids beside real target images, and
   ``report.html``.

The demo holds the lock of its ``--out`` (:mod:`.ownership`) for the whole run; its mining and
baseline runs (``OUT/mine``, ``OUT/transfer/<method>``) take their own, and its report is
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
from .mine import mine_config, run_mine
from .ownership import LockedRunDir, owning
from .transfer import run_transfer

MINE_SOURCES = ("zoo:digits-0to4", "zoo:digits-5to9", "zoo:animals-0to4", "zoo:animals-5to9")
MINE_TARGET = "mnist5k:3@30+animals:zebra@70"
BASELINE_SOURCE = "zoo:digits-0to4"
BASELINE_TARGET = "mnist5k:7@25"
BASELINES = ("scratch", "finetune", "freezed", "minegan")


@dataclass(frozen=True)
class Budget:
    """Step budgets of one demo run."""

    mining_steps: int
    finetune_steps: int
    transfer_steps: int
    eval_every: int
    eval_n: int | None  # cap on reference images per evaluation (None: the whole held-out split)


BUDGETS = {
    "default": Budget(mining_steps=400, finetune_steps=200, transfer_steps=300, eval_every=100, eval_n=None),
    "quick": Budget(mining_steps=200, finetune_steps=100, transfer_steps=150, eval_every=50, eval_n=None),
}


RUN_KIND = "demo"


def _copy_samples(src: RunDir, dst: RunDir, prefix: str) -> None:
    for name in src.sample_names():
        dst.write_sample(f"{prefix}{name}", src.read_sample(name))


def run_demo(out: str, budget: Budget, *, seed: int = 0, show_progress: bool = True,
             methods: tuple[str, ...] = BASELINES, force_unlock: bool = False) -> dict:
    """Run the demo into ``out``; returns {"rows": summary rows, "report": path, "wall_s": s}.

    ``force_unlock`` removes the lock of ``out`` even if its holder may be alive (``--force-unlock``).
    """
    with owning(out, force_unlock=force_unlock) as lock:
        return _demo(LockedRunDir(out, lock), budget, seed=seed, show_progress=show_progress, methods=methods)


def _demo(run: LockedRunDir, budget: Budget, *, seed: int, show_progress: bool, methods: tuple[str, ...]) -> dict:
    t0 = time.time()
    out = run.path
    if run.is_run():
        raise UserError(f"{out} already holds a run: pass a new --out, or delete it first")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if show_progress else (lambda s: None)
    record = RunRecord(run_kind=RUN_KIND, target=f"{MINE_TARGET} (mining); {BASELINE_TARGET} (baselines)", seed=seed,
                       features="classifier",
                       extra={"budget": dataclasses.asdict(budget), "sources": list(MINE_SOURCES),
                              "baseline_source": BASELINE_SOURCE, "baselines": list(methods)})
    run.write_config(record)
    ensure_ray()
    rows = []

    # 1. multi-source mining on Ray
    log(f"[1/2] mining {len(MINE_SOURCES)} zoo sources for {MINE_TARGET} (true shares 30/70) on Ray")
    mine_run = RunDir(run.file("mine"))
    cfg = mine_config("ns-r1", mining_steps=budget.mining_steps, finetune_steps=budget.finetune_steps, seed=seed)
    mined = run_mine(list(MINE_SOURCES), MINE_TARGET, mine_run.path, cfg, eval_every=budget.eval_every,
                     eval_n=budget.eval_n, show_progress=show_progress, selector="coverage", route=True)
    _collect_metrics(run, mine_run, "minegan (4 sources)", MINE_TARGET)
    _copy_samples(mine_run, run, "mine-")
    for name in (SHARES_FILE, SHARES_JSON):
        if storage.exists(mine_run.file(name)):
            storage.write_bytes_atomic(run.file(name), storage.read_bytes(mine_run.file(name)))
    true = dict(zip(MINE_SOURCES, mined.true_shares)) if mined.true_shares else None
    rows.append({"method": "minegan (4 sources)", "target": MINE_TARGET, **_pick(mined.metrics),
                 "shares": " ".join(f"{p:.2f}" for p in mined.shares)})

    # 2. single-source baselines with equal budgets
    for i, method in enumerate(methods, 1):
        log(f"[2/2] baseline {i}/{len(methods)}: {method}, {BASELINE_SOURCE} -> {BASELINE_TARGET}, "
            f"{budget.transfer_steps} steps")
        sub = RunDir(run.file("transfer", method))
        options = {"freeze_depth": 2} if method == "freezed" else {}
        res = run_transfer(BASELINE_SOURCE, BASELINE_TARGET, method, options, steps=budget.transfer_steps,
                           out=sub.path, seed=seed, eval_every=budget.eval_every, eval_n=budget.eval_n,
                           show_progress=show_progress)
        _collect_metrics(run, sub, method, BASELINE_TARGET)
        if "final.png" in sub.sample_names():
            run.write_sample(method, sub.read_sample("final.png"))
        rows.append({"method": method, "target": BASELINE_TARGET, **_pick(res.metrics), "shares": ""})

    # real images beside the samples
    g = torch.Generator().manual_seed(seed)
    for name, spec in (("target-mining", MINE_TARGET), ("target-baselines", BASELINE_TARGET)):
        real = load_target(spec, seed=seed).images
        run.write_sample(name, grid_png(real[torch.randperm(len(real), generator=g)[:64]]))
    run.write_config(run.read_record().replace(true_shares=true, wall_s=round(time.time() - t0, 1)))
    report = build_report(out, title="ganlode demo", lock=run.lock)
    return {"rows": rows, "report": report, "wall_s": time.time() - t0, "true_shares": true,
            "shares": dict(zip(MINE_SOURCES, mined.shares)), "selector": mined.selector}


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
    head = f"{'method':<22} {'target':<32} {'FID':>9} {'KMMD':>8} {'MV':>6}  shares"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<22} {r['target']:<32} {r['fid']:>9.2f} {r['kmmd']:>8.4f} {r['mv']:>6.2f}  {r['shares']}")
    return "\n".join(lines)
