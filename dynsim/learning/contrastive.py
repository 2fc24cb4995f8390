"""Local learning rules that read weight updates off two (or three) settled states.

Each rule returns an estimate ``gradient`` of dL/dtheta, L the batch-mean
cost at the free equilibrium, computed only from settled states and dE/dtheta
(never from the integrator); a learning step is ``theta -= lr * gradient``
(see :mod:`dynsim.training.optimizers`).

Equilibrium propagation (Scellier & Bengio 2017) with two nudging strengths
beta_1 < beta_2 from the free equilibrium:

    gradient = (dE/dtheta(s_{beta_2}) - dE/dtheta(s_{beta_1})) / (beta_2 - beta_1)

- ``positive``: (0, +beta), the original estimator, bias O(beta);
- ``negative``: (-beta, 0), bias O(beta) with the opposite sign
  (Scellier et al. 2023 find it better than positive);
- ``centered``: (-beta, +beta), a third phase; bias O(beta^2)
  (Laborieux et al. 2021);
- ``random``: (0, sigma beta) with the sign sigma drawn per minibatch
  (Scellier & Bengio 2017, who report it regularises).

Contrastive Hebbian learning (Movellan 1991) clamps the outputs to the
target in the second phase: gradient = dE/dtheta(s_clamped) - dE/dtheta(s_0).

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. (2021).
.. [3] B. Scellier et al., "Energy-based learning algorithms for analog computing:
       a comparative study", NeurIPS (2023).
.. [4] J. R. Movellan, "Contrastive Hebbian learning in the continuous Hopfield
       model", Connectionist Models (1991).
"""
from __future__ import annotations

import copy

import numpy as np

from dynsim.learning.estimate import Estimate
from dynsim.relax.phases import PhaseResult, SettleOptions, settle_checked
from dynsim.validation import DivergenceError, ValidationError, real_scalar, report_not_converged

__all__ = ["EP_VARIANTS", "ep_phase_betas", "ep_gradient", "chl_gradient", "drive_held"]

EP_VARIANTS = ("positive", "negative", "centered", "random")


def _options(options):
    """``options`` checked to be settle options (None: the defaults)."""
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    return options


def _check_phase(phase, options):
    """Stop on divergence; when a phase asked to reach a steady state stopped short of it, do as options say.

    A phase run for a fixed iteration count (``stop_at_steady_state=False``)
    is what the EP papers do, and is not warned about.
    """
    it = phase.integration
    if it.status_name == "diverged":
        raise DivergenceError(f"the {phase.phase} phase diverged: {it.message}")
    wanted_steady = options is None or options.stop_at_steady_state
    if wanted_steady and not phase.converged:
        report_not_converged(f"the {phase.phase} phase did not reach the steady state ({it.message}); the estimate "
                             f"reads a state whose largest residual is {it.residual.max():.3e}",
                             "warn" if options is None else options.not_converged, stacklevel=4)


def drive_held(network, x, drive=None):
    """A shallow copy of ``network`` whose input drive for ``x`` is computed once, for every phase of a minibatch.

    :func:`dynsim.relax.phases.settle` asks ``network.input_drive(x)`` at the start
    of each phase; the drive (biases plus the clamped input's projection, a
    matrix product with the input weights, the largest single product of a
    phase for a 784-500-10 network) is the same for the two or three phases
    of one minibatch while the parameters do not change. The copy shares
    the parameters and everything else with ``network`` and answers
    ``input_drive`` for this very ``x`` (the validated array, compared by
    identity) from the stored drive, and for any other input by computing
    it. Use it only while ``network.theta`` stays as it is.

    dynsim's own rules pass the drive to :func:`dynsim.relax.phases.settle`
    (``drive=``) instead; this copy serves code that hands a network to a
    function that settles it without taking a drive.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    x : ndarray, shape (batch, n_input)
        Already validated by ``network.check_input``.
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)`` when the caller has it already.

    Returns
    -------
    network copy
    """
    drive = network.input_drive(x) if drive is None else drive
    held = copy.copy(network)

    def input_drive(other):
        return drive if other is x else network.input_drive(other)

    held.input_drive = input_drive
    return held


def _contrast(network, x, s_lo, s_hi, scale):
    """``scale * (dE/dtheta(s_hi) - dE/dtheta(s_lo))``, one product per block when the network offers it."""
    if hasattr(network, "energy_grad_params_difference"):
        return network.energy_grad_params_difference(x, s_lo, s_hi, scale)
    return scale * (network.energy_grad_params(x, s_hi) - network.energy_grad_params(x, s_lo))


