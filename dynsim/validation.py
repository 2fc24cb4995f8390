"""Boundary checks shared by dynsim's public functions: one clear message per bad argument."""
from __future__ import annotations

import errno as _errno
import functools
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from integrators.solve import ArgumentError


class DynsimError(Exception):
    """Base class of the errors dynsim raises on purpose."""


class UsageExit(SystemExit):
    """A command-line run ended on input the user can fix: exit status 2, as argparse uses.

    Attributes
    ----------
    message : str
        The one-line reason, already printed on stderr.
    """

    def __init__(self, message):
        super().__init__(2)
        self.message = str(message)


def fail(message):
    """End a command-line run on bad input: ``error: message`` on stderr and exit status 2.

    Raises
    ------
    UsageExit
    """
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise UsageExit(message)


class WriteError(DynsimError, OSError):
    """A file or folder could not be written (a full disk, a read-only folder, ...); the message names it.

    An ``OSError`` as well, so code that handles failed writes catches it;
    ``errno`` is that of the failed call where it is known.
    """

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


def reports_write_errors(main):
    """Decorate a scenario's ``main(argv)``: a :class:`WriteError` met anywhere in the run ends it with :func:`fail`.

    A full disk or a read-only folder found while a log, a checkpoint or a
    figure is written then ends the run with one line naming the file and
    the cause, exit status 2, instead of a traceback.
    """
    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except WriteError as exc:
            fail(f"{exc}")
    return wrapped


