"""Compiled vector fields used by the integrator tests.

They live at module level, as every vector field must, so that the generated
drivers are cached by Numba like dynsim's own.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def linear_field(t, y, dydt, args):
    """dy/dt = y A^T + b for each row of y; args = (A (n, n), b (n,))."""
    A, b = args
    # Element loops rather than slice assignments, which cost seconds of compilation each (integrators._numerics).
    p = np.dot(y, A.T)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            dydt[i, j] = p[i, j] + b[j]


@njit(cache=True)
def forced_van_der_pol(t, y, dydt, args):
    """Van der Pol oscillator with periodic forcing (nonlinear and time-dependent).

    y0' = y1, y1' = mu (1 - y0^2) y1 - y0 + a cos(omega t); args = (mu, a, omega).
    """
    mu, a, omega = args
    for i in range(y.shape[0]):
        dydt[i, 0] = y[i, 1]
        dydt[i, 1] = mu * (1.0 - y[i, 0] ** 2) * y[i, 1] - y[i, 0] + a * np.cos(omega * t)
