"""The single-source transfer pipeline: source + target + method -> a run directory.

:func:`run_transfer` is the one entry point; ``ganlode transfer``, ``ganlode tune`` trials and
``ganlode demo`` call it (the latter two with ``on_eval`` to report metrics). It

1. checks every input before writing anything (bad input is a :class:`UserError`);
2. trains the method's :class:`~ganlode.methods.transfer.Adapter` for ``steps`` steps, scoring
   it under the evaluation protocol at step 0, every ``eval_every`` steps and at the end
   (rows appended to ``RUN/metrics.parquet``);
3. writes ``RUN/checkpoints/final`` (readable by ``ganlode sample`` and ``ganlode eval``),
   ``RUN/samples/final.png`` and ``RUN/config.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable


from ..methods import transfer as T
from ..methods.finetune import train_config
from . import checkpoint, data, evaluation, storage
from .errors import UserError
from .progress import Progress
from .runs import RunDir, metric_rows

EvalCallback = Callable[[int, dict[str, float]], None]


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


def load_source(path: str) -> tuple[T.Source, checkpoint.Checkpoint]:
    ckpt = checkpoint.load_checkpoint(path, with_critic=True)
    kind = ckpt.config.get("kind", "gan")
    if kind != "gan":
        raise UserError(f"{ckpt.path} is a {kind!r} model; a transfer source must be a plain GAN checkpoint "
                        "(from `ganlode pretrain`, a fine-tuning run, or zoo:NAME)")
    train = ckpt.config.get("train") if isinstance(ckpt.config.get("train"), dict) else {}
    return T.Source(ckpt.generator, ckpt.critic, train), ckpt


def perceptual_features() -> T.FeatureFn:
    """The evaluation classifier's features, differentiable in the input (weights frozen)."""
    from .features import feature_net

    return feature_net().features


def _check_target(target: data.ImageSet, arch, spec: str, source: str) -> None:
    if target.resolution != arch.resolution or target.channels != arch.channels:
        raise UserError(f"target {spec} holds {target.channels}x{target.resolution}x{target.resolution} images but "
                        f"source {source} makes {arch.channels}x{arch.resolution}x{arch.resolution}: pick a target "
                        "of the source's image size and channels (nothing is resized for you)")


def _clear_metrics(run: RunDir) -> None:
    import io

    import pyarrow.parquet as pq

    if storage.exists(run.file("metrics.parquet")):
        buf = io.BytesIO()
        pq.write_table(run.read_metrics().slice(0, 0), buf)
        storage.write_bytes_atomic(run.file("metrics.parquet"), buf.getvalue())


