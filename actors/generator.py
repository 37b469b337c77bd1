"""``GeneratorActor``: one source generator G_i and its miner M_i on one device (a GPU when the
actor was given one).

It hosts a :class:`ganlode.methods.multisource.MinedSource` and adds no maths: it turns u into
x_i = G_i(M_i(u)) (keeping the graph), back-propagates the dL/dx_i it is sent, and saves its
whole state (weights, BatchNorm statistics, optimizer moments, step count) to a local
safetensors file at every snapshot. Ray re-runs ``__init__`` when it restarts a dead actor
(``max_restarts``), and ``__init__`` reloads that file, so a restarted actor is at the last
snapshot; the coordinator checks step counts and replays from there.

Within a run of steps one call per step does both halves: :meth:`apply_and_sample` applies step
t-1's dL/dx_i and samples step t. A gradient is applied only by the process that sampled its
step (a restarted actor holds no graph, and answers with its step count instead).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import ray
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from ..methods.multisource import MultiSourceConfig, build_source
from ._runtime import keep_freed_memory, set_threads, torch_device, write_local_atomic
from .arch import unpack


class GeneratorActor:
    """Source ``index`` of a multi-source mining run.

    Args:
        index: the source's position (seeds its miner).
        arch: the source's architecture config as a dict (``architectures.to_dict``: any registered one).
        generator_state: the source generator's weights, or a one-element list holding an
            ObjectRef to them that the driver keeps alive. The list form keeps large tensors out
            of the constructor's own arguments, which Ray may evict before a restart
            (ray-project/ray#53727).
        cfg: the run's MultiSourceConfig as a dict.
        state_path: local file that :meth:`save` keeps current; reloaded here if present.
        threads: torch intra-op threads of this process.
        files: the files the architecture rebuilds from (a TorchScript archive), or a one-element
            list holding an ObjectRef to them (:func:`ganlode.actors.arch.pack`); None for most.
    """

    def __init__(self, index: int, arch: dict, generator_state: dict[str, torch.Tensor] | list, cfg: dict,
                 state_path: str | None = None, threads: int = 1, files: list | dict[str, bytes] | None = None):
        set_threads(threads)
        keep_freed_memory()
        if isinstance(generator_state, list):
            generator_state = ray.get(generator_state[0], timeout=300)
        self.index = index
        self.device = torch_device()
        self.state_path = state_path
        self.source = build_source(unpack(arch, files), generator_state, MultiSourceConfig.from_dict(cfg),
                                   index, self.device)
        self.loaded_from: str | None = None
        if state_path and os.path.exists(state_path):
            self.source.load_state_tensors(load_file(state_path, device=str(self.device)))
            self.loaded_from = state_path
        self.dirty = False  # True once the state moved past the last save/load
        self.sampled: int | None = None  # the step whose graph this process holds
        self.calls: Counter[str] = Counter()

    def sample(self, u: torch.Tensor, step: int) -> tuple[int, torch.Tensor]:
        """(steps done before this call, x_i for step ``step`` on the CPU); the graph stays here.

        x_i is empty unless ``step - 1`` steps were done (a restarted actor is behind: the
        coordinator rolls back).
        """
        self.calls["sample"] += 1
        return self._sample(u, step)

    def apply_gradient(self, grad_x: torch.Tensor, step: int) -> int:
        """Back-propagate dL/dx_i of step ``step`` and step the optimizers; returns steps done.

        Nothing is applied unless this process sampled step ``step`` and has not applied it yet.
        """
        self.calls["apply_gradient"] += 1
        self._apply(grad_x, step)
        return self.source.steps_done

    def apply_and_sample(self, grad_x: torch.Tensor, u: torch.Tensor, step: int) -> tuple[int, torch.Tensor]:
        """:meth:`apply_gradient` of step ``step - 1``, then :meth:`sample` of step ``step``, in one call.

        Returns (steps done before the sample, x_i); x_i is empty, and nothing sampled, unless the
        gradient was applied.
        """
        self.calls["apply_and_sample"] += 1
        if not self._apply(grad_x, step - 1):
            return self.source.steps_done, torch.empty(0)
        return self._sample(u, step)

    def _sample(self, u: torch.Tensor, step: int) -> tuple[int, torch.Tensor]:
        done = self.source.steps_done
        if done != step - 1:
            return done, torch.empty(0)
        self.dirty = True
        x = self.source.sample(u.to(self.device), step)
        self.sampled = step
        return done, x.detach().cpu()

    def _apply(self, grad_x: torch.Tensor, step: int) -> bool:
        """Apply step ``step``'s gradient if this process holds that step's graph; whether it did."""
        if self.sampled != step or self.source.steps_done != step - 1:
            return False
        self.dirty = True
        self.source.apply_gradient(grad_x.to(self.device))
        self.sampled = None
        return True

    def save(self) -> dict[str, torch.Tensor]:
        """Write the state to ``state_path`` (if any) and return it (CPU tensors)."""
        tensors = self.source.state_tensors()
        if self.state_path:
            write_local_atomic(self.state_path, st_save({k: v.contiguous() for k, v in tensors.items()}))
        self.dirty = False
        return tensors

    def load_state(self, tensors: dict[str, torch.Tensor]) -> int:
        self.source.load_state_tensors({k: v.to(self.device) for k, v in tensors.items()})
        self.dirty = False
        self.sampled = None
        return self.source.steps_done

    def discard_state_file(self) -> None:
        if self.state_path and os.path.exists(self.state_path):
            os.unlink(self.state_path)

    def info(self) -> dict[str, Any]:
        """Where and how this actor runs, and where its state stands."""
        ctx = ray.get_runtime_context()
        return {
            "index": self.index,
            "pid": os.getpid(),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "gpu_ids": [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "steps_done": self.source.steps_done,
            "dirty": self.dirty,
            "loaded_from": self.loaded_from,
            "calls": dict(self.calls),
        }
