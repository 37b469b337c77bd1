"""Transfer quality: every single-source method on equal step budgets, several seeds each.

Settings (source -> target):
    digits-7@25        zoo:digits-0to4  -> mnist5k:7@25
    digits-7@100       zoo:digits-0to4  -> mnist5k:7@100
    animals-horse@100  zoo:animals-0to4 -> animals:horse@100
    digits-7@10        zoo:digits-0to4  -> mnist5k:7@10                (the few-shot rows: 10 shots)
    person-role@10     zoo:emoji-faces  -> emoji-sub:person-role@10    (the StyleGAN2 colour source)
Every method gets the same number of steps (``--steps``; for minegan half of them mining) and
its usual options (below); each (setting, method, seed) is one ``ganlode transfer`` run
(:func:`ganlode.orchestrator.pipelines.transfer.run_transfer`) scored under the evaluation protocol
every steps/10 steps on the target's validation split. The tables report test-split figures of
the checkpoint with the best validation FID (``--report best``, the default) or of the last one
(``--report final``), with each run's wall time and the step the validation split chose.

Writes under ``--out``:
    runs/<setting>/<method>/seed<k>/   the run directories (a finished one is reused on re-runs)
    results.parquet                    every evaluation row of every run (setting, method, seed, step, metric, value)
    summary.parquet / summary.md       test FID/KMMD/MV/intra-cluster diversity of the best and the final checkpoint,
                                       chosen step and wall time per setting and method: mean, std, min, max over seeds
    transfer_quality.png               final metrics, mean +- std over seeds
    transfer_quality_curves.png        FID and KMMD over steps (mean over seeds)

    python benchmarks/transfer_quality.py --out benchmarks/results/transfer_quality
    python benchmarks/transfer_quality.py --out /tmp/tq --methods finetune,freezed --settings digits-7@25 --seeds 1
    python benchmarks/transfer_quality.py --out runs/few-shot --settings digits-7@10,person-role@10 \
        --methods finetune,freezed,minegan,cdc,adam,rick --steps 300 --jobs 2   # the few-shot rows
    python benchmarks/transfer_quality.py --smoke-test   # seconds-to-a-minute; a fresh tiny source if the zoo is absent

It prints an estimate of the full run's CPU time from the runs it made (useful after --smoke-test).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

SETTINGS = {
    "digits-7@25": ("digits-0to4", "mnist5k:7@25"),
    "digits-7@100": ("digits-0to4", "mnist5k:7@100"),
    "animals-horse@100": ("animals-0to4", "animals:horse@100"),
    "digits-7@10": ("digits-0to4", "mnist5k:7@10"),
    "person-role@10": ("emoji-faces", "emoji-sub:person-role@10"),
}
DEFAULT_SETTINGS = ("digits-7@25", "digits-7@100", "animals-horse@100")
ZOO_DATA = {"digits-0to4": "mnist5k:0-4", "animals-0to4": "animals:0-4", "emoji-faces": "emoji-sub:face-smiling"}
METHODS = ("scratch", "finetune", "freezed", "l2sp", "distill", "adabn", "bsa", "glo", "minegan", "cdc", "adam", "rick")
# Each method's own option at a usual value; everything else takes ganlode transfer's defaults.
METHOD_OPTIONS: dict[str, dict] = {
    "freezed": {"freeze_depth": 1},
    "l2sp": {"l2sp_weight": 0.01},
    "distill": {"distill_weight": 1.0},
}
METRICS = ("fid", "kmmd", "mv", "intra_div")
PICKS = ("best", "final")  # the checkpoint a table reports: best validation FID, or the last step


@dataclass(frozen=True)
class Job:
    setting: str
    source: str
    target: str
    method: str
    seed: int
    steps: int
    out: str
    eval_every: int | None
    eval_n: int | None
    threads: int
    mining_candidates: int | None = None  # adabn/bsa/glo code initialisation (None: the method's default)


def run_job(job: Job) -> dict:
    """One transfer run (reused if already finished); returns its timings."""
    import torch

    from ganlode.methods.base import TransferOptions
    from ganlode.orchestrator.artifacts.rundir import RunDir
    from ganlode.orchestrator.pipelines.transfer import run_transfer

    torch.set_num_threads(job.threads)
    if job.mining_candidates:
        from ganlode.methods import latent

        latent.MINING_CANDIDATES = job.mining_candidates
    run = RunDir(job.out)
    if run.is_run():
        cfg = run.read_config()
        if cfg.get("status") == "done" and cfg.get("steps") == job.steps:
            return {"job": job, "wall_s": cfg.get("wall_s", 0.0), "train_s": cfg.get("train_s", 0.0),
                    "eval_s": cfg.get("eval_s", 0.0), "cpu_s": None, "reused": True}
        import shutil

        shutil.rmtree(job.out)  # an unfinished run: start it again
    cpu0 = time.process_time()
    result = run_transfer(job.source, job.target, job.method, TransferOptions(**METHOD_OPTIONS.get(job.method, {})),
                          steps=job.steps, out=job.out, seed=job.seed, eval_every=job.eval_every, eval_n=job.eval_n,
                          show_progress=False)
    return {"job": job, "wall_s": result.wall_s, "train_s": result.train_s, "eval_s": result.eval_s,
            "cpu_s": time.process_time() - cpu0, "reused": False}


def smoke_sources(root: str, names: set[str]) -> dict[str, str]:
    """Zoo models where shipped, else sources of the zoo's architecture pretrained for 2 steps."""
    from ganlode.methods.nets import GANConfig
    from ganlode.methods.train import TrainConfig
    from ganlode.orchestrator import data
    from ganlode.orchestrator.artifacts.checkpoint import save_checkpoint
    from ganlode.orchestrator.artifacts.zoo import zoo_names
    from ganlode.orchestrator.pipelines.pretrain import pretrain_local

    have, out = set(zoo_names()), {}
    for name in sorted(names):
        if name in have:
            out[name] = f"zoo:{name}"
            continue
        target = data.load_target(ZOO_DATA[name])
        _, c, h, _ = target.images.shape  # the gray zoo's DCGAN (so timings carry over); an RGB DCGAN for emoji
        arch = GANConfig() if c == 1 else GANConfig(resolution=h, channels=c)
        tcfg = TrainConfig(loss="ns-r1", batch=64, beta2=0.99, n_critic=1, r1_gamma=0.2, seed=0)
        res = pretrain_local(target.images, arch, tcfg, steps=2, show_progress=False)
        path = os.path.join(root, name)
        save_checkpoint(path, {"kind": "gan", "arch": arch.to_dict(), "train": tcfg.to_dict(),
                               "data": target.provenance(), "note": "smoke-test stand-in, 2 steps"}, res.generator, res.critic)
        out[name] = path
    return out