def os_reason(exc):
    """The operating system's words for a failed call (``'No space left on device'``), without the path."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def writable_folder(name, folder, create=True, min_free_bytes=1 << 20):
    """``folder`` as a Path, once a file could be created there and some space is free; created if asked.

    Checked before a run writes anything there, so that a read-only or full
    file system ends the run at once, not at its first log or checkpoint.

    Parameters
    ----------
    name : str
        The argument, e.g. ``'--out'``, named in the message.
    folder : str or os.PathLike
    create : bool
        Create ``folder`` (and its parents). Otherwise nothing is left
        behind: a missing folder is checked through its nearest existing
        parent, where it would be created.
    min_free_bytes : int
        Refuse a file system with less free space than this (default 1 MiB).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValidationError
        ``folder`` names an existing file, or a folder inside one.
    WriteError
        The folder cannot be created or written to (read-only file system,
        no permission), or its file system is (nearly) full.
    """
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise ValidationError(f"{name} must be a folder path, got {folder!r}")
    folder = Path(folder)
    base = next((part for part in (folder, *folder.parents) if part.exists()), Path("."))
    if not base.is_dir():
        where = "is a file" if base == folder else f"is inside {base}, which is a file"
        raise ValidationError(f"{name} {folder} {where}: name a folder")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            base = folder
        fd, probe = tempfile.mkstemp(dir=base, prefix=".dynsim-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise WriteError(f"{name} {folder} cannot be written: {os_reason(exc)}", getattr(exc, "errno", None)) \
            from None
    try:
        stat = os.statvfs(base)
    except (OSError, AttributeError):  # no statvfs (Windows): the first failed write says so instead
        return folder
    free = stat.f_bavail * stat.f_frsize
    if free < min_free_bytes:
        raise WriteError(f"{name} {folder}: its file system is full ({format_bytes(free)} free); free some space "
                         "or choose another folder", _errno.ENOSPC)
    return folder


def format_bytes(n):
    """``n`` bytes in words: ``'3.2 GiB'``."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def available_memory():
    """Bytes of memory a new allocation can take: ``MemAvailable`` of /proc/meminfo, else free physical memory.

    Returns None where neither is known.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(name, n_bytes, what):
    """Refuse, before anything is allocated, a size whose arrays would not fit in the memory available.

    Parameters
    ----------
    name : str
        The argument (or arguments) that set the size, named in the message.
    n_bytes : int or float
        Estimated bytes of the arrays ``name`` asks for.
    what : str
        What those arrays are, in words (``'persistent particles of 60000
        examples x 510 units'``).

    Returns
    -------
    int
        ``n_bytes``.

    Raises
    ------
    ValidationError
        ``n_bytes`` exceeds :func:`available_memory`; the message gives both.
    """
    available = available_memory()
    if available is not None and n_bytes > available:
        raise ValidationError(f"{name}: {what} would need about {format_bytes(n_bytes)}, more than the "
                              f"{format_bytes(available)} of memory available; choose a smaller size")
    return int(n_bytes)


def layered_bytes(sizes, batch=0, itemsize=8, copies=4, state_copies=8):
    """Estimated bytes of a layered network of ``sizes`` and a batch of ``batch`` states, for :func:`check_memory`.

    ``copies`` arrays of the parameters (the parameters, their gradient,
    optimizer moments) and ``state_copies`` arrays of the states of every
    unit per example (free and nudged states, integrator stages, fields).
    Python ints: no overflow, however large the sizes.
    """
    sizes = [int(v) for v in sizes]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    return (copies * params + state_copies * int(batch) * sum(sizes)) * int(itemsize)


class NotConvergedError(DynsimError):
    """A phase asked to reach its steady state stopped short of it, and the options said to raise."""


class NotConvergedWarning(UserWarning):
    """A phase asked to reach its steady state stopped short of it (or a reference was taken off a fixed point)."""


def report_not_converged(message, action, stacklevel=2):
    """Warn (:class:`NotConvergedWarning`), raise (:class:`NotConvergedError`) or ignore, as ``action`` says."""
    if action == "raise":
        raise NotConvergedError(message)
    if action == "warn":
        warnings.warn(message, NotConvergedWarning, stacklevel=stacklevel)


class ValidationError(DynsimError, ArgumentError):
    """An argument has the wrong shape, dtype, value or range; the message names it.

    A ``ValueError``, and an :class:`integrators.solve.ArgumentError`: the
    integrators (which never import dynsim) raise the latter for their own
    arguments, so ``except ArgumentError`` catches bad arguments at every level.
    """


class DivergenceError(DynsimError, RuntimeError):
    """A relaxation blew up (non-finite state or runaway values).

    The message names the phase, step, sample and layer.
    """


class StepHalvedWarning(UserWarning):
    """A fixed-step relaxation diverged and was run again with half the step.

    Issued by :func:`dynsim.relax.phases.settle` when ``SettleOptions(retry_smaller_step=n)``
    is set; the message names the phase, both steps and where the divergence was.
    """


def float_array(name, value, shape=None, ndim=None, dtype=np.float64):
    """``value`` as a C-contiguous finite float array, checked against ``shape``/``ndim``.

    ``shape`` may hold ``None`` for a free dimension.
    """
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous \
            and (ndim is None or value.ndim == ndim) \
            and (shape is None or (value.ndim == len(shape)
                                   and all(want is None or got == want for got, want in zip(value.shape, shape)))):
        # The common case, an array already as wanted: one sum answers for finiteness (a NaN or an inf makes it
        # non-finite), about 3 times cheaper than isfinite().all(); a sum that overflows falls through to the
        # exact test below.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(value.sum()):
                return value
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValidationError(f"{name} must be an array of real numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                                    or arr.dtype == bool):
        raise ValidationError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValidationError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
            spelled = str(tuple("any" if s is None else s for s in shape)).replace("'", "")
            raise ValidationError(f"{name} must have shape {spelled}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValidationError(f"{name} must be finite; found {arr[tuple(bad)]} at index {bad}")
    return arr


def positive_array(name, value, n, default=1.0):
    """``value`` as a float64 array (n,) of finite numbers > 0; ``None`` gives ``default`` everywhere."""
    if value is None:
        return np.full(n, float(default))
    v = float_array(name, value, shape=(n,))
    if np.any(v <= 0):
        raise ValidationError(f"{name} must be > 0, got {v.tolist()}")
    return v.copy()


def real_scalar(name, value, low=-np.inf, high=np.inf, low_open=False, high_open=False, nonzero=False):
    """A finite float within the stated interval; the message spells the interval.

    Text and booleans are refused although ``float`` would take them: ``"0.1"``
    or ``True`` in place of a number is a caller's mistake.
    """
    if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0:
        raise ValidationError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a real number, got {value!r}") from None
    lo_ok = v > low if low_open else v >= low
    hi_ok = v < high if high_open else v <= high
    if not np.isfinite(v) or not lo_ok or not hi_ok or (nonzero and v == 0.0):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        extra = " and nonzero" if nonzero else ""
        raise ValidationError(f"{name} must be finite, in {interval}{extra}; got {value!r}")
    return v


def positive_int(name, value, minimum=1):
    """An int >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def random_generator(name, value):
    """A ``numpy.random.Generator`` from ``value``: None (fresh entropy), an integer seed >= 0 or a Generator."""
    if value is None or isinstance(value, np.random.Generator):
        return np.random.default_rng(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 0:
        return np.random.default_rng(int(value))
    raise ValidationError(f"{name} must be None, an integer >= 0 or a numpy.random.Generator, got {value!r}")


def boolean(name, value):
    """A bool (Python or NumPy); numbers and text are refused (``"false"`` is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_of(name, value, choices):
    """``value`` if it is among ``choices`` (compared as is; unhashable values are refused)."""
    try:
        ok = value in choices
    except TypeError:
        ok = False
    if not ok or not isinstance(value, str) and all(isinstance(c, str) for c in choices):
        raise ValidationError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The floating-point types dynsim computes in (its kernels are compiled for both)."""


def float_dtype(dtype):
    """``dtype`` (numpy.float32 or numpy.float64, a dtype or a name) as a numpy dtype; ValidationError otherwise."""
    try:
        resolved = None if isinstance(dtype, (bool, np.bool_)) or dtype is None else np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES:  # (a dtype compares equal to None: float64)
        raise ValidationError(f"dtype must be numpy.float32 or numpy.float64 (or 'float32', 'float64'), "
                              f"got {dtype!r}")
    return resolved
