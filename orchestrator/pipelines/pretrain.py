"""Training a GAN from scratch (a source model): in-process, or data-parallel through Ray Train.

:func:`run_pretrain` is ``ganlode pretrain``: it checks the inputs, trains, scores the
generator under the evaluation protocol and writes a checkpoint directory. Both training paths run :class:`ganlode.methods.train.GANTrainer`. The distributed path averages
gradients with ``torch.distributed.all_reduce`` (gloo on CPU, NCCL on GPU) after each
backward. We do this instead of wrapping the nets in DDP because DDP's reducer does not
support the double backward that the gradient penalty and R1 need; the arithmetic is the
same as DDP's (a mean of per-worker gradients).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ...methods import catalog, seeding
from ...methods.seeding import seeded_init
from ...methods import architectures
from ...methods.bn import adapt_batchnorm
from ...methods.nets import Critic, GANConfig, Generator
from ...methods.train import GANTrainer, TrainConfig
from .. import storage
from ..artifacts import checkpoint, training_state
from ..artifacts.records import ModelRecord
from ..artifacts.rundir import CHECKPOINT_SAMPLES, WEIGHTS_FILE, command_line
from ..cluster import ensure_ray
from ..data.spec import eval_reference, load_target
from ..errors import UserError
from ..evaluation import protocol
from ..progress import Progress
from .ownership import owning

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class PretrainResult:
    generator: Generator
    critic: Critic
    history: list[dict[str, float]]
    wall_s: float
    selection: dict[str, Any] | None = None  # ``--select-every``: the validation scores and the step kept


@dataclass
class Selection:
    """Model selection while pretraining (``--select-every``): every ``every`` steps, and after the
    last, the generator as it would be saved is scored on the data's **validation** split, and the
    best-scoring one (with the critic of that step) is what the run keeps. It draws from the
    protocol's own sample stream, so training is the same draw for draw with it or without it."""

    data: str
    every: int
    seed: int = 0

    def scorer(self) -> Callable[[Generator], float]:
        from ..artifacts.sampling import generator_sampler

        ref = protocol.reference(self.data, split=protocol.SELECTION_SPLIT)
        return lambda g: float(protocol.score(generator_sampler(g), ref, seed=self.seed)["fid"])


PRETRAIN_STATE = "pretrain-state.pt"  # OUT/pretrain-state.pt while an in-process run trains
PRETRAIN_STATE_FORMAT = "ganlode-pretrain-state/1"
CHECKPOINT_EVERY = 1000  # steps between saved states


@dataclass
class Resumable:
    """Where an in-process pretraining run keeps its state every ``every`` steps, and the settings a
    state must have been saved with to be continued (everything but the number of steps, which
    may grow: training draws do not depend on it). Written with ``torch.save``, read with
    ``weights_only=True``; the published checkpoint replaces the folder, state included."""

    path: str
    settings: dict[str, Any]
    every: int = CHECKPOINT_EVERY

    def save(self, step: int, trainer: GANTrainer, history: list, scores: list, best) -> None:
        import io

        blob = {"format": PRETRAIN_STATE_FORMAT, "step": step, "settings": self.settings,
                "trainer": trainer.state_dict(), "history": history, "scores": scores,
                "best": None if best is None else {"fid": best[0], "step": best[1],
                                                    "generator": best[2].state_dict(), "critic": best[3].state_dict()}}
        buf = io.BytesIO()
        torch.save(blob, buf)
        storage.write_bytes_atomic(self.path, buf.getvalue())

    def load(self, steps: int) -> dict[str, Any] | None:
        """The saved state (None: none); UserError if it is unreadable, of other settings, or past ``steps``."""
        if not storage.exists(self.path):
            return None
        blob = training_state.read_state(self.path, PRETRAIN_STATE_FORMAT, "delete it to start over")
        if blob["settings"] != self.settings:
            differ = sorted(k for k in set(blob["settings"]) | set(self.settings)
                            if blob["settings"].get(k) != self.settings.get(k))
            raise UserError(f"{self.path} holds an unfinished pretraining run with other {', '.join(differ)}: "
                            "give the same options to continue it, or another --out")
        if int(blob["step"]) >= steps:
            raise UserError(f"{self.path} is at step {blob['step']}, not below --steps {steps}: raise --steps to "
                            "continue it")
        return blob


