"""What every importer shares."""

from __future__ import annotations

from .. import storage
from ..errors import UserError


def check_new_out(out: str) -> None:
    """UserError unless ``out`` is a checkpoint directory that does not exist yet and can be written."""
    if storage.exists(out):
        raise UserError(f"--out {out} exists already: pass a new checkpoint directory (nothing is overwritten)")
    storage.check_writable(out)
