"""The single-source transfer pipeline: source + target + method -> a run directory.

:func:`run_transfer` starts a run and :func:`resume_transfer` continues a killed one;
``ganlode transfer``, ``ganlode tune`` trials and ``ganlode demo`` call them. A run is

1. check: every input, before anything is written (bad input is a :class:`UserError`); then the
   run's lock (``RUN/.ganlode-lock``, :mod:`.ownership`): one writer per run, a second one is
   refused in one line naming the holder; the run's own state (finished already?) is judged
   under it;
2. build: the validation and test references, ``RUN/config.json`` (status "running") and the
   method's :class:`~ganlode.methods.base.Adapter`;
3. loop: ``steps`` training steps. At step 0, every ``eval_every`` steps and at the end the model
   is scored on the target's **validation** split (rows in ``RUN/metrics.parquet`` with
   ``split=val``); after each such evaluation the adapter's exact state goes to
   ``RUN/checkpoints/state.pt`` (``--resume`` continues from there, bit for bit), and the model
   with the lowest validation FID so far to ``RUN/checkpoints/best``;
4. write: ``RUN/checkpoints/final``, then the final model and the best-by-validation model are
   scored on the **test** split (``split=test`` rows; the figures every report shows), and
   ``RUN/config.json`` (status "done").

Model selection reads only the validation split; the test split is read once, at the end.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ...methods import architectures, catalog, registry
from ...methods.base import Adapter, TransferOptions
from .. import storage
from ..artifacts import checkpoint, training_state
from ..artifacts.loaders import load_model
from ..artifacts.records import ModelRecord, RunRecord
from ..artifacts.rundir import BEST_CHECKPOINT, CHECKPOINT_SAMPLES, FINAL_CHECKPOINT, STATE_FILE, RunDir, metric_rows
from ..artifacts.sampling import generator_sampler
from ..errors import UserError
from ..evaluation import protocol
from ..evaluation.classifier import perceptual_features
from ..progress import Progress
from .ownership import LockedRunDir, owning
from .transfer_plan import Plan, TransferSettings, check, check_settings, check_target, eval_steps, validate_options

__all__ = ["TransferSettings", "TransferResult", "run_transfer", "resume_transfer", "write_transfer_result",
           "check_target", "eval_steps", "validate_options", "check_settings", "build_adapter"]

EvalCallback = Callable[[int, dict[str, float]], None]
RUN_KIND = "transfer"
SELECT_ON = "fid"  # the validation metric that picks the best checkpoint (lower is better)


@dataclass
class TransferResult:
    run: str
    method: str
    steps: int
    metrics: dict[str, float]  # the final model on the test split
    history: list[dict[str, float]] = field(default_factory=list)  # every validation evaluation, with "step"
    best_step: int = 0  # the step of the best validation FID
    best_metrics: dict[str, float] = field(default_factory=dict)  # that model on the test split
    wall_s: float = 0.0
    train_s: float = 0.0  # time inside the training steps alone (no evaluation, loading or saving)
    eval_s: float = 0.0  # time spent in the periodic evaluations
    resumed_from: int = 0  # the step a --resume continued from (0: a fresh run)


def write_transfer_result(run: RunDir, adapter: Adapter, arch: Any, record: RunRecord,
                          name: str = FINAL_CHECKPOINT) -> ModelRecord:
    """Write the adapted model as ``RUN/checkpoints/<name>`` and ``RUN/samples/<name>.png``.

    The checkpoint's record is derived from the run's (method, options, steps, seed, data,
    metrics, and the search that chose the settings when there was one), so a run and its model
    never disagree. Shared by :func:`run_transfer` and the export of a search's best trial.
    """
    export = adapter.export()
    x = record.extra
    kept = {k: x[k] for k in ("options", "source", "source_data", "train", "tune", "selected", "metrics_split",
                              "target_conversion")
            if x.get(k) is not None}
    model = ModelRecord(model_kind=export.kind, arch=architectures.to_dict(arch), method=record.method,
                        steps=adapter.steps_done, seed=record.seed, created=storage.utc_now(), data=record.data,
                        metrics=record.metrics, extra={**kept, "features": record.features, **export.config})
    grid = protocol.sample_grid_png(adapter.sampling_generator(), n=64, seed=record.seed or 0)
    checkpoint.save_checkpoint(run.checkpoint_path(name), model, export.generator, export.critic,
                               extra=export.extra, files={CHECKPOINT_SAMPLES: grid})
    run.write_sample(name, grid)
    return model


# ---------------------------------------------------------------- check and build


def _references(plan: Plan) -> dict[str, protocol.Reference]:
    """The validation reference (model selection) and the test reference (reported figures), converted
    as the target was (``--convert-target``)."""
    s = plan.settings
    t0 = time.perf_counter()
    refs = {split: protocol.reference(s.target, n=s.eval_n, feature_kind=plan.feature_kind, split=split,
                                      convert=plan.conversion, train_seed=s.seed)
            for split in protocol.EVAL_SPLITS}
    plan.reference_s = time.perf_counter() - t0
    return refs


def _record(plan: Plan, adapter: Adapter) -> RunRecord:
    s = plan.settings
    return RunRecord(
        run_kind=RUN_KIND, status="running", method=s.method, target=s.target, seed=s.seed, features=plan.feature_kind,
        data=plan.target.provenance(),
        extra={"settings": asdict(s), "source": s.source, "source_path": plan.ckpt.path, "steps": s.steps,
               "eval_every": s.eval_every, "options": {k: v for k, v in plan.resolved.to_dict().items() if v is not None},
               "options_given": plan.given.given(), "train": adapter.record().get("train"),
               "adapter": adapter.record(), "source_data": plan.ckpt.config.get("data"),
               "protocol": protocol.PROTOCOL_VERSION,
               "target_conversion": None if plan.conversion is None else plan.conversion.to_dict()},
    )


def build_adapter(plan: Plan) -> Adapter:
    s = plan.settings
    latent = catalog.record(s.method).latent
    return registry.build(s.method, plan.source, plan.target.images, plan.resolved, seed=s.seed,
                          feature_fn=perceptual_features() if latent else None)


# ---------------------------------------------------------------- the loop


@dataclass
class _Progress:
    """What the loop carries from evaluation to evaluation (and through a resume)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = -1
    best_value: float = math.inf
    train_s: float = 0.0
    eval_s: float = 0.0