def _saved_form(trainer: GANTrainer, generator: Generator, seed: int, *, copy_it: bool) -> Generator:
    """The generator a run saves: the EMA weights with their own BatchNorm statistics (else the last iterate)."""
    if trainer.G_ema is None:
        return copy.deepcopy(generator) if copy_it else generator
    # The averaged weights' own activation statistics, not the last iterate's.
    latents = torch.randn(2048, trainer.G_ema.latent_dim, generator=seeding.generator(seed, "bn-statistics"))
    return adapt_batchnorm(copy.deepcopy(trainer.G_ema) if copy_it else trainer.G_ema, latents)


def pretrain_arch(name: str, *, resolution: int, channels: int, latent_dim: int, g_width: int,
                  d_width: int | None = None, n_mlp: int = 8, channel_multiplier: int = 1) -> Any:
    """The architecture config of ``ganlode pretrain --arch NAME``.

    dcgan: ``latent_dim``, ``g_width`` and ``d_width`` as they are. stylegan2: ``latent_dim`` is
    the style size (z and w), ``g_width`` the channels at 4-32 px (``base_channels``) of G and D
    alike, so a different ``d_width`` is refused; ``n_mlp`` mapping layers, ``channel_multiplier``
    above 32 px. Raises ValueError on settings the architecture refuses.
    """
    if name == "dcgan":
        return GANConfig(resolution=resolution, channels=channels, latent_dim=latent_dim, g_width=g_width,
                         d_width=g_width if d_width is None else d_width)
    if name == "stylegan2":
        from ...methods.stylegan2 import StyleGAN2Config

        if d_width is not None and d_width != g_width:
            raise ValueError("stylegan2's generator and critic share one width (--g-width); drop --d-width")
        return StyleGAN2Config(resolution=resolution, channels=channels, style_dim=latent_dim, n_mlp=n_mlp,
                               channel_multiplier=channel_multiplier, base_channels=g_width)
    raise ValueError(f"pretrain builds {' or '.join(catalog.PRETRAIN_ARCHS)}, not {name!r}")


def init_gan(arch: Any, seed: int) -> tuple[Generator, Critic]:
    """Build G and D with weights fixed by ``seed`` (identical on every worker); the global RNG is left alone."""
    return seeded_init(seed, lambda: architectures.build(arch))


