"""Compiled energy, gradients and vector field of a predictive coding network.

Layers x_0 (clamped input) ... x_L (output); the free state s holds x_1..x_L
side by side, shape (batch, n_free). Layer l is predicted from the layer
below, mu_l = f(x_{l-1}) W_l + b_l with W_l of shape (n_{l-1}, n_l) stored
C-ordered in ``theta`` at ``w_off[l]`` and b_l at ``b_off + free_off[l]``.
The energy is the precision-weighted sum of squared prediction errors

    F = sum_l (p_l / 2) ||eps_l||^2,   eps_l = x_l - mu_l,   p_l = 1 / sigma_l^2,

so that dF/dx_l = p_l eps_l - f'(x_l) * (p_{l+1} eps_{l+1} W_{l+1}^T) and
dF/dW_l = -p_l f(x_{l-1})^T eps_l (Whittington & Bogacz 2017, Eqs. 2-5 with
row-vector states).

The drive ``mu_hat`` (batch, n_free) holds the feedforward predictions
(computed once per relaxation): its first block mu_1 depends only on the
clamped input and is exact at every state. With ``fixed`` (the fixed-prediction
assumption of Millidge, Tschantz & Buckley 2020) every prediction and every
f'(x_l) is held at its feedforward value during inference.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs",
       Neural Computation 34(6) (2022; arXiv 2020).
"""
import numpy as np
from numba import njit

from dynsim.activations import rho_and_prime as phi_and_prime


@njit(cache=True)
def _weights(theta, l, sizes, w_off):
    start = w_off[l]
    return theta[start:start + sizes[l - 1] * sizes[l]].reshape((sizes[l - 1], sizes[l]))


@njit(cache=True)
def feedforward(x, theta, sizes, w_off, b_off, free_off, act):
    """Feedforward predictions mu_hat (batch, n_free): x_l = mu_l layer after layer from x_0."""
    n_batch = x.shape[0]
    L = sizes.shape[0] - 1
    n_free = free_off[L] + sizes[L]
    out = np.empty((n_batch, n_free), dtype=x.dtype)
    below, _ = phi_and_prime(x, act)
    for l in range(1, L + 1):
        o = free_off[l]
        n = sizes[l]
        mu = np.dot(below, _weights(theta, l, sizes, w_off))
        for i in range(n_batch):
            for j in range(n):
                mu[i, j] += theta[b_off + o + j]
        out[:, o:o + n] = mu
        below, _ = phi_and_prime(mu, act)
    return out


@njit(cache=True)
def errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed):
    """Prediction errors eps (batch, n_free) and f, f' of the state (or of mu_hat when ``fixed``)."""
    L = sizes.shape[0] - 1
    n_batch = s.shape[0]
    source = mu_hat if fixed else s
    f, fp = phi_and_prime(source, act)
    eps = np.empty_like(s)
    o1 = free_off[1]
    eps[:, o1:o1 + sizes[1]] = s[:, o1:o1 + sizes[1]] - mu_hat[:, o1:o1 + sizes[1]]
    for l in range(2, L + 1):
        o = free_off[l]
        n = sizes[l]
        if fixed:
            eps[:, o:o + n] = s[:, o:o + n] - mu_hat[:, o:o + n]
        else:
            op = free_off[l - 1]
            below = np.ascontiguousarray(f[:, op:op + sizes[l - 1]])
            mu = np.dot(below, _weights(theta, l, sizes, w_off))
            for i in range(n_batch):
                for j in range(n):
                    eps[i, o + j] = s[i, o + j] - mu[i, j] - theta[b_off + o + j]
    return eps, f, fp


@njit(cache=True)
def energy(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """F per sample, shape (batch,)."""
    eps, _, _ = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    L = sizes.shape[0] - 1
    out = np.zeros(s.shape[0])
    for l in range(1, L + 1):
        o = free_off[l]
        for i in range(s.shape[0]):
            acc = 0.0
            for j in range(sizes[l]):
                acc += eps[i, o + j] * eps[i, o + j]
            out[i] += 0.5 * precisions[l] * acc
    return out


@njit(cache=True)
def energy_grad_state(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """dF/dx per sample, shape (batch, n_free)."""
    eps, _, fp = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    L = sizes.shape[0] - 1
    grad = np.empty_like(s)
    for l in range(1, L + 1):
        o = free_off[l]
        grad[:, o:o + sizes[l]] = precisions[l] * eps[:, o:o + sizes[l]]
    for l in range(1, L):
        o = free_off[l]
        oa = free_off[l + 1]
        above = np.ascontiguousarray(eps[:, oa:oa + sizes[l + 1]]) * precisions[l + 1]
        back = np.dot(above, _weights(theta, l + 1, sizes, w_off).T)
        grad[:, o:o + sizes[l]] -= fp[:, o:o + sizes[l]] * back
    return grad


@njit(cache=True)
def energy_grad_params(x, s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """Gradient of the batch-mean F with respect to theta, shape (n_params,).

    dF/dW_l = -p_l f(x_{l-1})^T eps_l / B, dF/db_l = -p_l mean(eps_l); with
    ``fixed`` the presynaptic activities are the feedforward ones.
    """
    eps, f, _ = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    fx, _ = phi_and_prime(x, act)
    L = sizes.shape[0] - 1
    n_batch = s.shape[0]
    grad = np.zeros(theta.shape[0])
    for l in range(1, L + 1):
        o = free_off[l]
        e = np.ascontiguousarray(eps[:, o:o + sizes[l]])
        if l == 1:
            below = fx
        else:
            op = free_off[l - 1]
            below = np.ascontiguousarray(f[:, op:op + sizes[l - 1]])
        g = np.dot(below.T, e)
        n_w = sizes[l - 1] * sizes[l]
        grad[w_off[l]:w_off[l] + n_w] = (-precisions[l] / n_batch) * g.reshape(n_w)
        for j in range(sizes[l]):
            acc = 0.0
            for i in range(n_batch):
                acc += e[i, j]
            grad[b_off + o + j] = -precisions[l] * acc / n_batch
    return grad


@njit(cache=True)
def pc_vector_field(t, s, dsdt, args):
    """dx/dt = -dF/dx (- beta dC/dx on the output), C = 1/2 ||x_L - target||^2.

    ``args = (theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat,
    fixed, beta, target, clamp_output)``. With ``clamp_output`` the output
    layer is held (at the target: supervised predictive coding).
    """
    theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed, beta, target, clamp_output = args
    grad = energy_grad_state(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed)
    n_batch, n = s.shape
    for i in range(n_batch):
        for j in range(n):
            dsdt[i, j] = -grad[i, j]
    L = sizes.shape[0] - 1
    o = free_off[L]
    n_out = sizes[L]
    if clamp_output:
        dsdt[:, o:o + n_out] = 0.0
    elif beta != 0.0:
        for i in range(n_batch):
            for j in range(n_out):
                dsdt[i, o + j] -= beta * (s[i, o + j] - target[i, j])
