"""Resumable training state: one format for ``transfer --resume`` and for Tune trials.

The state is the adapter's own ``Adapter.state_dict()`` (weights, optimizer moments, RNG states,
step counters, phase) plus the progress the pipeline keeps (the step, the evaluation history,
the best validation score so far). It is written with ``torch.save`` and read back with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, so nothing is
unpickled into code. Published models use safetensors instead (``checkpoint.py``); this split
is the one Hugging Face uses.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from ...methods.base import Adapter
from .. import storage
from ..errors import UserError

STATE_FORMAT = "ganlode-training-state/1"


def state_bytes(adapter: Adapter, step: int, **progress: Any) -> bytes:
    """The serialised state of ``adapter`` after ``step`` steps, with ``progress`` (JSON-like values)."""
    if adapter.steps_done != step:
        raise ValueError(f"the adapter has taken {adapter.steps_done} steps, not {step}")
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "step": step, "adapter": adapter.state_dict(), "progress": progress}, buf)
    return buf.getvalue()


def save_state(path: str, adapter: Adapter, step: int, **progress: Any) -> None:
    """Write the state file at ``path`` (local or s3://) atomically."""
    storage.write_bytes_atomic(path, state_bytes(adapter, step, **progress))


def read_state(path: str, fmt: str = STATE_FORMAT,
               fix: str = "the run cannot be resumed from it: start it again with a new --out") -> dict[str, Any]:
    """The state written by :func:`save_state` (``format``, ``step``, ``adapter``, ``progress``), or another
    ``torch.save``d state dict of format ``fmt``; a file that is unreadable or of another format is a
    UserError whose remedy is ``fix``."""
    raw = storage.read_bytes(path)
    try:
        blob = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as e:  # a truncated or foreign file; weights_only refuses any code
        raise UserError(f"{path} is not a readable training state ({str(e).splitlines()[0][:80]}); {fix}") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise UserError(f"{path} is not a {fmt} file; {fix}")
    return blob


def load_state(path: str, adapter: Adapter) -> tuple[int, dict[str, Any]]:
    """Restore the state at ``path`` into a freshly built ``adapter``; returns (step, progress)."""
    blob = read_state(path)
    adapter.load_state_dict(blob["adapter"])
    return int(blob["step"]), dict(blob.get("progress") or {})
