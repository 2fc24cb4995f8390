"""How far strict predictive coding lies from backprop: the first-order theory in 1/sigma_L^2.

With the output clamped to the target and a large output variance v =
sigma_L^2, the hidden activities of a settled PC network move away from the
feedforward pass by O(1/v). To first order the settled state is the cheapest
set of perturbations n_l injected at the hidden layers that explains part of
the output error e = y - y_hat:

    minimise  sum_l ||n_l||^2 / (2 sigma_l^2) + ||e - sum_l K_l n_l||^2 / (2 v),

where K_l = d y_hat / d x_l is the Jacobian of the feedforward output with
respect to hidden layer l (shape (n_L, n_l), per sample). Its solution leaves
the output error

    e* = (I + G / v)^(-1) e,    G = sum_{l=1}^{L-1} sigma_l^2 K_l K_l^T,

so the update of the output biases, v * mean_b(e*_b) / v, differs from
backprop's mean_b(e_b) by mean_b(G_b e_b) / v to first order. G, the
precision-weighted Gram matrix of the output Jacobians, is a property of the
network, not of the inference: the distance to backprop at a given sigma_L^2
is set by how strongly the output responds to the hidden layers. Whittington
& Bogacz (2017) show the limit; this module gives the constant.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
"""
from __future__ import annotations

import numpy as np

from dynsim.networks.pc import PCNetwork, activation_and_derivative
from dynsim.validation import ValidationError

__all__ = ["output_jacobian_gram", "predicted_output_bias_error"]


def output_jacobian_gram(network, x):
    """G_b = sum_l sigma_l^2 K_l K_l^T for each sample, shape (batch, n_L, n_L).

    Parameters
    ----------
    network : PCNetwork
    x : ndarray, shape (batch, n_input)

    Returns
    -------
    ndarray, shape (batch, n_output, n_output)
        Computed from the feedforward pass in numpy (independently of the
        compiled inference), with the network's hidden variances.
    """
    if not isinstance(network, PCNetwork):
        raise ValidationError(f"network must be a PCNetwork, got {type(network).__name__}")
    x = network.check_input(x)
    L = len(network.group_sizes) - 1
    xs = [x]
    for l in range(1, L + 1):
        xs.append(activation_and_derivative(xs[-1], network.activation)[0] @ network.weights(l) + network.biases(l))
    variances = network.variances
    n_out = network.group_sizes[-1]
    gram = np.zeros((x.shape[0], n_out, n_out))
    # Back from the output: M_l = d y_hat / d x_l as a (batch, n_l, n_L) stack, M_{L-1} = f'(x_{L-1}) W_L.
    M = None
    for l in range(L - 1, 0, -1):
        fp = activation_and_derivative(xs[l], network.activation)[1]
        step = fp[:, :, None] * network.weights(l + 1)[None]  # d x_{l+1} / d x_l, (batch, n_l, n_{l+1})
        M = step if M is None else np.einsum("bij,bjk->bik", step, M)
        gram += variances[l - 1] * np.einsum("bik,bil->bkl", M, M)
    return gram


def predicted_output_bias_error(network, x, target):
    """First-order relative error of strict PC's output-bias update against backprop's.

    Parameters
    ----------
    network : PCNetwork
        Its last variance is sigma_L^2 (the update is taken rescaled by it).
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)

    Returns
    -------
    dict
        ``relative_error``: ||mean_b G_b e_b|| / (sigma_L^2 ||mean_b e_b||);
        ``gain``: the Rayleigh quotient mean_b e_b^T G_b e_b / e_b^T e_b,
        the effective G that divides sigma_L^2.
    """
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    gram = output_jacobian_gram(network, x)
    e = target - network.feedforward(x)[:, network.output_slice]
    ge = np.einsum("bkl,bl->bk", gram, e)
    v = network.variances[-1]
    norm = np.linalg.norm(e.sum(0))
    if norm == 0:
        raise ValidationError("target equals the feedforward output: there is no error to propagate")
    quotient = np.einsum("bk,bk->b", e, ge) / np.maximum(np.einsum("bk,bk->b", e, e), np.finfo(float).tiny)
    return {"relative_error": float(np.linalg.norm(ge.sum(0)) / (v * norm)), "gain": float(quotient.mean())}
