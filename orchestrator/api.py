"""The Python API: ``import ganlode`` gives these entry points; the CLI is a thin layer over them.

Each call runs one pipeline and returns a result object that holds the adapted generator (an
``nn.Module`` in eval mode), the figures on the test split and the run's path::

    import ganlode

    run = ganlode.transfer("zoo:digits-0to4", "mnist5k:7@25", method="freezed", steps=300, out="runs/seven")
    run.metrics["fid"], run.best_step      # the final model's test FID; the step chosen on validation
    x = run.sample(16, seed=0)             # 16 x C x H x W images in [-1, 1]

    mix = ganlode.mine(["zoo:digits-0to4", "zoo:animals-5to9"], "mnist5k:3@30+animals:zebra@70",
                       out="runs/mix", mining_steps=200, finetune_steps=50)
    mix.shares                              # p per source, in order

Bad input raises :class:`ganlode.orchestrator.errors.UserError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..methods.catalog import DEFAULT_MIN_GAIN, DEFAULT_MIN_SHARE, DEFAULT_SELECTOR
from .artifacts.loaders import LoadedModel, load_model
from .artifacts.rundir import BEST_CHECKPOINT, RunDir
from .errors import UserError
from .evaluation import protocol
from .pipelines import evaluate as evaluate_pipeline
from .pipelines.mine import mine_config, run_mine
from .pipelines.sources import trained_loss
from .pipelines.transfer import resume_transfer, run_transfer
from .search.run import run_search
from .search.spec import BEST_FILE, BEST_RUN, TRIALS_FILE, SearchSpec, with_default_space
from .storage import join, read_json, read_table


@dataclass
class Model:
    """A stored model (checkpoint, run or ``zoo:NAME``) with its generator as a module."""

    path: str
    config: dict[str, Any]
    generator: torch.nn.Module | None
    loaded: LoadedModel = field(repr=False)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` images in [-1, 1], the same for the same seed."""
        return self.loaded.sampler(n, torch.Generator().manual_seed(seed))


def load(path: str) -> Model:
    """A checkpoint directory, a run directory (its final model) or ``zoo:NAME``."""
    loaded = load_model(path)
    return Model(loaded.path, loaded.config, loaded.module, loaded)


@dataclass
class _Run:
    path: str
    metrics: dict[str, float]  # the final model on the test split

    @property
    def model(self) -> Model:
        return load(self.path)

    @property
    def generator(self) -> torch.nn.Module | None:
        return self.model.generator

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        return self.model.sample(n, seed)


@dataclass
class TransferRun(_Run):
    method: str = ""
    history: list[dict[str, float]] = field(default_factory=list)  # validation scores per evaluation
    best_step: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)  # the best-by-validation model on test

    @property
    def best(self) -> Model:
        """The model with the best validation FID (``RUN/checkpoints/best``)."""
        return load(RunDir(self.path).checkpoint_path(BEST_CHECKPOINT))


@dataclass
class MineRun(_Run):
    shares: list[float] = field(default_factory=list)
    true_shares: list[float] | None = None


@dataclass
class TuneRun(_Run):
    best: dict[str, Any] = field(default_factory=dict)  # best.json: the trial chosen on validation
    trials: list[dict[str, Any]] = field(default_factory=list)  # one row per trial


def transfer(source: str | None = None, target: str | None = None, method: str = "finetune", *, out: str, steps: int = 500, seed: int = 0,
             eval_every: int | None = None, features: str = "auto", eval_n: int | None = None,
             resume: bool = False, progress: bool = False, force_unlock: bool = False, **options: Any) -> TransferRun:
    """Adapt ``source`` to ``target`` with one method (``ganlode transfer``).

    Args:
        source: checkpoint, run directory or ``zoo:NAME``.
        target: a target spec (``mnist5k:7@25``, a folder, a Parquet table, ``s3://...``).
        method: one of ``ganlode.methods.catalog.METHODS``.
        out: the run directory to write (local or ``s3://``).
        resume: continue the unfinished run at ``out`` (every other setting comes from it).
        force_unlock: remove the lock of ``out`` even if its holder may be alive (one writer per run:
            without it a run that another process is writing is refused).
        options: the method's options by field name (``freeze_depth=2``, ``lr=1e-4``, ...).
    """
    if not resume and (source is None or target is None):
        raise UserError("transfer needs a source and a target (or resume=True to continue the run at out)")
    if resume:
        r = resume_transfer(out, show_progress=progress, force_unlock=force_unlock)
    else:
        r = run_transfer(source, target, method, options, steps=steps, out=out, seed=seed, eval_every=eval_every,
                         feature_kind=features, eval_n=eval_n, show_progress=progress, force_unlock=force_unlock)
    return TransferRun(r.run, r.metrics, r.method, r.history, r.best_step, r.best_metrics)


