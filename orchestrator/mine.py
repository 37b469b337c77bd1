"""The multi-source mining pipeline: several source GANs + a target -> one mined model.

:func:`run_mine` is the one entry point; ``ganlode mine`` calls it, and ``ganlode tune --method
mine`` and ``ganlode demo`` call it with ``on_eval`` to receive metrics. It

1. checks every input before writing anything (bad input is a :class:`UserError`);
2. runs ``mining_steps`` mining steps and ``finetune_steps`` joint fine-tuning steps, on Ray
   (one generator actor per source, :mod:`ganlode.actors`; in bundles of the caller's placement
   group when it passes one, as a Tune trial does) or in this process (the reference);
3. writes ``RUN/checkpoints/step-N`` every ``checkpoint_every`` steps (the whole state: every
   G_i, M_i and optimizer, the critic, the selector window and the RNG), so ``resume=True``
   continues from the last one and the result equals an uninterrupted run's; at a step that is
   also evaluated, after ``on_eval`` returns;
4. writes the mined model as one artifact, ``RUN/checkpoints/final`` (kind ``mined``: every
   G_i and M_i under ``sources.<i>.``, p as the tensor ``shares``), ``RUN/shares.parquet``
   (step, source, share) with a plot, sample grids per source and mixed, and the evaluation
   protocol's metrics in ``RUN/metrics.parquet``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..methods.miner import MinedGenerator, Miner
from ..methods.multisource import MinedMixture, MultiSourceConfig, MultiSourceMiner, selector_shares, source_prefix
from ..methods.nets import GANConfig, Generator
from . import checkpoint, data, evaluation, storage
from .errors import UserError
from .images import grid_png
from .progress import Progress
from .runs import RunDir, metric_rows

METHOD = "mine"
KIND = "mined"
SHARES_FILE = "shares.parquet"
EvalCallback = Callable[[int, dict[str, float]], None]


@dataclass
class MineResult:
    run: str
    shares: list[float]  # p, in source order
    metrics: dict[str, float]  # the final evaluation
    history: list[dict[str, Any]] = field(default_factory=list)  # logged steps: losses and shares
    true_shares: list[float] | None = None  # when every target class comes from exactly one source
    resumed_from: int = 0
    wall_s: float = 0.0


def mine_config(loss: str = "ns-r1", **overrides: Any) -> MultiSourceConfig:
    """Settings with the Adam betas of ``loss`` (as ``ganlode pretrain`` uses), plus overrides."""
    try:
        return MultiSourceConfig(**{"loss": loss, "beta2": 0.9 if loss == "wgan-gp" else 0.99, **overrides})
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid mining settings: {e}") from None


# ---------------------------------------------------------------- inputs


def load_sources(sources: Sequence[str]) -> list[checkpoint.Checkpoint]:
    """Every source checkpoint; source 0 must hold a critic (the shared critic starts from it)."""
    if len(sources) < 2:
        raise UserError(f"multi-source mining needs two or more --source (got {len(sources)}); "
                        "for one source use `ganlode transfer --method minegan`")
    ckpts = [checkpoint.load_checkpoint(s, with_critic=(i == 0)) for i, s in enumerate(sources)]
    for s, c in zip(sources, ckpts):
        if c.config.get("kind", "gan") != "gan":
            raise UserError(f"--source {s} is a {c.config.get('kind')!r} model; sources must be plain GAN checkpoints "
                            "(from `ganlode pretrain`, a fine-tuning run, or zoo:NAME)")
    shapes = {(c.arch.channels, c.arch.resolution) for c in ckpts}
    if len(shapes) > 1:
        listed = ", ".join(f"{s}: {c.arch.channels}x{c.arch.resolution}x{c.arch.resolution}" for s, c in zip(sources, ckpts))
        raise UserError(f"the sources make images of different sizes or channels ({listed}); "
                        "pick sources that all make the target's image size")
    if ckpts[0].critic is None:
        raise UserError(f"the shared critic starts from the first source's critic, but {sources[0]} holds none: "
                        "list a source written by `ganlode pretrain` (or zoo:NAME) first")
    return ckpts


def true_shares(source_configs: Sequence[dict[str, Any]], target: data.ImageSet) -> list[float] | None:
    """Each source's share of the target when every target class was in exactly one source's data."""
    covers = []
    for cfg in source_configs:
        counts = ((cfg.get("data") or {}).get("counts")) if isinstance(cfg.get("data"), dict) else None
        if not isinstance(counts, dict):
            return None
        covers.append({(ds, label) for ds, labels in counts.items() for label, n in labels.items() if n})
    shares = [0.0] * len(covers)
    for group, n in target.counts().items():
        owners = [i for i, c in enumerate(covers) if group in c]
        if len(owners) != 1:
            return None
        shares[owners[0]] += n / len(target)
    return shares


def mixture_from_state(arches: Sequence[GANConfig], cfg: MultiSourceConfig,
                       tensors: dict[str, torch.Tensor]) -> MinedMixture:
    """The mined model (every G_i(M_i(.)) and p) from a run state or a mined artifact's tensors."""
    sources = []
    for i, arch in enumerate(arches):
        g, m = Generator(arch), Miner(cfg.miner_config(arch.latent_dim))
        checkpoint._load_into(g, f"{source_prefix(i)}generator.", tensors, "run state")
        checkpoint._load_into(m, f"{source_prefix(i)}miner.", tensors, "run state")
        sources.append(MinedGenerator(g, m))
    shares = tensors["shares"] if "shares" in tensors else selector_shares(tensors["selector.window"], len(arches))
    return MinedMixture(sources, shares).eval()


