"""HDF5 trajectory log: one file per run, one group per logged relaxation.

A run writes its configuration once, then appends relaxations (a free phase,
a nudged phase, possibly more) and table rows (one per epoch) as they happen.
The file survives the writer being killed at any moment (SIGKILL included)
and can be read while it is being written; see *Crash safety* below. The
reader turns a file back into numpy arrays, one relaxation at a time.

Layout (``m``: recorded time points, ``r``: recorded samples, ``B``: batch,
``n_g``: units of free group ``g``, ``n_free``: all free units)::

    run.h5
    ├── attrs: format = "dynsim.trajectory-log", format_version = 2,
    │          dynsim_version, created (ISO 8601, UTC), config (JSON),
    │          and each scalar config entry (integrator, atol, rtol, beta, seed, ...)
    ├── commits (k,)                   one row per completed record: kind (0 relaxation,
    │                                  1 table), name (group or table name), count
    │                                  (relaxations / rows of that table completed so far)
    ├── network/                       only when a network was given
    │   └── attrs: group_sizes, group_names, activation,
    │              connections (JSON), n_params
    ├── tables/
    │   └── <name>/                    attrs: free-form (e.g. what was swept)
    │       └── <column> (rows, ...)   one dataset per column, numbers or strings
    └── relaxations/
        ├── 000000/
        │   ├── attrs: label, samples (r,), phases (phase names in order)
        │   ├── x (B, n_input)         only when given
        │   ├── target (B, n_output)   only when given
        │   ├── free/
        │   │   ├── attrs: integrator, status, status_name, message, n_steps,
        │   │   │          n_accepted, n_rejected, nfev, beta, t_final,
        │   │   │          every, samples (r,)
        │   │   ├── t (m,)                     ┐
        │   │   ├── states/<group name> (m, r, n_g)   one per free group, or
        │   │   │                              │  states/state (m, r, n_free)
        │   │   ├── energy (m, r)              │ only when the phase
        │   │   ├── cost (m, r)                │ recorded a trajectory;
        │   │   ├── residual (m, r)            ┘ cost only with a target
        │   │   ├── final_state (B, n_free)
        │   │   ├── final_energy (B,)
        │   │   ├── final_cost (B,)            only with a target
        │   │   ├── final_residual (B,)
        │   │   └── final_tolerance (B,)
        │   └── nudged/
        │       └── ... (same as free/)
        └── 000001/ ...

Every array is stored chunked and compressed (gzip with the shuffle
filter). ``energy`` is E(s), not the total energy E + beta C; ``residual``
is the norm of the (projected) vector field the integrator stops on.

Crash safety
------------
The file is written in HDF5's single-writer/multiple-reader (SWMR) mode
from the moment it appears under its name: the header is written to a
temporary file, closed, moved into place, and reopened directly in SWMR
write mode. A file killed in SWMR mode stays marked as such, and SWMR
readers open it; a file killed in ordinary write mode of the 1.10+ format
would be refused by every reader until ``h5clear`` (measured, HDF5 2.0), so
the log never enters that mode.

A record (a relaxation, a table row, a whole table) is written in two
flushed stages: first its data, then one appended row of ``/commits``. A
flush returns only when HDF5 has handed every byte to the operating system,
which keeps them through a SIGKILL, so a record named in ``/commits`` is
complete. The reader shows only committed records: a relaxation or rows cut
off by a kill stay in the file but are invisible, and a reopened log writes
over them. The commit is an append to a chunked dataset created before SWMR
mode, the one structural change SWMR orders for readers; new groups and
datasets of a record are created in SWMR mode, which HDF5 permits but does
not order for concurrent readers, which is why they only become visible
through a later commit. ``tests/test_log_crash.py`` kills writers at random
moments and checks every reported record.

Examples
--------
>>> with TrajectoryLog("run.h5", config, network=net) as log:      # doctest: +SKIP
...     log.record_relaxation([free, nudged], label="epoch 0, batch 0", x=x, target=y)
>>> with read_log("run.h5") as reader:                              # doctest: +SKIP
...     rec = reader.relaxation(0)["free"]
...     rec.t, rec.states["hidden_1"], rec.energy
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

import dynsim
from dynsim.io.file_lock import LogBusyError, RecordLock
from dynsim.validation import DynsimError, ValidationError, WriteError, format_bytes, os_reason, positive_int

__all__ = ["FORMAT", "FORMAT_VERSION", "LogBusyError", "LogFormatError", "LogNotFoundError", "TrajectoryLog", "LogReader", "Relaxation",
           "PhaseRecord", "read_log"]

FORMAT = "dynsim.trajectory-log"
"""Value of the root attribute ``format`` that marks a dynsim log."""
FORMAT_VERSION = 2
"""Layout version written by :class:`TrajectoryLog`; the reader accepts this one and older.

Version 2 added ``/commits`` (records without a commit row are incomplete);
version 1 files have none and every record in them counts as complete.
"""

# Root attributes that the log writes itself; a config entry of the same name
# stays in the JSON config but does not become an attribute.
_TABLES = "tables"
_RESERVED_ATTRS = ("format", "format_version", "dynsim_version", "created", "config")

# gzip level 4: near the ratio of level 9 on float trajectories at a fraction
# of the time; shuffle groups the bytes of each float, which is what makes
# slowly varying states compress.
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

_RELAXATIONS = "relaxations"
_INDEX_DIGITS = 6

_COMMITS = "commits"
_NAME_BYTES = 255
_COMMIT_DTYPE = np.dtype([("kind", np.uint8), ("name", f"S{_NAME_BYTES}"), ("count", np.int64)])
_KIND_RELAXATION = 0
_KIND_TABLE = 1

# A reader that opens a file while its writer flushes may meet metadata halfway
# through being rewritten; HDF5's SWMR reader retries checksum failures itself,
# these retries cover the rest (object headers of new records, link storage).
_READ_ATTEMPTS = 4
_READ_RETRY_S = 0.05
DEFAULT_READ_TIMEOUT_S = 60.0
"""Seconds a read of a live log waits for its writer to finish a record."""


class LogFormatError(DynsimError):
    """A file is not a readable dynsim trajectory log (not HDF5, truncated, damaged, or not ours)."""


class LogNotFoundError(LogFormatError, FileNotFoundError):
    """No log file at the path given (also a FileNotFoundError, for callers that catch that)."""


# --------------------------------------------------------------------------- writing
def _jsonable(value):
    """``json.dumps`` fallback: numpy scalars and arrays, tuples, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be stored as JSON")


