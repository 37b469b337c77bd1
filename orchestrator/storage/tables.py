"""Parquet tables, local or ``s3://``: one table per file, or an append-only folder of part files.

* :func:`write_table` writes one file atomically; :func:`read_table` reads a file or a whole
  folder of part files (as ``pyarrow.parquet.read_table`` and ``pyarrow.dataset`` do).
* An append-only table is a folder ``NAME.parquet/`` of ``part-00000001.parquet``, ...: each
  :func:`append_part` writes one small file (one atomic write or PUT), named so that the parts
  sort in the order they were written, and nothing already written is rewritten. Readers skip
  names starting with ``.`` or ``_`` (a writer's temporary files).
* :func:`pyarrow_filesystem` hands pyarrow (and Ray Tune) the same filesystem the rest of
  ganlode uses.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError
from .atomic import write_bytes_atomic
from .files import exists, is_dir, listdir, read_bytes, remove_file
from .fs import filesystem, is_remote, join, local_path
from .published import resolve
from .remote_errors import translate_errors

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"


def pyarrow_filesystem(path: str | os.PathLike) -> tuple[Any, str]:
    """A ``pyarrow.fs.FileSystem`` and the resolved path in its spelling.

    For Ray Tune (``RunConfig(storage_path=p, storage_filesystem=fs)``) and ``pyarrow.parquet``.
    The S3 one wraps the same s3fs object as :func:`~.fs.filesystem`, so endpoint, timeouts and
    credentials match, and it pickles to Ray workers with its endpoint.
    """
    import pyarrow.fs as pafs

    if not is_remote(path):
        return pafs.LocalFileSystem(), local_path(path)
    fs, _ = filesystem(path)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), filesystem(resolve(path))[1]


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_table(path: str | os.PathLike, table: pa.Table) -> None:
    """Write ``table`` as one Parquet file, atomically (readers see the old file or the new one)."""
    write_bytes_atomic(path, table_bytes(table))


def read_table(path: str | os.PathLike, fix: str = "restore it") -> pa.Table:
    """The table in the Parquet file, or the folder of part files, at ``path``.

    A missing path, or one that does not parse, is a :class:`UserError`; ``fix`` ends the
    second message (``"re-run it with ..."``).
    """
    path = str(path)
    if not is_dir(path):
        source: Any = pa.BufferReader(read_bytes(path))  # read_bytes: a missing file is a UserError
        filesystem_ = None
    else:
        filesystem_, source = pyarrow_filesystem(path)
    try:
        with translate_errors(path, "reading"):
            return pq.read_table(source, filesystem=filesystem_, use_threads=False)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: check the path") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path} is corrupt ({str(e).splitlines()[0][:80]}); {fix}") from None


# ---------------------------------------------------------------- append-only tables


def part_names(path: str | os.PathLike) -> list[str]:
    """The part files of the append-only table at ``path``, in the order they were written."""
    return [n for n in listdir(path) if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)]


def _part_index(name: str) -> int:
    digits = name[len(PART_PREFIX):-len(PART_SUFFIX)]
    return int(digits) if digits.isdigit() else 0


def append_part(path: str | os.PathLike, table: pa.Table) -> str:
    """Add ``table`` as the next part file of the append-only table at ``path``; returns its path.

    A single-file table there (as older versions wrote) becomes the folder's first part.
    """
    path = str(path)
    _upgrade_single_file(path)
    names = part_names(path)
    index = _part_index(names[-1]) + 1 if names else 1
    part = join(path, f"{PART_PREFIX}{index:08d}{PART_SUFFIX}")
    write_table(part, table)
    return part


def filter_parts(path: str | os.PathLike, keep: Callable[[pa.Table], Any]) -> None:
    """Keep only the rows for which ``keep(table)`` (a boolean mask) holds, part by part.

    A part left with no rows is removed, a part that loses some is rewritten atomically, every
    other part stays as it is. Each change is one atomic write or delete, so an interrupted
    call leaves every part whole, and calling it again finishes the job.
    """
    path = str(path)
    _upgrade_single_file(path)
    for name in part_names(path):
        part = join(path, name)
        table = read_table(part)
        kept = table.filter(keep(table)) if table.num_rows else table
        if kept.num_rows == table.num_rows:
            continue
        if kept.num_rows == 0:
            remove_file(part)
        else:
            write_table(part, kept)


def _upgrade_single_file(path: str) -> None:
    """A table written as one file becomes part 0 of a folder of the same name."""
    if not exists(path) or is_dir(path):
        return
    table = read_table(path)
    if is_remote(path):  # a key and a prefix of one name can live side by side on S3
        write_table(join(path, f"{PART_PREFIX}{0:08d}{PART_SUFFIX}"), table)
        remove_file(path)
        return
    local = local_path(path)
    aside = os.path.join(os.path.dirname(local), f".{os.path.basename(local)}.single")
    os.replace(local, aside)
    write_table(join(local, f"{PART_PREFIX}{0:08d}{PART_SUFFIX}"), table)
    os.unlink(aside)
