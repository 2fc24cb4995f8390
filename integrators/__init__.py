"""Generic Numba-compiled ODE integrators for batches of states.

This package knows vector fields, not neurons: it never imports ``dynsim``.
A vector field is a module-level compiled function ``f(t, y, dydt, args)``
named by a :class:`VectorField`; :func:`integrate` relaxes a batch of states
with explicit Euler, projected Euler, Heun, RK4 or adaptive Dormand--Prince
5(4) until every sample reaches a steady state or a limit.
"""
# First, before anything compiles: symbol names that cannot repeat across processes.
from integrators.unique_symbols import install as _install_unique_symbols

_install_unique_symbols()

from integrators.solve import METHODS, ArgumentError, ArgumentTypeError, IntegrationResult, Trajectory, integrate
from integrators.specialize import VectorField, drivers_for, kernel_cache_dir
from integrators.status import (
    CONVERGED,
    DIVERGED,
    STATUS_NAMES,
    STEP_LIMIT,
    STEP_TOO_SMALL,
    TIME_LIMIT,
)
from integrators.tableaus import DOPRI5, EULER, HEUN, RK4, TABLEAUS, ButcherTableau

__all__ = [
    "METHODS", "ArgumentError", "ArgumentTypeError", "IntegrationResult", "Trajectory", "integrate",
    "VectorField", "drivers_for",
    "kernel_cache_dir", "CONVERGED", "DIVERGED", "STATUS_NAMES", "STEP_LIMIT", "STEP_TOO_SMALL",
    "TIME_LIMIT", "DOPRI5", "EULER", "HEUN", "RK4", "TABLEAUS", "ButcherTableau",
]