def _config_json(config):
    try:
        # allow_nan: t_max = inf is a legitimate setting; Python's json reads it back.
        return json.dumps(config, default=_jsonable, sort_keys=True)
    except TypeError as exc:
        raise ValidationError(f"config: {exc}") from None


def _scalar_attr(value):
    """The attribute value of a scalar config entry, or None when it is not a scalar."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    return None


def _write_array(group, name, data):
    """A chunked, compressed dataset (zero-size arrays stay contiguous: they cannot be chunked)."""
    data = np.ascontiguousarray(data)
    if data.size == 0:
        return group.create_dataset(name, data=data)
    return group.create_dataset(name, data=data, **_COMPRESSION)


def _table_rows(columns):
    if not isinstance(columns, dict) or not columns:
        raise ValidationError("columns must be a non-empty dict of column name -> values")
    lengths = {str(k): len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValidationError(f"table columns must have equal lengths, got {lengths}")
    return next(iter(lengths.values()))


def _column(values):
    arr = np.asarray(values)
    if arr.dtype.kind in "USO":
        return np.asarray([str(v) for v in np.ravel(arr)], dtype=h5py.string_dtype()).reshape(arr.shape)
    if arr.dtype.kind not in "biuf":
        raise ValidationError(f"table columns hold numbers or strings, got dtype {arr.dtype}")
    return arr


def _kept_points(m, every):
    """Indices of every ``every``-th recorded point, always including the last one."""
    keep = np.arange(0, m, every)
    if m and keep[-1] != m - 1:
        keep = np.append(keep, m - 1)
    return keep


def _open_swmr_writer(path):
    """Open an existing file for writing directly in SWMR mode (never in plain write mode, see Crash safety)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    # No raw-data chunk cache: every write reaches the file in the call that makes it, so a failed write (a full
    # disk) raises there. With the cache, HDF5 writes a dataset's chunks when the dataset is closed; a failure
    # there is only printed (h5py cannot raise from a destructor), leaves the dataset half closed, and the next
    # flush of the file crashes the process (segmentation fault, measured with HDF5 2.0). Each record is flushed
    # at once anyway, so the cache saved little.
    mdc_nelmts, _, _, w0 = fapl.get_cache()
    fapl.set_cache(mdc_nelmts, 0, 0, w0)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl=fapl)
    return h5py.File(fid)


_HDF5_ERRNO = re.compile(r"errno = (\d+), error message = '([^']*)'")


def _write_failure(exc):
    """(reason in words, errno or None) of a failed HDF5 or OS write."""
    found = _HDF5_ERRNO.search(str(exc))
    if found:
        return found.group(2), int(found.group(1))
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror, exc.errno
    return (str(exc).splitlines() or [type(exc).__name__])[0], getattr(exc, "errno", None)


def _recorded_end(path):
    """End of file recorded in the superblock of an HDF5 file (format version 2 or 3, which the log writes)."""
    with open(path, "rb") as f:
        head = f.read(48)
    if len(head) < 12 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3):
        return None
    width = head[9]  # size of offsets: the base address, the extension address, then the end of file
    start = 12 + 2 * width
    return int.from_bytes(head[start:start + width], "little") if len(head) >= start + width else None


def _extend_to_recorded_end(path):
    """Pad a log cut short by a failed write (a full disk) with zeros up to the end its superblock records.

    HDF5 records the new end of the file before it extends the file; when the
    extension fails the file is shorter than its superblock says and HDF5
    refuses to open it. The missing bytes were never part of a committed
    record: zeros restore a file that opens, with every committed record.
    Extending makes a sparse file, which needs no free space on most file
    systems. Returns True when the file was extended.
    """
    try:
        end = _recorded_end(path)
        if end is not None and os.path.getsize(path) < end:
            os.truncate(path, end)
            return True
    except OSError:
        pass
    return False


