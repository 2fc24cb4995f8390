"""Give every compiled function a process-independent unique symbol name.

Why this exists: Numba mangles each compiled function's symbols with a
``uid`` taken from a per-process counter that starts at 1. Two cached
libraries compiled in *different* processes can therefore carry identical
symbol names for a function (same module, name, signature and counter
value). When one process loads both from the disk cache, LLVM resolves the
shared names to one definition. Seen here: a kernel called from Python
found the environment of a copy inlined into a cached driver, and boxing
its result array failed with ``'descr' is NULL`` (Numba issue 10486; the
same collision can dispatch into a stale body instead of raising).

Drawing the ``uid`` at random (64 bits) makes such collisions practically
impossible, because symbol names then no longer repeat across processes.
It must be installed before the first compilation; importing
:mod:`integrators` does it.
"""
from __future__ import annotations

import secrets

__all__ = ["install", "installed", "SCHEME"]

#: Part of the fingerprint of generated modules, so driver caches compiled
#: with the old counter-based names are rebuilt rather than mixed with new ones.
SCHEME = "random-uid-64"


class _RandomUids:
    """Iterator of random 64-bit integers, a drop-in for ``itertools.count``."""

    def __iter__(self):
        return self

    def __next__(self) -> int:
        return secrets.randbits(64)


def _identity_class():
    try:
        from numba.core.bytecode import FunctionIdentity
    except ImportError:  # pragma: no cover - a Numba that moved the class
        return None
    return FunctionIdentity if hasattr(FunctionIdentity, "_unique_ids") else None


def install() -> bool:
    """Replace Numba's sequential function ``uid`` counter with random draws.

    Returns
    -------
    bool
        True when the random ids are in force, False if this Numba version
        has no such counter (then nothing is changed).
    """
    identity = _identity_class()
    if identity is None:  # pragma: no cover - depends on the Numba version
        return False
    if not isinstance(identity._unique_ids, _RandomUids):
        identity._unique_ids = _RandomUids()
    return True


def installed() -> bool:
    """Whether the random ``uid`` draws are in force in this process."""
    identity = _identity_class()
    return identity is not None and isinstance(identity._unique_ids, _RandomUids)
