"""The one filesystem factory: the local disk, or s3fs for ``s3://`` with a configurable endpoint.

``filesystem(path)`` gives the fsspec filesystem of any path. The S3 endpoint comes from
:func:`configure` (the CLI's ``--s3-endpoint``), else ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, else AWS. Credentials come only from the usual AWS sources (environment,
profile, instance role); they never pass through ganlode. Timeouts and retries are kept low so
that an unreachable endpoint fails in seconds.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import fsspec

from ..errors import UserError

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 15
# botocore "standard" mode: total attempts, first one included (two retries); s3fs's own
# retry loop is set to one pass so that the two do not multiply.
BOTOCORE_MAX_ATTEMPTS = 3

_settings: dict[str, str | None] = {"s3_endpoint": None}
_S3FS_CLASS: type | None = None


def configure(s3_endpoint: str | None = None) -> None:
    """Set process-wide storage options (the CLI calls this for ``--s3-endpoint``).

    Also drops cached S3 connections, so changed credentials in the environment apply.

    Args:
        s3_endpoint: URL of an S3-compatible endpoint (MinIO, Ceph, a test server); None
            falls back to ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, then to AWS itself.
    """
    if s3_endpoint is not None and urlsplit(s3_endpoint).scheme not in ("http", "https"):
        raise UserError(f"--s3-endpoint must be an http(s):// URL, got {redact(s3_endpoint)!r}")
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


def local_path(path: str | os.PathLike) -> str:
    """A local path (or ``file://`` URL) as an absolute path, ``~`` expanded."""
    path = str(path)
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and ``os.path.join`` for local paths."""
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p.strip("/")]])
    return os.path.join(base, *parts)


def redact(url: str) -> str:
    """A URL without user info, query or fragment: safe for a message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url.split("?")[0]


def endpoint_label() -> str:
    """The endpoint in effect, as a message names it."""
    ep = s3_endpoint()
    return redact(ep) if ep else "AWS S3"


def url_of(path: str, fs_path: str) -> str:
    """``fs_path`` (a filesystem's spelling) as a URL with the scheme of ``path``."""
    return f"{urlsplit(path).scheme}://{fs_path}"


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
    (see :func:`ganlode.orchestrator.storage.published.resolve`).
    """
    path = str(path)
    if not is_remote(path):
        return fsspec.filesystem("file"), local_path(path)
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
