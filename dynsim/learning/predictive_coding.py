"""Predictive coding learning rules: local Hebbian updates read at the settled state.

Supervised inference clamps the input and the output (to the target) and
relaxes the hidden layers from the feedforward pass; the update of W_l is
proportional to p_l eps_l f(x_{l-1})^T, i.e. minus dF/dW_l, local and Hebbian.
The functions return ``gradient``, an estimate of dL/dtheta for the
feedforward loss L = mean_b 1/2 ||y_hat_b - y_b||^2 (a learning step is
``theta -= lr * gradient``), so they compare directly with
:meth:`PCNetwork.backprop_gradient`.

- ``strict``: predictions follow the states during inference. With equal
  precisions the update differs from backprop in magnitude whatever the
  iteration count; with a small output precision (large sigma_L^2) and the
  update multiplied by sigma_L^2 it approaches backprop (Whittington &
  Bogacz 2017).
- ``fixed_prediction``: predictions and f' held at their feedforward values;
  at equilibrium the errors equal backprop's deltas exactly (Millidge,
  Tschantz & Buckley 2020).
- Z-IL (:func:`zil_gradient`): inference step 1 from the feedforward pass, W_l
  read at step L - l; exact backprop after L - 1 steps (Song et al. 2020).

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, Neural Computation 34(6) (2022).
.. [3] Y. Song, T. Lukasiewicz, Z. Xu, R. Bogacz, "Can the Brain Do
       Backpropagation? Exact Implementation of Backpropagation in Predictive
       Coding Networks", NeurIPS (2020).
.. [4] R. Rosenbaum, "On the relationship between predictive coding and
       backpropagation", PLoS ONE 17(3) (2022).
"""
from __future__ import annotations

import numpy as np

from dynsim.learning import pc_fused
from dynsim.learning.estimate import Estimate
from dynsim.networks.conv_pc import ConvPCNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import PhaseResult, SettleOptions, settle
from dynsim.validation import DivergenceError, ValidationError, boolean, float_array, report_not_converged
from integrators import CONVERGED, IntegrationResult

__all__ = ["PC_VARIANTS", "PC_NETWORKS", "pc_gradient", "zil_gradient", "feedforward_phase"]

PC_VARIANTS = ("strict", "fixed_prediction")

PC_NETWORKS = (PCNetwork, ConvPCNetwork)
"""The predictive coding network classes the rules here accept: layered dense, and over groups and couplings."""


_FEEDFORWARD_OPTIONS = SettleOptions(integrator="euler")
"""The settings whose tolerances the feedforward free phase reports (validated once, not per minibatch)."""


