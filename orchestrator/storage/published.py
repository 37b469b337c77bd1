"""Directories published atomically on S3, by pointer.

S3 has no rename of many objects, and overwriting a directory's files in place would leave a
mix of old and new after a kill. So a directory on S3 is published by pointer: the files go to
a fresh prefix ``DIR/.ganlode-versions/<version>/`` and then one small object
``DIR/.ganlode-current`` (a single atomic PUT) is overwritten to name that version. Until that
PUT the old pointer, hence the old complete directory, is what every reader sees; a writer
killed half-way leaves only an unreferenced prefix, removed by the next publish. The version
replaced stays until the next publish, so a reader that resolved the pointer just before the
flip can finish. "Upload everything, manifest last" was rejected: the new files would
overwrite the old ones before the manifest, which is exactly the mix to avoid.

Readers resolve pointers transparently: :func:`resolve` walks a path from the bucket down and
substitutes ``<dir>/.ganlode-versions/<version>`` at each directory that holds a pointer; the
reading and writing functions of this package all use it. Anything that reads such a directory
without this package (the AWS console, a Ray ``storage_path``) must go through :func:`resolve`
first. One writer per directory at a time.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import fsspec

from ..errors import UserError
from .clock import utc_now, utc_stamp
from .fs import filesystem, is_remote, local_path, redact, url_of
from .remote_errors import is_missing_bucket, translate_errors

log = logging.getLogger(__name__)

POINTER_NAME = ".ganlode-current"
VERSIONS_DIR = ".ganlode-versions"
HIDDEN_PREFIX = ".ganlode-"


def is_hidden(name: str) -> bool:
    """True for the pointer, the versions folder and probes: never part of a listing."""
    return name.rsplit("/", 1)[-1].startswith(HIDDEN_PREFIX)


def read_pointer(fs: fsspec.AbstractFileSystem, dir_path: str) -> dict | None:
    """The pointer record of a published directory, or None where there is none."""
    kwargs = {"max_concurrency": 1} if hasattr(fs, "max_concurrency") else {}
    try:
        raw = fs.cat_file(f"{dir_path}/{POINTER_NAME}", **kwargs)
    except FileNotFoundError as e:
        if is_missing_bucket(e):
            raise
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
        if isinstance(record, dict) and isinstance(record.get("version"), str):
            return record
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    raise UserError(f"{dir_path}/{POINTER_NAME} is corrupt: restore it or delete the directory")


def resolve_physical(fs: fsspec.AbstractFileSystem, path: str, include_self: bool) -> str:
    """``path`` (in ``fs``'s spelling) with every published directory on the way replaced by its
    current version; the last component too when ``include_self``."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return path
    current = parts[0]  # the bucket holds no pointer
    for i, part in enumerate(parts[1:], start=1):
        current = f"{current}/{part}"
        already_physical = i + 1 < len(parts) and parts[i + 1] == VERSIONS_DIR  # keeps resolve idempotent
        if (i < len(parts) - 1 or include_self) and not already_physical:
            try:
                record = read_pointer(fs, current)
            except FileNotFoundError:  # missing bucket: nothing to resolve, let the caller fail
                return path
            if record:
                current = f"{current}/{VERSIONS_DIR}/{record['version']}"
    return current


def resolve(path: str | os.PathLike) -> str:
    """The physical location of ``path``, following published-directory pointers.

    Local paths come back absolute and unchanged; remote ones as a URL.
    """
    path = str(path)
    if not is_remote(path):
        return local_path(path)
    fs, p = filesystem(path)
    with translate_errors(path, "resolving"):
        return url_of(path, resolve_physical(fs, p, include_self=True))


def publish_remote(stage: str, path: str) -> None:
    """Upload the local folder ``stage`` as a new version of ``path`` and flip the pointer to it."""
    fs, p = filesystem(path)
    with translate_errors(path, "publishing"):
        parent, _, name = p.rpartition("/")
        if not parent or not name:
            raise UserError(f"{redact(path)} names no directory inside a bucket: use s3://BUCKET/PREFIX")
        base = f"{resolve_physical(fs, parent, include_self=True)}/{name}"
        version = utc_stamp() + "-" + uuid.uuid4().hex[:8]
        prefix = f"{base}/{VERSIONS_DIR}/{version}"
        local_files, remote_files = [], []
        for root, _, files in os.walk(stage):
            for fname in files:
                local = os.path.join(root, fname)
                local_files.append(local)
                remote_files.append(f"{prefix}/{os.path.relpath(local, stage).replace(os.sep, '/')}")
        if local_files:
            fs.put(local_files, remote_files)
        previous = read_pointer(fs, base)
        record = {"version": version, "previous": previous["version"] if previous else None,
                  "published": utc_now(), "files": len(local_files)}
        # The commit point: one PUT of a small object.
        fs.pipe_file(f"{base}/{POINTER_NAME}", (json.dumps(record) + "\n").encode("utf-8"))
    _collect_garbage(fs, base, keep={version, record["previous"]})


def _collect_garbage(fs: fsspec.AbstractFileSystem, base: str, keep: set[str | None]) -> None:
    """Best effort: drop versions other than ``keep`` and unpublished leftovers under ``base``."""
    try:
        stale = [v for v in fs.ls(f"{base}/{VERSIONS_DIR}", detail=False)
                 if v.rstrip("/").rsplit("/", 1)[-1] not in keep]
        # plain objects from before the directory was first published are unreachable now
        stale += [c for c in fs.ls(base, detail=False) if not is_hidden(c) and c.rstrip("/") != base]
        if stale:
            fs.rm(stale, recursive=True)
    except Exception as e:  # noqa: BLE001 - garbage collection must never fail a publish
        log.debug("leaving stale versions under %s (%s)", base, e.__class__.__name__)
