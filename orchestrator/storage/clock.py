"""Timestamps, as every record ganlode writes spells them (UTC, to the second)."""

from __future__ import annotations

import time


def utc_now() -> str:
    """Now, as ``2026-12-01T20:41:07Z``: the ``created``/``time`` stamp of every record."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def utc_stamp() -> str:
    """Now, as ``20261201T204107Z``: for names that sort in time (published versions)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
