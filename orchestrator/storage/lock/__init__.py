"""One writer per run: a lock at ``RUN/.ganlode-lock``, on local disk or on S3.

Two commands started with the same ``--out`` would otherwise both write into the run directory
and mix their results. A command takes the lock before it writes anything there::

    with RunLock(out, command="ganlode transfer ...", force=args.force_unlock):
        ...  # write the run

API
---
``RunLock(run_path, *, command, lease_s=60.0, force=False)``
    A context manager (``__enter__`` acquires, ``__exit__`` releases, on exceptions too).
``acquire()``
    Take the lock or raise :class:`~ganlode.orchestrator.errors.UserError` (one line, naming
    the holder's host, pid, start time and command). Calling it while held is a no-op.
``release()``
    Remove the lock file/object only if it still carries this lock's token; idempotent; a
    forked child never removes its parent's lock.
``holder()``
    The record of the lock in force at ``run_path`` (anyone's, this one's included), or None
    when there is none or only a stale one; ``{}`` when a lock is held but its record is unreadable.
``lost`` / ``check()``
    S3 only: set (and one line printed on stderr) when renewal finds the lock taken over;
    ``check()`` raises ``UserError`` then. Long-running writers should call ``check()`` before
    each commit (checkpoint, table part). Locally ``lost`` stays None (an flock cannot be lost).
``LOCK_FILE``
    ``".ganlode-lock"``. Its ``.ganlode-`` prefix hides it from :func:`~ganlode.orchestrator.storage.files.listdir` and keeps
    it out of published-directory garbage collection. The lock writes nothing else in the run.

The holder record (JSON): ``format``, ``host`` (``socket.gethostname()``), ``pid``, ``since``
(UTC, ``YYYY-MM-DDTHH:MM:SSZ``), ``command``, ``token`` (random); on S3 also ``lease_s`` and
``expires`` (the holder's clock, for people; expiry itself is judged by the server's clock).

Every notice (a stale lock taken over, a forced removal, a lost lock) is ONE line on stderr.

Modules
-------
* :mod:`.runlock`: :class:`RunLock`, the one public class;
* :mod:`.record`: the holder record, ``LOCK_FILE`` and the one-line messages;
* :mod:`.local`: local disk (an flock on the lock file; stale = the holder's pid is gone);
* :mod:`.s3`: S3 (conditional writes, a renewed lease; stale = an expired lease).
"""

from .record import LOCK_FILE
from .runlock import RunLock

__all__ = ["LOCK_FILE", "RunLock"]
