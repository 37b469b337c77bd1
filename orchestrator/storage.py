"""Paths that may be local or ``s3://bucket/prefix``: one filesystem factory, atomic writes.

Everything in ganlode that reads or writes a file goes through here, so that every ``--out``,
dataset and checkpoint path works the same on local disk and on S3.

Filesystems. ``filesystem(path)`` is the one factory: the local disk, or s3fs for ``s3://``
with the endpoint taken from :func:`configure` (the CLI's ``--s3-endpoint``), else
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS. Credentials come only from the
usual AWS sources (environment, profile, instance role); they never pass through ganlode.
Timeouts and retries are kept low so that an unreachable endpoint fails in seconds.
``pyarrow_filesystem(path)`` wraps the same s3fs object for pyarrow and Ray Tune.

Atomic writes. A failed or killed run must never leave a half-written checkpoint or table
where a complete one stood.

* One file (``write_bytes_atomic``): locally, write a temporary file beside it and rename it
  over; on S3 a single PUT (or a multipart upload, completed in one call) is atomic already.
* A directory (``atomic_dir``): locally, the staging directory beside the target is swapped
  with it in one ``renameat2(RENAME_EXCHANGE)`` call (two renames where that call is missing).
  S3 has no rename of many objects, and overwriting the files in place would leave a mix of
  old and new after a kill. So a directory on S3 is published by pointer: the files go to a
  fresh prefix ``DIR/.ganlode-versions/<version>/`` and then one small object
  ``DIR/.ganlode-current`` (a single atomic PUT) is overwritten to name that version. Until
  that PUT the old pointer, hence the old complete directory, is what every reader sees; a
  writer killed half-way leaves only an unreferenced prefix, removed by the next publish. The
  version replaced stays until the next publish, so a reader that resolved the pointer just
  before the flip can finish. "Upload everything, manifest last" was rejected: the new files
  would overwrite the old ones before the manifest, which is exactly the mix to avoid.

Readers resolve pointers transparently: :func:`resolve` walks a path from the bucket down and
substitutes ``<dir>/.ganlode-versions/<version>`` at each directory that holds a pointer, and
``exists``, ``read_bytes``, ``listdir``, ``write_bytes_atomic`` and ``pyarrow_filesystem`` all
use it. Anything that reads such a directory without this module (the AWS console, a Ray
``storage_path``) must go through :func:`resolve` first. One writer per directory at a time.

Errors. Every remote failure becomes :class:`UserError` with one line naming the path, the
endpoint and the fix: unreachable endpoint, missing bucket, missing or rejected credentials,
access denied. The messages carry no credentials and no server text (an S3
``SignatureDoesNotMatch`` reply, for one, echoes the access key id).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import fsspec

from .errors import UserError

log = logging.getLogger(__name__)

POINTER_NAME = ".ganlode-current"
VERSIONS_DIR = ".ganlode-versions"
_HIDDEN_PREFIX = ".ganlode-"

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 15
# botocore "standard" mode: total attempts, first one included (two retries); s3fs's own
# retry loop is set to one pass so that the two do not multiply.
BOTOCORE_MAX_ATTEMPTS = 3

_settings: dict[str, str | None] = {"s3_endpoint": None}


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; published ones get the usual modes.
_UMASK = _read_umask()


def configure(s3_endpoint: str | None = None) -> None:
    """Set process-wide storage options (the CLI calls this for ``--s3-endpoint``).

    Also drops cached S3 connections, so changed credentials in the environment apply.

    Args:
        s3_endpoint: URL of an S3-compatible endpoint (MinIO, Ceph, a test server); None
            falls back to ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, then to AWS itself.
    """
    if s3_endpoint is not None and urlsplit(s3_endpoint).scheme not in ("http", "https"):
        raise UserError(f"--s3-endpoint must be an http(s):// URL, got {_redact(s3_endpoint)!r}")
    _settings["s3_endpoint"] = s3_endpoint or None
    if _S3FS_CLASS is not None:
        _S3FS_CLASS.clear_instance_cache()  # changed settings or credentials take effect now


def s3_endpoint() -> str | None:
    """The S3 endpoint in effect, or None for AWS's own."""
    return (
        _settings["s3_endpoint"]
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def is_remote(path: str | os.PathLike) -> bool:
    """True for ``s3://`` (and other URL-style) paths; ``file://`` counts as local."""
    path = str(path)
    return "://" in path and not path.startswith("file://")


def _local(path: str | os.PathLike) -> str:
    path = str(path)
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


_S3FS_CLASS: type | None = None


def _s3fs_class() -> type:
    """The s3fs class, built on first use so that importing this module stays cheap."""
    global _S3FS_CLASS
    if _S3FS_CLASS is None:
        import s3fs

        class BoundedS3FileSystem(s3fs.S3FileSystem):
            """s3fs with a single pass of its own retry loop (botocore does the retrying)."""

            retries = 1

        BoundedS3FileSystem.__module__ = __name__
        BoundedS3FileSystem.__qualname__ = "BoundedS3FileSystem"
        _S3FS_CLASS = BoundedS3FileSystem
    return _S3FS_CLASS


def __getattr__(name: str) -> Any:
    # PEP 562: pickles (Ray ships filesystems to workers) name the class by module attribute.
    if name == "BoundedS3FileSystem":
        return _s3fs_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``path`` and the path as that filesystem spells it.

    The path is physical: pointers of atomically published directories are not resolved
    (see :func:`resolve`).
    """
    path = str(path)
    if not is_remote(path):
        return fsspec.filesystem("file"), _local(path)
    scheme = urlsplit(path).scheme
    if scheme in ("s3", "s3a"):
        fs = _s3fs_class()(
            endpoint_url=s3_endpoint(),
            config_kwargs={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "read_timeout": READ_TIMEOUT_S,
                "retries": {"total_max_attempts": BOTOCORE_MAX_ATTEMPTS, "mode": "standard"},
            },
            use_listings_cache=False,  # another process may publish at any time
        )
        return fs, fs._strip_protocol(path).rstrip("/")
    try:
        fs, stripped = fsspec.core.url_to_fs(path)
    except (ValueError, ImportError) as e:
        raise UserError(f"cannot open {path}: unsupported URL scheme {scheme!r} ({e.__class__.__name__})") from None
    return fs, stripped.rstrip("/")


def pyarrow_filesystem(path: str | os.PathLike) -> tuple[Any, str]:
    """A ``pyarrow.fs.FileSystem`` and the resolved path in its spelling.

    For Ray Tune (``RunConfig(storage_path=p, storage_filesystem=fs)``) and ``pyarrow.parquet``.
    The S3 one wraps the same s3fs object as :func:`filesystem`, so endpoint, timeouts and
    credentials match, and it pickles to Ray workers with its endpoint.
    """
    import pyarrow.fs as pafs

    if not is_remote(path):
        return pafs.LocalFileSystem(), _local(path)
    fs, _ = filesystem(path)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), filesystem(resolve(path))[1]


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and ``os.path.join`` for local paths."""
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p.strip("/")]])
    return os.path.join(base, *parts)


