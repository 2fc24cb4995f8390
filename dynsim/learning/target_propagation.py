"""Difference target propagation: each layer learns from the difference between its activity and a target.

For a :class:`~dynsim.networks.dtp.DTPNetwork` (forward layers
``x_l = F_l(x_{l-1})``, learned inverses ``G_l``) and the loss
``L = 1/2 ||x_L - y||^2`` per sample, one minibatch of DTP (Lee et al. 2015):

1. targets: ``x^_L = x_L - eta (x_L - y)`` at the output, then down the stack
   with the difference correction

       x^_{l-1} = x_{l-1} + G_l(x^_l) - G_l(x_l),

   which sets the target of a layer to its own activity when the layer
   above is on target, however imperfect G_l is;
2. forward layers: each minimises its local loss ``1/2 ||F_l(x_{l-1}) - x^_l||^2``
   over W_l and b_l alone, x_{l-1} held (no error crosses a layer);
3. inverses: each G_l (l >= 2) minimises the reconstruction loss
   ``1/2 ||G_l(F_l(x~)) - x~||^2`` of a corrupted activity
   ``x~ = x_{l-1} + sigma n``, n standard normal.

Two options of the network follow Lee et al.'s code (``DTPNetwork(top_target=...,
target_space=...)``): the targets may start on the last hidden layer with a
gradient step of the loss through W_L^T (``top_target='gradient'``; the
last hidden layer then learns backprop's update, as the output layer does
in either case), and the hidden targets, the difference correction, the
inverses g_l(h) = f(h V_l + c_l) and the local losses may live on the rates
h_l = f(x_l) instead of the states (``target_space='rate'``).

The estimate reports the forward layers' local gradients divided by eta, so
that the output layer's is exactly backprop's and the hidden layers' keep
their scale as eta shrinks (their direction then tends to the errors carried
down through the inverses' Jacobians, a Gauss-Newton-like direction rather
than backprop's; Meulemans et al. 2020), and the inverses' gradients as they
are. Every quantity is local: a layer's update needs its input, its
activity and its target; the target arrives through G, never through W^T
(except at the top with ``top_target='gradient'``, below).

References
----------
.. [1] D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio, "Difference Target
       Propagation", ECML PKDD (2015).
.. [2] T. P. Lillicrap, A. Santoro, L. Marris, C. J. Akerman, G. Hinton,
       "Backpropagation and the brain", Nat. Rev. Neurosci. 21:335 (2020).
.. [3] A. Meulemans et al., "A Theoretical Framework for Target
       Propagation", NeurIPS (2020).
"""
from __future__ import annotations

import numpy as np

from dynsim.learning.estimate import Estimate
from dynsim.learning.predictive_coding import feedforward_phase
from dynsim.networks.dtp import DTPNetwork
from dynsim.networks.pc import activation_and_derivative
from dynsim.validation import ValidationError

__all__ = ["dtp_targets", "dtp_gradient"]


def _check(network):
    if not isinstance(network, DTPNetwork):
        raise ValidationError(f"network must be a DTPNetwork (a feedforward network with learned inverses), got "
                              f"{type(network).__name__}")


def _layers(network, x, drive):
    views = network.split_state(drive)
    return [x] + [views[name] for name in network.group_names[1:]]


def dtp_targets(network, x, target, drive=None):
    """The activities and the targets of every layer, each a list x_0..x_L (entry 0 the input, no target).

    Parameters
    ----------
    network : DTPNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)`` (the feedforward pass), when the caller has it.

    Returns
    -------
    (list of ndarray, list of ndarray)
        States ``[x, x_1, ..., x_L]`` and targets ``[None, t_1, ..., t_L]``:
        the output's t_L = x^_L is a state; the hidden layers' are states
        x^_l, or rates h^_l when ``network.target_space == 'rate'``.
    """
    _check(network)
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    drive = network.input_drive(x) if drive is None else drive
    layers = _layers(network, x, drive)
    L = len(layers) - 1
    dtype = network.dtype
    eta = dtype.type(network.target_step)
    rates = network.target_space == "rate"

    def f(v):
        return activation_and_derivative(v, network.activation)[0].astype(dtype, copy=False)

    targets = [None] * (L + 1)
    targets[L] = layers[L] - eta * (layers[L] - target)
    top = L
    if network.top_target == "gradient":
        # Lee et al.'s top step on the last hidden layer: dL/dh_{L-1} = (x_L - y) W_L^T, L = 1/2 ||x_L - y||^2,
        # and dL/dx_{L-1} = f'(x_{L-1}) dL/dh_{L-1}.
        d_rate = (layers[L] - target) @ network.weights(L).T
        if rates:
            targets[L - 1] = f(layers[L - 1]) - eta * d_rate
        else:
            fp = activation_and_derivative(layers[L - 1], network.activation)[1].astype(dtype, copy=False)
            targets[L - 1] = layers[L - 1] - eta * fp * d_rate
        top = L - 1
    for l in range(top, 1, -1):
        # The difference first: it is the small quantity, and exactly zero when layer l is on target.
        if rates:
            # g_l(h) = f(h V_l + c_l); the output's rate is f(x_L).
            above = f(targets[l]) if l == L else targets[l]
            targets[l - 1] = f(layers[l - 1]) + (f(network._inverse_preactivation_of_rates(l, above))
                                                 - f(network._inverse(l, layers[l])))
        else:
            targets[l - 1] = layers[l - 1] + (network._inverse(l, targets[l]) - network._inverse(l, layers[l]))
    return layers, targets


