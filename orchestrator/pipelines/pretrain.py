"""Training a GAN from scratch (a source model): in-process, or data-parallel through Ray Train.

:func:`run_pretrain` is ``ganlode pretrain``: it checks the inputs, trains, scores the
generator under the evaluation protocol and writes a checkpoint directory. Both training paths run :class:`ganlode.methods.train.GANTrainer`. The distributed path averages
gradients with ``torch.distributed.all_reduce`` (gloo on CPU, NCCL on GPU) after each
backward. We do this instead of wrapping the nets in DDP because DDP's reducer does not
support the double backward that the gradient penalty and R1 need; the arithmetic is the
same as DDP's (a mean of per-worker gradients).
"""

from __future__ import annotations

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
from ..artifacts import checkpoint
from ..artifacts.records import ModelRecord
from ..artifacts.rundir import CHECKPOINT_SAMPLES, WEIGHTS_FILE, command_line
from ..cluster import ensure_ray
from ..data.spec import load_target
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
) -> tuple[Generator, Critic, list[dict[str, float]]]:
    generator, critic = init_gan(arch, tcfg.seed)
    shard = images[rank::world_size]
    per_worker = max(1, math.ceil(tcfg.batch / world_size))
    local_cfg = TrainConfig(**{**tcfg.to_dict(), "batch": per_worker})
    trainer = GANTrainer(generator, critic, shard, local_cfg, grad_sync=grad_sync, rank=rank)
    history = []
    for step in range(1, steps + 1):
        stats = trainer.step()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, **stats})
        if progress is not None:
            progress.update(1, **stats)
    if trainer.G_ema is None:
        return generator, critic, history
    # The averaged weights' own activation statistics, not the last iterate's.
    latents = torch.randn(2048, trainer.G_ema.latent_dim, generator=seeding.generator(tcfg.seed, "bn-statistics"))
    return adapt_batchnorm(trainer.G_ema, latents), critic, history


def pretrain_local(
    images: torch.Tensor,
    arch: Any,
    tcfg: TrainConfig,
    steps: int,
    *,
    threads: int | None = None,
    show_progress: bool = True,
) -> PretrainResult:
    """Train in this process. ``threads`` pins torch's intra-op threads (None: leave as is)."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    with Progress(steps, "pretrain", enabled=show_progress) as progress:
        g, d, history = _run_loop(images, arch, tcfg, steps, progress=progress)
    return PretrainResult(g, d, history, time.time() - t0)


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
    with progress:
        g, d, history = _run_loop(
            config["images"], arch, tcfg, config["steps"], rank=rank, world_size=world,
            grad_sync=_allreduce_mean if world > 1 else None, progress=progress,
        )
    metrics = {"steps": config["steps"], **(history[-1] if history else {})}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            tensors = {f"generator.{k}": v.contiguous() for k, v in g.state_dict().items()}
            tensors.update({f"critic.{k}": v.contiguous() for k, v in d.state_dict().items()})
            save_file(tensors, os.path.join(tmp, WEIGHTS_FILE))
            import json

            with open(os.path.join(tmp, "history.json"), "w") as f:
                json.dump(history, f)
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
                history = json.load(f)
    g, c = architectures.build(arch)
    g.load_state_dict({k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")})
    c.load_state_dict({k[len("critic."):]: v for k, v in tensors.items() if k.startswith("critic.")})
    return PretrainResult(g, c, history, time.time() - t0)


@dataclass
class PretrainOutcome:
    path: str
    metrics: dict[str, float]  # the protocol's metrics against the data's held-out split
    wall_s: float


def run_pretrain(data: str, out: str, tcfg: TrainConfig, steps: int, *, arch: str = "dcgan", latent_dim: int = 32,
                 g_width: int = 32, d_width: int | None = None, n_mlp: int = 8, channel_multiplier: int = 1, workers: int = 0, threads: int | None = None, fp16: bool = False,
                 show_progress: bool = True, force_unlock: bool = False) -> PretrainOutcome:
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
    target = load_target(data, seed=tcfg.seed)
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
            result = pretrain_local(target.images, arch_cfg, tcfg, steps, threads=threads, show_progress=show_progress)
        else:
            result = pretrain_distributed(target.images, arch_cfg, tcfg, steps, workers=workers,
                                          use_gpu=torch.cuda.is_available(), threads=threads or 1,
                                          show_progress=show_progress)
        metrics = protocol.quick_fid(result.generator, data, seed=tcfg.seed)
        record = ModelRecord(
            model_kind="gan", arch=architectures.to_dict(arch_cfg), steps=steps, created=storage.utc_now(), data=target.provenance(),
            metrics=metrics,
            extra={"train": tcfg.to_dict(), "workers": workers, "wall_s": round(result.wall_s, 1),
                   "command": command_line(), "history": result.history},
        )
        grid = protocol.sample_grid_png(result.generator, n=64, seed=tcfg.seed)
        lock.check()  # S3: not after the lock was lost
        checkpoint.save_checkpoint(out, record, result.generator, result.critic,
                                   dtype=torch.float16 if fp16 else None, files={CHECKPOINT_SAMPLES: grid})
    return PretrainOutcome(out, metrics, result.wall_s)