def load_mined(path: str):
    """LOADERS["mined"]: a sampler that picks source i ~ p, then x = G_i(M_i(u))."""
    from .models import LoadedModel

    config, tensors = checkpoint.read_tensors(path)
    try:
        arches = [GANConfig.from_dict(s["arch"]) for s in config["sources"]]
        cfg = MultiSourceConfig.from_dict(config["mining"])
        if "shares" not in tensors:
            raise KeyError("shares")
        mixture = mixture_from_state(arches, cfg, tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} is not a complete mined model ({e.__class__.__name__}: {e}); re-run `ganlode mine`") from None
    return LoadedModel(path, config, mixture.sample, arches[0].resolution, arches[0].channels)


# ---------------------------------------------------------------- run directory pieces


def step_checkpoints(run: RunDir) -> list[int]:
    steps = []
    for name in storage.listdir(run.file("checkpoints")):
        if name.startswith("step-") and name[5:].isdigit() and storage.exists(run.file("checkpoints", name, checkpoint.WEIGHTS)):
            steps.append(int(name[5:]))
    return sorted(steps)


def _remove_dir(path: str) -> None:
    try:
        fs, p = storage.filesystem(path)
        fs.rm(p, recursive=True)
    except Exception:  # noqa: BLE001 - pruning old checkpoints is best effort
        pass


def shares_table_bytes(history: Sequence[dict[str, Any]], sources: Sequence[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"step": int(r["step"]), "source": sources[i], "index": i, "share": float(p)}
            for r in history for i, p in enumerate(r["shares"])]
    schema = pa.schema([("step", pa.int64()), ("source", pa.string()), ("index", pa.int64()), ("share", pa.float64())])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


def shares_plot_png(history: Sequence[dict[str, Any]], sources: Sequence[str], true: Sequence[float] | None = None) -> bytes:
    """The selector's shares over the logged steps (dashed: the true shares, when known)."""
    from .report import shares_png

    rows = [{"step": r["step"], "source": sources[i], "share": p} for r in history for i, p in enumerate(r["shares"])]
    return shares_png(rows, dict(zip(sources, true)) if true is not None else None)


