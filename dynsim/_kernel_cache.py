"""Where Numba caches dynsim's compiled kernels: a folder per version of the sources.

Numba's on-disk cache is keyed on the source file of each compiled
function alone. A kernel inlines what it calls from other files (e.g.
``pc_kernels`` calls ``activations.rho_and_prime``), so after an edit of
``activations.py`` a cached ``pc_kernels`` function keeps running the old
activation, silently (seen here: a new activation computed as tanh until
the cache was deleted). Keying the whole cache folder on a digest of every
source of ``dynsim`` and ``integrators`` makes any edit start a fresh cache.

Set ``NUMBA_CACHE_DIR`` to choose the folder yourself; it is then left as
it is (and keeping it consistent is up to you).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import numba

KEEP = 4
"""Cache folders of earlier source versions kept besides the current one (older ones are removed)."""


def source_digest(folders):
    """SHA-1 over the relative paths and contents of the ``*.py`` files under ``folders`` (sorted), as hex."""
    h = hashlib.sha1()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(b"\0")
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def cache_root():
    """``$XDG_CACHE_HOME/dynsim`` (``~/.cache/dynsim``) / ``numba-py<ver>-numba<ver>``."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dynsim"
    return base / f"numba-py{sys.version_info[0]}{sys.version_info[1]}-numba{numba.__version__}"


def configure(packages):
    """Point Numba's cache at a folder named by the digest of ``packages``' sources; returns the folder or None.

    Must run before the packages' compiled functions are defined (Numba
    reads the setting when a ``cache=True`` function is decorated). Does
    nothing when ``NUMBA_CACHE_DIR`` is set or the folder cannot be
    created (Numba's default, next to the sources, then applies).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    folders = [Path(p.__file__).parent for p in packages]
    root = cache_root()
    folder = root / source_digest(folders)[:16]
    cold = not folder.is_dir() or not any(folder.iterdir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if cold:
        # The first run after an install or an edit compiles every kernel it uses: say so rather than sit silent.
        print("dynsim: first run of this version: compiling the Numba kernels as they are used (about a minute "
              f"in all); later runs load them from {folder}", file=sys.stderr, flush=True)
    numba.config.CACHE_DIR = str(folder)
    _prune(root, folder)
    return folder


def _prune(root, current):
    """Remove all but the ``KEEP`` most recently used other version folders (best effort)."""
    try:
        others = sorted((p for p in root.iterdir() if p.is_dir() and p != current),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in others[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
