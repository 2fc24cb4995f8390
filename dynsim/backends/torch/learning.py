"""Equilibrium propagation and contrastive Hebbian learning on the torch backend.

The same estimates as :func:`dynsim.learning.contrastive.ep_gradient` and
:func:`dynsim.learning.contrastive.chl_gradient`, batch means, in dynsim's
units (cost 1/2 ||s_out - y||^2):

- EP:
  ``(dE/dtheta(s_hi) - dE/dtheta(s_lo)) / (beta_hi - beta_lo)``, the phases
  at ``beta_lo < beta_hi`` among (0, +beta) ``positive``, (-beta, 0)
  ``negative``, (-beta, +beta) ``centered``, and (0, +-beta) ``random`` (the
  sign drawn per minibatch); each nudged phase starts from the free state;
- CHL: ``dE/dtheta(s_clamped) - dE/dtheta(s_free)``, the clamped phase from
  the free state with the output held at the target.

Gradient descent on it follows the gradient of the loss (EP's estimate of
dL/dtheta, Scellier & Bengio 2017, Eq. 10).

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021) (centered EP).
.. [3] J. R. Movellan, "Contrastive Hebbian learning in the continuous Hopfield model", Connectionist Models
       (1991).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.relax import relax
from dynsim.learning.contrastive import ep_phase_betas
from dynsim.validation import ValidationError, real_scalar

torch = require_torch()

__all__ = ["TORCH_RULES", "TorchEstimate", "estimate"]

TORCH_RULES = ("ep-positive", "ep-negative", "ep-centered", "ep-random", "chl")
"""The rules the torch backend runs on Hopfield networks (names of :data:`dynsim.learning.rules.RULES`); PC
networks take ``'pc-strict'`` and ``'pc-fixed-prediction'`` (:mod:`dynsim.backends.torch.pc`)."""


@dataclass
class TorchEstimate:
    """A gradient estimate and the phases it read, on the device.

    Attributes
    ----------
    gradient : torch.Tensor, shape (n_params,)
    free : TorchPhase
    phases : dict of str to TorchPhase
        ``'nudged+'``, ``'nudged-'`` or ``'clamped'``.
    betas : tuple of float
    """

    gradient: object
    free: object
    phases: dict = field(default_factory=dict)
    betas: tuple = (0.0, 0.0)


def estimate(net, rule, x, target, beta=0.5, options=None, nudged_options=None, s0=None, drive=None,
             check_every=10, rng=None, sync=True):
    """One minibatch's gradient estimate with ``rule`` on the network's device.

    Parameters
    ----------
    net : TorchHopfieldNetwork, TorchPCNetwork or TorchConvPCNetwork
    rule : str
        One of :data:`TORCH_RULES` (Hopfield), or ``'pc-strict'`` / ``'pc-fixed-prediction'`` (PC).
    x : torch.Tensor, shape (batch, n_input)
    target : torch.Tensor, shape (batch, n_output)
    beta : float
        Nudging strength, > 0 (EP rules).
    options, nudged_options : SettleOptions
        Free phase; nudged or clamped phases (default ``options``).
    s0 : list of torch.Tensor, optional
        Start of the free phase (default zero).
    drive : list of torch.Tensor, optional
        ``net.input_drive(x)`` when already computed.
    check_every : int
        Steps between steady-state tests (see :func:`dynsim.backends.torch.relax.relax`).
    rng : numpy.random.Generator, optional
        Draws the sign of ``ep-random``.
    sync : bool
        False: fixed step counts, nothing read back (CUDA graph capture).

    Returns
    -------
    TorchEstimate
    """
    from dynsim.backends.torch.conv_pc import TORCH_PC_NETWORKS
    from dynsim.backends.torch.pc import pc_estimate

    if options is None:
        raise ValidationError("options is required: the SettleOptions of the free phase")
    if isinstance(net, TORCH_PC_NETWORKS):
        return pc_estimate(net, rule, x, target, options, check_every=check_every, sync=sync)
    if rule not in TORCH_RULES:
        raise ValidationError(f"rule must be one of {list(TORCH_RULES)} on the torch backend, got {rule!r}")
    nudged_options = options if nudged_options is None else nudged_options
    x = net.tensor(x)
    target = net.tensor(target)
    if drive is None:
        drive = net.input_drive(x)
    if s0 is None:
        s0 = net.zeros(x.shape[0])
    free = relax(net, s0, drive, options, check_every=check_every, sync=sync, phase="free")
    if rule == "chl":
        clamped = relax(net, free.state, drive, nudged_options, target=target, clamp_output=True,
                        check_every=check_every, sync=sync, phase="clamped")
        grad = net.energy_grad_params_difference(x, free.state, clamped.state, 1.0)
        return TorchEstimate(grad, free, {"clamped": clamped}, (0.0, float("nan")))
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    betas = ep_phase_betas(rule[3:], beta, rng)
    states, phases = {}, {}
    for b in betas:
        if b == 0.0:
            states[b] = free.state
        else:
            name = "nudged+" if b > 0 else "nudged-"
            phases[name] = relax(net, free.state, drive, nudged_options, beta=b, target=target,
                                 check_every=check_every, sync=sync, phase=name)
            states[b] = phases[name].state
    lo, hi = sorted(betas)
    grad = net.energy_grad_params_difference(x, states[lo], states[hi], 1.0 / (hi - lo))
    return TorchEstimate(grad, free, phases, (lo, hi))