def feedforward_phase(network, drive, target):
    """The free phase of a PC network as a settled :class:`PhaseResult`, read off its feedforward pass.

    ``drive`` is ``network.input_drive(x)`` (the feedforward pass, shape
    (batch, n_free)), ``target`` the checked targets (batch, n_output).

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


def _check(network, x, target):
    if not isinstance(network, PC_NETWORKS):
        raise ValidationError(f"network must be a PCNetwork or a ConvPCNetwork, got {type(network).__name__}")
    if target is None:
        raise ValidationError("target is required: supervised predictive coding clamps the output to it")
    x = network.check_input(x)
    return x, network.check_target(target, x.shape[0])


def pc_gradient(network, x, target, variant="strict", options=None, rescale=True, drive=None):
    """Settle the hidden layers with the output clamped and read -dF/dtheta (the PC update).

    Parameters
    ----------
    network : PCNetwork or ConvPCNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    variant : {'strict', 'fixed_prediction'}
    options : SettleOptions
        Inference settings (the iteration count of the papers is
        ``max_steps`` with ``stop_at_steady_state=False``).
    rescale : bool
        Multiply by the output variance sigma_L^2 (Whittington & Bogacz's
        code does), so that the estimate has backprop's scale.
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)`` (the feedforward pass) when the caller has
        it already for the current parameters, e.g. from the free phase of
        the same minibatch (it does not depend on the variant).

    Returns
    -------
    Estimate
        ``gradient`` (n_params,) in the network's dtype; ``free`` the
        feedforward pass; ``phases['inference']`` the inference
        (``estimate.inference``).

    Notes
    -----
    With fixed-step Euler inference without a box, trajectory recording or
    time limit (:func:`dynsim.learning.pc_fused.applies`) the whole estimate is one
    compiled call (:func:`dynsim.learning.pc_fused.pc_minibatch`): the same steps,
    status and counts as the generic path, states, energies and gradient
    to rounding. A relaxation that diverges there is run again by the
    generic path, which reports where (and retries with a smaller step when
    ``options.retry_smaller_step`` asks for it).
    """
    if variant not in PC_VARIANTS:
        raise ValidationError(f"variant must be one of {list(PC_VARIANTS)}, got {variant!r}")
    x, target = _check(network, x, target)
    rescale = boolean("rescale", rescale)
    if drive is not None:
        drive = float_array("drive", drive, shape=(x.shape[0], network.n_free), dtype=network.dtype)
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    # f(x) and the feedforward pass are computed once: for the free phase, the inference and the update (inside
    # the fused call when it applies).
    fx = None
    fused = pc_fused.applies(network, options)
    if drive is None and not fused:
        fx = network.input_activity(x)
        drive = network.input_drive(x, input_activity=fx)
    if not fused:
        free = feedforward_phase(network, drive, target)
    rule = "pc-" + variant.replace("_", "-")
    if fused:
        result, state, energy, cost, gradient, drive = pc_fused.run(network, x, target, drive,
                                                                    variant == "fixed_prediction", options, rescale)
        free = feedforward_phase(network, drive, target)
        if result.status_name != "diverged":
            phase = PhaseResult(phase="inference", beta=0.0, state=state, energy=energy, cost=cost,
                                integration=result, dt=options.step())
            _check_settled(phase, options)
            return Estimate(gradient=gradient, free=free, phases={"inference": phase}, rule=rule)
        # Diverged: the generic path below reports where, as it always has.
    saved = network.fixed_prediction
    network.fixed_prediction = variant == "fixed_prediction"
    try:
        if fx is None:
            fx = network.input_activity(x)
        phase = settle(network, x, target=target, clamp_output=True, options=options, phase="inference",
                       drive=drive)
        if phase.integration.status_name == "diverged":
            raise DivergenceError(f"predictive coding inference diverged: {phase.integration.message}")
        gradient = network.energy_grad_params(x, phase.state, drive=drive, input_activity=fx)
    finally:
        network.fixed_prediction = saved
    if rescale:
        gradient = gradient * gradient.dtype.type(network.variances[-1])  # in the network's dtype
    _check_settled(phase, options)
    return Estimate(gradient=gradient, free=free, phases={"inference": phase}, rule=rule)


def _check_settled(phase, options):
    """An inference asked to reach the steady state that stopped short of it: warn, raise or pass (options)."""
    if options.stop_at_steady_state and not phase.converged:
        it = phase.integration
        report_not_converged(f"the PC inference did not reach the steady state ({it.message}); the update reads "
                             f"a state whose largest residual is {np.max(it.residual):.3e}", options.not_converged,
                             stacklevel=4)


def zil_gradient(network, x, target):
    """Z-IL: unit Euler inference steps from the feedforward pass, W_l and b_l read at step L - l.

    Needs unit precisions in every layer (the exactness argument of Song et
    al. 2020 assumes them) and a chain of layers (each coupling from group
    l - 1 to group l; a :class:`PCNetwork` always is one). Returns an
    :class:`~dynsim.learning.estimate.Estimate` whose gradient equals backprop's.
    """
    x, target = _check(network, x, target)
    if not np.allclose(network.variances, 1.0):
        raise ValidationError(f"Z-IL needs unit variances in every layer, got {network.variances.tolist()}")
    if isinstance(network, ConvPCNetwork):
        skips = [f"{op.coupling.name} ({op.coupling.pre} -> {op.coupling.post})" for op in network._links
                 if op.post != op.pre + 1]
        if skips:
            raise ValidationError(f"Z-IL reads layer l at step L - l, which needs a chain of layers; couplings "
                                  f"{skips} skip a layer")
    L = len(network.group_sizes) - 1
    saved = network.fixed_prediction
    network.fixed_prediction = False
    try:
        options = SettleOptions(integrator="euler", dt=1.0, max_steps=max(L - 1, 1), stop_at_steady_state=False,
                                record_every=1, max_abs=np.inf)
        phase = settle(network, x, target=target, clamp_output=True, options=options, phase="inference")
        states = phase.integration.trajectory.y  # (L, batch, n_free) for steps 0..L-1
        gradient = np.empty(network.n_params, dtype=network.dtype)
        blocks = network.parameter_blocks()
        layer_of = network.layer_of_block()
        for l in range(1, L + 1):
            at_step = network.energy_grad_params(x, states[L - l])
            for name in blocks:
                if layer_of[name] == l:  # W_l and b_l
                    gradient[blocks[name]] = at_step[blocks[name]]
    finally:
        network.fixed_prediction = saved
    free = feedforward_phase(network, network.input_drive(x), target)
    return Estimate(gradient=gradient, free=free, phases={"inference": phase}, rule="pc-zil")
