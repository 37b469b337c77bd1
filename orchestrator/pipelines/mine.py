"""The multi-source mining pipeline: several source GANs + a target -> one mined model.

:func:`run_mine` is the one entry point; ``ganlode mine`` calls it, and ``ganlode tune --method
mine`` and ``ganlode demo`` call it with ``on_eval`` to receive metrics. It runs four steps:

1. check: every input before writing anything (bad input is a :class:`UserError`); then the
   run's lock (``RUN/.ganlode-lock``, :mod:`.ownership`: one writer per run, a second one, a
   ``resume=True`` included, is refused while the first is alive) and, under it, where a
   resumed run restarts;
2. build: the engine, on Ray (one generator actor per source, :mod:`ganlode.actors`; in
   bundles of the caller's placement group when it passes one, as a Tune trial does) or in
   this process (the reference) (:mod:`.mine_engine`);
3. loop: ``mining_steps`` mining steps and ``finetune_steps`` joint fine-tuning steps, writing
   ``RUN/checkpoints/step-N`` every ``checkpoint_every`` steps, so ``resume=True`` continues
   from the last one and the result equals an uninterrupted run's; at a step that is also
   evaluated, after ``on_eval`` returns;
4. write: the mined model as one artifact, ``RUN/checkpoints/final``, ``RUN/shares.parquet``
   with a plot and sample grids (:mod:`.mine_outputs`); the evaluation protocol's metrics are
   in ``RUN/metrics.parquet``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ...methods.catalog import DEFAULT_MIN_GAIN, DEFAULT_MIN_SHARE, DEFAULT_SELECTOR, ROUTING_SELECTORS, SELECTORS
from ...methods.multisource import MultiSourceConfig, selector_shares
from ...methods.multisource.coverage import Coverage
from .. import storage
from ..artifacts import checkpoint
from ..artifacts.loaders import mixture_from_state
from ..artifacts.records import RunRecord
from ..artifacts.rundir import CONFIG_FILE, SHARES_JSON, STEP_PREFIX, RunDir, metric_rows
from ..data.convert import Conversion, conform
from ..data.imageset import ImageSet
from ..data.spec import load_target
from ..errors import UserError
from ..evaluation import features, protocol
from ..progress import Progress
from . import mine_shares
from .mine_engine import start_engine
from .ownership import LockedRunDir, owning
from .mine_outputs import METHOD, prune_step_checkpoints, read_final, step_checkpoints, write_final, write_step_checkpoint
from .mine_shares import Estimate, spread
from .sources import load_sources, trained_loss

RUN_KIND = "mine"
EvalCallback = Callable[[int, dict[str, float]], None]


@dataclass
class MineResult:
    run: str
    shares: list[float]  # p, in source order
    metrics: dict[str, float]  # the final model on the test split
    history: list[dict[str, Any]] = field(default_factory=list)  # logged steps: losses and shares
    true_shares: list[float] | None = None  # when every target class comes from exactly one source
    resumed_from: int = 0
    wall_s: float = 0.0
    val_metrics: dict[str, float] = field(default_factory=dict)  # the final model on the validation split
    selector: str = DEFAULT_SELECTOR  # whose shares sampling uses
    by_selector: dict[str, list[float]] = field(default_factory=dict)  # every selector's shares, in source order
    kept: list[int] = field(default_factory=list)  # the sources in the mined model (all but routing's dropped ones)


def mine_config(loss: str = "ns-r1", **overrides: Any) -> MultiSourceConfig:
    """Settings with the Adam betas of ``loss`` (as ``ganlode pretrain`` uses), plus overrides."""
    try:
        return MultiSourceConfig(**{"loss": loss, "beta2": 0.9 if loss == "wgan-gp" else 0.99, **overrides})
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid mining settings: {e}") from None


def true_shares(source_configs: Sequence[dict[str, Any]], target: ImageSet) -> list[float] | None:
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


def _fmt_shares(shares: Sequence[float]) -> str:
    return "/".join(f"{p:.2f}" for p in shares)


# ---------------------------------------------------------------- the pipeline's steps


@dataclass
class _Plan:
    """What the check step found; nothing is written yet."""

    sources: list[str]
    ckpts: list[checkpoint.Checkpoint]
    cfg: MultiSourceConfig
    target: ImageSet
    run: RunDir
    record: RunRecord
    start: int = 0                                        # the step a resumed run continues after
    start_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: MineResult | None = None                    # the run at ``out`` is done already
    selector: str = DEFAULT_SELECTOR
    coverage: Coverage | None = None
    coverage_estimate: Estimate | None = None
    kept: list[int] = field(default_factory=list)         # the sources the engine mines (routing drops some)
    parts: list[torch.Tensor] | None = None               # routing: each kept source's part of the target
    conversion: Conversion | None = None                  # --convert-target: how the target (and references) were converted

    @property
    def engine_ckpts(self) -> list[checkpoint.Checkpoint]:
        return [self.ckpts[i] for i in self.kept]

    def coverage_toward(self) -> list[float]:
        """The coverage shares over the engine's sources (renormalised; uniform if they hold none)."""
        p = [self.coverage_estimate.shares[i] for i in self.kept]
        total = sum(p)
        return [x / total for x in p] if total > 0 else [1.0 / len(p)] * len(p)