def collect(jobs: list[Job]):
    import pyarrow as pa
    import pyarrow.compute as pc

    from ganlode.orchestrator.artifacts.rundir import RunDir

    tables = []
    for job in jobs:
        t = RunDir(job.out).read_metrics()
        n = t.num_rows
        t = t.append_column("setting", pa.array([job.setting] * n)).append_column("source", pa.array([job.source] * n))
        tables.append(t)
    table = pa.concat_tables(tables)
    return table.filter(pc.is_in(table["metric"], pa.array(list(METRICS) + ["kmmd_bandwidth"])))


def summarise(jobs: list[Job]):
    """Per (setting, method, pick, metric): mean, std, min, max over seeds of the test-split figure,
    where pick is ``best`` (the checkpoint with the best validation FID) or ``final`` (the last step).
    The chosen step and the run's wall time are rows of their own (metrics ``step`` and ``wall_s``)."""
    import pandas as pd

    from ganlode.orchestrator.artifacts.rundir import RunDir

    rows = []
    for job in jobs:
        cfg = RunDir(job.out).read_config()
        picked = {"best": (cfg["best"]["test"], cfg["best"]["step"]), "final": (cfg["metrics"], job.steps)}
        for pick, (values, step) in picked.items():
            base = {"setting": job.setting, "method": job.method, "pick": pick, "seed": job.seed}
            rows += [{**base, "metric": m, "value": float(values[m])} for m in METRICS if m in values]
            rows += [{**base, "metric": "step", "value": float(step)},
                     {**base, "metric": "wall_s", "value": float(cfg["wall_s"])}]
    df = pd.DataFrame(rows)
    g = df.groupby(["setting", "method", "pick", "metric"], sort=False)["value"]
    summary = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "min": g.min(), "max": g.max(),
                            "seeds": g.count()}).reset_index()
    summary["steps"] = jobs[0].steps
    return summary


