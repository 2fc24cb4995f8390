"""The Hopfield activations rho and rho' in torch, with the formulas of :mod:`dynsim.networks.activations`.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017)
       (the hard sigmoid clip(s, 0, 1), its derivative taken as 1 on the closed interval).
"""
from __future__ import annotations

from dynsim.backends.torch._torch import require_torch

torch = require_torch()

__all__ = ["rho_and_prime", "rho", "BOUNDED"]

BOUNDED = {"hard_sigmoid": (0.0, 1.0)}
"""The natural box of each activation that has one (the same as :data:`dynsim.networks.activations.NATURAL_BOUNDS`)."""


def rho_and_prime(s, activation):
    """``(rho(s), rho'(s))`` elementwise, tensors shaped like ``s``.

    The hard sigmoid's derivative is 1 on the closed interval [0, 1], as in
    the Numba kernels: a unit at a bound can leave it when its input pulls
    inwards.
    """
    if activation == "hard_sigmoid":
        return s.clamp(0.0, 1.0), ((s >= 0.0) & (s <= 1.0)).to(s.dtype)
    if activation == "linear":
        return s, torch.ones_like(s)
    if activation == "logistic":
        e = torch.sigmoid(s)
        return e, e * (1.0 - e)
    if activation == "tanh":
        th = torch.tanh(s)
        return th, 1.0 - th * th
    raise ValueError(f"unknown activation {activation!r}")  # descriptions are validated upstream


def rho(s, activation):
    """rho(s) elementwise."""
    if activation == "hard_sigmoid":
        return s.clamp(0.0, 1.0)
    return rho_and_prime(s, activation)[0]
