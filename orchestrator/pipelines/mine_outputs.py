"""What a mining run writes into its run directory, besides config.json and metrics.

- ``RUN/checkpoints/step-N`` (model kind ``mine-state``): the whole state every
  ``checkpoint_every`` steps (every G_i, M_i and optimizer, the critic, the selector window and
  the RNG), the way back for ``--resume``; older ones are removed once a newer one is complete;
- ``RUN/checkpoints/final`` (model kind ``mined``): every G_i and M_i under ``sources.<i>.``,
  p as the tensor ``shares``;
- ``RUN/shares.parquet`` (step, source, index, share) with its plot, and sample grids per source
  and mixed.
"""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa
import torch

from ...methods import architectures
from ...methods.multisource import MultiSourceConfig, source_prefix
from .. import storage
from ..artifacts import checkpoint
from ..artifacts.loaders import mixture_from_state
from ..artifacts.records import ModelRecord
from ..artifacts.rundir import CHECKPOINT_SAMPLES, CHECKPOINTS_DIR, CONFIG_FILE, SHARES_FILE, STEP_PREFIX, WEIGHTS_FILE, RunDir
from ..data.images import grid_png
from ..data.imageset import ImageSet
from ..evaluation.protocol import sample_grid_png
from ..report.plots import mining_shares_png

MINED = "mined"
STATE = "mine-state"
METHOD = "mine"
SHARES_SCHEMA = pa.schema([("step", pa.int64()), ("source", pa.string()), ("index", pa.int64()), ("share", pa.float64())])


def step_checkpoints(run: RunDir) -> list[int]:
    """The steps of the complete ``RUN/checkpoints/step-N``, ascending."""
    steps = []
    for name in storage.listdir(run.file(CHECKPOINTS_DIR)):
        digits = name[len(STEP_PREFIX):]
        if name.startswith(STEP_PREFIX) and digits.isdigit() and storage.exists(run.file(CHECKPOINTS_DIR, name, WEIGHTS_FILE)):
            steps.append(int(digits))
    return sorted(steps)


def prune_step_checkpoints(run: RunDir, below: int | None = None) -> None:
    """Remove the step checkpoints before step ``below`` (all of them: None)."""
    for s in step_checkpoints(run):
        if below is None or s < below:
            storage.remove_tree(run.checkpoint_path(f"{STEP_PREFIX}{s}"))


def read_final(run: RunDir) -> dict[str, Any] | None:
    """The final mined model's record of a finished run, or None."""
    if not storage.exists(storage.join(run.checkpoint_path(), WEIGHTS_FILE)):
        return None
    return storage.read_json(storage.join(run.checkpoint_path(), CONFIG_FILE))


def shares_table(history: Sequence[dict[str, Any]], sources: Sequence[str]) -> pa.Table:
    rows = [{"step": int(r["step"]), "source": sources[i], "index": i, "share": float(p)}
            for r in history for i, p in enumerate(r["shares"])]
    return pa.Table.from_pylist(rows, schema=SHARES_SCHEMA)


def write_step_checkpoint(run: RunDir, step: int, arch: Any, cfg: MultiSourceConfig,
                          state: dict[str, torch.Tensor], history: list[dict[str, Any]], sources: Sequence[str]) -> None:
    """RUN/checkpoints/step-N, atomically; older ones are removed once it is complete."""
    record = ModelRecord(model_kind=STATE, arch=architectures.to_dict(arch), created=storage.utc_now(),
                         extra={"step": step, "mining": cfg.to_dict(), "history": history})
    checkpoint.save_checkpoint(run.checkpoint_path(f"{STEP_PREFIX}{step}"), record, extra=state)
    storage.write_table(run.file(SHARES_FILE), shares_table(history, sources))
    prune_step_checkpoints(run, below=step)


def write_final(run: RunDir, sources: Sequence[str], ckpts: Sequence[checkpoint.Checkpoint], cfg: MultiSourceConfig,
                state: dict[str, torch.Tensor], shares: list[float], history: list[dict[str, Any]],
                metrics: dict[str, float], truth: list[float] | None, target_set: ImageSet,
                all_sources: Sequence[str] | None = None, all_truth: Sequence[float] | None = None) -> None:
    """The mined model (``RUN/checkpoints/final``), its sample grids, the shares table and plot.

    ``sources``, ``ckpts``, ``shares`` and ``truth`` are the mined model's (routing may have left
    some of ``all_sources`` out); ``history`` and ``all_truth`` hold shares over ``all_sources``.
    """
    n = len(sources)
    all_sources = list(all_sources or sources)
    tensors = {k: v for k, v in state.items()
               if any(k.startswith(f"{source_prefix(i)}{part}.") for i in range(n) for part in ("generator", "miner"))}
    tensors["shares"] = torch.tensor(shares, dtype=torch.float64)
    arches = [c.arch for c in ckpts]
    mixture = mixture_from_state(arches, cfg, tensors)
    mixed = grid_png(mixture.sample(64, torch.Generator().manual_seed(cfg.seed)))
    record = ModelRecord(
        model_kind=MINED, arch=architectures.to_dict(arches[0]), method=METHOD, steps=cfg.total_steps, seed=cfg.seed,
        created=storage.utc_now(), data=target_set.provenance(), metrics=metrics,
        extra={"sources": [{"source": s, "path": c.path, "arch": architectures.to_dict(c.arch),
                            "miner": cfg.miner_config(c.generator.latent_dim).to_dict(), "data": c.config.get("data")}
                           for s, c in zip(sources, ckpts)],
               "shares": shares, "true_shares": truth, "mining": cfg.to_dict()},
    )
    checkpoint.save_checkpoint(run.checkpoint_path(), record, extra=tensors, files={CHECKPOINT_SAMPLES: mixed})
    run.write_sample("mixed", mixed)
    for i, source in enumerate(mixture.sources):
        run.write_sample(f"source-{i}", sample_grid_png(source, n=64, seed=cfg.seed))
    storage.write_table(run.file(SHARES_FILE), shares_table(history, all_sources))
    run.write_sample("shares", mining_shares_png(history, all_sources, all_truth if all_sources != list(sources) else truth))
