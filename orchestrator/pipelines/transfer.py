"""The single-source transfer pipeline: source + target + method -> a run directory.

:func:`run_transfer` is the one entry point; ``ganlode transfer``, ``ganlode tune`` trials and
``ganlode demo`` call it (the latter two with ``on_eval`` to report metrics). It runs four steps:

1. check: every input, before anything is written (bad input is a :class:`UserError`);
2. build: the reference features, ``RUN/config.json`` (status "running") and the method's
   :class:`~ganlode.methods.transfer.Adapter`;
3. loop: ``steps`` training steps, scoring the model under the evaluation protocol at step 0,
   every ``eval_every`` steps and at the end (rows appended to ``RUN/metrics.parquet``);
4. write: ``RUN/checkpoints/final`` (readable by ``ganlode sample`` and ``ganlode eval``),
   ``RUN/samples/final.png`` and ``RUN/config.json`` (status "done").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...methods import transfer as T
from ...methods.finetune import train_config
from .. import storage
from ..artifacts import checkpoint
from ..artifacts.records import ModelRecord, RunRecord
from ..artifacts.rundir import CHECKPOINT_SAMPLES, RunDir, metric_rows
from ..artifacts.sampling import generator_sampler
from ..data.imageset import ImageSet
from ..data.spec import load_target
from ..errors import UserError
from ..evaluation import features, protocol
from ..evaluation.classifier import perceptual_features
from ..progress import Progress
from .sources import load_source

EvalCallback = Callable[[int, dict[str, float]], None]
RUN_KIND = "transfer"


@dataclass
class TransferResult:
    run: str
    method: str
    steps: int
    metrics: dict[str, float]  # the final evaluation
    history: list[dict[str, float]] = field(default_factory=list)  # every evaluation, with "step"
    wall_s: float = 0.0
    train_s: float = 0.0  # time inside the training steps alone (no evaluation, loading or saving)
    eval_s: float = 0.0  # time spent in the periodic evaluations


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def validate_options(method: str, options: T.TransferOptions, *, critic_blocks: int, steps: int) -> None:
    """UserError (naming CLI flags) unless the options fit the method."""
    if method not in T.METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(T.METHODS)}")
    accepts = T.ACCEPTS[method]
    for name in options.given():
        if name not in accepts:
            takes = ", ".join(flag(o) for o in sorted(accepts)) or "no method options"
            hint = ("; to combine fine-tuning options use --method finetune"
                    if name in T.ACCEPTS["finetune"] and method in ("freezed", "l2sp", "distill") else "")
            raise UserError(f"{flag(name)} does not apply to --method {method} (it takes {takes}){hint}")
    for name in sorted(T.REQUIRES.get(method, ())):
        if name not in options.given():
            raise UserError(f"--method {method} needs {flag(name)}, e.g. {flag(name)} "
                            f"{1 if name == 'freeze_depth' else 0.01}")
    try:
        T.check_options(method, options, critic_blocks=critic_blocks, steps=steps)
    except T.OptionError as e:
        msg = str(e)
        if e.option and msg.startswith(e.option):
            msg = flag(e.option) + msg[len(e.option):]
        raise UserError(msg) from None


def check_target(target: ImageSet, arch, spec: str, source: str) -> None:
    """UserError unless the target's images have the source's size and channels."""
    if target.resolution != arch.resolution or target.channels != arch.channels:
        raise UserError(f"target {spec} holds {target.channels}x{target.resolution}x{target.resolution} images but "
                        f"source {source} makes {arch.channels}x{arch.resolution}x{arch.resolution}: pick a target "
                        "of the source's image size and channels (nothing is resized for you)")


def eval_steps(steps: int, eval_every: int | None) -> list[int]:
    """Steps at which the model is scored: 0, every ``eval_every``, and the last."""
    every = max(1, steps // 10) if eval_every is None else eval_every
    points = {0, steps}
    if every > 0:
        points.update(range(every, steps, every))
    return sorted(points)


def write_transfer_result(run: RunDir, adapter: T.Adapter, arch: Any, record: RunRecord) -> ModelRecord:
    """Write the adapted model as ``RUN/checkpoints/final`` and ``RUN/samples/final.png``.

    The checkpoint's record is derived from the run's (method, options, steps, seed, data,
    final metrics, and the search that chose the settings when there was one), so a run and
    its model never disagree. Shared by :func:`run_transfer` and the export of a search's best trial.
    """
    export = adapter.export()
    x = record.extra
    fields = {k: x[k] for k in ("options", "source", "source_data", "train", "tune") if x.get(k) is not None}
    model = ModelRecord(model_kind=export.kind, arch=arch.to_dict(), method=record.method, steps=x["steps"],
                        seed=record.seed, created=storage.utc_now(), data=record.data, metrics=record.metrics,
                        extra={**fields, "features": record.features, **export.config})
    grid = protocol.sample_grid_png(adapter.sampling_generator(), n=64, seed=record.seed or 0)
    checkpoint.save_checkpoint(run.checkpoint_path(), model, export.generator, export.critic,
                               extra=export.extra, files={CHECKPOINT_SAMPLES: grid})
    run.write_sample("final", grid)
    return model


# ---------------------------------------------------------------- the pipeline's steps


@dataclass
class _Plan:
    """What the check step found: everything the run needs, nothing written yet."""

    method: str
    options: T.TransferOptions  # as given
    resolved: T.TransferOptions
    source: T.Source
    ckpt: checkpoint.Checkpoint
    target: ImageSet
    run: RunDir
    restarted: bool  # an unfinished run at ``out`` is started over


def _check(source: str, target: str, method: str, options: T.TransferOptions | dict[str, Any] | None, *,
           steps: int, out: str, seed: int, eval_every: int | None, feature_kind: str, eval_n: int | None) -> _Plan:
    if isinstance(options, dict):
        try:
            options = T.TransferOptions.from_dict(options)
        except (TypeError, ValueError) as e:
            raise UserError(f"{e}; known options: {', '.join(T.TransferOptions().to_dict())}") from None
    options = options or T.TransferOptions()
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"--steps must be a whole number >= 1, got {steps}")
    if eval_every is not None and eval_every < 0:
        raise UserError("--eval-every must be 0 (only at start and end) or more")
    if eval_n is not None and eval_n < 2:
        raise UserError(f"--eval-n must be at least 2 (FID needs two or more images), got {eval_n}")
    if feature_kind not in features.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(features.FEATURES)}")
    if method not in T.METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(T.METHODS)}")
    if feature_kind == "inception":
        features.require(feature_kind)
    src, ckpt = load_source(source)
    if method in T.NEEDS_CRITIC and src.critic is None:
        raise UserError(f"method {method} starts from the source critic, but {ckpt.path} holds no critic weights: "
                        "use a checkpoint written by `ganlode pretrain`, or --method scratch/adabn/bsa/glo")
    critic_blocks = src.critic.num_blocks if src.critic is not None else 3
    validate_options(method, options, critic_blocks=critic_blocks, steps=steps)
    resolved = T.resolve_options(method, options, src, steps)
    target_set = load_target(target, seed=seed)
    check_target(target_set, ckpt.arch, target, source)
    if method == "adabn" and len(target_set) < 2:
        raise UserError(f"adabn estimates statistics over the target codes and needs 2 or more images; {target} has 1")
    run = RunDir(out)
    storage.check_writable(out)
    restarted = run.is_run()
    if restarted and run.read_record().done:
        raise UserError(f"{out} already holds a finished run (never overwritten): pass a new --out, or delete it first")
    return _Plan(method, options, resolved, src, ckpt, target_set, run, restarted)


def _build(plan: _Plan, *, source: str, target: str, steps: int, seed: int, eval_every: int | None,
           feature_kind: str, eval_n: int | None) -> tuple[protocol.Reference, RunRecord, T.Adapter]:
    ref = protocol.reference(target, n=eval_n, feature_kind=feature_kind)
    tcfg = train_config(plan.resolved, plan.source, seed).to_dict() if plan.method in T.ADVERSARIAL else None
    record = RunRecord(
        run_kind=RUN_KIND, status="running", method=plan.method, target=target, seed=seed, features=feature_kind,
        data=plan.target.provenance(),
        extra={"source": source, "source_path": plan.ckpt.path, "steps": steps, "eval_every": eval_every,
               "options": {k: v for k, v in plan.resolved.to_dict().items() if v is not None},
               "options_given": plan.options.given(), "train": tcfg, "source_data": plan.ckpt.config.get("data")},
    )
    plan.run.write_config(record)
    if plan.restarted:  # an unfinished run at ``out`` starts over: drop its partial evaluation rows
        plan.run.drop_metrics()
    adapter = T.build(plan.method, plan.source, plan.target.images, plan.resolved, seed=seed,
                      feature_fn=perceptual_features() if plan.method in T.LATENT else None)
    return ref, record, adapter


@dataclass
class _Trained:
    final: dict[str, float]
    history: list[dict[str, float]]
    train_s: float
    eval_s: float


def _loop(plan: _Plan, adapter: T.Adapter, ref: protocol.Reference, *, source: str, target: str, steps: int,
          seed: int, eval_every: int | None, feature_kind: str, on_eval: EvalCallback | None,
          show_progress: bool) -> _Trained:
    method, run = plan.method, plan.run
    points = set(eval_steps(steps, eval_every))
    common = {"seed": seed, "features": feature_kind, "n": len(ref), "target": target}
    done = _Trained({}, [], 0.0, 0.0)
    with Progress(steps, f"transfer[{method}]", enabled=show_progress) as progress:
        log = progress.write if show_progress else (lambda line: None)

        def evaluate(step: int) -> dict[str, float]:
            t_eval = time.perf_counter()
            values = protocol.score(generator_sampler(adapter.sampling_generator()), ref, seed=seed)
            run.append_metrics(metric_rows(method, step, values, **common))
            done.history.append({"step": step, **{k: float(v) for k, v in values.items()}})
            log(f"step {step}: FID {values['fid']:.3f}  KMMD {values['kmmd']:.4f}  MV {values['mv']:.3f}")
            done.eval_s += time.perf_counter() - t_eval
            if on_eval is not None:
                on_eval(step, values)
            return values

        log(f"transfer: {method} from {source} to {len(plan.target)} images of {target}, {steps} steps"
            + (f" (mining {plan.resolved.mining_steps})" if method == "minegan" else ""))
        evaluate(0)
        for step in range(1, steps + 1):
            t_step = time.perf_counter()
            stats = adapter.step()
            done.train_s += time.perf_counter() - t_step
            if not all(math.isfinite(v) for v in stats.values()):
                raise UserError(f"{method} diverged at step {step} (non-finite loss in {sorted(stats)}): "
                                f"lower --lr (it was {plan.resolved.lr:g}) and run again with the same --out")
            progress.update(1, **stats)
            if step in points and step != steps:
                evaluate(step)
        done.final = evaluate(steps)
    return done


def run_transfer(
    source: str,
    target: str,
    method: str,
    options: T.TransferOptions | dict[str, Any] | None = None,
    *,
    steps: int,
    out: str,
    seed: int = 0,
    eval_every: int | None = None,
    on_eval: EvalCallback | None = None,
    feature_kind: str = "classifier",
    eval_n: int | None = None,
    show_progress: bool = True,
) -> TransferResult:
    """Adapt ``source`` to ``target`` with ``method`` and write a run directory at ``out``.

    Args:
        source: checkpoint directory, run directory or ``zoo:NAME``.
        target: a target spec (``mnist5k:7@25``, a folder, a Parquet table).
        method: one of :data:`ganlode.methods.transfer.METHODS`.
        options: method options (a TransferOptions or a dict of its fields); unset ones default.
        steps: training steps (for minegan, mining plus joint fine-tuning).
        out: run directory to create (local or s3://); a finished run there is an error, an unfinished
            one (status "running" in its config.json) is started over.
        seed: fixes the target draw, initialisation and every random draw of training.
        eval_every: score every so many steps (None: steps // 10; 0: only at start and end).
        on_eval: called as ``on_eval(step, metrics)`` after each evaluation.
        feature_kind: evaluation features, ``classifier`` or ``inception``.
        eval_n: cap on the held-out reference size (None: the whole held-out split).
        show_progress: a progress bar and one line per evaluation on stderr (False: silent).

    Returns:
        The final metrics, the evaluation history and the run path.
    """
    t0 = time.time()
    settings = dict(steps=steps, seed=seed, eval_every=eval_every, feature_kind=feature_kind)
    plan = _check(source, target, method, options, out=out, eval_n=eval_n, **settings)
    ref, record, adapter = _build(plan, source=source, target=target, eval_n=eval_n, **settings)
    trained = _loop(plan, adapter, ref, source=source, target=target, on_eval=on_eval, show_progress=show_progress,
                    **settings)
    record = record.replace(metrics=trained.final)
    write_transfer_result(plan.run, adapter, plan.ckpt.arch, record)
    wall = time.time() - t0
    plan.run.write_config(record.replace(status="done", wall_s=round(wall, 1), train_s=round(trained.train_s, 2),
                                         eval_s=round(trained.eval_s, 2)))
    return TransferResult(run=out, method=method, steps=steps, metrics=trained.final, history=trained.history,
                          wall_s=wall, train_s=trained.train_s, eval_s=trained.eval_s)
