"""The model zoo: small source GANs shipped as package data, named ``zoo:NAME`` wherever a
checkpoint path is taken. ``python -m ganlode.orchestrator.tools.build_zoo`` rebuilds them."""

from __future__ import annotations

import os
from importlib import resources

from ..errors import UserError
from .rundir import CONFIG_FILE

PREFIX = "zoo:"


def zoo_root() -> str:
    return str(resources.files("ganlode.orchestrator") / "zoo")


def zoo_names() -> list[str]:
    root = zoo_root()
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, CONFIG_FILE)))


def resolve(path: str) -> str:
    """Turn ``zoo:NAME`` into the shipped checkpoint's directory; leave other paths alone."""
    if path.startswith(PREFIX):
        name = path[len(PREFIX):]
        names = zoo_names()
        if name not in names:
            raise UserError(f"unknown zoo model {name!r}; known: {', '.join(names) or 'none'} (see `ganlode zoo`)")
        return os.path.join(zoo_root(), name)
    return path