def _recover_killed_log(path):
    """Copy a log left marked open by a killed writer into a clean file, and put it in its place.

    HDF5 keeps a killed writer's "open for writing" mark in the superblock;
    only a new file is free of it. The copy is complete (every object and
    attribute) and is checked against the original's committed counts before
    the atomic rename, so a failure leaves the original untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.recover-{os.getpid()}.tmp")
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as src, \
                h5py.File(tmp, "w", libver="latest", track_order=True) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            committed = _read_commits(src)
            for name in src:
                if committed is not None and name in (_RELAXATIONS, _TABLES):
                    # Committed records only: a record cut off by the kill (or by a full disk) may point past the
                    # end of the file, and stays invisible anyway.
                    keep = committed[0] if name == _RELAXATIONS else list(committed[1])
                    group = dst.create_group(name, track_order=True if name == _RELAXATIONS else None)
                    for key, value in src[name].attrs.items():
                        group.attrs[key] = value
                    for member in keep:
                        src.copy(src[name][member], group, name=member)
                else:
                    src.copy(src[name], dst, name=name)
            before = committed
            after = _read_commits(dst)
        if before != after:
            raise OSError(f"the copy of {str(path)!r} lost committed records")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_commits(f):
    """Committed records of an open log: (relaxation group names in order, {table: rows}), or None for v1."""
    if _COMMITS not in f:
        return None
    rows = f[_COMMITS][()]
    names, tables = [], {}
    for kind, name, count in zip(rows["kind"].tolist(), rows["name"].tolist(), rows["count"].tolist()):
        name = name.decode("utf-8")
        if kind == _KIND_RELAXATION:
            names.append(name)
        elif kind == _KIND_TABLE:
            tables[name] = count
    return names, tables


def _one_record(method):
    """Run a writer's record method under the log's exclusive lock (see :mod:`dynsim.io.file_lock`).

    A write that fails (a full disk, an I/O error) ends the log: the file is
    closed as far as HDF5 can, and :class:`dynsim.validation.WriteError`
    names the file and the cause; the records committed before stay readable.
    """
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        self._check_open()
        with self._lock.held():
            outermost = not self._recording
            self._recording = True
            try:
                if outermost:
                    self._reserve(_payload_bytes((args, kwargs)), method.__name__)
                return method(self, *args, **kwargs)
            except DynsimError:
                raise
            except (OSError, RuntimeError) as exc:
                raise self._abandon(exc, f"recording {method.__name__}") from None
            finally:
                if outermost:
                    self._recording = False
    return locked


RESERVE_BYTES = 1 << 20
"""Space checked for past the log's end before each record, on top of twice the record's own arrays."""


def _payload_bytes(obj, depth=6, seen=None):
    """Bytes of the arrays in ``obj`` (containers and objects' attributes followed ``depth`` levels): an upper bound."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (int, float, np.generic)):
        return 8
    if isinstance(obj, (str, bytes)):
        return len(obj)
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple, set)):
        if len(obj) > 64 and isinstance(next(iter(obj)), (int, float, np.generic)):
            return 8 * len(obj)  # a column of numbers: no need to visit each
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return 0
    return sum(_payload_bytes(item, depth - 1, seen) for item in items)


def _allocate(fd, offset, length):
    """Allocate ``length`` bytes of ``fd`` from ``offset`` (``posix_fallocate``); False where it is not supported."""
    if not hasattr(os, "posix_fallocate"):
        return False
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
            return False
        raise
    return True