class _Loop:
    """The training loop of one run: steps, validation evaluations, state and best checkpoints."""

    def __init__(self, plan: Plan, adapter: Adapter, refs: dict[str, protocol.Reference], record: RunRecord,
                 on_eval: EvalCallback | None, show_progress: bool):
        self.plan, self.adapter, self.refs, self.record = plan, adapter, refs, record
        self.on_eval, self.show_progress = on_eval, show_progress
        s = plan.settings
        self.common = {"seed": s.seed, "features": plan.feature_kind, "target": s.target}

    def score(self, split: str, sampler=None) -> dict[str, float]:
        ref = self.refs[split]
        sampler = sampler or generator_sampler(self.adapter.sampling_generator())
        return protocol.score(sampler, ref, seed=self.plan.settings.seed)

    def evaluate(self, step: int, done: _Progress, log: Callable[[str], None]) -> None:
        t_eval = time.perf_counter()
        values = self.score(protocol.SELECTION_SPLIT)
        run = self.plan.run
        run.append_metrics(metric_rows(self.plan.settings.method, step, values, split=protocol.SELECTION_SPLIT,
                                       n=len(self.refs[protocol.SELECTION_SPLIT]), **self.common))
        done.history.append({"step": step, **{k: float(v) for k, v in values.items()}})
        log(f"step {step}: validation FID {values['fid']:.3f}  KMMD {values['kmmd']:.4f}  MV {values['mv']:.3f}")
        if values[SELECT_ON] < done.best_value:
            done.best_step, done.best_value = step, float(values[SELECT_ON])
            selected = {"on": f"{protocol.SELECTION_SPLIT} {SELECT_ON}", "step": step, "value": done.best_value}
            write_transfer_result(run, self.adapter, self.plan.ckpt.arch, name=BEST_CHECKPOINT,
                                  record=self.record.replace(metrics=values, metrics_split=protocol.SELECTION_SPLIT,
                                                             selected=selected))
        done.eval_s += time.perf_counter() - t_eval
        if step < self.plan.settings.steps:  # the state a --resume continues from
            training_state.save_state(run.file(STATE_FILE), self.adapter, step, **asdict(done))
        if self.on_eval is not None:
            self.on_eval(step, values)

    def run(self, start: int, done: _Progress) -> _Progress:
        s = self.plan.settings
        points = set(eval_steps(s.steps, s.eval_every))
        with Progress(s.steps, f"transfer[{s.method}]", enabled=self.show_progress, initial=start) as progress:
            log = progress.write if self.show_progress else (lambda line: None)
            log(f"transfer: {s.method} from {s.source} to {len(self.plan.target)} images of {s.target}, {s.steps} steps"
                + (f" (mining {self.plan.resolved.mining_steps})" if s.method == "minegan" else "")
                + (f", resumed at step {start}" if start else ""))
            log(protocol.cost_line(self.refs, self.plan.reference_s))
            if start == 0:
                self.evaluate(0, done, log)
            for step in range(start + 1, s.steps + 1):
                t_step = time.perf_counter()
                stats = self.adapter.step()
                done.train_s += time.perf_counter() - t_step
                if not all(math.isfinite(v) for v in stats.values()):
                    raise UserError(f"{s.method} diverged at step {step} (non-finite loss in {sorted(stats)}): lower "
                                    f"--lr (it was {self.plan.resolved.lr:g}) and run again with a new --out")
                progress.update(1, **stats)
                if step in points:
                    self.evaluate(step, done, log)
        return done


