"""Relaxation of vector-field (asymmetric) Hopfield networks: the integrators, or the network's own sweeps.

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
"""
from __future__ import annotations

import numpy as np

from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork
from dynsim.relax.phases import PhaseResult, SettleOptions, locate_divergence
from dynsim.relax.phases import settle as settle_with_integrator
from dynsim.validation import ValidationError, boolean, float_array, real_scalar

__all__ = ["settle_vector_field"]


def settle_vector_field(network, x, s0=None, target=None, beta=0.0, clamp_output=False, options=None, phase="free",
                        drive=None):
    """Relax a :class:`VectorFieldHopfieldNetwork`: :func:`dynsim.relax.phases.settle` for any integrator.

    The ODE integrators of :data:`dynsim.relax.phases.SETTLE_METHODS` go
    through :func:`dynsim.relax.phases.settle` with the compiled
    :data:`VF_FIELD`; the relaxation schemes ``'fixed_point'`` and ``'block'``
    through :meth:`VectorFieldHopfieldNetwork.relax_sweeps`. Arguments and
    result are ``settle``'s. ``PhaseResult.energy`` holds the pseudo-energy
    of :meth:`VectorFieldHopfieldNetwork.energy`; the residual
    (``.integration.residual``) is the figure that says whether the state
    has settled.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (batch, n_input)
    s0 : ndarray, shape (batch, n_free), optional
    target : ndarray, shape (batch, n_output), optional
    beta : float
    clamp_output : bool
    options : SettleOptions, optional
    phase : str
    drive : ndarray, shape (batch, n_free), optional

    Returns
    -------
    PhaseResult
    """
    if not isinstance(network, VectorFieldHopfieldNetwork):
        raise ValidationError(f"network must be a VectorFieldHopfieldNetwork, got {type(network).__name__}")
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    if not options.is_relaxation_scheme:
        return settle_with_integrator(network, x, s0=s0, target=target, beta=beta, clamp_output=clamp_output,
                                      options=options, phase=phase, drive=drive)
    if not isinstance(phase, str) or not phase:
        raise ValidationError(f"phase must be a non-empty label such as 'free', got {phase!r}")
    clamp_output = boolean("clamp_output", clamp_output)
    x = network.check_input(x)
    batch = x.shape[0]
    beta = real_scalar("beta", beta)
    if target is None:
        if beta != 0.0 or clamp_output:
            raise ValidationError("target is required for a nudged or clamped phase (beta != 0 or clamp_output)")
    else:
        target = network.check_target(target, batch)
    drive = network.input_drive(x) if drive is None else float_array("drive", drive, shape=(batch, network.n_free),
                                                                      dtype=network.dtype)
    s0 = network.initial_state(drive) if s0 is None else network.check_state(s0, batch, name="s0")
    if clamp_output:
        s0 = s0.copy()
        s0[:, network.output_slice] = target
    samples = options.record_samples
    if samples is not None and any(not 0 <= i < batch for i in samples):
        raise ValidationError(f"record_samples must lie in [0, {batch - 1}], got {list(samples)}")
    box = (options.bounds if options.bounds is not None else network.natural_box) if options.project else None
    result, energy = network.relax_sweeps(
        s0, drive, options.integrator, beta, target, clamp_output, max_steps=options.max_steps, atol=options.atol,
        rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state, box=box, max_abs=options.max_abs,
        record_every=options.record_every, record_samples=samples)
    args = network.kernel_args(drive, beta, target, clamp_output)
    site = locate_divergence(network, result, args, step=None, phase=phase)
    cost = None if target is None else network.cost(result.y, target)
    traj_e = traj_c = None
    if result.trajectory is not None:
        traj = result.trajectory
        m, k, n = traj.y.shape
        flat = traj.y.reshape(m * k, n)
        traj_e = network.energy_from_drive(flat, np.repeat(drive[traj.samples][None], m, axis=0).reshape(m * k, n)
                                           ).reshape(m, k)
        if target is not None:
            ys = np.repeat(target[traj.samples][None], m, axis=0).reshape(m * k, -1)
            traj_c = network.cost(flat, ys).reshape(m, k)
    return PhaseResult(phase=phase, beta=beta, state=result.y, energy=energy, cost=cost, integration=result,
                       trajectory_energy=traj_e, trajectory_cost=traj_c, dt=None, divergence=site)
