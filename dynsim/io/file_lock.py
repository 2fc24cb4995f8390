"""Advisory record locks that keep readers of a live HDF5 log out of its writer's way.

Why a lock, although the log is written in HDF5's SWMR mode: SWMR orders
only appends to datasets that existed before SWMR writing began. The log
also creates groups and datasets while readers may be looking (a new
relaxation, a new table), which HDF5 permits but does not order. A reader
that crosses such a change can follow an address the writer has since
freed and reused; the checksum there never matches again, and HDF5's reader
retries it up to 100 times with a sleep that doubles from 1 ns each time
(``H5C__load_entry``), so the read hangs for hours inside ``H5_nanosleep``.
Measured here: a reader following a full-speed writer hung within 60 s.

The cure is to never read while a record is being written: the writer
holds an exclusive lock from the first byte of a record to its flushed
commit, a reader holds a shared lock for the time of one read. A writer
at full speed would take the lock again before a polling reader got it, so
both first pass a turnstile (a second lock byte, shared among readers): a reader waiting at the
data lock holds the turnstile, and the writer's next record waits behind
it. The locks
are byte-range locks on the log file itself, so no extra file appears;
on Linux they are open-file-description locks (``F_OFD_SETLK``), which are
not dropped when HDF5 closes its own descriptor of the same file and do not
interfere with HDF5's ``flock``. A writer killed at any moment releases its
lock with its last descriptor. Where the file system has no locks (some
network mounts) the lock is a no-op and reads are as before.
"""
from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
import warnings

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["LogBusyError", "RecordLock"]

_SETLK = getattr(fcntl, "F_OFD_SETLK", None) or getattr(fcntl, "F_SETLK", None)
_POLL_S = 0.002
_WRITER_PATIENCE_S = 10.0


class LogBusyError(TimeoutError):
    """A reader waited longer than its timeout for the writer of a live log to finish a record."""


_DATA_BYTE = 0
_TURNSTILE_BYTE = 1


def _flock(kind, byte):
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks). Bytes past the end are fine.
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, byte, 1, 0)


class RecordLock:
    """Shared (reader) or exclusive (writer) lock over a whole file, taken per record or per read.

    Parameters
    ----------
    path : str or os.PathLike
        The log file; it must exist.
    writer : bool
        True for the log's writer (exclusive locks; the file is opened for
        writing, which POSIX requires of a write lock).
    """

    def __init__(self, path, writer):
        self.path = os.fspath(path)
        self.writer = bool(writer)
        self._fd = None
        if fcntl is not None:
            flags = (os.O_RDWR if writer else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
            try:
                self._fd = os.open(self.path, flags)
            except PermissionError:
                if writer:
                    raise
                self._fd = None  # a reader without read access fails at HDF5's open, with its own message
        self._kind = fcntl.F_WRLCK if (fcntl and writer) else (fcntl.F_RDLCK if fcntl else None)
        self._depth = 0  # a writer's record may call another record method inside its lock

    def _try(self, kind, byte):
        if self._fd is None:
            return True
        try:
            fcntl.fcntl(self._fd, _SETLK, _flock(kind, byte))
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            if exc.errno in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                self.close()  # no locks on this file system: carry on without
                return True
            raise

    @contextlib.contextmanager
    def held(self, timeout=None):
        """Hold the lock for the ``with`` block.

        Parameters
        ----------
        timeout : float or None
            Seconds a reader waits before :class:`LogBusyError`. A writer
            waits as long as it takes (a reader holds the lock for one read
            only) and warns once after 10 s.
        """
        if self._fd is None or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        start = time.monotonic()
        self._wait(self._kind, _TURNSTILE_BYTE, start, timeout)
        try:
            self._wait(self._kind, _DATA_BYTE, start, timeout)
        finally:
            self._try(fcntl.F_UNLCK, _TURNSTILE_BYTE)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self._try(fcntl.F_UNLCK, _DATA_BYTE)

    def _wait(self, kind, byte, start, timeout):
        warned = False
        while not self._try(kind, byte):
            waited = time.monotonic() - start
            if not self.writer and timeout is not None and waited > timeout:
                raise LogBusyError(
                    f"{self.path!r} is being written and its writer did not finish a record within "
                    f"{timeout:g} s; read it again later, or give a longer timeout")
            if self.writer and not warned and waited > _WRITER_PATIENCE_S:
                warnings.warn(f"the writer of {self.path!r} has waited {waited:.0f} s for a reader of the "
                              "file to finish", RuntimeWarning, stacklevel=3)
                warned = True
            time.sleep(_POLL_S)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()