def eval_steps(steps: int, eval_every: int | None) -> list[int]:
    """Steps at which the model is scored: 0, every ``eval_every``, and the last."""
    every = max(1, steps // 10) if eval_every is None else eval_every
    points = {0, steps}
    if every > 0:
        points.update(range(every, steps, every))
    return sorted(points)


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
    if feature_kind not in evaluation.FEATURES:
        raise UserError(f"unknown features {feature_kind!r}: use one of {', '.join(evaluation.FEATURES)}")
    if method not in T.METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(T.METHODS)}")
    if feature_kind == "inception":
        from .inception import require

        require()
    src, ckpt = load_source(source)
    arch = ckpt.arch
    if method in T.NEEDS_CRITIC and src.critic is None:
        raise UserError(f"method {method} starts from the source critic, but {ckpt.path} holds no critic weights: "
                        "use a checkpoint written by `ganlode pretrain`, or --method scratch/adabn/bsa/glo")
    critic_blocks = src.critic.num_blocks if src.critic is not None else 3
    validate_options(method, options, critic_blocks=critic_blocks, steps=steps)
    resolved = T.resolve_options(method, options, src, steps)
    target_set = data.load_target(target, seed=seed)
    _check_target(target_set, arch, target, source)
    if method == "adabn" and len(target_set) < 2:
        raise UserError(f"adabn estimates statistics over the target codes and needs 2 or more images; {target} has 1")
    run = RunDir(out)
    storage.check_writable(out)
    restarted = run.is_run()
    if restarted and run.read_config().get("status") == "done":
        raise UserError(f"{out} already holds a finished run (never overwritten): pass a new --out, or delete it first")
    ref = evaluation.reference(target, n=eval_n, feature_kind=feature_kind)

    adversarial = method in T.ADVERSARIAL
    tcfg = train_config(resolved, src, seed).to_dict() if adversarial else None
    run_config = {
        "kind": "transfer", "method": method, "source": source, "source_path": ckpt.path, "target": target,
        "steps": steps, "seed": seed, "eval_every": eval_every, "features": feature_kind,
        "options": {k: v for k, v in resolved.to_dict().items() if v is not None}, "options_given": options.given(),
        "train": tcfg, "data": target_set.provenance(), "source_data": ckpt.config.get("data"),
        "status": "running",
    }
    run.write_config(run_config)
    if restarted:  # an unfinished run at ``out`` starts over: drop its partial evaluation rows
        _clear_metrics(run)

    adapter = T.build(method, src, target_set.images, resolved, seed=seed,
                      feature_fn=perceptual_features() if method in T.LATENT else None)
    points = set(eval_steps(steps, eval_every))
    history: list[dict[str, float]] = []
    common = {"seed": seed, "features": feature_kind, "n": len(ref), "target": target}

    with Progress(steps, f"transfer[{method}]", enabled=show_progress) as progress:
        log = progress.write if show_progress else (lambda line: None)
        log(f"transfer: {method} from {source} to {len(target_set)} images of {target}, {steps} steps"
            + (f" (mining {resolved.mining_steps})" if method == "minegan" else ""))

        eval_s = 0.0

        def evaluate(step: int) -> dict[str, float]:
            nonlocal eval_s
            t_eval = time.perf_counter()
            values = evaluation.score(evaluation.generator_sampler(adapter.sampling_generator()), ref, seed=seed)
            run.append_metrics(metric_rows(method, step, values, **common))
            history.append({"step": step, **{k: float(v) for k, v in values.items()}})
            log(f"step {step}: FID {values['fid']:.3f}  KMMD {values['kmmd']:.4f}  MV {values['mv']:.3f}")
            eval_s += time.perf_counter() - t_eval
            if on_eval is not None:
                on_eval(step, values)
            return values

        evaluate(0)
        train_s = 0.0
        for step in range(1, steps + 1):
            t_step = time.perf_counter()
            stats = adapter.step()
            train_s += time.perf_counter() - t_step
            if not all(math.isfinite(v) for v in stats.values()):
                raise UserError(f"{method} diverged at step {step} (non-finite loss in {sorted(stats)}): "
                                f"lower --lr (it was {resolved.lr:g}) and run again with the same --out")
            progress.update(1, **stats)
            if step in points and step != steps:
                evaluate(step)
        final = evaluate(steps)

    export = adapter.export()
    wall = time.time() - t0
    ckpt_config = {
        "kind": export.kind, "arch": arch.to_dict(), "method": method, "options": run_config["options"],
        "steps": steps, "seed": seed, "source": source, "source_data": ckpt.config.get("data"),
        "data": target_set.provenance(), "metrics": final, "features": feature_kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **export.config,
    }
    if tcfg is not None:
        ckpt_config["train"] = tcfg
    grid = evaluation.sample_grid_png(adapter.sampling_generator(), n=64, seed=seed)
    checkpoint.save_checkpoint(run.checkpoint_path("final"), ckpt_config, export.generator, export.critic,
                               extra=export.extra, files={"samples.png": grid})
    run.write_sample("final", grid)
    run.write_config({**run_config, "status": "done", "wall_s": round(wall, 1), "train_s": round(train_s, 2),
                      "eval_s": round(eval_s, 2), "metrics": final})
    return TransferResult(run=out, method=method, steps=steps, metrics=final, history=history, wall_s=wall,
                          train_s=train_s, eval_s=eval_s)