def _free(network, x, target, free, s0, options, drive):
    if free is None:
        # x, target and the drive are checked by the caller; s0 is checked here, once.
        s0 = None if s0 is None else network.check_state(s0, x.shape[0], name="s0")
        free = settle_checked(network, x, s0, target, 0.0, False, _options(options), "free", drive)
    elif not isinstance(free, PhaseResult):
        raise ValidationError(f"free must be a PhaseResult from free_phase, got {type(free).__name__}")
    _check_phase(free, options)
    return free


def ep_phase_betas(variant, beta, rng=None):
    """The nudging strengths of a variant's phases: (0, beta), (-beta, 0), (-beta, beta), or (0, +-beta) drawn.

    Parameters
    ----------
    variant : {'positive', 'negative', 'centered', 'random'}
    beta : float
        > 0, validated by the caller.
    rng : numpy.random.Generator, optional
        Draws the sign of ``random`` (one draw per call).

    Returns
    -------
    tuple of float
        Two strengths; 0.0 stands for the free phase.
    """
    if variant == "positive":
        return (0.0, beta)
    if variant == "negative":
        return (-beta, 0.0)
    if variant == "centered":
        return (-beta, beta)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValidationError(f"rng must be None or a numpy.random.Generator, got {rng!r}")
    rng = np.random.default_rng() if rng is None else rng
    return (0.0, beta) if rng.random() < 0.5 else (0.0, -beta)


def ep_gradient(network, x, target, beta, variant="positive", options=None, nudged_options=None,
                free=None, s0=None, rng=None):
    """Equilibrium-propagation estimate of dL/dtheta.

    Parameters
    ----------
    network : HopfieldNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    beta : float
        Nudging strength, > 0 (the variant sets the signs used).
    variant : {'positive', 'negative', 'centered', 'random'}
    options : SettleOptions
        Free phase settings.
    nudged_options : SettleOptions, optional
        Nudged phase settings (default: ``options``), e.g. fewer iterations.
    free : PhaseResult, optional
        A free phase already run on this batch (it is then reused).
    s0 : ndarray, shape (batch, n_free), optional
        Start of the free phase (persistent particles).
    rng : numpy.random.Generator, optional
        Draws the sign of the ``random`` variant.

    Returns
    -------
    Estimate

    Notes
    -----
    The phases of one minibatch share one input drive (``settle(drive=...)``),
    and the estimate is read with one matrix product per weight block from
    the two states (:meth:`HopfieldNetwork.energy_grad_params_difference`);
    both agree with running the phases one by one and subtracting the two
    gradients, to rounding.
    """
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    if variant not in EP_VARIANTS:
        raise ValidationError(f"variant must be one of {list(EP_VARIANTS)}, got {variant!r}")
    if target is None:
        raise ValidationError("target is required: EP nudges the output towards it")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    nudged_options = options if nudged_options is None else nudged_options
    drive = network.input_drive(x)  # once for every phase of this minibatch
    free = _free(network, x, target, free, s0, options, drive)
    betas = ep_phase_betas(variant, beta, rng)
    states, phases = {}, {}
    for b in betas:
        if b == 0.0:
            states[b] = free.state
        else:
            name = "nudged+" if b > 0 else "nudged-"
            # Distinct phase names: the two nudged phases of centered EP are logged side by side.
            phase = settle_checked(network, x, free.state, target, float(b), False, _options(nudged_options), name,
                                   drive)
            _check_phase(phase, nudged_options)
            phases[name] = phase
            states[b] = phase.state
    lo, hi = sorted(betas)
    gradient = _contrast(network, x, states[lo], states[hi], 1.0 / (hi - lo))
    rule = f"ep-{variant}"
    return Estimate(gradient=gradient, free=free, phases=phases, rule=rule, betas=(lo, hi))


def chl_gradient(network, x, target, options=None, clamped_options=None, free=None, s0=None):
    """Contrastive Hebbian learning estimate: dE/dtheta(s_clamped) - dE/dtheta(s_free).

    The clamped phase starts from the free equilibrium with the output units
    held at the target (Movellan 1991). Arguments as in :func:`ep_gradient`.
    """
    if target is None:
        raise ValidationError("target is required: CHL clamps the output to it")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    clamped_options = options if clamped_options is None else clamped_options
    drive = network.input_drive(x)  # once for every phase of this minibatch
    free = _free(network, x, target, free, s0, options, drive)
    clamped = settle_checked(network, x, free.state, target, 0.0, True, _options(clamped_options), "clamped", drive)
    _check_phase(clamped, clamped_options)
    gradient = _contrast(network, x, free.state, clamped.state, 1.0)
    return Estimate(gradient=gradient, free=free, phases={"clamped": clamped}, rule="chl",
                               betas=(0.0, float("nan")))
