"""ganlode: adapt pretrained GANs to small image sets, from one source or many, on one machine or a Ray cluster.

The Python API (the CLI is a thin layer over it)::

    import ganlode

    run = ganlode.transfer(source="zoo:digits-0to4", target="mnist5k:7@25", method="freezed",
                           steps=200, out="runs/seven")
    run.metrics                   # {"fid": ..., "kmmd": ..., "mv": ...} on the test split
    images = run.sample(16)       # 16 x C x H x W in [-1, 1], from run.generator (an nn.Module)

Entry points: :func:`transfer`, :func:`mine`, :func:`tune`, :func:`evaluate`, :func:`load`.
Importing ``ganlode`` is cheap: torch and Ray load on the first call.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ganlode")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_API = ("transfer", "mine", "tune", "evaluate", "load", "TransferRun", "MineRun", "TuneRun", "Model")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module("ganlode.orchestrator.api"), name)
    raise AttributeError(f"module 'ganlode' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