def _run_loop(
    images: torch.Tensor,
    arch: Any,
    tcfg: TrainConfig,
    steps: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    grad_sync=None,
    progress: Progress | None = None,
    log_every: int = 50,
    selection: Selection | None = None,
    resumable: Resumable | None = None,
    on_log: Callable[[dict[str, float], int, str], None] | None = None,
) -> tuple[Generator, Critic, list[dict[str, float]], dict[str, Any] | None]:
    generator, critic = init_gan(arch, tcfg.seed)
    shard = images[rank::world_size]
    per_worker = max(1, math.ceil(tcfg.batch / world_size))
    local_cfg = TrainConfig(**{**tcfg.to_dict(), "batch": per_worker})
    trainer = GANTrainer(generator, critic, shard, local_cfg, grad_sync=grad_sync, rank=rank)
    history = []
    scorer = selection.scorer() if selection is not None else None
    scores: list[dict[str, float]] = []
    best: tuple[float, int, Generator, Critic] | None = None
    start = 1
    saved = resumable.load(steps) if resumable is not None else None
    if saved is not None:  # a killed run: continue it, draw for draw
        trainer.load_state_dict(saved["trainer"])
        history, scores, start = list(saved["history"]), list(saved["scores"]), int(saved["step"]) + 1
        if saved["best"] is not None:
            g_best = copy.deepcopy(trainer.G_ema if trainer.G_ema is not None else generator)
            g_best.load_state_dict(saved["best"]["generator"])
            d_best = copy.deepcopy(critic)
            d_best.load_state_dict(saved["best"]["critic"])
            best = (float(saved["best"]["fid"]), int(saved["best"]["step"]), g_best.eval(), d_best)
        print(f"pretrain: continuing the unfinished run in {resumable.path} at step {start - 1}", file=sys.stderr)
        if progress is not None:
            progress.update(start - 1)
    for step in range(start, steps + 1):
        stats = trainer.step()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, **stats})
            if on_log is not None:
                on_log(stats, step, "train")
        if progress is not None:
            progress.update(1, **stats)
        if scorer is not None and (step % selection.every == 0 or step == steps):
            snapshot = _saved_form(trainer, generator, tcfg.seed, copy_it=True)
            fid = scorer(snapshot)
            scores.append({"step": step, "val_fid": round(fid, 3)})
            if on_log is not None:
                on_log({"fid": fid}, step, "val")
            if best is None or fid < best[0]:
                best = (fid, step, snapshot, copy.deepcopy(critic))
            if progress is not None:
                progress.write(f"step {step}: FID vs validation {fid:.2f}" + (" (best)" if best[1] == step else
                                                                               f" (best {best[0]:.2f} at {best[1]})"))
        if resumable is not None and step % resumable.every == 0 and step < steps:
            resumable.save(step, trainer, history, scores, best)
    if best is not None:
        record = {"every": selection.every, "split": protocol.SELECTION_SPLIT, "metric": "fid", "step": best[1],
                  "scores": scores}
        return best[2], best[3], history, record
    return _saved_form(trainer, generator, tcfg.seed, copy_it=False), critic, history, None


