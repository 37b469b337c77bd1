"""A trial's exact training state, so that a retried or restored trial continues where it was.

A Tune checkpoint must let a retried trial continue exactly: the adapter's own
``Adapter.state_dict()`` (weights, optimizer moments, RNG states, step counters, phase), in the
one training-state format of :mod:`~ganlode.orchestrator.artifacts.training_state` (``torch.save``,
read back with ``weights_only=True``: nothing is unpickled into code).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ...methods.base import Adapter
from ..artifacts import training_state

STATE_FILE = "state.pt"
META_FILE = "meta.json"
STATE_FORMAT = training_state.STATE_FORMAT


def save_trial_state(adapter: Adapter, directory: str, step: int, history: list[dict[str, float]],
                     wall_s: float = 0.0) -> None:
    """Write the adapter's state (``state.pt``) and the trial's progress (``meta.json``) into ``directory``."""
    with open(os.path.join(directory, STATE_FILE), "wb") as f:
        f.write(training_state.state_bytes(adapter, step))
    write_meta(directory, step=step, history=history, wall_s=wall_s)


def write_meta(directory: str, **meta: Any) -> None:
    """``meta.json`` alone: a trial whose run keeps its own state (a multi-source trial)."""
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump({"format": STATE_FORMAT, **meta}, f)


def read_meta(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, META_FILE)) as f:
        return json.load(f)


def load_trial_state(adapter: Adapter, directory: str) -> tuple[int, list[dict[str, float]]]:
    """Restore a trial checkpoint into ``adapter``; returns (step, evaluation history)."""
    step, _ = training_state.load_state(os.path.join(directory, STATE_FILE), adapter)
    return step, list(read_meta(directory).get("history", []))