def _check(sources: Sequence[str], target: str, out: str, cfg: MultiSourceConfig | None, *, seed: int | None,
           checkpoint_every: int, eval_every: int, chunk: int, feature_kind: str, in_process: bool, selector: str,
           route: bool, min_share: float, min_gain: float, convert_target: bool = False) -> _Plan:
    if checkpoint_every < 0 or eval_every < 0 or chunk < 1:
        raise UserError("--checkpoint-every and --eval-every must be 0 or more")
    if feature_kind not in features.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(features.FEATURES)}")
    if selector not in SELECTORS:
        raise UserError(f"unknown selector {selector!r}: use one of {', '.join(SELECTORS)}")
    if route and selector not in ROUTING_SELECTORS:
        raise UserError(f"--route sends each target image to the sources that cover it, and --selector {selector} "
                        f"does not say which images those are: use --selector {' or '.join(ROUTING_SELECTORS)}, "
                        "or drop --route")
    if not 0.0 <= min_share < 1.0:
        raise UserError(f"--min-share must be at least 0 and below 1, got {min_share}")
    if not min_gain >= 0.0:
        raise UserError(f"--min-gain must be at least 0, got {min_gain}")
    ckpts = load_sources(sources, critics="all" if route else "first")
    arch = ckpts[0].arch
    cfg = cfg or mine_config(trained_loss(ckpts[0]))
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    target_set, conversion = conform(load_target(target, seed=cfg.seed), target, arch.channels, arch.resolution,
                                     "the sources make", convert_target)
    if cfg.routed or cfg.row_shares:
        raise UserError("routed and row_shares are set by the run itself (--route, --rows shares), not given")
    selection = features.selection_kind(feature_kind)
    feature_kind = features.require(feature_kind, tuple(target_set.images.shape))  # the scores' (auto resolved)
    cov, cov_est = mine_shares.source_coverage([c.generator for c in ckpts], target_set.images,
                                               feature_kind=selection, seed=cfg.seed, min_share=min_share,
                                               min_gain=min_gain)
    kept, parts = list(range(len(ckpts))), None
    if route:
        kept, parts, kept_shares = mine_shares.routes(cov, target_set.images)
        cfg = dataclasses.replace(cfg, routed=True, row_shares=tuple(kept_shares))
    elif cfg.rows == "shares" and selector == "coverage":
        cfg = dataclasses.replace(cfg, row_shares=tuple(cov_est.shares))
    record = RunRecord(
        run_kind=RUN_KIND, method=METHOD, target=target, seed=cfg.seed, features=feature_kind,
        data=target_set.provenance(),
        extra={"sources": list(sources), "source_paths": [c.path for c in ckpts], "mining": cfg.to_dict(),
               "selector": selector, "selection_features": selection, "route": route, "min_share": min_share, "min_gain": min_gain, "kept": kept,
               "checkpoint_every": checkpoint_every, "eval_every": eval_every,
               "engine": "in-process" if in_process else "ray",
               "target_conversion": None if conversion is None else conversion.to_dict()},
    )
    return _Plan(list(sources), ckpts, cfg, target_set, RunDir(out), record, selector=selector, coverage=cov,
                 coverage_estimate=cov_est, kept=kept, parts=parts, conversion=conversion)