# ---------------------------------------------------------------- write


def _finish(loop: _Loop, done: _Progress, t0: float, resumed_from: int) -> TransferResult:
    """Write the final checkpoint, score the final and the best model on the test split, close the run."""
    plan, s = loop.plan, loop.plan.settings
    run = plan.run
    test_n = len(loop.refs[protocol.REPORT_SPLIT])
    t_test = time.perf_counter()
    final = loop.score(protocol.REPORT_SPLIT)
    write_transfer_result(run, loop.adapter, plan.ckpt.arch,
                          loop.record.replace(metrics=final, metrics_split=protocol.REPORT_SPLIT))
    best = final if done.best_step == s.steps else loop.score(
        protocol.REPORT_SPLIT, load_model(run.checkpoint_path(BEST_CHECKPOINT)).sampler)
    for step, values in sorted({s.steps: final, done.best_step: best}.items()):
        run.append_metrics(metric_rows(s.method, step, values, split=protocol.REPORT_SPLIT, n=test_n, **loop.common))
    eval_total = plan.reference_s + done.eval_s + (time.perf_counter() - t_test)
    wall = time.time() - t0
    if loop.show_progress:
        print(f"evaluation: {eval_total:.1f} s of {wall:.1f} s ({plan.feature_kind} features: references, "
              f"{len(done.history)} validation scores, the test scores)", file=sys.stderr)
    best_info = {"step": done.best_step, "selected_on": f"{protocol.SELECTION_SPLIT} {SELECT_ON}",
                 "val": {k: v for k, v in done.history[[h["step"] for h in done.history].index(done.best_step)].items()
                         if k != "step"}, "test": best}
    run.write_config(loop.record.replace(status="done", metrics=final, metrics_split=protocol.REPORT_SPLIT,
                                         best=best_info, wall_s=round(wall, 1), train_s=round(done.train_s, 2),
                                         eval_s=round(done.eval_s, 2), evaluation_s=round(eval_total, 2)))
    run_state = run.file(STATE_FILE)
    if storage.exists(run_state):  # the run is complete: nothing left to resume
        storage.remove_file(run_state)
    return TransferResult(run=run.path, method=s.method, steps=s.steps, metrics=final, history=done.history,
                          best_step=done.best_step, best_metrics=best, wall_s=wall, train_s=done.train_s,
                          eval_s=done.eval_s, resumed_from=resumed_from)


