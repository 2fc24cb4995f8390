"""Plasticity of the dendritic error microcircuit: the dendritic prediction of somatic activity, read at a steady state.

Sacramento et al. (2018) run the dynamics and the plasticity together in
continuous time. Here, as for the other settling networks, the plasticity is
read at steady states: the free state (no teaching) and the nudged state
(the output nudged towards the target with conductance beta), which the
relaxation reaches with any integrator. :func:`microcircuit_updates` gives
the weight changes of every block at a state (:mod:`dynsim.networks.microcircuit`
states the rules); :func:`microcircuit_gradient` turns those at the nudged
state into an estimate of dL/dtheta comparable with backprop's.

References
----------
.. [1] J. Sacramento, R. Ponte Costa, Y. Bengio, W. Senn, "Dendritic cortical
       microcircuits approximate the backpropagation algorithm", NeurIPS (2018).
.. [2] R. Urbanczik, W. Senn, "Learning by the Dendritic Prediction of Somatic
       Spiking", Neuron 81(3) (2014).
"""
from __future__ import annotations

import numpy as np

from dynsim.learning.estimate import Estimate
from dynsim.networks import microcircuit_kernels as MK
from dynsim.networks.microcircuit import DendriticMicrocircuit, _phi
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import DivergenceError, ValidationError, real_scalar

__all__ = ["microcircuit_updates", "microcircuit_gradient"]


def _check(network):
    if not isinstance(network, DendriticMicrocircuit):
        raise ValidationError(f"network must be a DendriticMicrocircuit, got {type(network).__name__}")


def microcircuit_updates(network, x, s, drive=None):
    """The weight changes of every block at the state ``s``, batch-averaged, shape (n_params,) (zero on B).

    dW_k = r_{k-1}^T (phi(u_k) - phi(c_k v_B,k)) / batch, dIP_k = r_k^T (r^I_k -
    phi_{k+1}(g_D / (g_lk + g_D) v_I,k)) / batch, dPI_k = -(r^I_k)^T v_A,k / batch.

    Parameters
    ----------
    network : DendriticMicrocircuit
    x : ndarray, shape (batch, n_input)
    s : ndarray, shape (batch, n_free)
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)``.
    """
    _check(network)
    basal, apical = network.dendrites(x, s, drive)
    x = network.check_input(x)
    s = network.check_state(s, x.shape[0])
    n = x.shape[0]
    cond = network.conductances
    off, sizes = network._free_off, network.group_sizes

    def cols(a, g):
        return a[:, off[g]:off[g] + sizes[g]]

    rates = MK.rates(s, network._acts, network._sizes, network._free_off)
    update = np.zeros(network.n_params, dtype=network.dtype)
    blocks = network.parameter_blocks()
    N = network.n_layers
    for k in range(1, N + 1):
        g = network._pyr[k]
        act = network.activation if k < N else network.output_activation
        below = _phi(x, network.input_activation) if k == 1 else cols(rates, network._pyr[k - 1])
        error = cols(rates, g) - _phi(network.attenuation(k) * cols(basal, g), act)
        update[blocks[f"W_{k}"]] = (below.T @ error / n).ravel()
        if k < N:
            q = network._int[k]
            mirrored = network.activation if k + 1 < N else network.output_activation
            predicted = _phi(cond["g_D"] / (cond["g_lk"] + cond["g_D"]) * cols(basal, q), mirrored)
            update[blocks[f"IP_{k}"]] = (cols(rates, g).T @ (cols(rates, q) - predicted) / n).ravel()
            update[blocks[f"PI_{k}"]] = (-(cols(rates, q).T @ cols(apical, g)) / n).ravel()
    return update


def microcircuit_gradient(network, x, target, beta=0.1, options=None, s0=None, subtract_free=False):
    """Settle free, then with the output nudged by ``beta``; the plasticity at the nudged state as an estimate.

    Parameters
    ----------
    network : DendriticMicrocircuit
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    beta : float
        The teaching conductance, > 0.
    options : SettleOptions, optional
        Of both relaxations (default: dopri5 to the steady state).
    s0 : ndarray, shape (batch, n_free), optional
        Start of the free relaxation (default: rest).
    subtract_free : bool
        Read the forward weights' changes as the difference between the
        nudged and the free state (an EP-like contrast) instead of at the
        nudged state alone (the paper's rule). When the interneurons lag
        the forward weights, the free state's apical dendrites are not
        silent and the paper's rule carries that mismatch, which does not
        depend on the teaching, into every hidden update; the contrast
        removes it. The interneuron blocks are read at the nudged state
        either way.

    Returns
    -------
    Estimate
        ``gradient`` (n_params,): minus the W blocks' changes times
        c_N (g_lk + g_B + beta) / beta, which makes the output layer's
        estimate tend to backprop's (:meth:`DendriticMicrocircuit.backprop_gradient`)
        as beta -> 0 with a linear output in the self-predicting state, the
        hidden layers' in direction; minus the interneuron blocks' changes
        as they are (IP, PI); zero on B. ``free`` and ``phases['nudged']``
        the two relaxations.
    """
    _check(network)
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    options = SettleOptions() if options is None else options
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    drive = network.input_drive(x)
    free = settle(network, x, s0=s0, target=target, options=options, drive=drive)
    nudged = settle(network, x, s0=free.state, target=target, beta=beta, options=options, phase="nudged",
                    drive=drive)
    for phase in (free, nudged):
        if phase.integration.status_name == "diverged":
            raise DivergenceError(f"the microcircuit's {phase.phase} relaxation diverged: {phase.integration.message}")
    update = microcircuit_updates(network, x, nudged.state, drive)
    if subtract_free:
        free_update = microcircuit_updates(network, x, free.state, drive)
        for k in range(1, network.n_layers + 1):
            block = network.parameter_blocks()[f"W_{k}"]
            update[block] -= free_update[block]
    cond = network.conductances
    scale = network.attenuation(network.n_layers) * (cond["g_lk"] + cond["g_B"] + beta) / beta
    gradient = -update
    for k in range(1, network.n_layers + 1):
        gradient[network.parameter_blocks()[f"W_{k}"]] *= network.dtype.type(scale)
    return Estimate(gradient=gradient, free=free, phases={"nudged": nudged}, rule="microcircuit")