def dtp_gradient(network, x, target, rng=None, drive=None):
    """The DTP update of one minibatch, as an estimate of dL/dtheta (``theta -= lr * gradient``).

    Parameters
    ----------
    network : DTPNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    rng : numpy.random.Generator, optional
        Source of the inverses' corruption noise (the training loop passes
        its own, which its checkpoints keep); by default a generator seeded
        0, so that a call without one is reproducible.
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)``, when the caller has it.

    Returns
    -------
    Estimate
        ``gradient`` (n_params,) in the network's dtype: the forward blocks'
        local gradients over eta, the inverse blocks' reconstruction
        gradients; ``free`` the feedforward pass; rule 'dtp'.
    """
    _check(network)
    if rng is None:
        rng = np.random.default_rng(0)
    elif not isinstance(rng, np.random.Generator):
        raise ValidationError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    drive = network.input_drive(x) if drive is None else drive
    layers, targets = dtp_targets(network, x, target, drive)
    L = len(layers) - 1
    dtype = network.dtype
    batch = dtype.type(x.shape[0])
    gradient = np.empty(network.n_params, dtype=dtype)
    blocks = network.parameter_blocks()
    names = network.group_names
    act = network.activation
    scale = dtype.type(1.0) / (dtype.type(network.target_step) * batch)
    rates = network.target_space == "rate"
    for l in range(1, L + 1):
        # d/dW_l of 1/2 ||F_l(x_{l-1}) - x^_l||^2 with x_{l-1} held: F_l(x_{l-1}) is the activity x_l itself.
        delta = (layers[l] - targets[l]) * scale
        if rates and l < L:
            # 1/2 ||f(F_l(x_{l-1})) - h^_l||^2 instead: the chain rule through f at x_l.
            f_l, fp_l = activation_and_derivative(layers[l], act)
            delta = (fp_l * (f_l - targets[l])).astype(dtype, copy=False) * scale
        f_below = activation_and_derivative(layers[l - 1], act)[0].astype(dtype, copy=False)
        gradient[blocks[f"W_{names[l - 1]}_{names[l]}"]] = (f_below.T @ delta).ravel()
        gradient[blocks[f"b_{names[l]}"]] = delta.sum(axis=0)
    sigma = dtype.type(network.inverse_noise)
    for l in range(2, L + 1):
        noise = sigma * rng.standard_normal(layers[l - 1].shape).astype(dtype)
        if network.top_target == "gradient" and l == L:
            # G_L carries no target down and is not trained (its noise is still drawn, so that the other
            # inverses' draws do not depend on the option).
            gradient[blocks[f"V_{names[l]}_{names[l - 1]}"]] = 0.0
            gradient[blocks[f"c_{names[l - 1]}"]] = 0.0
            continue
        if rates:
            # g_l(f(F_l(h~))) against h~ = h_{l-1} + noise, g_l(h) = f(h V_l + c_l).
            noisy = activation_and_derivative(layers[l - 1], act)[0].astype(dtype, copy=False) + noise
            up = noisy @ network.weights(l) + network.biases(l)
            f_up = activation_and_derivative(up, act)[0].astype(dtype, copy=False)
            back, back_p = activation_and_derivative(network._inverse_preactivation_of_rates(l, f_up), act)
            residual = (back_p * (back - noisy)).astype(dtype, copy=False) / batch
        else:
            noisy = layers[l - 1] + noise
            up = activation_and_derivative(noisy, act)[0].astype(dtype, copy=False) @ network.weights(l) \
                + network.biases(l)
            f_up = activation_and_derivative(up, act)[0].astype(dtype, copy=False)
            residual = (f_up @ network.inverse_weights(l) + network.inverse_biases(l) - noisy) / batch
        gradient[blocks[f"V_{names[l]}_{names[l - 1]}"]] = (f_up.T @ residual).ravel()
        gradient[blocks[f"c_{names[l - 1]}"]] = residual.sum(axis=0)
    free = feedforward_phase(network, drive, target)
    return Estimate(gradient=gradient, free=free, rule="dtp")