class TrajectoryLog:
    """Writer of an HDF5 trajectory log (one file per run).

    Parameters
    ----------
    path : str or os.PathLike
        File to create; its parent folders are created as needed.
    config : dict
        Settings of the run (integrator, tolerances, beta, seed, ...). Stored
        whole as JSON in the root attribute ``config``; each scalar entry
        (str, int, float, bool) is also stored as a root attribute of its own
        name so that tools like ``h5ls -v`` show it.
    network : HopfieldNetwork, optional
        Its :meth:`describe` goes to ``/network`` and its :meth:`split_state`
        splits recorded states per free group. Without it states are stored
        as one ``states/state`` array.
    overwrite : bool
        Replace an existing file. By default an existing file is never
        touched: :class:`FileExistsError`.

    Notes
    -----
    Use it as a context manager, or call :meth:`close`. Every record is
    flushed and committed before its method returns, so a run killed at any
    moment keeps every completed relaxation and row; :func:`read_log` reads
    the file while it is being written (HDF5 SWMR). See the module's *Crash
    safety* section. :meth:`reopen` continues a log a run closed.
    """

    def __init__(self, path, config, network=None, overwrite=False):
        self.path = Path(path)
        if not isinstance(config, dict):
            raise ValidationError(f"config must be a dict, got {type(config).__name__}")
        config_json = _config_json(config)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"log file {str(self.path)!r} already exists; pass overwrite=True (--overwrite) to replace it")
        self.network = network
        self._file = None
        self._lock = None
        # The header goes to a temporary file first: the log's own name only ever holds a complete
        # header, then a file in SWMR mode, so no kill leaves a file that readers refuse.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # In memory, then written in one piece: a full disk fails a plain write here, never inside HDF5.
            with h5py.File(tmp, "w", libver="latest", driver="core", backing_store=False) as f:
                self._write_header(f, config, config_json, network)
                f.flush()
                image = f.id.get_file_image()
            with open(tmp, "wb") as handle:
                handle.write(image)
            self._move_into_place(tmp, overwrite)
        except FileExistsError:
            raise
        except OSError as exc:
            raise WriteError(f"cannot write the log {str(self.path)!r}: {os_reason(exc)}",
                             getattr(exc, "errno", None)) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._lock = RecordLock(self.path, writer=True)
        try:
            with self._lock.held():
                self._file = _open_swmr_writer(self.path)
        except (OSError, RuntimeError) as exc:
            self._lock.close()
            reason, number = _write_failure(exc)
            raise WriteError(f"cannot open the log {str(self.path)!r} for writing: {reason}", number) from None
        self._count = 0
        self._rows = {}
        self._recording = False
        self._space_fd = None

    def _move_into_place(self, tmp, overwrite):
        if overwrite:
            os.replace(tmp, self.path)
            return
        try:
            # A hard link fails if another process created the file since the check above.
            os.link(tmp, self.path)
        except FileExistsError:
            raise FileExistsError(
                f"log file {str(self.path)!r} already exists; pass overwrite=True (--overwrite) to replace it"
            ) from None
        except OSError:  # a file system without hard links
            if self.path.exists():
                raise FileExistsError(f"log file {str(self.path)!r} already exists; pass overwrite=True "
                                      "(--overwrite) to replace it") from None
            os.replace(tmp, self.path)

    @staticmethod
    def _write_header(f, config, config_json, network):
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["dynsim_version"] = dynsim.__version__
        f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        f.attrs["config"] = config_json
        for key, value in config.items():
            value = _scalar_attr(value)
            if value is not None and str(key) not in _RESERVED_ATTRS:
                f.attrs[str(key)] = value
        if network is not None:
            desc = network.describe()
            g = f.create_group("network")
            g.attrs["group_sizes"] = np.asarray(desc["group_sizes"], dtype=np.int64)
            g.attrs["group_names"] = [str(n) for n in desc["group_names"]]
            # One name, or one per group (stored as a JSON list, read back as a list).
            act = desc["activation"]
            g.attrs["activation"] = act if isinstance(act, str) else json.dumps(list(act))
            g.attrs["connections"] = json.dumps(desc["connections"])
            if "n_params" in desc:
                g.attrs["n_params"] = int(desc["n_params"])
        # track_order keeps relaxations and phases in insertion order for h5py's own iteration.
        f.create_group(_RELAXATIONS, track_order=True)
        f.create_group(_TABLES)
        commits = f.create_dataset(_COMMITS, shape=(0,), maxshape=(None,), chunks=(64,), dtype=_COMMIT_DTYPE,
                                  **_COMPRESSION)
        commits.attrs["kinds"] = "0: relaxation (name: its group), 1: table (name: the table; count: its rows)"

    @classmethod
    def reopen(cls, path, network=None):
        """Continue a log a run closed: new relaxations and rows are appended after the committed ones.

        Parameters
        ----------
        path : str or os.PathLike
            A format-version-2 log, closed by its writer.
        network : HopfieldNetwork, optional
            Splits recorded states per free group, as in the constructor.

        Notes
        -----
        A log whose writer was killed stays marked as open for writing, and
        HDF5 refuses to write to it again. Such a log is recovered first:
        everything in it (committed records, and the leftovers of a record
        cut off by the kill, which stay invisible) is copied into a new file
        that replaces it atomically, so a resumed run continues the same log.
        """
        _extend_to_recorded_end(path)  # a log cut short by a full disk opens again, with its committed records
        reader = LogReader(path)  # validates the format
        if reader.attrs.get("format_version", 1) < 2:
            raise LogFormatError(f"{str(reader.path)!r} has format_version {reader.attrs.get('format_version')}; "
                                 "only version 2 logs (with /commits) can be continued")
        self = cls.__new__(cls)
        self.path = reader.path
        self.network = network
        self._file = None
        self._lock = None
        try:
            try:
                self._lock = RecordLock(self.path, writer=True)
                with self._lock.held():
                    self._file = _open_swmr_writer(self.path)
            except OSError as exc:
                if "already open for write" not in str(exc):
                    raise
                self._lock.close()
                _recover_killed_log(self.path)  # a new file replaces the old: lock the new one
                self._lock = RecordLock(self.path, writer=True)
                with self._lock.held():
                    self._file = _open_swmr_writer(self.path)
        except (OSError, RuntimeError) as exc:
            if self._lock is not None:
                self._lock.close()
            reason, number = _write_failure(exc)
            raise WriteError(f"cannot reopen {str(self.path)!r} for writing: {reason}", number) from None
        self._count = reader.n_relaxations
        self._rows = dict(reader._table_rows)
        self._recording = False
        self._space_fd = None
        return self

    # context manager -------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Close the file (a second call does nothing).

        Raises
        ------
        WriteError
            The last flush failed (a full disk); the committed records stay readable.
        """
        if self._file is not None and self._file.id.valid:
            with self._lock.held():
                try:
                    self._file.close()
                except (OSError, RuntimeError) as exc:
                    raise self._abandon(exc, "closing") from None
        self._file = None
        self._close_space_fd()
        if getattr(self, "_lock", None) is not None:
            self._lock.close()

    def _reserve(self, payload, doing):
        """Check that the space a record needs can be allocated, before HDF5 writes any of it.

        The space is allocated past the file's end (``posix_fallocate``, which
        a full disk, a quota or a file-size limit refuses) and given back at
        once. When it cannot be had, nothing of the record is written: the log
        is closed as it is, complete, and :class:`WriteError` says why. A
        disk filled by another process between the check and the write, or a
        file system without ``posix_fallocate``, is met at the first failed
        write instead (see :meth:`_abandon`).
        """
        need = RESERVE_BYTES + 2 * payload
        try:
            if self._space_fd is None:
                self._space_fd = os.open(self.path, os.O_RDWR)
            size = os.fstat(self._space_fd).st_size
            if _allocate(self._space_fd, size, need):
                os.ftruncate(self._space_fd, size)
        except OSError as exc:
            number = getattr(exc, "errno", None)
            self._close_space_fd()
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
            self._lock.close()
            self._failure = WriteError(
                f"cannot write to the log {str(self.path)!r} ({doing}): {os_reason(exc)}, no room for the next "
                f"record ({format_bytes(need)} asked for it); the log is closed with every record before it", number)
            raise self._failure from None

    def _close_space_fd(self):
        if getattr(self, "_space_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._space_fd)
            self._space_fd = None

    def _abandon(self, exc, doing):
        """After a failed write: close what HDF5 can, repair the file's end, and return the error to raise."""
        reason, number = _write_failure(exc)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(Exception):  # HDF5 cannot flush what it could not write: the close may fail
                file.close()
        self._close_space_fd()
        _extend_to_recorded_end(self.path)
        if self._lock is not None:
            self._lock.close()
        self._failure = WriteError(f"writing the log {str(self.path)!r} failed ({doing}): {reason}; the log is "
                                   "closed, and what it recorded before stays readable", number)
        return self._failure

    @property
    def closed(self):
        return self._file is None

    @property
    def n_relaxations(self):
        """Relaxations written so far."""
        return self._count

    def _commit(self, kind, name, count):
        """Stage two of a record: its data are flushed; one flushed row of /commits makes it complete."""
        self._file.flush()
        commits = self._file[_COMMITS]
        n = commits.shape[0]
        commits.resize(n + 1, axis=0)
        commits[n] = np.array((kind, name.encode("utf-8"), count), dtype=_COMMIT_DTYPE)
        self._file.flush()

    def _check_open(self):
        if self._file is None:
            if getattr(self, "_failure", None) is not None:
                raise WriteError(f"the log {str(self.path)!r} was closed after a failed write: {self._failure}",
                                 self._failure.errno)
            raise ValueError(f"log file {str(self.path)!r} is closed")

    # recording -------------------------------------------------------------
    @_one_record
    def record_relaxation(self, phases, label="", x=None, target=None, every=1):
        """Append one relaxation (its phases in order) to ``/relaxations``.

        Parameters
        ----------
        phases : sequence of PhaseResult
            Usually ``[free, nudged]``; the phase names (``PhaseResult.phase``)
            must be distinct: they name the subgroups.
        label : str
            Free text (``"epoch 3, batch 12"``).
        x : ndarray, shape (batch, n_input), optional
            Clamped input of the relaxation.
        target : ndarray, shape (batch, n_output), optional
            Target of the nudged phase.
        every : int
            Keep every ``every``-th recorded time point, always with the last
            one (which holds the settled state). Coarser recording is set
            with ``SettleOptions(record_every=..., record_samples=...)``;
            this thins further at write time.

        Returns
        -------
        int
            Index of the relaxation (its group is ``/relaxations/{index:06d}``).
        """
        self._check_open()
        every = positive_int("every", every)
        phases = list(phases)
        if not phases:
            raise ValidationError("phases must hold at least one PhaseResult")
        names = [str(p.phase) for p in phases]
        if len(set(names)) != len(names):
            raise ValidationError(f"phase names must be distinct (they name the HDF5 groups), got {names}")
        samples = self._common_samples(phases)

        index = self._count
        group = self._file[_RELAXATIONS]
        name = f"{index:0{_INDEX_DIGITS}d}"
        retry = 0
        while name in group:
            # Left by a writer killed before its commit: never visible, and SWMR cannot delete it.
            retry += 1
            name = f"{index:0{_INDEX_DIGITS}d}_{retry}"
        rel = group.create_group(name, track_order=True)
        rel.attrs["label"] = str(label)
        rel.attrs["samples"] = samples
        rel.attrs["phases"] = names
        if x is not None:
            _write_array(rel, "x", np.asarray(x, dtype=np.float64))
        if target is not None:
            _write_array(rel, "target", np.asarray(target, dtype=np.float64))
        for phase in phases:
            self._write_phase(rel.create_group(str(phase.phase)), phase, every)
        self._commit(_KIND_RELAXATION, name, index + 1)
        self._count += 1
        return index
    @staticmethod
    def _common_samples(phases):
        # One sample set per relaxation: the reader and the plots put phases on one time axis per sample.
        found = [np.asarray(p.integration.trajectory.samples, dtype=np.int64)
                 for p in phases if p.integration.trajectory is not None]
        if not found:
            return np.zeros(0, dtype=np.int64)
        for p, s in zip(phases, found):
            if not np.array_equal(s, found[0]):
                raise ValidationError(
                    f"phases recorded different samples ({found[0].tolist()} and {s.tolist()}); "
                    "settle them with the same record_samples")
        return found[0]

    def _write_phase(self, g, phase, every):
        integ = phase.integration
        g.attrs["integrator"] = str(integ.method)
        g.attrs["status"] = int(integ.status)
        g.attrs["status_name"] = str(integ.status_name)
        g.attrs["message"] = str(integ.message)
        g.attrs["n_steps"] = int(integ.n_steps)
        g.attrs["n_accepted"] = int(integ.n_accepted)
        g.attrs["n_rejected"] = int(integ.n_rejected)
        g.attrs["nfev"] = int(integ.nfev)
        g.attrs["beta"] = float(phase.beta)
        g.attrs["t_final"] = float(integ.t)
        g.attrs["every"] = int(every)
        # Step-halving retries (SettleOptions.retry_smaller_step): the steps that diverged and where.
        retries = list(getattr(phase, "retries", None) or [])
        if retries:
            g.attrs["retries"] = json.dumps([{"dt": float(r.dt), "message": str(r.message)} for r in retries])

        traj = integ.trajectory
        if traj is not None:
            keep = _kept_points(len(traj.t), every)
            g.attrs["samples"] = np.asarray(traj.samples, dtype=np.int64)
            _write_array(g, "t", np.asarray(traj.t)[keep])
            states = g.create_group("states", track_order=True)
            y = np.asarray(traj.y)[keep]
            parts = self.network.split_state(y) if self.network is not None else {"state": y}
            shapes = dict(zip(self.network.group_names[1:], self.network.group_shapes[1:])) \
                if self.network is not None and hasattr(self.network, "group_shapes") else {}
            for name, part in parts.items():
                _write_array(states, str(name), part)
                if len(shapes.get(name, ())) == 3:
                    # A feature map is stored flat, (m, r, C*H*W), with its shape: PhaseRecord.maps restores it.
                    states[str(name)].attrs["map_shape"] = np.asarray(shapes[name], dtype=np.int64)
            if phase.trajectory_energy is not None:
                _write_array(g, "energy", np.asarray(phase.trajectory_energy)[keep])
            if phase.trajectory_cost is not None:
                _write_array(g, "cost", np.asarray(phase.trajectory_cost)[keep])
            _write_array(g, "residual", np.asarray(traj.residual)[keep])
        _write_array(g, "final_state", np.asarray(phase.state))
        _write_array(g, "final_energy", np.asarray(phase.energy))
        if phase.cost is not None:
            _write_array(g, "final_cost", np.asarray(phase.cost))
        _write_array(g, "final_residual", np.asarray(integ.residual))
        _write_array(g, "final_tolerance", np.asarray(integ.tolerance))


    # tables ----------------------------------------------------------------
    @_one_record
    def record_table(self, name, columns, attrs=None):
        """Write a whole table to ``/tables/<name>``: one dataset per column.

        Parameters
        ----------
        name : str
        columns : dict of str to array_like
            Equal-length columns (numbers, or strings); a column may have
            trailing dimensions (one vector per row).
        attrs : dict, optional
            Scalar or string attributes of the table.
        """
        self._check_open()
        n_rows = _table_rows(columns)  # validate before anything is written
        prepared = {str(col): _column(values) for col, values in columns.items()}
        group = self._table_group(name)
        for col, data in prepared.items():
            group.create_dataset(col, data=data, chunks=True if n_rows else None,
                                 compression="gzip" if n_rows else None, maxshape=(None,) + data.shape[1:])
        for key, value in (attrs or {}).items():
            value = _scalar_attr(value)
            group.attrs[str(key)] = value if value is not None else json.dumps(_jsonable(attrs[key]))
        self._commit(_KIND_TABLE, name, n_rows)
        self._rows[name] = n_rows

    @_one_record
    def append_row(self, name, row):
        """Append one row (dict column -> value) to ``/tables/<name>``, creating it on the first call.

        The row is flushed and committed before the call returns, so a run
        stopped at any moment keeps every completed row (e.g. every completed
        epoch) and never shows a row cut off halfway.
        """
        self._check_open()
        tables = self._file[_TABLES]
        if name in tables:
            group = tables[name]
            if set(group) != set(map(str, row)):
                raise ValidationError(f"append_row: table {name!r} has columns {sorted(group)}, got {sorted(row)}")
            values = {str(col): _column([value])[0] for col, value in row.items()}
            # Committed rows, not the column lengths: a killed writer may have left part of a row.
            n = self._rows.get(name, 0)
            for col, value in values.items():
                dset = group[col]
                dset.resize(n + 1, axis=0)
                dset[n] = value
            self._commit(_KIND_TABLE, name, n + 1)
            self._rows[name] = n + 1
        else:
            self.record_table(name, {col: [value] for col, value in row.items()})

    def _table_group(self, name):
        if not isinstance(name, str) or not name or "/" in name:
            raise ValidationError(f"table name must be a non-empty string without '/', got {name!r}")
        if len(name.encode("utf-8")) > _NAME_BYTES:
            raise ValidationError(f"table name must be at most {_NAME_BYTES} bytes long, got {name!r}")
        tables = self._file.require_group(_TABLES)
        if name in tables:
            raise ValidationError(f"table {name!r} already exists in {str(self.path)!r}")
        return tables.create_group(name)

    def __repr__(self):
        state = "closed" if self._file is None else "open"
        return f"TrajectoryLog({str(self.path)!r}, {self._count} relaxations, {state})"

