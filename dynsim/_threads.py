"""How compiled kernels share the cores: Numba's threads over independent chunks, one BLAS thread each.

A kernel that runs chunks of a minibatch on Numba's threads
(``numba.prange``) calls BLAS from each of them. OpenBLAS sized for the
whole machine would then start its own threads inside every call: measured
on 2 cores with the PC training step of a 784-128-128-128-10 network,
11.2 ms per minibatch against 3.0 ms with one BLAS thread per chunk (and
6.2 ms on one core). :func:`one_blas_thread` holds BLAS to one thread for
the duration of such a call and gives the user's setting back afterwards,
so that numpy's and scipy's large products elsewhere keep their threads.

Numba's thread count is the user's: ``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``. With one thread the kernels run the minibatch
whole: chunks cost one core 6-18 % (smaller matrix products, more calls).
The chunks are fixed by the batch size, so every run on two or more
threads gives the same numbers; a run on one thread differs from them by
rounding (BLAS sums a product's terms in an order that depends on its
shape), as PyTorch's and JAX's do between thread counts. Set
``NUMBA_NUM_THREADS=1`` for the numbers of a one-core machine. That holds
for the relaxations' chunks (:func:`chunk_starts`, :func:`chunks_pay`). The
convolutions of :mod:`dynsim.networks.conv_kernels` always run their fixed
chunks, each product on one BLAS thread, so every thread count gives the
same bits.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import threading

import numba
import numpy as np

from integrators._numerics import copy_rows

__all__ = ["THREAD_VARIABLES", "thread_environment", "kernel_threads", "chunks_pay", "one_blas_thread",
           "kernels_own_the_cores", "chunk_starts", "store_chunk_report", "store_chunk_samples", "merge_chunk_reports"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
"""The environment variables that size OpenMP's, the BLAS libraries' and Numba's thread pools."""

_controller = None


def thread_environment(threads):
    """``{variable: str(threads)}`` for :data:`THREAD_VARIABLES`: the environment of a process given ``threads`` cores."""
    return {name: str(int(threads)) for name in THREAD_VARIABLES}


def kernel_threads():
    """Threads a ``prange`` loop of Numba runs on now (``numba.get_num_threads()``)."""
    return int(numba.get_num_threads())


def chunks_pay(stop_at_steady_state):
    """Whether a relaxation runs in chunks: a fixed number of steps, and more than one thread to run them on.

    A steady-state stop is the minibatch's (every sample steady), which
    chunks stopping on their own would not reproduce.
    """
    return not stop_at_steady_state and kernel_threads() > 1


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded in this process (found once: it takes milliseconds)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        importlib.import_module("scipy.linalg.cython_blas")  # the BLAS Numba's np.dot calls, loaded before the search

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


_hold_lock = threading.Lock()
_holds = 0
"""Open :func:`one_blas_thread` blocks, of every Python thread (the BLAS limit is the process's)."""
_limiter = None
"""threadpoolctl's limiter of the outermost open block, which gives the user's thread counts back."""


@contextlib.contextmanager
def one_blas_thread(parallel=True):
    """Hold every loaded BLAS to one thread inside the block when ``parallel`` (else do nothing).

    The first block to open sets the limit (about 16 microseconds) and the
    last to close gives the previous thread counts back, even when a block
    raises; blocks opened inside it, by this or another Python thread, cost
    a lock and a count. So kernels called once per sweep can hold BLAS
    themselves, for callers outside a training loop, at no cost inside one.
    """
    global _holds, _limiter
    if not parallel:
        yield
        return
    with _hold_lock:
        if _holds == 0:
            _limiter = _blas_controller().limit(limits=1)
        _holds += 1
    try:
        yield
    finally:
        with _hold_lock:
            _holds -= 1
            if _holds == 0:
                _limiter.restore_original_limits()
                _limiter = None


def kernels_own_the_cores(fn):
    """Decorate ``fn`` to run with BLAS on one thread whenever Numba has several (:func:`one_blas_thread`).

    A training step alternates chunked relaxations on Numba's threads with
    products outside them (the input's projection, the weight updates).
    Given both, OpenBLAS's threads and Numba's OpenMP threads, which wait
    for work spinning, fought for the cores: centered EP on 784-512-10,
    batch 50, 30 + 10 + 10 steps, took 34 s per 60,000 images on 2 cores
    with both, 10-11 s with Numba's threads alone, 14.5 s with BLAS's alone
    and 14 s on one core (``OMP_WAIT_POLICY=PASSIVE`` gave 15 s: waking the
    threads costs more than it saves). The convolutional preset ``lab-conv``
    gains as much: 640 images in 13 s on 2 cores with the hold, 35 s
    without.
    """
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with one_blas_thread(kernel_threads() > 1):
            return fn(*args, **kwargs)
    return wrapped


def chunk_starts(batch, chunk, chunked=True):
    """Boundaries (n_chunks + 1,) int64 of ceil(batch / chunk) near-equal chunks of a minibatch (one if not ``chunked``).

    The chunks depend on the batch size alone, not on how many threads
    run them, so two threads and eight give the same numbers.
    """
    n_chunks = -(-int(batch) // int(chunk)) if chunked else 1
    return (np.arange(n_chunks + 1, dtype=np.int64) * int(batch)) // n_chunks


@numba.njit(cache=True)
def store_chunk_report(info, c, status, steps, nfev, bad_step, bad_sample, first):
    """Row ``c`` of ``info`` (n_chunks, 5): a chunk's (status, steps, nfev, bad_step, bad_sample), the sample
    numbered in the minibatch (the chunk starts at sample ``first``; -1 when none), for :func:`merge_chunk_reports`."""
    info[c, 0] = status
    info[c, 1] = steps
    info[c, 2] = nfev
    info[c, 3] = bad_step
    info[c, 4] = bad_sample + first if bad_sample >= 0 else -1


@numba.njit(cache=True)
def store_chunk_samples(first, y, res, e, out, residual, energy):
    """A chunk's final states ``y`` (n, n_free), residuals ``res`` and energies ``e`` (n,) into rows
    ``first:first + n`` of the minibatch's ``out``, ``residual`` and ``energy`` (element loops: the comment above
    :func:`integrators._numerics.copy_prefix` says why)."""
    copy_rows(out[first:first + y.shape[0]], y)
    for i in range(res.shape[0]):
        residual[first + i] = res[i]
        energy[first + i] = e[i]


def merge_chunk_reports(info, diverged):
    """One relaxation's (status, steps, nfev, bad_step, bad_sample) from its chunks' rows of ``info`` (n_chunks, 5).

    Chunks of a fixed-step relaxation all end alike unless one diverges;
    then the earliest divergence (by step, then by chunk) is the report,
    its sample numbered in the minibatch. ``diverged`` is the status code
    of a divergence.
    """
    bad = info[:, 0] == diverged
    row = info[0]
    if bad.any():
        rows = np.flatnonzero(bad)
        row = info[rows[np.argmin(info[rows, 3])]]
    return tuple(int(v) for v in row)