def pretrain_local(
    images: torch.Tensor,
    arch: Any,
    tcfg: TrainConfig,
    steps: int,
    *,
    threads: int | None = None,
    show_progress: bool = True,
    selection: Selection | None = None,
    resumable: Resumable | None = None,
    on_log: Callable[[dict[str, float], int, str], None] | None = None,
) -> PretrainResult:
    """Train in this process. ``threads`` pins torch's intra-op threads (None: leave as is); with
    ``resumable`` the state is saved every ``resumable.every`` steps, and a saved one is continued;
    ``on_log(values, step, split)`` receives the losses (split "train") and validation FIDs ("val")."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    with Progress(steps, "pretrain", enabled=show_progress) as progress:
        g, d, history, selected = _run_loop(images, arch, tcfg, steps, progress=progress, selection=selection,
                                            resumable=resumable, on_log=on_log)
    return PretrainResult(g, d, history, time.time() - t0, selected)


def _allreduce_mean(params: list[torch.nn.Parameter]) -> None:
    """Average gradients across workers in one collective (one flat buffer, as DDP's buckets do).

    One all_reduce per backward instead of one per tensor: on a busy machine every collective
    waits for all workers to be scheduled, so their number, not their size, sets the cost.
    """
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def _train_worker(config: dict) -> None:
    """Ray Train per-worker loop: same trainer, gradients averaged across workers."""
    import ray.train
    from safetensors.torch import save_file

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    arch = architectures.from_dict(config["arch"])
    tcfg = TrainConfig(**config["train"])
    progress = Progress(config["steps"], f"pretrain[{world} workers]", enabled=rank == 0 and config["progress"])
    # Rank 0 alone scores (the others wait for it at the next all-reduce); every rank holds the same weights.
    selection = Selection(**config["selection"]) if config["selection"] and rank == 0 else None
    with progress:
        g, d, history, selected = _run_loop(
            config["images"], arch, tcfg, config["steps"], rank=rank, world_size=world,
            grad_sync=_allreduce_mean if world > 1 else None, progress=progress, selection=selection,
        )
    metrics = {"steps": config["steps"], **(history[-1] if history else {})}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            tensors = {f"generator.{k}": v.contiguous() for k, v in g.state_dict().items()}
            tensors.update({f"critic.{k}": v.contiguous() for k, v in d.state_dict().items()})
            save_file(tensors, os.path.join(tmp, WEIGHTS_FILE))
            import json

            with open(os.path.join(tmp, "history.json"), "w") as f:
                json.dump({"history": history, "selection": selected}, f)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def pretrain_distributed(
    images: torch.Tensor,
    arch: Any,
    tcfg: TrainConfig,
    steps: int,
    *,
    workers: int,
    use_gpu: bool = False,
    threads: int | None = 1,
    show_progress: bool = True,
    storage_path: str | None = None,
    selection: Selection | None = None,
) -> PretrainResult:
    """Data-parallel training with Ray Train's TorchTrainer; returns rank 0's nets."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from safetensors.torch import load_file

    ensure_ray(dashboard=True)  # Ray Train's controller watches its workers through the state API
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ganlode-train-") as tmp:
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={
                "images": images, "arch": architectures.to_dict(arch), "train": tcfg.to_dict(), "steps": steps,
                "threads": threads, "progress": show_progress,
                "selection": None if selection is None else dataclasses.asdict(selection),
            },
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(storage_path=storage_path or tmp, name="pretrain"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train returned no checkpoint: {result.error}")
        with result.checkpoint.as_directory() as d:
            tensors = load_file(os.path.join(d, WEIGHTS_FILE))
            with open(os.path.join(d, "history.json")) as f:
                logged = json.load(f)
    g, c = architectures.build(arch)
    g.load_state_dict({k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")})
    c.load_state_dict({k[len("critic."):]: v for k, v in tensors.items() if k.startswith("critic.")})
    return PretrainResult(g, c, logged["history"], time.time() - t0, logged["selection"])


@dataclass
class PretrainOutcome:
    path: str
    metrics: dict[str, float]  # the protocol's metrics against the data's held-out split
    wall_s: float
    kept_step: int  # the step whose weights were saved (the last, or the one --select-every chose)


def run_pretrain(data: str, out: str, tcfg: TrainConfig, steps: int, *, arch: str = "dcgan", latent_dim: int = 32,
                 g_width: int = 32, d_width: int | None = None, n_mlp: int = 8, channel_multiplier: int = 1, workers: int = 0, threads: int | None = None, fp16: bool = False,
                 show_progress: bool = True, force_unlock: bool = False, select_every: int = 0,
                 tracker: Any = None) -> PretrainOutcome:
    """Train a GAN on the target spec ``data`` and write it as a checkpoint directory at ``out``.

    Args:
        data: target spec of the training images (drawn with ``tcfg.seed``).
        out: checkpoint directory to write (local or s3://).
        tcfg: the training settings; ``steps`` generator steps.
        arch: ``dcgan`` or ``stylegan2``; latent_dim, g_width, d_width (dcgan; default g_width), n_mlp and
            channel_multiplier (stylegan2) its settings (:func:`pretrain_arch`); resolution and channels are the data's.
        workers: data-parallel Ray Train workers (0: train in this process).
        threads: torch threads per process (None: torch's choice; Ray Train workers: 1).
        fp16: store the weights in float16 (halves the file; for shipping).
        force_unlock: remove the lock of ``out`` even if its holder may be alive (``--force-unlock``).
        select_every: every this many steps (and after the last) score the generator on the data's
            validation split and keep the best (:class:`Selection`; 0: keep the last).
        tracker: a :class:`~ganlode.orchestrator.tracking.Tracker` (``--report-to``): the losses, validation
            and test FIDs go to it (as they come in-process; after training from Ray Train workers), and
            its files (TensorBoard's events) into the checkpoint directory.

    In-process (``workers`` 0), the training state is saved in ``OUT/pretrain-state.pt`` every
    ``CHECKPOINT_EVERY`` steps; the same command run again after a kill continues from there, bit
    for bit (``--steps`` may be raised; every other setting must be the same).

    One writer per ``out``: its lock (``OUT/.ganlode-lock``, :mod:`.ownership`) is taken once the
    inputs are checked, and a second pretrain into the same ``out`` is refused while this one
    trains. The checkpoint directory is then published in one step, as the last write; locally
    that swap replaces the directory, lock file included, so the lock ends there (nothing is
    written after it); on S3 the lock object is outside the published version and is released.
    """
    if steps < 1:
        raise UserError("--steps must be at least 1")
    if workers < 0:
        raise UserError("--workers must be 0 (in-process) or more")
    if select_every < 0:
        raise UserError("--select-every must be 0 (keep the last step) or a number of steps")
    target = load_target(data, seed=tcfg.seed)
    selection = None
    if select_every:
        eval_reference(data, seed=tcfg.seed, split=protocol.SELECTION_SPLIT)  # a spec with no validation split fails here
        selection = Selection(data, select_every, tcfg.seed)
    if arch == "stylegan2" and d_width is not None and d_width != g_width:
        raise UserError("stylegan2's generator and critic share one width (--g-width): drop --d-width")
    try:
        arch_cfg = pretrain_arch(arch, resolution=target.resolution, channels=target.channels, latent_dim=latent_dim,
                                 g_width=g_width, d_width=d_width, n_mlp=n_mlp, channel_multiplier=channel_multiplier)
    except ValueError as e:
        sizes = ("28, 32, 64 or 128 px" if arch == "dcgan" else "a power of two from 32 px") + ", with 1 or 3 channels"
        raise UserError(f"{data}: {arch}: {e} (it takes {sizes}; --convert-target is not a pretrain option: "
                        f"pick data of that size)") from None
    with owning(out, force_unlock=force_unlock) as lock:
        print(f"pretrain: {arch}, {len(target)} images of {data}, {steps} steps, loss {tcfg.loss}, "
              f"{'in-process' if workers == 0 else f'{workers} Ray Train workers'}", file=sys.stderr)
        if workers == 0:
            settings = {"data": data, "arch": architectures.to_dict(arch_cfg), "train": tcfg.to_dict(),
                        "select_every": select_every}
            resumable = Resumable(storage.join(out, PRETRAIN_STATE), settings)
            result = pretrain_local(target.images, arch_cfg, tcfg, steps, threads=threads, show_progress=show_progress,
                                    selection=selection, resumable=resumable,
                                    on_log=None if tracker is None else tracker.log_metrics)
        else:
            result = pretrain_distributed(target.images, arch_cfg, tcfg, steps, workers=workers,
                                          use_gpu=torch.cuda.is_available(), threads=threads or 1,
                                          show_progress=show_progress, selection=selection)
            if tracker is not None:  # the workers' log, replayed
                for row in result.history:
                    tracker.log_metrics(row, row["step"], "train")
                for row in (result.selection or {}).get("scores", []):
                    tracker.log_metrics({"fid": row["val_fid"]}, row["step"], "val")
        metrics = protocol.quick_fid(result.generator, data, seed=tcfg.seed)
        tracked: dict[str, bytes] = {}
        if tracker is not None:
            tracker.log_metrics(metrics, steps, "test")
            tracker.close()
            tracked = tracker.files()
        record = ModelRecord(
            model_kind="gan", arch=architectures.to_dict(arch_cfg), steps=steps, created=storage.utc_now(), data=target.provenance(),
            metrics=metrics,
            extra={"train": tcfg.to_dict(), "workers": workers, "wall_s": round(result.wall_s, 1),
                   "command": command_line(), "history": result.history,
                   **({"selection": result.selection} if result.selection else {})},
        )
        grid = protocol.sample_grid_png(result.generator, n=64, seed=tcfg.seed)
        lock.check()  # S3: not after the lock was lost
        checkpoint.save_checkpoint(out, record, result.generator, result.critic,
                                   dtype=torch.float16 if fp16 else None, files={CHECKPOINT_SAMPLES: grid, **tracked})
    return PretrainOutcome(out, metrics, result.wall_s, result.selection["step"] if result.selection else steps)
