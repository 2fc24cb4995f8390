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
``numba.set_num_threads``.
"""
from __future__ import annotations

import contextlib
import importlib

import numba

__all__ = ["kernel_threads", "one_blas_thread"]

_controller = None


def kernel_threads():
    """Threads a ``prange`` loop of Numba runs on now (``numba.get_num_threads()``)."""
    return int(numba.get_num_threads())


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded in this process (found once: it takes milliseconds)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        importlib.import_module("scipy.linalg.cython_blas")  # the BLAS Numba's np.dot calls, loaded before the search

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


@contextlib.contextmanager
def one_blas_thread(parallel=True):
    """Hold every loaded BLAS to one thread inside the block when ``parallel`` (else do nothing).

    Entering and leaving costs about 16 microseconds; the previous thread
    counts are restored even when the block raises.
    """
    if not parallel:
        yield
        return
    with _blas_controller().limit(limits=1):
        yield