# ---------------------------------------------------------------- remote errors


def _redact(url: str) -> str:
    """A URL without user info, query or fragment: safe for a message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url.split("?")[0]


def _endpoint_label() -> str:
    ep = s3_endpoint()
    return _redact(ep) if ep else "AWS S3"


def _error_code(e: BaseException) -> str | None:
    for exc in (e, e.__cause__, e.__context__):
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
    return None


def _is_missing_bucket(e: BaseException) -> bool:
    return _error_code(e) == "NoSuchBucket" or "bucket does not exist" in str(e).lower()


def _bucket(url: str) -> str:
    return urlsplit(url).netloc


@contextlib.contextmanager
def translate_errors(url: str, action: str) -> Iterator[None]:
    """Turn a remote failure inside the block into a one-line :class:`UserError`.

    For code that calls :func:`filesystem`'s object directly. ``action`` is a gerund
    ("reading", "listing"). A missing key is re-raised as ``FileNotFoundError`` for the caller
    to judge; a missing bucket is a UserError. The message never quotes the server's text.
    """
    if not is_remote(url):
        yield
        return
    import botocore.exceptions as bex

    where = f"{_redact(url)} (endpoint {_endpoint_label()})"
    try:
        yield
    except (UserError, IsADirectoryError, NotADirectoryError):
        raise
    except FileNotFoundError as e:
        if _is_missing_bucket(e):
            raise UserError(
                f"bucket {_bucket(url)!r} does not exist at {_endpoint_label()} while {action} "
                f"{_redact(url)}: create it, or fix the path or --s3-endpoint"
            ) from None
        raise
    except (bex.NoCredentialsError, bex.PartialCredentialsError, bex.CredentialRetrievalError,
            bex.ProfileNotFound) as e:
        raise UserError(
            f"no usable AWS credentials ({e.__class__.__name__}) while {action} {where}: set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials"
        ) from None
    except PermissionError as e:
        code = _error_code(e) or "AccessDenied"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            hint = "the credentials were rejected: check or refresh them"
        else:
            hint = "check that your AWS credentials may use this bucket and prefix"
        raise UserError(f"access denied ({code}) while {action} {where}: {hint}") from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionError,
            bex.HTTPClientError, TimeoutError, ConnectionError) as e:
        raise UserError(
            f"cannot reach the S3 endpoint {_endpoint_label()} ({e.__class__.__name__}) while "
            f"{action} {_redact(url)}: check --s3-endpoint / AWS_ENDPOINT_URL and the network"
        ) from None
    except bex.BotoCoreError as e:
        raise UserError(f"S3 request failed ({e.__class__.__name__}) while {action} {where}") from None
    except OSError as e:
        if e.__class__.__name__.startswith("ClientConnect") or "connect" in e.__class__.__name__.lower():
            raise UserError(
                f"cannot reach the S3 endpoint {_endpoint_label()} ({e.__class__.__name__}) while "
                f"{action} {_redact(url)}: check --s3-endpoint / AWS_ENDPOINT_URL and the network"
            ) from None
        code = _error_code(e) or e.__class__.__name__
        raise UserError(f"S3 request failed ({code}) while {action} {where}") from None
    except ValueError as e:
        raise UserError(f"invalid remote path {_redact(url)} ({e.__class__.__name__}): use s3://BUCKET/KEY") from None


# ---------------------------------------------------------------- pointer resolution


def _hidden(name: str) -> bool:
    return name.rsplit("/", 1)[-1].startswith(_HIDDEN_PREFIX)


def _read_pointer(fs: fsspec.AbstractFileSystem, dir_path: str) -> dict | None:
    """The pointer record of a published directory, or None where there is none."""
    kwargs = {"max_concurrency": 1} if hasattr(fs, "max_concurrency") else {}
    try:
        raw = fs.cat_file(f"{dir_path}/{POINTER_NAME}", **kwargs)
    except FileNotFoundError as e:
        if _is_missing_bucket(e):
            raise
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
        if isinstance(record, dict) and isinstance(record.get("version"), str):
            return record
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    raise UserError(f"{dir_path}/{POINTER_NAME} is corrupt: restore it or delete the directory")


def _resolve_physical(fs: fsspec.AbstractFileSystem, path: str, include_self: bool) -> str:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return path
    current = parts[0]  # the bucket holds no pointer
    for i, part in enumerate(parts[1:], start=1):
        current = f"{current}/{part}"
        already_physical = i + 1 < len(parts) and parts[i + 1] == VERSIONS_DIR  # keeps resolve idempotent
        if (i < len(parts) - 1 or include_self) and not already_physical:
            try:
                record = _read_pointer(fs, current)
            except FileNotFoundError:  # missing bucket: nothing to resolve, let the caller fail
                return path
            if record:
                current = f"{current}/{VERSIONS_DIR}/{record['version']}"
    return current


def _url(path: str, fs_path: str) -> str:
    return f"{urlsplit(path).scheme}://{fs_path}"


def resolve(path: str | os.PathLike) -> str:
    """The physical location of ``path``, following published-directory pointers.

    Local paths come back absolute and unchanged; remote ones as a URL.
    """
    path = str(path)
    if not is_remote(path):
        return _local(path)
    fs, p = filesystem(path)
    with translate_errors(path, "resolving"):
        return _url(path, _resolve_physical(fs, p, include_self=True))


# ---------------------------------------------------------------- reading


def exists(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file, a published directory, or a directory with visible files."""
    path = str(path)
    if not is_remote(path):
        return os.path.exists(_local(path))
    fs, p = filesystem(path)
    with translate_errors(path, "checking"):
        physical = _resolve_physical(fs, p, include_self=False)
        try:
            if _read_pointer(fs, physical):
                return True
            info = fs.info(physical)
        except FileNotFoundError:
            return False
        if info.get("type") != "directory":
            return True
        # a prefix holding only an unpublished version (a killed first write) is not there
        return any(not _hidden(child) for child in fs.ls(physical, detail=False))


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file at ``path``; a missing file is a :class:`UserError`."""
    path = str(path)
    if not is_remote(path):
        try:
            with open(_local(path), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise UserError(f"{path} does not exist: check the path") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a directory, not a file: name a file inside it") from None
    fs, p = filesystem(path)
    try:
        with translate_errors(path, "reading"):
            return fs.cat_file(_resolve_physical(fs, p, include_self=False))
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{_redact(path)} does not exist (endpoint {_endpoint_label()}): check the path") from None


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
        local = _local(path)
        if not os.path.isdir(local):
            return []
        return sorted(n for n in os.listdir(local) if not n.startswith("."))  # staging, old copies
    fs, p = filesystem(path)
    with translate_errors(path, "listing"):
        physical = _resolve_physical(fs, p, include_self=True)
        try:
            children = fs.ls(physical, detail=False)
        except FileNotFoundError:
            return []
    names = {c.rstrip("/").rsplit("/", 1)[-1] for c in children if c.rstrip("/") != physical}
    return sorted(n for n in names if not _hidden(n))


def check_readable(path: str | os.PathLike) -> None:
    """Raise :class:`UserError` unless ``path`` exists and can be read (call it up front)."""
    path = str(path)
    if not is_remote(path):
        if not os.path.exists(_local(path)):
            raise UserError(f"{path} does not exist: check the path")
        if not os.access(_local(path), os.R_OK):
            raise UserError(f"{path} is not readable: check its permissions")
        return
    _check_bucket(path, "reading")
    if not exists(path):
        raise UserError(f"{_redact(path)} does not exist (endpoint {_endpoint_label()}): check the path")


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`UserError` unless files can be written under ``path`` (an ``--out``).

    On S3 this writes and deletes one tiny probe object, so it proves the credentials may
    write there; locally it checks the nearest existing ancestor and creates nothing.
    """
    path = str(path)
    if not is_remote(path):
        local = _local(path)
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
        probe = f"{_resolve_physical(fs, p, include_self=True)}/{_HIDDEN_PREFIX}probe-{uuid.uuid4().hex[:12]}"
        fs.pipe_file(probe, b"")
        with contextlib.suppress(FileNotFoundError, PermissionError):
            fs.rm_file(probe)