# --------------------------------------------------------------------------- reading
def _attr_value(value):
    """An HDF5 attribute as plain Python / numpy (bytes decoded, 0-d numbers as Python scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs(obj):
    return {k: _attr_value(v) for k, v in obj.attrs.items()}


def _array(group, name):
    return group[name][()] if name in group else None


@dataclass
class PhaseRecord:
    """One phase of a logged relaxation, as numpy arrays.

    Attributes
    ----------
    name : str
        Phase name (``'free'``, ``'nudged'``, ...).
    t : ndarray, shape (m,) or None
        Recorded times (None when the phase recorded no trajectory).
    states : dict of str -> ndarray, shape (m, r, n_g)
        Recorded states per free group (``{'state': (m, r, n_free)}`` when the
        log was written without a network); empty without a trajectory.
    energy, cost, residual : ndarray, shape (m, r) or None
    final_state : ndarray, shape (batch, n_free)
    final_energy, final_residual : ndarray, shape (batch,)
    final_cost : ndarray, shape (batch,) or None
    final_tolerance : ndarray, shape (batch,) or None
    attrs : dict
        integrator, status, status_name, message, n_steps, n_accepted,
        n_rejected, nfev, beta, t_final, every, samples.
    map_shapes : dict of str -> (C, H, W)
        The feature-map groups of a convolutional network and their shapes
        (:meth:`maps`).
    """

    name: str
    t: np.ndarray | None
    states: dict
    energy: np.ndarray | None
    cost: np.ndarray | None
    residual: np.ndarray | None
    final_state: np.ndarray
    final_energy: np.ndarray
    final_residual: np.ndarray
    final_cost: np.ndarray | None = None
    final_tolerance: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    map_shapes: dict = field(default_factory=dict)

    @property
    def has_trajectory(self):
        return self.t is not None

    @property
    def beta(self):
        return self.attrs.get("beta", 0.0)

    @property
    def t_final(self):
        return self.attrs.get("t_final", math.nan if self.t is None or not len(self.t) else float(self.t[-1]))

    def maps(self, group):
        """Recorded states of a feature-map group as maps, shape (m, r, C, H, W).

        ``group`` is a free group of a convolutional network, recorded with
        its map shape; ValueError names the groups that are maps otherwise.
        """
        shape = self.map_shapes.get(group)
        if shape is None:
            raise ValueError(f"group {group!r} was not recorded as feature maps; the map groups of this phase are "
                             f"{sorted(self.map_shapes)}")
        states = self.states[group]
        return states.reshape(states.shape[:2] + tuple(shape))

    @property
    def state(self):
        """Recorded states with the free groups joined again, shape (m, r, n_free), or None."""
        if not self.states:
            return None
        return np.concatenate(list(self.states.values()), axis=-1)

    @classmethod
    def _load(cls, g):
        t = _array(g, "t")
        states = {}
        if "states" in g:
            # The creation order is the order of the groups in the network; fall back to h5py's
            # own order for files whose groups were not created with track_order.
            sg = g["states"]
            states = {name: sg[name][()] for name in sg}
            map_shapes = {name: tuple(int(v) for v in sg[name].attrs["map_shape"]) for name in sg
                          if "map_shape" in sg[name].attrs}
        else:
            map_shapes = {}
        return cls(name=g.name.rsplit("/", 1)[-1], t=t, states=states, map_shapes=map_shapes,
                   energy=_array(g, "energy"), cost=_array(g, "cost"), residual=_array(g, "residual"),
                   final_state=_array(g, "final_state"), final_energy=_array(g, "final_energy"),
                   final_residual=_array(g, "final_residual"), final_cost=_array(g, "final_cost"),
                   final_tolerance=_array(g, "final_tolerance"), attrs=_attrs(g))


@dataclass
class Relaxation:
    """One logged relaxation: its label, recorded samples and phases in order.

    Attributes
    ----------
    index : int
    label : str
    samples : ndarray of int, shape (r,)
        Batch indices of the recorded trajectories (column ``j`` of every
        trajectory array belongs to batch sample ``samples[j]``).
    phases : dict of str -> PhaseRecord
        In the order they were recorded (free first).
    x, target : ndarray or None
        Input and target when they were logged.
    """

    index: int
    label: str
    samples: np.ndarray
    phases: dict
    x: np.ndarray | None = None
    target: np.ndarray | None = None

    def __getitem__(self, name):
        try:
            return self.phases[name]
        except KeyError:
            raise KeyError(f"relaxation {self.index} has no phase {name!r}; it has {list(self.phases)}") from None

    def __iter__(self):
        return iter(self.phases.values())

    def __len__(self):
        return len(self.phases)

    @property
    def has_trajectory(self):
        """True when at least one phase recorded a trajectory."""
        return any(p.has_trajectory for p in self.phases.values())

    def column(self, sample):
        """Column of batch sample ``sample`` in the trajectory arrays (ValueError if not recorded)."""
        hits = np.flatnonzero(self.samples == int(sample))
        if not hits.size:
            raise ValueError(f"sample {sample} was not recorded in relaxation {self.index}; "
                             f"recorded samples: {self.samples.tolist()}")
        return int(hits[0])


class LogReader:
    """Reader of a dynsim trajectory log; see :func:`read_log`.

    The run's attributes, configuration, network and the list of completed
    records are read when the reader is created (and again by
    :meth:`refresh`); :meth:`relaxation` and :meth:`table` open the file
    again and load one record into numpy arrays, so no file handle stays
    open and a long run's log need not fit in memory.

    A log still being written (or left by a killed writer) is opened in
    HDF5's SWMR read mode; the reader shows the records committed when it
    was created or last refreshed, never a record cut off halfway. Each
    read waits until the writer has finished the record it is writing
    (:mod:`dynsim.io.file_lock`), at most ``timeout`` seconds.

    Parameters
    ----------
    path : str or os.PathLike
    timeout : float or None
        Seconds one read waits for a live writer to finish its record
        before :class:`LogBusyError` (None: no limit).

    Attributes
    ----------
    path : pathlib.Path
    attrs : dict
        Root attributes (format, format_version, dynsim_version, created,
        config JSON, scalar config entries).
    config : dict
        The run configuration, decoded from JSON.
    tables : list of str
        Names of the tables (:meth:`table`).
    network : dict or None
        ``group_sizes``, ``group_names``, ``activation`` (a name, or a list
        of one per group), ``connections`` (and ``n_params``) when the log
        has a network.
    live : bool
        True when the file is marked as open by a SWMR writer: a run still
        going, or one that was killed.
    """

    def __init__(self, path, timeout=DEFAULT_READ_TIMEOUT_S):
        self.path = Path(path)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):
            raise ValidationError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.timeout = timeout
        if not self.path.exists():
            raise LogNotFoundError(f"no such log file: {str(self.path)!r}")
        if self.path.is_dir():
            raise LogFormatError(f"{str(self.path)!r} is a folder, not a dynsim log file")
        if not h5py.is_hdf5(self.path):
            raise LogFormatError(f"{str(self.path)!r} is not an HDF5 file, so not a dynsim trajectory log")
        self.live = False
        self._read(self._load_header)

    # opening -----------------------------------------------------------------
    def _open(self):
        try:
            f = h5py.File(self.path, "r")
            self.live = False
            return f
        except OSError as exc:
            first = exc
        message = str(first)
        if "already open for write" in message:
            # A SWMR writer holds the file, or was killed holding it: SWMR readers may open it.
            try:
                f = h5py.File(self.path, "r", swmr=True)
                self.live = True
                return f
            except OSError as exc:
                if "not already open for SWMR writing" in str(exc):
                    raise LogFormatError(
                        f"{str(self.path)!r} is marked as open by a writer that is not in SWMR mode (a run "
                        f"still going with another program, or one killed); readers cannot open it until "
                        f"it is closed, or `h5clear -s` clears the mark: {first}") from None
                raise LogFormatError(f"{str(self.path)!r} cannot be opened as HDF5 (truncated or damaged?): "
                                     f"{exc}") from None
        if "truncated" in message.lower():
            end = _recorded_end(self.path)
            if end is not None and os.path.getsize(self.path) < end:
                raise LogFormatError(
                    f"{str(self.path)!r} is {os.path.getsize(self.path)} bytes long but its HDF5 header records "
                    f"{end}: a write was cut short (a full disk?) or the file was copied in part; continuing the "
                    "run (TrajectoryLog.reopen, --resume) once there is space repairs it") from None
            raise LogFormatError(f"{str(self.path)!r} is truncated (shorter than its HDF5 superblock says; a "
                                 f"copy cut short?): {message}") from None
        if "lock" in message.lower():
            # HDF5 locks a file a non-SWMR writer holds open (a version 1 writer, or another program).
            raise OSError(f"{str(self.path)!r} is locked: a writer still has it open "
                          f"(close it first, or set HDF5_USE_FILE_LOCKING=FALSE to read it meanwhile); "
                          f"{message}") from None
        raise LogFormatError(f"{str(self.path)!r} cannot be opened as HDF5 (truncated or damaged?): "
                             f"{message}") from None

    def _read(self, fn):
        """``fn(open file)``, with read errors turned into LogFormatError naming the file.

        While a writer is live, a failed read is retried: the writer may have
        been flushing the metadata the reader crossed.
        """
        for attempt in range(_READ_ATTEMPTS):
            lock = RecordLock(self.path, writer=False)
            try:
                with lock.held(self.timeout), self._open() as f:
                    return fn(f)
            except (LogFormatError, FileNotFoundError, IndexError, LogBusyError):
                raise
            except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
                if self.live and attempt + 1 < _READ_ATTEMPTS:
                    time.sleep(_READ_RETRY_S)
                    continue
                raise LogFormatError(f"{str(self.path)!r} is damaged or truncated: reading it failed with "
                                     f"{type(exc).__name__}: {exc}") from None
            finally:
                lock.close()

    def _load_header(self, f):
        fmt = _attr_value(f.attrs.get("format"))
        if fmt != FORMAT:
            found = "no 'format' attribute" if fmt is None else f"format {fmt!r}"
            raise LogFormatError(
                f"{str(self.path)!r} is an HDF5 file but not a dynsim trajectory log "
                f"({found}; expected format {FORMAT!r})")
        version = _attr_value(f.attrs.get("format_version"))
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise LogFormatError(
                f"{str(self.path)!r} has format_version {version!r}; this dynsim "
                f"({dynsim.__version__}) reads versions up to {FORMAT_VERSION}")
        self.attrs = _attrs(f)
        try:
            self.config = json.loads(self.attrs.get("config", "{}"))
        except json.JSONDecodeError as exc:
            raise LogFormatError(f"{str(self.path)!r}: the config attribute is not valid JSON ({exc})") from None
        self.network = None
        if "network" in f:
            net = _attrs(f["network"])
            if "connections" in net:
                net["connections"] = json.loads(net["connections"])
            if str(net.get("activation", "")).startswith("["):
                net["activation"] = json.loads(net["activation"])
            if "group_sizes" in net:
                net["group_sizes"] = [int(n) for n in net["group_sizes"]]
            self.network = net
        self._load_index(f)

    def _load_index(self, f):
        committed = _read_commits(f)
        if committed is None:  # version 1: every record in the file is complete
            self._names = sorted(f[_RELAXATIONS], key=int) if _RELAXATIONS in f else []
            self._table_rows = {name: None for name in f[_TABLES]} if _TABLES in f else {}
        else:
            self._names, self._table_rows = committed
        self.tables = sorted(self._table_rows)

    def refresh(self):
        """Read the list of completed records again (a log still being written has grown); returns self."""
        self._read(self._load_index)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Nothing to release (no handle stays open); kept for the context-manager protocol."""

    @property
    def n_relaxations(self):
        return len(self._names)

    def __len__(self):
        return len(self._names)

    def __getitem__(self, index):
        return self.relaxation(index)

    def __iter__(self):
        for k in range(len(self)):
            yield self.relaxation(k)

    def relaxation(self, index):
        """Relaxation ``index`` (negative counts from the end) as a :class:`Relaxation`."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"relaxation index must be an int, got {index!r}")
        n = len(self._names)
        if not -n <= index < n:
            raise IndexError(f"relaxation {index} out of range: {str(self.path)!r} holds {n} relaxations")
        index = int(index) % n

        def load(f):
            rel = f[_RELAXATIONS][self._names[index]]
            attrs = _attrs(rel)
            order = attrs.get("phases") or [k for k in rel if isinstance(rel[k], h5py.Group)]
            phases = {name: PhaseRecord._load(rel[name]) for name in order}
            samples = np.asarray(rel.attrs.get("samples", np.zeros(0, dtype=np.int64)), dtype=np.int64)
            return Relaxation(index=index, label=attrs.get("label", ""), samples=samples, phases=phases,
                              x=_array(rel, "x"), target=_array(rel, "target"))

        return self._read(load)

    def table(self, name):
        """Table ``name`` as a dict of column -> ndarray (strings as str), plus its attrs under ``'__attrs__'``.

        Only committed rows: a row a killed writer left halfway is not shown.
        """
        if name not in self.tables:
            raise KeyError(f"{str(self.path)!r} has no table {name!r}; it has {self.tables}")
        rows = self._table_rows[name]

        def load(f):
            group = f[_TABLES][name]
            out = {}
            for col in group:
                dset = group[col]
                data = dset[()] if rows is None or dset.ndim == 0 else dset[:rows]
                if dset.dtype.kind == "O":
                    data = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(data)]
                                      ).reshape(data.shape)
                if rows is not None and data.shape[:1] != (rows,):
                    raise ValueError(f"column {col!r} of table {name!r} holds {data.shape[0]} rows, "
                                     f"{rows} were committed")
                out[col] = data
            out["__attrs__"] = _attrs(group)
            return out

        return self._read(load)

    def __repr__(self):
        return f"LogReader({str(self.path)!r}, {len(self)} relaxations)"


def read_log(path, timeout=DEFAULT_READ_TIMEOUT_S):
    """Open a dynsim trajectory log for reading, also while it is being written.

    Parameters
    ----------
    path : str or os.PathLike
    timeout : float or None
        Seconds one read waits for a live writer to finish the record it is
        writing; then :class:`LogBusyError` names the file. None waits as
        long as it takes.

    Returns
    -------
    LogReader
        Holds the records completed when it was created; :meth:`LogReader.refresh`
        catches up with a log still being written.

    Raises
    ------
    LogNotFoundError
        No file at ``path`` (a LogFormatError and a FileNotFoundError).
    LogFormatError
        The file is not HDF5, is truncated or damaged, is not a dynsim
        trajectory log, or is of a newer format version. The message names
        the file and says which.
    LogBusyError
        A read waited ``timeout`` seconds for the writer of a live log.
    """
    return LogReader(path, timeout=timeout)
