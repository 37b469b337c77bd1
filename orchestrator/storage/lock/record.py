"""The holder record of a run lock, and the one-line messages made from it.

The record (JSON): ``format``, ``host`` (``socket.gethostname()``), ``pid``, ``since`` (UTC,
``YYYY-MM-DDTHH:MM:SSZ``), ``command``, ``token`` (random); on S3 also ``lease_s`` and
``expires`` (the holder's clock, for people; expiry itself is judged by the server's clock).
Every notice (a stale lock taken over, a forced removal, a lost lock) is ONE line on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from ...errors import UserError

LOCK_FILE = ".ganlode-lock"
FORMAT = "ganlode-lock/1"
ATTEMPTS = 8  # re-reads of a lock that keeps changing under us before giving up


def notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clean(value: Any, limit: int = 200) -> str:
    """A record field as a message may show it: one line, printable, bounded."""
    text = " ".join(str(value).split()) if value is not None else "?"
    text = "".join(c if c.isprintable() else "?" for c in text) or "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def who(record: dict | None) -> str:
    if not record:
        return "an unknown holder (unreadable record)"
    return f"pid {clean(record.get('pid'))} on {clean(record.get('host'))} since {clean(record.get('since'))}"


def busy(run: str, record: dict | None) -> UserError:
    """The refusal of a second writer: one line naming the holder."""
    if not record:
        return UserError(f"{run} is being written by another process (its lock record is unreadable); wait for "
                         "it to finish, or pass --force-unlock if that process is gone")
    return UserError(
        f"{run} is being written by pid {clean(record.get('pid'))} on host {clean(record.get('host'))} since "
        f"{clean(record.get('since'))} (command: {clean(record.get('command'))}); wait for it to finish, or pass "
        "--force-unlock if that process is gone")


def parse(raw: bytes) -> dict | None:
    """A holder record, or None for an empty or unreadable one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else None


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
