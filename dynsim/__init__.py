"""dynsim: simulator of energy-based neural networks."""
from dynsim._version import __version__

# Importing integrators first makes Numba name compiled symbols uniquely across
# processes before any dynsim kernel compiles (see integrators.unique_symbols).
import integrators as _integrators  # noqa: E402,F401