def run_transfer(
    source: str,
    target: str,
    method: str,
    options: TransferOptions | dict[str, Any] | None = None,
    *,
    steps: int,
    out: str,
    seed: int = 0,
    eval_every: int | None = None,
    on_eval: EvalCallback | None = None,
    feature_kind: str = "auto",
    eval_n: int | None = None,
    show_progress: bool = True,
    force_unlock: bool = False,
    convert_target: bool = False,
) -> TransferResult:
    """Adapt ``source`` to ``target`` with ``method`` and write a run directory at ``out``.

    Args:
        source: checkpoint directory, run directory or ``zoo:NAME``.
        target: a target spec (``mnist5k:7@25``, a folder, a Parquet table).
        method: one of ``ganlode.methods.catalog.METHODS``.
        options: method options (a TransferOptions or a dict of its fields); unset ones default.
        steps: training steps (for minegan, mining plus joint fine-tuning).
        out: run directory to create (local or s3://); a finished run there is an error, an unfinished
            one is started over (``resume_transfer`` continues it instead).
        seed: fixes the target draw, initialisation and every random draw of training.
        eval_every: score on the validation split every so many steps (None: steps // 10; 0: start and end).
        on_eval: called as ``on_eval(step, validation metrics)`` after each evaluation.
        feature_kind: evaluation features, ``auto`` (the classifier for 28x28 gray targets, the Inception for
            any other), ``classifier`` or ``inception``.
        eval_n: cap on the validation and test reference sizes (None: the whole splits).
        show_progress: a progress bar and one line per evaluation on stderr (False: silent).
        force_unlock: remove the lock of ``out`` even if its holder may be alive (``--force-unlock``);
            without it a run another process is writing is refused (a stale lock is taken over).
        convert_target: resize and channel-convert a target of another shape than the source's (and its
            validation and test references) to the source's (``--convert-target``,
            :mod:`ganlode.orchestrator.data.convert`); without it such a target is refused.

    Returns:
        The final and best-by-validation models' test metrics, the validation history and the run path.
    """
    t0 = time.time()
    given = options.given() if isinstance(options, TransferOptions) else dict(options or {})
    settings = TransferSettings(source, target, method, given, steps, seed, eval_every, feature_kind, eval_n,
                                convert_target)
    plan = check(settings, out)
    with owning(out, force_unlock=force_unlock) as lock:
        plan.run = LockedRunDir(out, lock)
        if plan.run.is_run() and plan.run.read_record().done:
            raise UserError(f"{out} already holds a finished run (never overwritten): pass a new --out, or delete it first")
        restarted = plan.run.is_run()
        refs = _references(plan)
        adapter = build_adapter(plan)
        record = _record(plan, adapter)
        plan.run.write_config(record)
        if restarted:  # an unfinished run at ``out`` starts over: drop its partial rows and state
            plan.run.drop_metrics()
            if storage.exists(plan.run.file(STATE_FILE)):
                storage.remove_file(plan.run.file(STATE_FILE))
        loop = _Loop(plan, adapter, refs, record, on_eval, show_progress)
        return _finish(loop, loop.run(0, _Progress()), t0, 0)


def _resumable(run: RunDir) -> TransferSettings:
    """The settings of the unfinished transfer run ``run``; UserError if there is nothing to resume."""
    run.require_run()
    old = run.read_record()
    if old.run_kind != RUN_KIND or "settings" not in old.extra:
        raise UserError(f"{run.path} is a {old.run_kind} run, not a transfer this version can resume: "
                        "pass the --out of a `ganlode transfer` run")
    if old.done:
        raise UserError(f"{run.path} is finished; there is nothing to resume (its results are in {run.file('metrics.parquet')})")
    return TransferSettings(**old.extra["settings"])


def resume_transfer(run_path: str, *, on_eval: EvalCallback | None = None, show_progress: bool = True,
                    force_unlock: bool = False) -> TransferResult:
    """Continue the unfinished transfer run at ``run_path`` from its last state, bit for bit.

    Every setting comes from the run's config.json. A run killed before its first state was
    saved starts over; a finished run is an error (nothing to resume). A run whose writer is
    still alive is refused (its lock); the lock of a killed one is taken over with a notice.
    """
    t0 = time.time()
    settings = _resumable(RunDir(run_path))
    plan = check(settings, run_path)
    with owning(run_path, force_unlock=force_unlock) as lock:
        run = plan.run = LockedRunDir(run_path, lock)
        if _resumable(run) != settings:  # read again under the lock: another writer may have finished it
            raise UserError(f"{run_path} changed while this resume was starting; run --resume again")
        refs = _references(plan)
        adapter = build_adapter(plan)
        record = _record(plan, adapter)
        state_path = run.file(STATE_FILE)
        start, done, resumed = 0, _Progress(), storage.exists(state_path)
        if resumed:
            start, progress = training_state.load_state(state_path, adapter)
            done = _Progress(**progress)
        run.drop_metrics(after_step=start if resumed else -1)  # rows of steps the resumed loop will run again
        run.drop_metrics(split=protocol.REPORT_SPLIT)  # test rows come only from the end of a run
        run.write_config(record)
        loop = _Loop(plan, adapter, refs, record, on_eval, show_progress)
        return _finish(loop, loop.run(start, done), t0, start)
