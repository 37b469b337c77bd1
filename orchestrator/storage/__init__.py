"""Paths that may be local or ``s3://bucket/prefix``: the storage layer of the orchestrator.

Everything in ganlode that reads or writes a file goes through here, so that every ``--out``,
dataset and checkpoint path works the same on local disk and on S3:

- :mod:`.fs`: the one filesystem factory (local, or s3fs with a configurable endpoint), ``join``;
- :mod:`.remote_errors`: remote failures as one-line user errors, without credentials;
- :mod:`.published`: directories published atomically on S3 by pointer, and ``resolve``;
- :mod:`.files`: reading, listing, checking, copying and removing;
- :mod:`.atomic`: atomic writes of one file or one directory;
- :mod:`.tables`: Parquet tables (one file, or an append-only folder of parts) and pyarrow's filesystem;
- :mod:`.clock`: the timestamps records carry;
- :mod:`.lock`: one writer per run directory (:class:`RunLock`, ``RUN/.ganlode-lock``).

The names below are the layer's public interface (``from ganlode.orchestrator import storage``).
"""

from .atomic import atomic_dir, write_bytes_atomic, write_json_atomic
from .clock import utc_now, utc_stamp
from .files import (
    check_readable,
    check_writable,
    copy_tree,
    exists,
    is_dir,
    listdir,
    read_bytes,
    read_json,
    remove_file,
    remove_tree,
)
from .fs import configure, filesystem, is_remote, join, local_path, redact, s3_endpoint
from .lock import LOCK_FILE, RunLock
from .published import POINTER_NAME, VERSIONS_DIR, resolve
from .remote_errors import translate_errors
from .tables import append_part, filter_parts, part_names, pyarrow_filesystem, read_table, write_table

__all__ = [
    "LOCK_FILE", "POINTER_NAME", "RunLock", "VERSIONS_DIR", "append_part", "atomic_dir", "check_readable",
    "check_writable", "configure", "copy_tree", "exists", "filesystem", "filter_parts", "is_dir", "is_remote", "join", "listdir", "local_path",
    "part_names", "pyarrow_filesystem", "read_bytes", "read_json", "read_table", "redact", "remove_file",
    "remove_tree", "resolve", "s3_endpoint", "translate_errors", "utc_now", "utc_stamp", "write_bytes_atomic",
    "write_json_atomic", "write_table",
]