def markdown(summary, pick: str = "best") -> str:
    """One table per setting: the test-split figures of the ``pick`` checkpoint, mean ± std over seeds."""
    head = {"best": "checkpoint with the best validation FID", "final": "last checkpoint"}[pick]
    lines = []
    for setting, part in summary[summary["pick"] == pick].groupby("setting", sort=False):
        lines += [f"### {setting} ({head}; test split)", "",
                  "| method | FID | KMMD | MV | intra-div | step | wall s | seeds |", "|---|---|---|---|---|---|---|---|"]
        for method, rows in part.groupby("method", sort=False):
            cell = {r.metric: f"{r.mean:.3g} ± {r.std:.2g}" for r in rows.itertuples()}
            cell["step"] = " / ".join(f"{v:.0f}" for v in rows[rows["metric"] == "step"][["min", "max"]].iloc[0]) \
                if pick == "best" else f"{rows[rows['metric'] == 'step']['mean'].iloc[0]:.0f}"
            wall = rows[rows["metric"] == "wall_s"].iloc[0]
            cell["wall_s"] = f"{wall['mean']:.0f} ± {wall['std']:.0f}"
            lines.append(f"| {method} | {cell.get('fid', '')} | {cell.get('kmmd', '')} | {cell.get('mv', '')} | "
                         f"{cell.get('intra_div', '')} | {cell['step']} | {cell['wall_s']} | "
                         f"{int(rows['seeds'].iloc[0])} |")
        lines.append("")
    if pick == "best":
        lines.append("step: the earliest / latest step the validation split chose over the seeds.")
    return "\n".join(lines)


def plot_bars(summary, path: str, pick: str = "best") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summary[summary["pick"] == pick]

    settings = list(dict.fromkeys(summary["setting"]))
    fig, axes = plt.subplots(len(METRICS), len(settings), figsize=(4.2 * len(settings), 2.6 * len(METRICS)),
                             squeeze=False)
    for j, setting in enumerate(settings):
        for i, metric in enumerate(METRICS):
            ax = axes[i][j]
            part = summary[(summary["setting"] == setting) & (summary["metric"] == metric)]
            ax.bar(range(len(part)), part["mean"], yerr=part["std"], capsize=3, color=[f"C{k}" for k in range(len(part))])
            ax.set_xticks(range(len(part)), part["method"], rotation=40, fontsize=7)
            ax.set_ylabel(metric.upper() + (" (1 = target diversity)" if metric == "mv" else ""), fontsize=8)
            if metric == "mv":
                ax.axhline(1.0, color="k", lw=0.6, ls="--")
            if i == 0:
                ax.set_title(setting, fontsize=9)
    fig.suptitle(f"single-source transfer: test scores of the {pick} checkpoint, mean ± std over seeds "
                 "(lower FID/KMMD is better)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = results.to_pandas()
    df = df[df["split"] == "val"]  # the curves the selection saw
    settings = list(dict.fromkeys(df["setting"]))
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 5.5), squeeze=False)
    for j, setting in enumerate(settings):
        for i, metric in enumerate(("fid", "kmmd")):
            ax = axes[i][j]
            part = df[(df["setting"] == setting) & (df["metric"] == metric)]
            for k, (method, rows) in enumerate(part.groupby("method", sort=False)):
                curve = rows.groupby("step")["value"].mean()
                ax.plot(curve.index, curve.values, label=method, color=f"C{k}", lw=1.2)
            ax.set_yscale("log")
            ax.set_xlabel("step", fontsize=8)
            ax.set_ylabel(metric.upper(), fontsize=8)
            if i == 0:
                ax.set_title(setting, fontsize=9)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def estimate(timings: list[dict], steps: int, eval_every: int | None, full_steps: int, full_seeds: int,
             n_settings: int, n_methods: int, eval_scale: float = 1.0) -> str:
    """CPU time of the full benchmark, scaled from these runs: training per step, evaluation per evaluation
    (at the full reference size, see ``eval_scale``), the rest (loading, code mining, saving) per run.
    Wall times are converted to CPU time with each run's CPU/wall ratio, so a busy machine (runs
    waiting for a core) does not inflate the estimate."""
    evals_here = len(_eval_points(steps, eval_every))
    evals_full = len(_eval_points(full_steps, None))
    per_run = {}
    for t in timings:
        if t["reused"]:
            continue
        m = t["job"].method
        train = t["train_s"] / steps * full_steps
        evals = t["eval_s"] / evals_here * evals_full * eval_scale
        setup = max(0.0, t["wall_s"] - t["train_s"] - t["eval_s"])
        cpu_share = min(1.0, t["cpu_s"] / t["wall_s"]) if t["wall_s"] > 0 else 1.0
        per_run.setdefault(m, []).append((train + evals + setup) * cpu_share)
    if not per_run:
        return "no fresh runs to time"
    lines = [f"estimated CPU time of the full benchmark ({n_settings} settings x {n_methods} methods x {full_seeds} seeds, "
             f"{full_steps} steps, 1 thread per run):"]
    total = 0.0
    for m, v in per_run.items():
        mean = sum(v) / len(v)
        total += mean * n_settings * full_seeds
        lines.append(f"  {m:<9} {mean:7.0f} CPU-s per run")
    total *= n_methods / len(per_run)
    lines.append(f"  total    {total / 3600:7.2f} CPU-hours (about {total / 3600 / 2:.2f} h wall with --jobs 2 on 2 idle cores)")
    return "\n".join(lines)