def _resume_point(plan: _Plan, resume: bool) -> None:
    """Where a run already at ``out`` continues: its last step checkpoint; or it is finished."""
    run, cfg = plan.run, plan.cfg
    if not resume:
        raise UserError(f"{run.path} already holds a run ({run.file(CONFIG_FILE)}): add --resume to continue it, "
                        "or pass a new --out")
    old = run.read_config()
    for key in ("sources", "target", "mining", "selector", "route", "min_share", "min_gain", "target_conversion"):
        if old.get(key) != plan.record.to_dict()[key]:
            raise UserError(f"{run.path} was started with other {key} ({old.get(key)}); resume with the same options, "
                            "or pass a new --out")
    final = read_final(run) if run.read_record().done else None
    if final is not None:
        print(f"mine: {run.path} is finished already (step {cfg.total_steps}); nothing to resume", file=sys.stderr)
        done = run.read_config()
        plan.finished = MineResult(run.path, done.get("shares", []), final.get("metrics", {}),
                                   true_shares=final.get("true_shares"), resumed_from=cfg.total_steps,
                                   val_metrics=done.get("val_metrics", {}), selector=plan.selector,
                                   by_selector=done.get("by_selector", {}), kept=done.get("kept", plan.kept))
        return
    done_steps = [s for s in step_checkpoints(run) if s <= cfg.total_steps]
    if done_steps:
        plan.start = done_steps[-1]
        ck_config, plan.start_state = checkpoint.read_tensors(run.checkpoint_path(f"{STEP_PREFIX}{plan.start}"))
        plan.history = [r for r in ck_config.get("history", []) if r["step"] <= plan.start]
    run.drop_metrics(METHOD, after_step=plan.start if done_steps else -1)  # evaluations past the restart are redone


