"""dynsim: simulator of energy-based neural networks."""
from dynsim._version import __version__

# Importing integrators first makes Numba name compiled symbols uniquely across
# processes before any dynsim kernel compiles (see integrators.unique_symbols).
import integrators as _integrators  # noqa: E402,F401

# Then, before any dynsim kernel is defined: a Numba cache folder per version of the sources, so that a kernel
# never runs stale code inlined from another file (see dynsim._kernel_cache).
import dynsim as _self  # noqa: E402
from dynsim import _kernel_cache  # noqa: E402

_kernel_cache.configure([_self, _integrators])