def len_reference(spec: str) -> int:
    from ganlode.orchestrator import data

    return len(data.eval_reference(spec))


def _eval_points(steps: int, eval_every: int | None) -> list[int]:
    from ganlode.orchestrator.pipelines.transfer import eval_steps

    return eval_steps(steps, eval_every)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (default: a temporary folder with --smoke-test)")
    p.add_argument("--steps", type=int, default=1000, help="steps per run, equal for every method (default 1000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per (setting, method) (default 3)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all)")
    p.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                   help=f"comma-separated settings of {', '.join(SETTINGS)} (default: {','.join(DEFAULT_SETTINGS)})")
    p.add_argument("--report", choices=PICKS, default="best",
                   help="the checkpoint the tables and bars report: best validation FID, or the last (default best)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--smoke-test", action="store_true",
                   help="3 steps, 1 seed, 50 reference images, 256 code-mining candidates; stand-in sources "
                        "(2 pretraining steps) when the zoo is absent")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    settings = [s for s in args.settings.split(",") if s]
    bad = [m for m in methods if m not in METHODS] + [s for s in settings if s not in SETTINGS]
    if bad:
        print(f"error: unknown method/setting {', '.join(bad)}; methods: {', '.join(METHODS)}; "
              f"settings: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    full_steps, full_seeds = args.steps, args.seeds
    steps, seeds, eval_every, eval_n = args.steps, args.seeds, None, None
    if args.smoke_test:
        steps, seeds, eval_every, eval_n = 3, 1, 0, 50
    out = args.out or (tempfile.mkdtemp(prefix="transfer-quality-") if args.smoke_test else None)
    if out is None:
        p.error("--out is required (except with --smoke-test)")
    os.makedirs(out, exist_ok=True)

    from ganlode.orchestrator.artifacts.zoo import zoo_names

    needed = {SETTINGS[s][0] for s in settings}
    if args.smoke_test:
        sources = smoke_sources(os.path.join(out, "sources"), needed)
    else:
        missing = sorted(needed - set(zoo_names()))
        if missing:
            print(f"error: the zoo lacks {', '.join(missing)}; build it (python -m ganlode.orchestrator.tools.build_zoo) "
                  "or use --smoke-test", file=sys.stderr)
            return 2
        sources = {n: f"zoo:{n}" for n in needed}

    jobs = [Job(s, sources[SETTINGS[s][0]], SETTINGS[s][1], m, seed, steps,
                os.path.join(out, "runs", s, m, f"seed{seed}"), eval_every, eval_n, args.threads,
                256 if args.smoke_test else None)
            for s in settings for m in methods for seed in range(seeds)]
    print(f"{len(jobs)} runs: {len(settings)} settings x {len(methods)} methods x {seeds} seeds, {steps} steps each",
          file=sys.stderr)
    t0 = time.time()
    timings = []
    if args.jobs > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for t in pool.map(run_job, jobs):
                timings.append(t)
                _report(t, len(timings), len(jobs))
    else:
        for job in jobs:
            t = run_job(job)
            timings.append(t)
            _report(t, len(timings), len(jobs))

    import pyarrow.parquet as pq

    results = collect(jobs)
    pq.write_table(results, os.path.join(out, "results.parquet"))
    summary = summarise(jobs)
    summary.to_parquet(os.path.join(out, "summary.parquet"), index=False)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(markdown(summary, args.report))
    plot_bars(summary, os.path.join(out, "transfer_quality.png"), args.report)
    plot_curves(results, os.path.join(out, "transfer_quality_curves.png"))
    print(markdown(summary, args.report))
    print(f"wrote {out}/results.parquet, summary.parquet, summary.md, transfer_quality.png, "
          f"transfer_quality_curves.png ({time.time() - t0:.0f} s)")
    # the smoke test scores 50 reference images; the full run the whole held-out split (150 or 300)
    scale = (sum(len_reference(SETTINGS[s][1]) for s in settings) / len(settings) / eval_n) if eval_n else 1.0
    print(estimate(timings, steps, eval_every, full_steps, full_seeds, len(settings), len(methods), eval_scale=scale))
    return 0


def _report(t: dict, done: int, total: int) -> None:
    j = t["job"]
    how = "reused" if t["reused"] else f"{t['wall_s']:.1f} s wall, {t['cpu_s']:.1f} s CPU ({t['train_s']:.2f} s training)"
    print(f"[{done}/{total}] {j.setting} {j.method} seed {j.seed}: {how}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
