"""A trial's exact training state, so that a retried or restored trial continues where it was.

A Tune checkpoint must let a retried trial continue exactly: weights, optimizer moments, RNG
and step counters of every object the adapter holds. An adapter's own ``state_dict()`` is used
where it has one; otherwise a walk over the adapters of ``methods/`` (GANTrainer-based and
LatentFit) collects them. The state is saved with ``torch.save`` and read back with
``weights_only=True``: tensors, numbers and containers only, nothing is unpickled into code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ...methods import transfer as T

STATE_FILE = "state.pt"
META_FILE = "meta.json"
STATE_FORMAT = "ganlode-tune-state/1"


def _walk(obj: Any, prefix: str, out: dict[str, Any], seen: set[int]) -> None:
    for name, value in vars(obj).items():
        key = f"{prefix}{name}"
        if isinstance(value, torch.nn.Module):
            out[key] = {"module": value.state_dict()}
        elif isinstance(value, torch.optim.Optimizer):
            out[key] = {"optim": value.state_dict()}
        elif isinstance(value, torch.Generator):
            out[key] = {"rng": value.get_state()}
        elif isinstance(value, torch.Tensor) and name != "images":  # the target set never changes
            out[key] = {"tensor": value.detach().clone()}
        elif isinstance(value, (bool, int)) and name in ("steps_done", "joint"):
            out[key] = {"value": value}
        elif type(value).__module__.startswith("ganlode.methods") and hasattr(value, "__dict__") \
                and id(value) not in seen and not _is_config(value):
            seen.add(id(value))
            _walk(value, f"{key}.", out, seen)


def _is_config(value: Any) -> bool:
    return hasattr(value, "__dataclass_fields__")


def adapter_state(adapter: T.Adapter) -> dict[str, Any]:
    """The adapter's full training state (tensors, ints, optimizer and RNG states)."""
    if hasattr(adapter, "state_dict"):
        return {"own": adapter.state_dict()}  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    _walk(adapter, "", out, {id(adapter)})
    return out


def load_adapter_state(adapter: T.Adapter, state: dict[str, Any]) -> None:
    """Inverse of :func:`adapter_state` on a freshly built adapter of the same configuration."""
    if "own" in state:
        adapter.load_state_dict(state["own"])  # type: ignore[attr-defined]
        return
    # MineGAN switches to joint fine-tuning lazily, replacing G's optimizer: switch first.
    if state.get("joint", {}).get("value") and not getattr(adapter, "joint", True):
        adapter._start_joint()  # type: ignore[attr-defined]
    for key, entry in sorted(state.items(), key=lambda kv: kv[0].count(".")):
        *path, name = key.split(".")
        owner = adapter
        for part in path:
            owner = getattr(owner, part)
        target = getattr(owner, name)
        if "module" in entry:
            target.load_state_dict(entry["module"])
        elif "optim" in entry:
            target.load_state_dict(entry["optim"])
        elif "rng" in entry:
            target.set_state(entry["rng"])
        elif "tensor" in entry:
            with torch.no_grad():
                target.copy_(entry["tensor"])
        elif name != "joint":
            setattr(owner, name, entry["value"])


def save_trial_state(adapter: T.Adapter, directory: str, step: int, history: list[dict[str, float]],
                     wall_s: float = 0.0) -> None:
    """Write the adapter's state (``state.pt``) and the trial's progress (``meta.json``) into ``directory``."""
    torch.save({"format": STATE_FORMAT, "step": step, "state": adapter_state(adapter)},
               os.path.join(directory, STATE_FILE))
    write_meta(directory, step=step, history=history, wall_s=wall_s)


def write_meta(directory: str, **meta: Any) -> None:
    """``meta.json`` alone: a trial whose run keeps its own state (a multi-source trial)."""
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump({"format": STATE_FORMAT, **meta}, f)


def read_meta(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, META_FILE)) as f:
        return json.load(f)


def load_trial_state(adapter: T.Adapter, directory: str) -> tuple[int, list[dict[str, float]]]:
    """Restore a trial checkpoint into ``adapter``; returns (step, evaluation history)."""
    # weights_only: tensors, numbers and containers only; nothing is unpickled into code.
    blob = torch.load(os.path.join(directory, STATE_FILE), weights_only=True)
    if blob.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{directory}: not a {STATE_FORMAT} checkpoint")
    load_adapter_state(adapter, blob["state"])
    return int(blob["step"]), list(read_meta(directory).get("history", []))
