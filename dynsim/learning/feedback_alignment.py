"""Feedback alignment: errors sent down through fixed random weights instead of the forward weights' transpose.

For the layered feedforward network of a :class:`~dynsim.networks.pc.PCNetwork`
(its free equilibrium, x_l = f(x_{l-1}) W_l + b_l, the output x_L linear),
with the loss L = mean_b 1/2 ||x_L - y||^2, backprop's error signals are

    delta_L = (x_L - y) / batch,    delta_l = (delta_{l+1} W_{l+1}^T) * f'(x_l),

and the update of layer l is dL/dW_l = f(x_{l-1})^T delta_l, dL/db_l = sum_b delta_l.
Carrying delta_{l+1} down through W_{l+1}^T needs each synapse's weight at
the other end of the axon: the weight-transport problem. The rules here keep
the form of the update and change only the pathway of the error:

- ``fa``, feedback alignment (Lillicrap et al. 2016): delta_l =
  (delta_{l+1} B_{l+1}) * f'(x_l), with B_{l+1} a fixed random matrix of
  W_{l+1}^T's shape (n_{l+1}, n_l). The forward weights come to align with
  the feedback during learning, and the updates with backprop's.
- ``dfa``, direct feedback alignment (Nokland 2016): delta_l =
  (delta_L D_l) * f'(x_l), with D_l a fixed random (n_L, n_l) matrix: every
  hidden layer hears the output error directly.

The output layer's update is backprop's under both. The feedback matrices
are drawn once per network, kind and seed, Glorot-uniform like the forward
weights of the same shape (U(-r, r), r = sqrt(6 / (n_in + n_out))), so the
error reaching a layer has the scale backprop's would have at
initialisation; they are never learned. The same seed gives the same
matrices, so a run resumed from a checkpoint continues with them.

References
----------
.. [1] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random
       synaptic feedback weights support error backpropagation for deep
       learning", Nature Communications 7:13276 (2016).
.. [2] A. Nokland, "Direct Feedback Alignment Provides Learning in Deep
       Neural Networks", NeurIPS (2016).
.. [3] T. P. Lillicrap, A. Santoro, L. Marris, C. J. Akerman, G. Hinton,
       "Backpropagation and the brain", Nat. Rev. Neurosci. 21:335 (2020).
"""
from __future__ import annotations

import weakref

import numpy as np

from dynsim.learning.estimate import Estimate
from dynsim.learning.predictive_coding import feedforward_phase
from dynsim.networks.pc import PCNetwork, activation_and_derivative
from dynsim.validation import ValidationError

__all__ = ["FEEDBACK_KINDS", "feedback_matrices", "feedback_alignment_gradient"]

FEEDBACK_KINDS = ("fa", "dfa")
"""'fa': each layer's error from the layer above through B; 'dfa': from the output through D."""

_CACHE = weakref.WeakKeyDictionary()
"""network -> {(kind, seed): matrices}: drawn once per network, not per minibatch."""


def _check(network, kind, seed):
    if not isinstance(network, PCNetwork):
        raise ValidationError(f"network must be a PCNetwork (a layered feedforward network), "
                              f"got {type(network).__name__}")
    if kind not in FEEDBACK_KINDS:
        raise ValidationError(f"kind must be one of {list(FEEDBACK_KINDS)}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(f"seed must be an integer >= 0, got {seed!r}")


def feedback_matrices(network, kind="fa", seed=0):
    """The fixed random feedback matrices of ``network``, one per hidden layer, lowest first.

    Parameters
    ----------
    network : PCNetwork
        Layer sizes n_0 (input), n_1 ... n_L (output).
    kind : {'fa', 'dfa'}
    seed : int
        Seeds the draw (independently of the network's own initialisation).

    Returns
    -------
    list of ndarray
        For layer l = 1 ... L-1: 'fa' B_{l+1} of shape (n_{l+1}, n_l);
        'dfa' D_l of shape (n_L, n_l). In the network's dtype; the same
        list (not a copy) on every call for this network, kind and seed.
    """
    _check(network, kind, seed)
    per_network = _CACHE.setdefault(network, {})
    sizes = tuple(network.group_sizes)
    key = (kind, int(seed), sizes, np.dtype(network.dtype).str)
    if key not in per_network:
        rng = np.random.default_rng([int(seed), FEEDBACK_KINDS.index(kind)])
        n_out = sizes[-1]
        matrices = []
        for l in range(1, len(sizes) - 1):
            rows = sizes[l + 1] if kind == "fa" else n_out
            bound = np.sqrt(6.0 / (rows + sizes[l]))
            matrices.append(rng.uniform(-bound, bound, size=(rows, sizes[l])).astype(network.dtype))
        per_network[key] = matrices
    return per_network[key]


def feedback_alignment_gradient(network, x, target, kind="fa", seed=0, drive=None):
    """The FA or DFA update of one minibatch, as an estimate of dL/dtheta (``theta -= lr * gradient``).

    Parameters
    ----------
    network : PCNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    kind : {'fa', 'dfa'}
    seed : int
        The feedback matrices' seed (:func:`feedback_matrices`).
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)`` (the feedforward pass of the hidden and
        output layers) when the caller has it for the current parameters.

    Returns
    -------
    Estimate
        ``gradient`` (n_params,) in the network's dtype, laid out like
        ``network.theta``; ``free`` the feedforward pass; rule 'fa' or 'dfa'.
    """
    _check(network, kind, seed)
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    feedback = feedback_matrices(network, kind, seed)
    if drive is None:
        drive = network.input_drive(x)
    sizes = network.group_sizes
    L = len(sizes) - 1
    # x_0 is the clamped input; x_1 ... x_L are the feedforward pass, side by side in the drive.
    views = network.split_state(drive)
    layers = [x] + [views[name] for name in network.group_names[1:]]
    # Zeros: blocks other than the forward W and b (a DTPNetwork's inverses) are not this rule's to move.
    gradient = np.zeros(network.n_params, dtype=network.dtype)
    blocks = list(network.parameter_blocks().values())  # W_1 ... W_L, then b_1 ... b_L
    delta_out = (layers[L] - target) / np.asarray(x.shape[0], dtype=network.dtype)
    delta = delta_out
    for l in range(L, 0, -1):
        f_below, fp_below = (a.astype(network.dtype, copy=False)
                             for a in activation_and_derivative(layers[l - 1], network.activation))
        gradient[blocks[l - 1]] = (f_below.T @ delta).ravel()
        gradient[blocks[L + l - 1]] = delta.sum(axis=0)
        if l > 1:
            # The error of layer l-1: from the layer above through B_l (FA), or from the output through D_{l-1}.
            source = delta if kind == "fa" else delta_out
            delta = (source @ feedback[l - 2]) * fp_below
    free = feedforward_phase(network, drive, target)
    return Estimate(gradient=gradient, free=free, rule=kind)