class _Evaluator:
    """Scores the mixture a state holds under the protocol, logs it, and hands it to ``on_eval``.

    Every evaluation during the run is on the validation split (what ``on_eval`` and Tune see);
    :meth:`test` scores the final model once on the test split.
    """

    def __init__(self, plan: _Plan, refs: dict[str, protocol.Reference], truth: list[float] | None,
                 on_eval: EvalCallback | None):
        self.plan, self.refs, self.truth, self.on_eval = plan, refs, truth, on_eval
        self.arches = [c.arch for c in plan.engine_ckpts]
        self.common = {"seed": plan.cfg.seed, "features": plan.record.features, "target": plan.record.target}
        self.log: Callable[[str], None] = lambda line: None
        self._estimates: tuple[int, dict[str, Estimate]] | None = None

    def estimates(self, step: int, state: dict[str, torch.Tensor], every: bool = False) -> dict[str, Estimate]:
        """Shares over every source at ``step``: the run's selector's (``every``: each selector's that applies)."""
        if self._estimates is not None and self._estimates[0] == step and (not every or len(self._estimates[1]) > 1):
            return self._estimates[1]
        plan, n = self.plan, len(self.plan.sources)
        names = [plan.selector] if not every else [s for s in SELECTORS if not (s == "count" and plan.cfg.routed)]
        out: dict[str, Estimate] = {}
        for name in names:
            if name == "coverage":
                out[name] = plan.coverage_estimate
            elif name == "count":
                window = selector_shares(state["selector.window"], len(plan.kept))
                out[name] = Estimate(spread(window.tolist(), plan.kept, n), {"window": plan.cfg.window})
            else:
                mixture = mixture_from_state(self.arches, plan.cfg, {**state, "shares": torch.tensor(plan.coverage_toward())})
                fit = mine_shares.mixture_fit_shares(list(mixture.sources), plan.target.images,
                                                     feature_kind=plan.record.extra.get("selection_features", plan.record.features),
                                                     seed=plan.cfg.seed, toward=plan.coverage_toward())
                out[name] = Estimate(spread(fit.shares, plan.kept, n), fit.details)
        self._estimates = (step, out)
        return out

    def shares(self, step: int, state: dict[str, torch.Tensor]) -> list[float]:
        """What sampling uses at ``step``: the run's selector's shares, over every source."""
        return self.estimates(step, state)[self.plan.selector].shares

    def mixture(self, step: int, state: dict[str, torch.Tensor]):
        p = self.shares(step, state)
        return mixture_from_state(self.arches, self.plan.cfg, {**state, "shares": torch.tensor([p[i] for i in self.plan.kept],
                                                                                              dtype=torch.float64)})

    def test(self, step: int, state: dict[str, torch.Tensor]) -> dict[str, float]:
        return self(step, state, split=protocol.REPORT_SPLIT)

    def __call__(self, step: int, state: dict[str, torch.Tensor], split: str = protocol.SELECTION_SPLIT) -> dict[str, float]:
        ref = self.refs[split]
        mixture = self.mixture(step, state)
        values = protocol.score(mixture.sample, ref, seed=self.plan.cfg.seed)
        p = self.shares(step, state)
        values.update({f"share_{i}": v for i, v in enumerate(p)})
        if self.truth is not None:
            errors = [abs(a - b) for a, b in zip(p, self.truth)]
            values.update({f"share_error_{i}": e for i, e in enumerate(errors)})
            values["share_error_max"] = max(errors)
        self.plan.run.append_metrics(metric_rows(METHOD, step, values, split=split, n=len(ref), **self.common))
        words = "validation" if split == protocol.SELECTION_SPLIT else "test"
        self.log(f"step {step}: {words} FID {values['fid']:.3f}  KMMD {values['kmmd']:.4f}  MV {values['mv']:.3f}  "
                 f"p={_fmt_shares(p)}")
        if self.on_eval is not None and split == protocol.SELECTION_SPLIT:
            self.on_eval(step, values)
        return values


