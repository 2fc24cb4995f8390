"""Every learning rule by name: one entry point that reads a minibatch's gradient estimate for any network.

The Hopfield rules (EP in its variants, CHL, the recurrent-backprop
baseline) settle a free phase (from zeros, or from each example's stored
free equilibrium with persistent particles) and contrast it with a second
phase; the predictive coding rules start from the feedforward pass, which
is the free equilibrium of a PC network.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017) (training procedure, persistent particles).
"""
from __future__ import annotations

import numpy as np

from dynsim.references.gradients import implicit_gradient
from dynsim.learning.contrastive import EP_VARIANTS, chl_gradient, ep_gradient
from dynsim.relax.phases import PhaseResult, SettleOptions, free_phase
from dynsim.validation import ValidationError
from integrators import CONVERGED, IntegrationResult

__all__ = ["RULES", "PC_RULES", "gradient_estimate"]

RULES = tuple(f"ep-{v}" for v in EP_VARIANTS) + ("chl", "rbp")
"""Rules for Hopfield networks; 'rbp' is the recurrent-backprop baseline."""

PC_RULES = ("pc-strict", "pc-fixed-prediction", "pc-zil", "bp")
"""Rules for predictive coding networks; 'bp' is exact backprop on the feedforward pass."""


_FEEDFORWARD_OPTIONS = SettleOptions(integrator="euler")
"""The settings whose tolerances the feedforward free phase reports (validated once, not per minibatch)."""


def _feedforward_phase(network, drive, target):
    """The free phase of a PC network as a settled :class:`PhaseResult`, read off its feedforward pass.

    Every prediction error is zero there, so the vector field, the energy and
    the residual are exactly zero: the phase a relaxation from that start
    reports after 0 steps (its status, counts and tolerance
    ``atol + rtol ||s||`` with the default tolerances), without running one.
    """
    state = network.initial_state(drive)
    zeros = np.zeros(state.shape[0], dtype=state.dtype)  # the residuals; energies are summed in float64
    opts = _FEEDFORWARD_OPTIONS
    tolerance = opts.atol + opts.rtol * np.linalg.norm(state, axis=1)
    result = IntegrationResult(
        y=state, t=0.0, status=CONVERGED, message="steady state reached by every sample after 0 steps (t=0)",
        n_steps=0, n_accepted=0, n_rejected=0, nfev=1, residual=zeros, tolerance=tolerance, diverged_step=-1,
        diverged_sample=-1, trajectory=None, method="euler")
    return PhaseResult(phase="free", beta=0.0, state=state, energy=np.zeros(state.shape[0]),
                       cost=network.cost(state, target),
                       integration=result, dt=opts.step())


def _pc_gradient_estimate(rule, network, x, target, options):
    from dynsim.learning.predictive_coding import pc_gradient, zil_gradient

    if rule not in PC_RULES:
        raise ValidationError(f"rule for a predictive coding network must be one of {list(PC_RULES)}, got {rule!r}")
    # The feedforward pass is the free equilibrium and the start of the inference: computed once for both.
    x = network.check_input(x)
    drive = network.input_drive(x)
    free = _feedforward_phase(network, drive, network.check_target(target, x.shape[0]))
    if rule == "bp":
        return network.backprop_gradient(x, target), free, {}
    if rule == "pc-zil":
        est = zil_gradient(network, x, target)
    else:
        est = pc_gradient(network, x, target, rule[3:].replace("-", "_"), options=options, drive=drive)
    return est.gradient, free, {"inference": est.inference}


def gradient_estimate(rule, network, x, target, beta=0.5, options=None, nudged_options=None, s0=None, rng=None):
    """The gradient estimate of ``rule`` on one minibatch; returns ``(gradient, free PhaseResult, phases)``.

    For a :class:`dynsim.networks.pc.PCNetwork` the rules are :data:`PC_RULES`; its
    free phase is the feedforward pass (it starts at its equilibrium) and
    the inference with the clamped output is returned under 'inference'.
    """
    from dynsim.networks.pc import PCNetwork

    if isinstance(network, PCNetwork):
        return _pc_gradient_estimate(rule, network, x, target, options)
    if rule not in RULES:
        raise ValidationError(f"rule must be one of {list(RULES)}, got {rule!r}")
    if rule.startswith("ep-"):
        est = ep_gradient(network, x, target, beta, rule[3:], options=options, nudged_options=nudged_options,
                          s0=s0, rng=rng)
        return est.gradient, est.free, est.phases
    if rule == "chl":
        est = chl_gradient(network, x, target, options=options, clamped_options=nudged_options, s0=s0)
        return est.gradient, est.free, est.phases
    free = free_phase(network, x, s0=s0, target=target, options=options)
    return implicit_gradient(network, x, target, free).gradient, free, {}
