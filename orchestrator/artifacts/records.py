"""The two records every ``config.json`` holds: what a run did, or what a checkpoint is.

- :class:`RunRecord` is ``RUN/config.json``: ``run_kind`` says which command made the run
  (``transfer``, ``mine``, ``tune``, ``demo``, ``pretrain``);
- :class:`ModelRecord` is a checkpoint's ``config.json``: ``model_kind`` names the loader of
  its weights (``gan``, ``minegan``, ``mined``, ``mine-state``).

Both carry a ``format`` version. Version 1 of both used one key, ``kind``, for either meaning
(the shipped zoo still does): readers accept it, writers write the new keys. Besides the fields
named here, a record keeps every other key of its JSON (``extra``) and writes it back as is, so
the files stay flat and older readers of ``config.get(...)`` keep working.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UserError

RUN_FORMAT = "ganlode-run/2"
MODEL_FORMAT = "ganlode-checkpoint/2"
RUN_KINDS = ("transfer", "mine", "tune", "demo", "pretrain")
MODEL_KINDS = ("gan", "minegan", "mined", "mine-state")
LEGACY_KIND = "kind"  # format 1: a run kind or a model kind


class _Record:
    """Typed fields plus ``extra``; ``to_dict`` writes one flat JSON object."""

    KIND_KEY: ClassVar[str]
    FORMAT: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        typed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {**self.extra, **{k: v for k, v in typed.items() if v is not None}}  # type: ignore[attr-defined]

    def replace(self, **changes: Any):
        """A copy with ``changes``: typed fields are set, any other key goes into ``extra``."""
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        typed = {k: v for k, v in changes.items() if k in names}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in names}}  # type: ignore[attr-defined]
        return dataclasses.replace(self, **typed, extra=extra)  # type: ignore[type-var]

    @classmethod
    def _split(cls, raw: dict[str, Any], kind: str) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        rest = {k: v for k, v in raw.items() if k not in (LEGACY_KIND, cls.KIND_KEY)}
        return {**{k: v for k, v in rest.items() if k in names and k != "extra"},
                cls.KIND_KEY: kind, "extra": {k: v for k, v in rest.items() if k not in names}}


@dataclass(frozen=True)
class RunRecord(_Record):
    """``RUN/config.json``: the command, its inputs and settings, its status and final metrics."""

    KIND_KEY: ClassVar[str] = "run_kind"
    FORMAT: ClassVar[str] = RUN_FORMAT

    run_kind: str
    format: str = RUN_FORMAT
    command: str | None = None   # as a user would retype it; filled in when written
    status: str | None = None    # "running" until the result is complete, then "done"
    method: str | None = None
    target: str | None = None
    seed: int | None = None
    features: str | None = None
    data: dict[str, Any] | None = None     # the target draw's provenance
    metrics: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.run_kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {self.run_kind!r}; known: {', '.join(RUN_KINDS)}")

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config.json") -> "RunRecord":
        kind = raw.get(cls.KIND_KEY, raw.get(LEGACY_KIND))
        if kind not in RUN_KINDS:
            raise UserError(f"{where} records no ganlode run (run kind {kind!r}; known: {', '.join(RUN_KINDS)}): "
                            "pass a directory written by `ganlode transfer`, `mine`, `tune` or `demo`")
        return cls(**cls._split(raw, kind))


@dataclass(frozen=True)
class ModelRecord(_Record):
    """A checkpoint's ``config.json``: the architecture, the loader kind, and how the weights were made."""

    KIND_KEY: ClassVar[str] = "model_kind"
    FORMAT: ClassVar[str] = MODEL_FORMAT

    model_kind: str
    arch: dict[str, Any]
    format: str = MODEL_FORMAT
    method: str | None = None
    steps: int | None = None
    seed: int | None = None
    created: str | None = None
    data: dict[str, Any] | None = None     # the training data's provenance
    metrics: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config.json") -> "ModelRecord":
        """Version 1 (``kind``, or no kind at all: a plain GAN) or 2 (``model_kind``)."""
        if not isinstance(raw, dict) or "arch" not in raw:
            raise UserError(f"{where} has no 'arch' section: the checkpoint is incomplete; re-create it")
        kind = raw.get(cls.KIND_KEY, raw.get(LEGACY_KIND, "gan"))
        return cls(**cls._split(raw, kind))


def record_type(raw: Any) -> type[RunRecord] | type[ModelRecord] | None:
    """Which record a ``config.json`` holds, by what it says (never by which files lie beside it)."""
    if not isinstance(raw, dict):
        return None
    if "run_kind" in raw:
        return RunRecord
    if "model_kind" in raw:
        return ModelRecord
    kind = raw.get(LEGACY_KIND)
    if kind in RUN_KINDS:
        return RunRecord
    if kind in MODEL_KINDS or "arch" in raw:
        return ModelRecord
    return None