def mine(sources: Sequence[str], target: str, *, out: str, mining_steps: int = 1000, finetune_steps: int = 500,
         seed: int = 0, in_process: bool = False, eval_every: int = 0, features: str = "auto",
         eval_n: int | None = None, resume: bool = False, progress: bool = False, force_unlock: bool = False,
         selector: str = DEFAULT_SELECTOR, route: bool = False, min_share: float = DEFAULT_MIN_SHARE,
         min_gain: float = DEFAULT_MIN_GAIN,
         **config: Any) -> MineRun:
    """Multi-source MineGAN (``ganlode mine``): one Ray actor per source unless ``in_process``.

    ``selector`` (``coverage``, ``count`` or ``mixture-fit``), ``route``, ``min_share`` and ``min_gain`` as for
    ``ganlode mine``. ``config`` sets any other field of ``MultiSourceConfig`` (``batch``,
    ``lr_miner``, ``window``, ``n_critic``, ``rows``, ...); the loss defaults to the first
    source's. ``force_unlock`` as for :func:`transfer`.
    """
    loss = config.pop("loss", None) or trained_loss(sources[0])
    cfg = mine_config(loss, mining_steps=mining_steps, finetune_steps=finetune_steps, seed=seed, **config)
    r = run_mine(list(sources), target, out, cfg, seed=seed, in_process=in_process, eval_every=eval_every,
                 feature_kind=features, eval_n=eval_n, resume=resume, show_progress=progress, force_unlock=force_unlock,
                 selector=selector, route=route, min_share=min_share, min_gain=min_gain)
    return MineRun(r.run, r.metrics, r.shares, r.true_shares)


def tune(source: str | Sequence[str], target: str, method: str, *, out: str, trials: int = 8, steps: int = 500,
         concurrent: int = 2, eval_every: int | None = None, metric: str = "kmmd", mode: str = "min", seed: int = 0,
         val_n: int | None = None, cpus_per_trial: float = 1.0, resume: bool = False, verbose: int = 0,
         force_unlock: bool = False) -> TuneRun:
    """Search a method's settings with Ray Tune + Optuna (``ganlode tune``); trials are compared on
    the validation split, and the exported best run (``OUT/best``) is scored on the test split.
    ``force_unlock`` as for :func:`transfer`."""
    sources = (source,) if isinstance(source, str) else tuple(source)
    spec = SearchSpec(sources=sources, target=target, method=method, space={}, trials=trials, concurrent=concurrent,
                      steps=steps, eval_every=eval_every or max(1, steps // 10), out=out, metric=metric, mode=mode,
                      seed=seed, val_n=val_n, cpus_per_trial=cpus_per_trial)
    outcome = run_search(with_default_space(spec), resume=resume, verbose=verbose, force_unlock=force_unlock)
    best = read_json(join(out, BEST_FILE)) if outcome.complete else {}
    best_run = join(out, BEST_RUN)
    metrics = RunDir(best_run).read_config().get("metrics", {}) if best else {}
    rows = read_table(join(out, TRIALS_FILE)).to_pylist() if outcome.complete else []
    return TuneRun(best_run, metrics, best, rows)


def evaluate(path: str, target: str | None = None, *, features: str = "auto", n: int | None = None,
             seed: int = 0, split: str = protocol.REPORT_SPLIT) -> dict[str, float]:
    """FID, KMMD and MV of a run or checkpoint against ``target``'s test split (``split="val"``: validation);
    a run's own target by default. Rows are appended to a run's metrics."""
    result = evaluate_pipeline.evaluate_model(path, target=target, n=n, feature_kind=features, seed=seed, split=split)
    return dict(result.values)
