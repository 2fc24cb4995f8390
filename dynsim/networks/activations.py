"""Activation functions rho of the energy-based networks, compiled, selected by an integer code.

A code instead of a function argument keeps one compiled signature for every
activation (a function argument would specialise, and defeat the cache).
"""
import numpy as np
from numba import njit

from dynsim.validation import ValidationError

HARD_SIGMOID = 0
LOGISTIC = 1
TANH = 2
RELU = 3
GELU = 4
LINEAR = 5
GELU_C = 0.7978845608028654  # sqrt(2 / pi)
GELU_A = 0.044715

ACTIVATIONS = {"hard_sigmoid": HARD_SIGMOID, "logistic": LOGISTIC, "tanh": TANH, "linear": LINEAR}
"""Activation names accepted by the groups of Hopfield networks, and their codes.

``linear`` (rho(s) = s) serves output groups (Scellier 2024's deep Hopfield
networks): the energy's 1/2 ||s||^2 keeps such a group's terms a convex
quadratic, bounded below, as long as it is not coupled to itself or to
another free linear group (the networks refuse those couplings)."""

PC_ACTIVATIONS = {"hard_sigmoid": HARD_SIGMOID, "logistic": LOGISTIC, "tanh": TANH, "relu": RELU, "gelu": GELU}
"""Activations of predictive coding networks (ReLU and GELU have no place in the Hopfield energy's rho).

GELU is the tanh form of Hendrycks & Gimpel (2016), x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
the one JAX's ``jax.nn.gelu`` computes by default and the pcx benchmarks use."""

NATURAL_BOUNDS = {"hard_sigmoid": (0.0, 1.0)}
"""Boxes that projected dynamics may clip states to (Scellier & Bengio 2017 clip to [0, 1])."""


def activation_code(name, allowed=None):
    """The integer code of an activation name; ValidationError listing the valid names otherwise."""
    allowed = ACTIVATIONS if allowed is None else allowed
    if name not in allowed:
        raise ValidationError(f"activation must be one of {sorted(allowed)}, got {name!r}")
    return allowed[name]


@njit(cache=True)
def rho(s, act):
    """rho(s) elementwise; ``s`` has shape (batch, n), result is C-contiguous.

    Hard sigmoid clip(s, 0, 1) (Scellier & Bengio 2017), logistic 1/(1+e^-s), tanh.
    """
    out = np.empty(s.shape, dtype=s.dtype)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            v = s[i, j]
            if act == HARD_SIGMOID:
                out[i, j] = min(max(v, 0.0), 1.0)
            elif act == LOGISTIC:
                out[i, j] = 1.0 / (1.0 + np.exp(-v))
            elif act == LINEAR:
                out[i, j] = v
            else:
                out[i, j] = np.tanh(v)
    return out


@njit(cache=True)
def rho_prime(s, act):
    """Derivative rho'(s) elementwise, shape of ``s``.

    For the hard sigmoid the derivative is taken as 1 on the closed interval
    [0, 1] (Theano's clip gradient, used by Scellier & Bengio's code): a unit
    clipped at a bound can then leave it when its input pulls inwards;
    with an open interval it would be stuck at 0 forever.
    """
    out = np.empty(s.shape, dtype=s.dtype)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            v = s[i, j]
            if act == HARD_SIGMOID:
                out[i, j] = 1.0 if (v >= 0.0 and v <= 1.0) else 0.0
            elif act == LOGISTIC:
                e = 1.0 / (1.0 + np.exp(-v))
                out[i, j] = e * (1.0 - e)
            elif act == LINEAR:
                out[i, j] = 1.0
            else:
                th = np.tanh(v)
                out[i, j] = 1.0 - th * th
    return out


@njit(cache=True)
def rho_second(s, act):
    """Second derivative rho''(s) elementwise (0 for the piecewise-linear hard sigmoid and the identity)."""
    out = np.empty(s.shape, dtype=s.dtype)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            v = s[i, j]
            if act == HARD_SIGMOID or act == LINEAR:
                out[i, j] = 0.0
            elif act == LOGISTIC:
                e = 1.0 / (1.0 + np.exp(-v))
                out[i, j] = e * (1.0 - e) * (1.0 - 2.0 * e)
            else:
                th = np.tanh(v)
                out[i, j] = -2.0 * th * (1.0 - th * th)
    return out


@njit(cache=True, inline="always")
def unit_rho_and_prime(v, act):
    """(rho(v), rho'(v)) of one unit: the formulas every array version here and the fused relaxation use."""
    if act == RELU:
        return (v, 1.0) if v > 0.0 else (0.0, 0.0)
    if act == GELU:
        th = np.tanh(GELU_C * (v + GELU_A * v * v * v))
        return 0.5 * v * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_A * v * v)
    if act == HARD_SIGMOID:
        return min(max(v, 0.0), 1.0), (1.0 if (v >= 0.0 and v <= 1.0) else 0.0)
    if act == LOGISTIC:
        e = 1.0 / (1.0 + np.exp(-v))
        return e, e * (1.0 - e)
    if act == LINEAR:
        return v, 1.0
    th = np.tanh(v)
    return th, 1.0 - th * th


@njit(cache=True, inline="always")
def unit_rho_second(v, act):
    """rho''(v) of one unit, for the Hopfield activations (what :func:`rho_second` computes entrywise)."""
    if act == HARD_SIGMOID or act == LINEAR or act == RELU:
        return 0.0 * v
    if act == LOGISTIC:
        e = 1.0 / (1.0 + np.exp(-v))
        return e * (1.0 - e) * (1.0 - 2.0 * e)
    th = np.tanh(v)
    return -2.0 * th * (1.0 - th * th)


@njit(cache=True)
def rho_and_prime(s, act):
    """rho(s) and rho'(s) in one pass (one exp or tanh per entry instead of two).

    Serves both network families: ReLU and GELU are only reachable through
    :data:`PC_ACTIVATIONS`.
    """
    r = np.empty(s.shape, dtype=s.dtype)
    rp = np.empty(s.shape, dtype=s.dtype)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            r[i, j], rp[i, j] = unit_rho_and_prime(s[i, j], act)
    return r, rp
