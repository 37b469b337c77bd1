"""Reading, checking, copying and removing files and folders, local or ``s3://`` alike.

Every function follows published-directory pointers (:mod:`.published`); a missing file or an
unusable remote is a one-line :class:`~ganlode.orchestrator.errors.UserError` up front.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from typing import Any

from ..errors import UserError
from .fs import endpoint_label, filesystem, is_remote, local_path, redact
from .published import HIDDEN_PREFIX, is_hidden, read_pointer, resolve, resolve_physical
from .remote_errors import missing_bucket, translate_errors


def exists(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file, a published directory, or a directory with visible files."""
    path = str(path)
    if not is_remote(path):
        return os.path.exists(local_path(path))
    fs, p = filesystem(path)
    with translate_errors(path, "checking"):
        physical = resolve_physical(fs, p, include_self=False)
        try:
            if read_pointer(fs, physical):
                return True
            info = fs.info(physical)
        except FileNotFoundError:
            return False
        if info.get("type") != "directory":
            return True
        # a prefix holding only an unpublished version (a killed first write) is not there
        return any(not is_hidden(child) for child in fs.ls(physical, detail=False))


def is_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory (a prefix on S3), False for a file or nothing."""
    path = str(path)
    if not is_remote(path):
        return os.path.isdir(local_path(path))
    fs, p = filesystem(path)
    with translate_errors(path, "checking"):
        return bool(fs.isdir(resolve_physical(fs, p, include_self=True)))


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file at ``path``; a missing file is a :class:`UserError`."""
    path = str(path)
    if not is_remote(path):
        try:
            with open(local_path(path), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise UserError(f"{path} does not exist: check the path") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a directory, not a file: name a file inside it") from None
    fs, p = filesystem(path)
    try:
        with translate_errors(path, "reading"):
            return fs.cat_file(resolve_physical(fs, p, include_self=False))
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{redact(path)} does not exist (endpoint {endpoint_label()}): check the path") from None


def read_json(path: str | os.PathLike) -> Any:
    raw = read_bytes(path)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e.__class__.__name__}): restore or remove it") from None


def listdir(path: str | os.PathLike) -> list[str]:
    """Sorted names inside directory ``path`` (published content only); [] if it is missing."""
    path = str(path)
    if not is_remote(path):
        local = local_path(path)
        if not os.path.isdir(local):
            return []
        return sorted(n for n in os.listdir(local) if not n.startswith("."))  # staging, old copies
    fs, p = filesystem(path)
    with translate_errors(path, "listing"):
        physical = resolve_physical(fs, p, include_self=True)
        try:
            children = fs.ls(physical, detail=False)
        except FileNotFoundError:
            return []
    names = {c.rstrip("/").rsplit("/", 1)[-1] for c in children if c.rstrip("/") != physical}
    return sorted(n for n in names if not is_hidden(n))


def check_readable(path: str | os.PathLike) -> None:
    """Raise :class:`UserError` unless ``path`` exists and can be read (call it up front)."""
    path = str(path)
    if not is_remote(path):
        if not os.path.exists(local_path(path)):
            raise UserError(f"{path} does not exist: check the path")
        if not os.access(local_path(path), os.R_OK):
            raise UserError(f"{path} is not readable: check its permissions")
        return
    _check_bucket(path, "reading")
    if not exists(path):
        raise UserError(f"{redact(path)} does not exist (endpoint {endpoint_label()}): check the path")


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`UserError` unless files can be written under ``path`` (an ``--out``).

    On S3 this writes and deletes one tiny probe object, so it proves the credentials may
    write there; locally it checks the nearest existing ancestor and creates nothing.
    """
    path = str(path)
    if not is_remote(path):
        local = local_path(path)
        probe = local
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise UserError(f"cannot write under {path}: {probe} is a file, not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise UserError(f"cannot write under {path}: {probe} is not writable")
        return
    fs, p = filesystem(path)
    with translate_errors(path, "writing a probe object under"):
        probe = f"{resolve_physical(fs, p, include_self=True)}/{HIDDEN_PREFIX}probe-{uuid.uuid4().hex[:12]}"
        fs.pipe_file(probe, b"")
        with contextlib.suppress(FileNotFoundError, PermissionError):
            fs.rm_file(probe)


def _check_bucket(path: str, action: str) -> None:
    fs, p = filesystem(path)
    bucket = p.split("/", 1)[0]
    if not bucket:
        raise UserError(f"{redact(path)} names no bucket: use s3://BUCKET/PREFIX")
    with translate_errors(path, action):
        try:
            fs.info(bucket)
        except FileNotFoundError:
            raise missing_bucket(bucket) from None
        except PermissionError:
            pass  # a policy may grant a prefix but not the bucket itself: let the real request decide


def remove_file(path: str | os.PathLike) -> None:
    """Delete one file (one object on S3); a missing one is not an error."""
    path = str(path)
    if not is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local_path(path))
        return
    fs, p = filesystem(path)
    with translate_errors(path, "removing"), contextlib.suppress(FileNotFoundError):
        fs.rm_file(resolve_physical(fs, p, include_self=False))


def remove_tree(path: str | os.PathLike) -> None:
    """Best effort: delete a directory and everything in it (pruning must never fail a run)."""
    try:
        fs, p = filesystem(path)
        fs.rm(p, recursive=True)
    except Exception:  # noqa: BLE001 - pruning old checkpoints is best effort
        pass


def copy_tree(src: str, dst: str) -> None:
    """Copy a directory tree as stored (published-directory pointers included)."""
    if not is_remote(src):
        shutil.copytree(resolve(src), resolve(dst), dirs_exist_ok=True)
        return
    fs, s = filesystem(src)
    _, d = filesystem(dst)
    with translate_errors(src, "copying"):
        for path in fs.find(s):
            fs.copy(path, d + path[len(s):])