def _loop(plan: _Plan, engine: Any, evaluate: _Evaluator, *, eval_every: int, checkpoint_every: int, chunk: int,
          where: str, show_progress: bool, threads_before: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run the steps left, evaluating and checkpointing on the way; returns (final state, final metrics).

    The engine is closed, and this process's torch threads restored, before the final evaluation.
    """
    cfg, run, history, total = plan.cfg, plan.run, plan.history, plan.cfg.total_steps
    log_every = max(1, total // 500)
    points = {0, total} | (set(range(eval_every, total, eval_every)) if eval_every else set())
    with Progress(total, "mine", enabled=show_progress, every=1) as progress:
        evaluate.log = progress.write if show_progress else (lambda line: None)
        try:
            run.write_config(plan.record.replace(status="running", resumed_from=plan.start))
            evaluate.log(f"mine: {len(plan.sources)} sources -> {len(plan.target)} images of {plan.record.target}; "
                         f"{cfg.mining_steps} mining + {cfg.finetune_steps} fine-tuning steps, loss {cfg.loss}, "
                         f"batch {cfg.batch}, {where}" + (f"; resuming after step {plan.start}" if plan.start else ""))
            cov = plan.coverage_estimate
            evaluate.log(f"mine: coverage shares {_fmt_shares(cov.shares)} (source classifier accuracy "
                         f"{cov.details['accuracy']:.3f})" + (f"; routed: mining {len(plan.kept)} of {len(plan.sources)} "
                                                              f"sources, each against its own part of the target"
                                                              if cfg.routed else "") + f"; selector {plan.selector}")
            if plan.start_state is not None:
                engine.load_state_tensors(plan.start_state)
                progress.update(plan.start)
            done = engine.steps_done
            if done in points and done < total and plan.start_state is None:
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
                        history.append({**r, "shares": spread(r["shares"], plan.kept, len(plan.sources))})
                last = rows[-1] if rows else {"shares": engine.shares(), "g_loss": math.nan, "d_loss": math.nan}
                progress.update(nxt - done, **{"wins" if plan.selector != "count" or cfg.routed else "p":
                                               _fmt_shares(spread(last["shares"], plan.kept, len(plan.sources)))},
                                g=last["g_loss"], d=last["d_loss"])
                done = nxt
                # Evaluate (and call on_eval) before checkpointing: a caller that records progress in
                # on_eval (a Tune trial's report) never sees the run resume past a step it was not told of.
                if done in points and done < total:
                    evaluate(done, engine.state_tensors())
                if checkpoint_every and done % checkpoint_every == 0 and done < total:
                    write_step_checkpoint(run, done, plan.ckpts[0].arch, cfg, engine.state_tensors(), history, plan.sources)
            state = engine.state_tensors()
        finally:
            engine.close()
            torch.set_num_threads(threads_before)  # --threads pins this process only for the run
        return state, evaluate(total, state)


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
    feature_kind: str = "auto",
    eval_n: int | None = None,
    show_progress: bool = True,
    chunk: int = 10,
    placement_group: Any = None,
    force_unlock: bool = False,
    selector: str = DEFAULT_SELECTOR,
    route: bool = False,
    min_share: float = DEFAULT_MIN_SHARE,
    min_gain: float = DEFAULT_MIN_GAIN,
    convert_target: bool = False,
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
        feature_kind, eval_n: evaluation features and reference cap (see evaluation.protocol).
        show_progress: a progress bar with the current shares on stderr.
        chunk: steps per progress update (and per call to the coordinator).
        placement_group: run the actors in this group, which the caller holds (a Tune trial's,
            ``ray.util.get_current_placement_group()``): bundle 0 is the caller's own, bundles
            1..N are the generators' and bundle N+1 the coordinator's (their resources are what
            the actors ask for; ``gpus_per_source`` is not used). The group is left in place.
            None: the run makes (and removes) a group of its own. Ignored with ``in_process``.
        force_unlock: remove the lock of ``out`` even if its holder may be alive (``--force-unlock``);
            without it a run another process is writing is refused (a stale lock is taken over).
        selector: whose shares sampling uses: ``count``, ``coverage`` or ``mixture-fit``
            (:mod:`.mine_shares`); every one that applies is recorded in ``RUN/shares.json``.
        route: mine each source the coverage estimate keeps against its own part of the target,
            with a critic of its own (sources it drops are not mined); needs ``selector="coverage"``.
        min_share, min_gain: the coverage estimate drops sources whose share falls below
            ``min_share``, or that explain the target images they cover less than ``min_gain``
            nats (of log-likelihood per image) better than the other sources do.
        convert_target: resize and channel-convert a target of another shape than the sources' (and its
            validation and test references) to theirs (``--convert-target``, :mod:`ganlode.orchestrator.data.convert`);
            without it such a target is refused.
    """
    t0 = time.time()
    plan = _check(sources, target, out, cfg, seed=seed, checkpoint_every=checkpoint_every, eval_every=eval_every,
                  chunk=chunk, feature_kind=feature_kind, in_process=in_process, selector=selector, route=route,
                  min_share=min_share, min_gain=min_gain, convert_target=convert_target)
    with owning(out, force_unlock=force_unlock) as lock:
        plan.run = LockedRunDir(out, lock)
        if plan.run.is_run():
            _resume_point(plan, resume)
        if plan.finished is not None:
            return plan.finished
        return _mine(plan, t0, target=target, gpus_per_source=gpus_per_source, checkpoint_every=checkpoint_every,
                     in_process=in_process, threads=threads, eval_every=eval_every, on_eval=on_eval,
                     feature_kind=feature_kind, eval_n=eval_n, show_progress=show_progress, chunk=chunk,
                     placement_group=placement_group)


def _mine(plan: _Plan, t0: float, *, target: str, gpus_per_source: float | None, checkpoint_every: int,
          in_process: bool, threads: int | None, eval_every: int, on_eval: EvalCallback | None, feature_kind: str,
          eval_n: int | None, show_progress: bool, chunk: int, placement_group: Any) -> MineResult:
    """Build, loop and write a checked plan (its run's lock is held)."""
    truth = true_shares([c.config for c in plan.ckpts], plan.target)
    t_refs = time.perf_counter()
    refs = {split: protocol.reference(target, n=eval_n, feature_kind=plan.record.features, split=split,
                                      convert=plan.conversion, train_seed=plan.cfg.seed)
            for split in protocol.EVAL_SPLITS}
    if show_progress:
        print(protocol.cost_line(refs, time.perf_counter() - t_refs), file=sys.stderr)
    evaluate = _Evaluator(plan, refs, truth, on_eval)
    threads_before = torch.get_num_threads()
    try:
        engine = start_engine(plan.engine_ckpts, plan.parts if plan.cfg.routed else plan.target.images, plan.cfg,
                              in_process=in_process,
                              gpus_per_source=gpus_per_source, threads=threads, snapshot_every=checkpoint_every or 100,
                              placement_group=placement_group)
    except BaseException:
        torch.set_num_threads(threads_before)
        raise
    if not in_process:  # where the actors ran: their bundles, and whether the group was the caller's
        plan.record = plan.record.replace(actors={"bundles": engine.resources.bundles(len(plan.kept)),
                                                  "caller_placement_group": not engine.owns_placement_group})
    where = "in-process" if in_process else f"Ray ({len(plan.kept)} generator actors + a coordinator)"
    state, val_metrics = _loop(plan, engine, evaluate, eval_every=eval_every, checkpoint_every=checkpoint_every,
                               chunk=chunk, where=where, show_progress=show_progress, threads_before=threads_before)
    plan.run.drop_metrics(METHOD, split=protocol.REPORT_SPLIT)  # a restarted final phase scores test once
    by_selector = evaluate.estimates(plan.cfg.total_steps, state, every=True)
    metrics = evaluate.test(plan.cfg.total_steps, state)
    return _write(plan, state, metrics, val_metrics, truth, by_selector, t0)


def _write(plan: _Plan, state: dict[str, torch.Tensor], metrics: dict[str, float], val_metrics: dict[str, float],
           truth: list[float] | None, by_selector: dict[str, Estimate], t0: float) -> MineResult:
    shares = by_selector[plan.selector].shares
    doc = mine_shares.shares_document(plan.selector, plan.sources, by_selector, truth, plan.kept, plan.cfg.routed)
    storage.write_json_atomic(plan.run.file(SHARES_JSON), doc)
    write_final(plan.run, [plan.sources[i] for i in plan.kept], plan.engine_ckpts, plan.cfg, state,
                [shares[i] for i in plan.kept], plan.history, metrics,
                None if truth is None else [truth[i] for i in plan.kept], plan.target, all_sources=plan.sources,
                all_truth=truth)
    wall = time.time() - t0
    every = {k: e.shares for k, e in by_selector.items()}
    plan.run.write_config(plan.record.replace(status="done", metrics=metrics, metrics_split=protocol.REPORT_SPLIT,
                                              val_metrics=val_metrics, resumed_from=plan.start,
                                              wall_s=round(wall, 1), shares=shares, true_shares=truth,
                                              by_selector=every))
    prune_step_checkpoints(plan.run)  # only once the run is marked done: until then they are the way back
    return MineResult(plan.run.path, shares, metrics, plan.history, truth, plan.start, wall, val_metrics,
                      plan.selector, every, list(plan.kept))