def _truncate_metrics(run: RunDir, step: int) -> None:
    """Drop this method's metric rows after ``step`` (they are recomputed on resume)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = run.read_metrics()
    if not table.num_rows:
        return
    keep = pc.invert(pc.and_(pc.equal(table["method"], METHOD), pc.greater(table["step"], step)))
    buf = io.BytesIO()
    pq.write_table(table.filter(keep), buf)
    storage.write_bytes_atomic(run.file("metrics.parquet"), buf.getvalue())


def _fmt_shares(shares: Sequence[float]) -> str:
    return "/".join(f"{p:.2f}" for p in shares)


# ---------------------------------------------------------------- engines


def _engine(ckpts: Sequence[checkpoint.Checkpoint], images: torch.Tensor, cfg: MultiSourceConfig, *,
            in_process: bool, gpus_per_source: float | None, threads: int | None, snapshot_every: int,
            placement_group: Any = None):
    arches = [c.arch for c in ckpts]
    gen_states = [{k: v.detach().clone() for k, v in c.generator.state_dict().items()} for c in ckpts]
    critic_state = {k: v.detach().clone() for k, v in ckpts[0].critic.state_dict().items()}
    if in_process:
        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return MultiSourceMiner.build(arches, gen_states, critic_state, images, cfg, device)
    import ray

    from ..actors.placement import MiningCluster, MiningResources, gpus_needed, plan_resources
    from .cluster import ensure_ray

    ensure_ray()
    n = len(ckpts)
    if placement_group is not None:
        # The caller (a Tune trial) reserved bundle 0 for itself and bundles 1..N+1 for this run.
        try:
            resources = MiningResources.from_bundles(placement_group.bundle_specs[1:], threads=threads)
            return MiningCluster(arches, gen_states, critic_state, images, cfg, resources, snapshot_every=snapshot_every,
                                 placement_group=placement_group, bundle_offset=1)
        except ValueError as e:
            raise RuntimeError(f"the placement group given to the mining run does not fit {n} sources: {e}") from None
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus_per_source and gpus_needed(n, gpus_per_source) > have:
        raise UserError(f"--gpus-per-source {gpus_per_source:g} with {n} sources needs {gpus_needed(n, gpus_per_source):g} GPUs, "
                        f"the Ray cluster has {have:g}: lower it (0 runs every generator on CPUs)")
    resources = plan_resources(n, gpus_per_source, threads=threads)
    try:
        return MiningCluster(arches, gen_states, critic_state, images, cfg, resources, snapshot_every=snapshot_every)
    except RuntimeError as e:
        raise UserError(f"{e}; free resources or lower --gpus-per-source") from None


# ---------------------------------------------------------------- the pipeline


def run_mine(
    sources: Sequence[str],
    target: str,
    out: str,
    cfg: MultiSourceConfig | None = None,
    *,
    seed: int | None = None,
    gpus_per_source: float | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    in_process: bool = False,
    threads: int | None = None,
    eval_every: int = 0,
    on_eval: EvalCallback | None = None,
    feature_kind: str = "classifier",
    eval_n: int | None = None,
    show_progress: bool = True,
    chunk: int = 10,
    placement_group: Any = None,
) -> MineResult:
    """Mine ``sources`` for ``target`` and write a run directory at ``out``.

    Args:
        sources: two or more checkpoint directories, run directories or ``zoo:NAME``; the shared
            critic starts from the first one's critic.
        target: a target spec (``mnist5k:3@30+animals:zebra@70``, a folder, a Parquet table).
        out: run directory (local or s3://); it must not hold a run unless ``resume``.
        cfg: steps, loss, batch, learning rates, selector window, miner size and seed
            (default: :func:`mine_config` with the first source's training loss).
        seed: overrides ``cfg.seed``; it also fixes the target draw.
        gpus_per_source: GPUs per generator actor (None: 1 each when the cluster has them).
        checkpoint_every: write ``RUN/checkpoints/step-N`` every so many steps (0: never).
        resume: continue the run in ``out`` from its last step checkpoint (same options).
        in_process: run the in-process reference instead of Ray actors.
        threads: torch threads (in-process: this process; Ray: each actor).
        eval_every: also score the model every so many steps (0: only at start and end).
        on_eval: called as ``on_eval(step, metrics)`` after each evaluation (FID, KMMD, MV,
            ``share_<i>`` and, with known true shares, ``share_error_<i>``).
        feature_kind, eval_n: evaluation features and reference cap (see evaluation.py).
        show_progress: a progress bar with the current shares on stderr.
        chunk: steps per progress update (and per call to the coordinator).
        placement_group: run the actors in this group, which the caller holds (a Tune trial's,
            ``ray.util.get_current_placement_group()``): bundle 0 is the caller's own, bundles
            1..N are the generators' and bundle N+1 the coordinator's (their resources are what
            the actors ask for; ``gpus_per_source`` is not used). The group is left in place.
            None: the run makes (and removes) a group of its own. Ignored with ``in_process``.
    """
    t0 = time.time()
    if checkpoint_every < 0 or eval_every < 0 or chunk < 1:
        raise UserError("--checkpoint-every and --eval-every must be 0 or more")
    if feature_kind not in evaluation.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(evaluation.FEATURES)}")
    ckpts = load_sources(sources)
    arches = [c.arch for c in ckpts]
    if cfg is None:
        train = ckpts[0].config.get("train") if isinstance(ckpts[0].config.get("train"), dict) else {}
        cfg = mine_config(train.get("loss", "ns-r1"))
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    target_set = data.load_target(target, seed=cfg.seed)
    if (target_set.channels, target_set.resolution) != (arches[0].channels, arches[0].resolution):
        r = arches[0].resolution
        raise UserError(f"target {target} holds {target_set.channels}x{target_set.resolution}x{target_set.resolution} "
                        f"images but the sources make {arches[0].channels}x{r}x{r}: pick a target of the sources' size")
    run = RunDir(out)
    storage.check_writable(out)
    run_config = {
        "kind": "mine", "method": METHOD, "sources": list(sources), "source_paths": [c.path for c in ckpts],
        "target": target, "mining": cfg.to_dict(), "seed": cfg.seed, "features": feature_kind,
        "checkpoint_every": checkpoint_every, "eval_every": eval_every, "data": target_set.provenance(),
        "engine": "in-process" if in_process else "ray",
    }
    start_state, history, start = None, [], 0
    if run.is_run():
        if not resume:
            raise UserError(f"{out} already holds a run ({run.file('config.json')}): add --resume to continue it, "
                            "or pass a new --out")
        old = run.read_config()
        for key in ("sources", "target", "mining"):
            if old.get(key) != run_config[key]:
                raise UserError(f"{out} was started with other {key} ({old.get(key)}); resume with the same options, "
                                "or pass a new --out")
        if old.get("status") == "done" and storage.exists(run.file("checkpoints", "final", checkpoint.WEIGHTS)):
            final_cfg = storage.read_json(run.file("checkpoints", "final", checkpoint.CONFIG))
            print(f"mine: {out} is finished already (step {cfg.total_steps}); nothing to resume", file=sys.stderr)
            return MineResult(out, final_cfg.get("shares", []), final_cfg.get("metrics", {}),
                              true_shares=final_cfg.get("true_shares"), resumed_from=cfg.total_steps)
        done_steps = [s for s in step_checkpoints(run) if s <= cfg.total_steps]
        if done_steps:
            start = done_steps[-1]
            ck_config, start_state = checkpoint.read_tensors(run.checkpoint_path(f"step-{start}"))
            history = [r for r in ck_config.get("history", []) if r["step"] <= start]
        _truncate_metrics(run, start if done_steps else -1)  # evaluations past the restart point are redone
    truth = true_shares([c.config for c in ckpts], target_set)
    ref = evaluation.reference(target, n=eval_n, feature_kind=feature_kind)

    total = cfg.total_steps
    log_every = max(1, total // 500)
    common = {"seed": cfg.seed, "features": feature_kind, "n": len(ref), "target": target}
    evals: list[dict[str, float]] = []
    points = {0, total} | (set(range(eval_every, total, eval_every)) if eval_every else set())

    def evaluate(step: int, state: dict[str, torch.Tensor]) -> dict[str, float]:
        mixture = mixture_from_state(arches, cfg, state)
        values = evaluation.score(mixture.sample, ref, seed=cfg.seed)
        p = [float(x) for x in mixture.shares]
        values.update({f"share_{i}": v for i, v in enumerate(p)})
        if truth is not None:
            errors = [abs(a - b) for a, b in zip(p, truth)]
            values.update({f"share_error_{i}": e for i, e in enumerate(errors)})
            values["share_error_max"] = max(errors)
        run.append_metrics(metric_rows(METHOD, step, values, **common))
        evals.append({"step": step, **values})
        log(f"step {step}: FID {values['fid']:.3f}  KMMD {values['kmmd']:.4f}  MV {values['mv']:.3f}  p={_fmt_shares(p)}")
        if on_eval is not None:
            on_eval(step, values)
        return values

    threads_before = torch.get_num_threads()
    # Placement problems (too few GPUs) are bad input too: start the engine before writing anything.
    engine = _engine(ckpts, target_set.images, cfg, in_process=in_process, gpus_per_source=gpus_per_source,
                     threads=threads, snapshot_every=checkpoint_every or 100, placement_group=placement_group)
    if not in_process:  # where the actors ran: their bundles, and whether the group was the caller's
        run_config["actors"] = {"bundles": engine.resources.bundles(len(sources)),
                                "caller_placement_group": not engine.owns_placement_group}
    with Progress(total, "mine", enabled=show_progress, every=1) as progress:
        log = progress.write if show_progress else (lambda line: None)
        try:
            run.write_config({**run_config, "status": "running", "resumed_from": start})
            where = "in-process" if in_process else f"Ray ({len(sources)} generator actors + a coordinator)"
            log(f"mine: {len(sources)} sources -> {len(target_set)} images of {target}; {cfg.mining_steps} mining + "
                f"{cfg.finetune_steps} fine-tuning steps, loss {cfg.loss}, batch {cfg.batch}, {where}"
                + (f"; resuming after step {start}" if start else ""))
            if start_state is not None:
                engine.load_state_tensors(start_state)
                progress.update(start)
            done = engine.steps_done
            if done in points and done < total and start_state is None:
                evaluate(done, engine.state_tensors())
            while done < total:
                stops = [total, done + chunk] + [s for s in points if s > done]
                if checkpoint_every:
                    stops.append((done // checkpoint_every + 1) * checkpoint_every)
                nxt = min(stops)
                rows = engine.run_until(nxt)
                for r in rows:
                    if not all(math.isfinite(r[k]) for k in ("d_loss", "g_loss", "penalty")):
                        raise RuntimeError(f"mining diverged at step {r['step']} ({r}); lower the learning rates")
                    if r["step"] % log_every == 0 or r["step"] == total:
                        history.append(r)
                last = rows[-1] if rows else {"shares": engine.shares(), "g_loss": math.nan, "d_loss": math.nan}
                progress.update(nxt - done, p=_fmt_shares(last["shares"]), g=last["g_loss"], d=last["d_loss"])
                done = nxt
                # Evaluate (and call on_eval) before checkpointing: a caller that records progress in
                # on_eval (a Tune trial's report) never sees the run resume past a step it was not told of.
                if done in points and done < total:
                    evaluate(done, engine.state_tensors())
                if checkpoint_every and done % checkpoint_every == 0 and done < total:
                    _write_step_checkpoint(run, done, arches[0], cfg, engine.state_tensors(), history, sources)
            state = engine.state_tensors()
        finally:
            engine.close()
            torch.set_num_threads(threads_before)  # --threads pins this process only for the run
        metrics = evaluate(total, state)
    shares = [float(p) for p in selector_shares(state["selector.window"], len(sources))]
    _write_final(run, sources, ckpts, cfg, state, shares, history, metrics, truth, target_set)
    wall = time.time() - t0
    run.write_config({**run_config, "status": "done", "resumed_from": start, "wall_s": round(wall, 1),
                      "shares": shares, "true_shares": truth, "metrics": metrics})
    for s in step_checkpoints(run):  # only once the run is marked done: until then they are the way back
        _remove_dir(run.checkpoint_path(f"step-{s}"))
    return MineResult(out, shares, metrics, history, truth, start, wall)


def _write_step_checkpoint(run: RunDir, step: int, arch: GANConfig, cfg: MultiSourceConfig,
                           state: dict[str, torch.Tensor], history: list[dict[str, Any]], sources: Sequence[str]) -> None:
    """RUN/checkpoints/step-N, atomically; older ones are removed once it is complete."""
    config = {"kind": "mine-state", "arch": arch.to_dict(), "step": step, "mining": cfg.to_dict(),
              "history": history, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    checkpoint.save_checkpoint(run.checkpoint_path(f"step-{step}"), config, extra=state)
    storage.write_bytes_atomic(run.file(SHARES_FILE), shares_table_bytes(history, sources))
    for s in step_checkpoints(run):
        if s < step:
            _remove_dir(run.checkpoint_path(f"step-{s}"))


def _write_final(run: RunDir, sources: Sequence[str], ckpts: Sequence[checkpoint.Checkpoint], cfg: MultiSourceConfig,
                 state: dict[str, torch.Tensor], shares: list[float], history: list[dict[str, Any]],
                 metrics: dict[str, float], truth: list[float] | None, target_set: data.ImageSet) -> None:
    n = len(sources)
    tensors = {k: v for k, v in state.items()
               if any(k.startswith(f"{source_prefix(i)}{part}.") for i in range(n) for part in ("generator", "miner"))}
    tensors["shares"] = torch.tensor(shares, dtype=torch.float64)
    arches = [c.arch for c in ckpts]
    mixture = mixture_from_state(arches, cfg, tensors)
    gen = torch.Generator().manual_seed(cfg.seed)
    mixed = grid_png(mixture.sample(64, gen))
    config = {
        "kind": KIND, "method": METHOD, "arch": arches[0].to_dict(),
        "sources": [{"source": s, "path": c.path, "arch": c.arch.to_dict(),
                     "miner": cfg.miner_config(c.arch.latent_dim).to_dict(), "data": c.config.get("data")}
                    for s, c in zip(sources, ckpts)],
        "shares": shares, "true_shares": truth, "mining": cfg.to_dict(), "steps": cfg.total_steps, "seed": cfg.seed,
        "data": target_set.provenance(), "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    checkpoint.save_checkpoint(run.checkpoint_path("final"), config, extra=tensors, files={"samples.png": mixed})
    run.write_sample("mixed", mixed)
    for i, source in enumerate(mixture.sources):
        run.write_sample(f"source-{i}", evaluation.sample_grid_png(source, n=64, seed=cfg.seed))
    storage.write_bytes_atomic(run.file(SHARES_FILE), shares_table_bytes(history, sources))
    run.write_sample("shares", shares_plot_png(history, sources, truth))
