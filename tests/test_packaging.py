"""The package list in pyproject.toml covers every subpackage, so a built wheel (the Docker image,
a non-editable install) holds the same modules the editable install imports."""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"ganlode"} | {
        "ganlode." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("methods", "actors", "orchestrator") for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"
