"""What a command prints: ``--json`` (one JSON object on stdout, everything else on stderr) and
the keywords of the writing pipelines (``--force-unlock``).

Nothing here imports torch or Ray.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
from typing import Any, Callable, Iterator

from ..errors import UserError


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy scalars as Python numbers and non-finite floats as None
    (strict JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one JSON object on one line of stdout."""
    print(json.dumps(jsonable(obj), allow_nan=False, sort_keys=False), flush=True)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While it runs, everything written to stdout goes to stderr instead: Python's ``sys.stdout``
    and, where stdout is a real file descriptor, fd 1 too (Ray's and C libraries' prints), so
    that ``--json`` leaves exactly one JSON object on stdout."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = None
    try:
        out_fd, err_fd = sys.__stdout__.fileno(), sys.__stderr__.fileno()
        saved = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
    except (AttributeError, OSError, ValueError):  # no real descriptors (an embedding host)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, out_fd)
            os.close(saved)


def unlock_kwargs(fn: Callable[..., Any], force_unlock: bool) -> dict[str, bool]:
    """``{"force_unlock": True}`` for a pipeline entry point that takes the keyword, {} without the flag.

    Checked with :func:`inspect.signature`, so a command keeps working with a pipeline that does not
    take it (yet); asking for ``--force-unlock`` there is refused in one line rather than ignored.
    """
    if not force_unlock:
        return {}
    try:
        takes = "force_unlock" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        raise UserError(f"--force-unlock is not supported by {getattr(fn, '__qualname__', fn)} in this version")
    return {"force_unlock": True}


def finish_tracking(tracker: Any, run: str, scores: list[tuple[dict[str, Any], int, str]]) -> None:
    """Send a finished run's last ``(values, step, prefix)`` scores to ``--report-to``'s tracker, close it,
    and copy any files it staged into the run directory, under the run's lock like every write there."""
    from .. import storage, tracking
    from ..pipelines.ownership import owning

    with owning(run) if storage.exists(run) else contextlib.nullcontext():
        for values, step, prefix in scores:
            tracker.log_metrics(values, step, prefix)
        tracking.write_files(tracker, run)
        tracker.close()