def _check_bucket(path: str, action: str) -> None:
    fs, p = filesystem(path)
    bucket = p.split("/", 1)[0]
    if not bucket:
        raise UserError(f"{_redact(path)} names no bucket: use s3://BUCKET/PREFIX")
    with translate_errors(path, action):
        try:
            fs.info(bucket)
        except FileNotFoundError:
            raise UserError(
                f"bucket {bucket!r} does not exist at {_endpoint_label()}: create it, or fix the "
                "path or --s3-endpoint"
            ) from None
        except PermissionError:
            pass  # a policy may grant a prefix but not the bucket itself: let the real request decide


# ---------------------------------------------------------------- writing


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers see either the old file or the whole new one."""
    path = str(path)
    if not is_remote(path):
        p = _local(path)
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(p) or ".", prefix=".tmp-")
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    fs, p = filesystem(path)
    with translate_errors(path, "writing"):
        # One PUT (or one completed multipart upload): the object appears whole or not at all.
        fs.pipe_file(_resolve_physical(fs, p, include_self=False), data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a local staging directory; on success publish it as ``path`` in one step.

    If the ``with`` body raises (or the process dies), ``path`` keeps its previous complete
    content. Locally the staging directory is swapped with the target; on S3 its files are
    uploaded to a fresh version prefix and the pointer is flipped last (module docstring).
    """
    path = str(path)
    if not is_remote(path):
        target = _local(path)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.tmp-")
        os.chmod(stage, 0o777 & ~_UMASK)
        try:
            yield Path(stage)
            _publish_local(stage, target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return
    with tempfile.TemporaryDirectory(prefix="ganlode-stage-") as stage:
        yield Path(stage)
        _publish_remote(stage, path)


def _publish_local(stage: str, target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target) and _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # ``stage`` now holds the old content
        return
    old = None
    if os.path.lexists(target):
        old = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(stage, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one system call (Linux ``renameat2``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _publish_remote(stage: str, path: str) -> None:
    fs, p = filesystem(path)
    with translate_errors(path, "publishing"):
        parent, _, name = p.rpartition("/")
        if not parent or not name:
            raise UserError(f"{_redact(path)} names no directory inside a bucket: use s3://BUCKET/PREFIX")
        base = f"{_resolve_physical(fs, parent, include_self=True)}/{name}"
        version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        prefix = f"{base}/{VERSIONS_DIR}/{version}"
        local_files, remote_files = [], []
        for root, _, files in os.walk(stage):
            for fname in files:
                local = os.path.join(root, fname)
                local_files.append(local)
                remote_files.append(f"{prefix}/{os.path.relpath(local, stage).replace(os.sep, '/')}")
        if local_files:
            fs.put(local_files, remote_files)
        previous = _read_pointer(fs, base)
        record = {"version": version, "previous": previous["version"] if previous else None,
                  "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "files": len(local_files)}
        # The commit point: one PUT of a small object.
        fs.pipe_file(f"{base}/{POINTER_NAME}", (json.dumps(record) + "\n").encode("utf-8"))
    _collect_garbage(fs, base, keep={version, record["previous"]})


def _collect_garbage(fs: fsspec.AbstractFileSystem, base: str, keep: set[str | None]) -> None:
    """Best effort: drop versions other than ``keep`` and unpublished leftovers under ``base``."""
    try:
        stale = [v for v in fs.ls(f"{base}/{VERSIONS_DIR}", detail=False)
                 if v.rstrip("/").rsplit("/", 1)[-1] not in keep]
        # plain objects from before the directory was first published are unreachable now
        stale += [c for c in fs.ls(base, detail=False) if not _hidden(c) and c.rstrip("/") != base]
        if stale:
            fs.rm(stale, recursive=True)
    except Exception as e:  # noqa: BLE001 - garbage collection must never fail a publish
        log.debug("leaving stale versions under %s (%s)", base, e.__class__.__name__)
