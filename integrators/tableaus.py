"""Butcher tableaus of the explicit Runge--Kutta methods, as data.

Every explicit method in this package is one tableau fed to one of two
compiled drivers (fixed step, or embedded pair with error control), so a new
method is a new table, not new code.

References
----------
.. [1] E. Hairer, S. P. Norsett, G. Wanner, "Solving Ordinary Differential
       Equations I: Nonstiff Problems", 2nd ed., Springer (1993), Sec. II.1
       (Butcher tableaus) and II.5 (Dormand--Prince pair).
.. [2] J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta
       formulae", J. Comput. Appl. Math. 6(1), 19-26 (1980).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ButcherTableau", "EULER", "HEUN", "RK4", "DOPRI5", "TABLEAUS"]


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge--Kutta method.

    Parameters
    ----------
    name : str
        Short name of the method.
    A : ndarray, shape (s, s)
        Stage coefficients, strictly lower triangular (explicit method).
    b : ndarray, shape (s,)
        Weights of the propagated solution.
    c : ndarray, shape (s,)
        Stage times; ``c[i] == A[i].sum()`` for a consistent method.
    order : int
        Classical order of the propagated solution.
    b_error : ndarray, shape (s,), optional
        ``b - b_hat`` for an embedded pair: ``h * sum_i b_error[i] k_i`` is
        the local error estimate. ``None`` for fixed-step methods.
    error_order : int, optional
        Order of the embedded (lower-order) solution ``b_hat``.
    fsal : bool
        First Same As Last: the last stage is evaluated at ``(t + h, y_new)``
        and its value is reused as the first stage of the next step.
    """

    name: str
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int
    b_error: np.ndarray | None = None
    error_order: int | None = None
    fsal: bool = False
    stages: int = field(init=False)

    def __post_init__(self):
        # Contiguous float64 copies: these go straight into compiled code.
        for name in ("A", "b", "c", "b_error"):
            value = getattr(self, name)
            if value is not None:
                value = np.ascontiguousarray(value, dtype=np.float64)
                value.setflags(write=False)
                object.__setattr__(self, name, value)
        object.__setattr__(self, "stages", len(self.b))

    @property
    def adaptive(self) -> bool:
        """True when the tableau carries an embedded error estimate."""
        return self.b_error is not None


EULER = ButcherTableau("euler", A=[[0.0]], b=[1.0], c=[0.0], order=1)

# Heun's method: the explicit trapezoidal rule [1, Table II.1.1].
HEUN = ButcherTableau(
    "heun", A=[[0.0, 0.0], [1.0, 0.0]], b=[0.5, 0.5], c=[0.0, 1.0], order=2
)

# The classical fourth-order method of Kutta (1901) [1, Table II.1.2].
RK4 = ButcherTableau(
    "rk4",
    A=[
        [0.0, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.0],
        [0.0, 0.5, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ],
    b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
    c=[0.0, 0.5, 0.5, 1.0],
    order=4,
)

_DOPRI5_B = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DOPRI5_B_HAT = [
    5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40,
]

# Dormand--Prince 5(4) [2]; [1, Table II.5.2]. The 7th stage is f(t+h, y_new),
# reused as the next step's first stage (FSAL).
DOPRI5 = ButcherTableau(
    "dopri5",
    A=[
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1 / 5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3 / 40, 9 / 40, 0.0, 0.0, 0.0, 0.0, 0.0],
        [44 / 45, -56 / 15, 32 / 9, 0.0, 0.0, 0.0, 0.0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0.0, 0.0, 0.0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0.0, 0.0],
        [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0],
    ],
    b=_DOPRI5_B,
    c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    order=5,
    b_error=np.subtract(_DOPRI5_B, _DOPRI5_B_HAT),
    error_order=4,
    fsal=True,
)

TABLEAUS = {t.name: t for t in (EULER, HEUN, RK4, DOPRI5)}
