"""Second derivatives of the convolutional Hopfield energy: Hessian-vector products and mixed derivatives.

What recurrent backprop (:func:`dynsim.references.gradients.implicit_gradient`)
and BPTT need from a :class:`~dynsim.networks.conv_hopfield.ConvHopfieldNetwork`,
without forming a Hessian (a conv net's has (C H W)^2 entries per sample).

With ``a = rho(s)``, ``u = rho'(s) v`` groupwise and the couplings
``K_c(a) = pool(conv(a, W_c))`` (or ``a W_c``), the local field's derivative
along ``v`` is

    (dh_g/ds) v = sum_{c: post = g} K_c'(a_pre)[u_pre] + sum_{c: pre = g} J_c(a_pre)^T u_post,

where ``K_c'(a)[u]`` is ``conv(u)`` routed through the max pooling's winners *at a*
(the pooling is piecewise linear: its winners do not move under a small
change), ``J_c(a)^T`` the transpose of that map, and the routing's own
derivative is zero almost everywhere. So

    d^2E/ds^2 v = v - rho''(s) h v - rho'(s) (dh/ds) v,

a symmetric operator (``K'`` and ``J^T`` are adjoint). The parameter gradient
``dE/dW_c = -sum_b corr(a_pre, unpool(a_post)) / B`` is bilinear in
(a_pre, a_post) for fixed winners, so its derivative along ``v`` is
``-(corr(u_pre, unpool(a_post)) + corr(a_pre, unpool(u_post))) / B`` with
the winners at ``a_pre``; the biases' is ``-sum u / B``.

References
----------
.. [1] F. J. Pineda, "Generalization of back-propagation to recurrent neural networks", Phys. Rev. Lett. 59,
       2229 (1987).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021) (the conv-pool primitive).
.. [3] B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1) (1994).
"""
from __future__ import annotations

import numpy as np

from dynsim.networks import conv_kernels as ck
from dynsim.networks.activations import activation_code, rho_and_prime, rho_second

__all__ = ["Linearization"]


def _maps(net, flat):
    """Per free group (index 1..G-1) views of a flat (batch, n_free) array in the group's shape."""
    n = flat.shape[0]
    out = [None]
    for g in range(1, len(net.group_sizes)):
        o = int(net._free_off[g])
        out.append(flat[:, o:o + net.group_sizes[g]].reshape((n,) + net.group_shapes[g]))
    return out


def _activations(net, x, s):
    """``a``, ``rho'`` per group (input included as rho(x)) and the routing of each conv coupling at ``a``."""
    n = s.shape[0]
    a, rp = [None] * len(net.group_sizes), [None] * len(net.group_sizes)
    rx, _ = rho_and_prime(x, activation_code(net.activations[0]))
    a[0] = rx.reshape((n,) + net.group_shapes[0])
    for g in range(1, len(net.group_sizes)):
        o = int(net._free_off[g])
        r, p = rho_and_prime(np.ascontiguousarray(s[:, o:o + net.group_sizes[g]]), activation_code(net.activations[g]))
        a[g] = r.reshape((n,) + net.group_shapes[g])
        rp[g] = p.reshape((n,) + net.group_shapes[g])
    routes = {}
    for link in net._links:
        if link.coupling.kind == "conv" and link.coupling.pool == "max":
            w = net.weights(link.index)
            conv = ck.conv2d(np.ascontiguousarray(a[link.pre]), w, link.stride, link.pad)
            routes[link.index] = (ck.max_pool2d(conv, link.pool_k, link.pool_stride)[1], conv.shape)
    return a, rp, routes


def _forward(net, link, u, routes):
    """``K'(a_pre)[u]``: the coupling's linearisation at its pre group's activity, applied to ``u``."""
    w = net.weights(link.index)
    if link.coupling.kind == "dense":
        return (u.reshape(u.shape[0], -1) @ w).reshape((u.shape[0],) + net.group_shapes[link.post])
    conv = ck.conv2d(np.ascontiguousarray(u), w, link.stride, link.pad)
    pool = link.coupling.pool
    if pool is None:
        return conv
    if pool == "avg":
        return ck.avg_pool2d(conv, link.pool_k, link.pool_stride)
    argmax, _ = routes[link.index]
    flat = conv.reshape(conv.shape[0], conv.shape[1], -1)
    picked = np.take_along_axis(flat, argmax.reshape(argmax.shape[0], argmax.shape[1], -1), axis=2)
    return picked.reshape(argmax.shape)


def _unpool(net, link, g, routes):
    """The pooling's transpose at the pre group's winners: ``g`` on the convolution's grid."""
    pool = link.coupling.pool
    if pool is None:
        return np.ascontiguousarray(g)
    if pool == "avg":
        n = g.shape[0]
        shape = (n, g.shape[1]) + link.conv_shape[1:]
        return ck.avg_pool2d_backward(np.ascontiguousarray(g), shape, link.pool_k, link.pool_stride)
    argmax, shape = routes[link.index]
    return ck.max_pool2d_backward(np.ascontiguousarray(g), argmax, shape)


def _transpose(net, link, g, routes):
    """``J(a_pre)^T g``, shape of the pre group."""
    w = net.weights(link.index)
    if link.coupling.kind == "dense":
        return (g.reshape(g.shape[0], -1) @ w.T).reshape((g.shape[0],) + net.group_shapes[link.pre])
    return ck.conv2d_transpose(_unpool(net, link, g, routes), w, (g.shape[0],) + net.group_shapes[link.pre],
                               link.stride, link.pad)


def _weight_grad(net, link, a_pre, g_post, routes):
    """``sum_b d<g_post, K(a_pre)>/dW`` with the routing fixed at the pre group's winners."""
    if link.coupling.kind == "dense":
        return a_pre.reshape(a_pre.shape[0], -1).T @ g_post.reshape(g_post.shape[0], -1)
    return ck.conv2d_weight_grad(np.ascontiguousarray(a_pre), _unpool(net, link, g_post, routes),
                                 link.coupling.kernel, link.stride, link.pad)


class Linearization:
    """The second-order terms of a conv network's energy at one state, for any number of directions.

    Everything that depends only on the state (activities, rho', rho'',
    the max pooling's winners, the local field) is computed once here, so
    that conjugate gradients, which apply the Hessian to a new direction at
    every iteration, and BPTT, which reads two products at each state, pay
    for it once per state.

    Parameters
    ----------
    net : ConvHopfieldNetwork
    x, s : ndarray
        Checked arrays of the network's dtype: (batch, n_input), (batch, n_free).
    field : callable
        ``field()`` -> the local field h (batch, n_free) at ``s``; called at the first :meth:`hvp`.
    """

    def __init__(self, net, x, s, field):
        self.net = net
        self.a, self.rp, self.routes = _activations(net, x, s)
        self.second = [None]
        for g in range(1, len(net.group_sizes)):
            o = int(net._free_off[g])
            self.second.append(rho_second(np.ascontiguousarray(s[:, o:o + net.group_sizes[g]]),
                                          activation_code(net.activations[g])).reshape(self.rp[g].shape))
        self._field = field
        self._h = None

    def hvp(self, v):
        """``d^2E/ds^2 v`` per sample, shape (batch, n_free)."""
        net = self.net
        if self._h is None:
            self._h = _maps(net, self._field())
        vm = _maps(net, v)
        u = [None] + [self.rp[g] * vm[g] for g in range(1, len(net.group_sizes))]
        dh = [None] + [np.zeros_like(vm[g]) for g in range(1, len(net.group_sizes))]
        for link in net._links:
            if link.pre == 0:
                continue  # the clamped input does not move
            dh[link.post] += _forward(net, link, u[link.pre], self.routes)
            dh[link.pre] += _transpose(net, link, u[link.post], self.routes)
        out = np.empty_like(v)
        om = _maps(net, out)
        for g in range(1, len(net.group_sizes)):
            om[g][...] = vm[g] - self.second[g] * self._h[g] * vm[g] - self.rp[g] * dh[g]
        return out

    def grad_params_directional(self, v):
        """``d/de`` of the batch-mean ``dE/dtheta`` at ``s + e v``, shape (n_params,)."""
        net, a, routes = self.net, self.a, self.routes
        vm = _maps(net, v)
        u = [np.zeros_like(a[0])] + [self.rp[g] * vm[g] for g in range(1, len(net.group_sizes))]
        n = v.shape[0]
        grad = np.empty(net.n_params, dtype=net.dtype)
        for link in net._links:
            block = _weight_grad(net, link, a[link.pre], u[link.post], routes)
            if link.pre != 0:
                block = block + _weight_grad(net, link, u[link.pre], a[link.post], routes)
            grad[link.start:link.stop] = -block.reshape(-1) / n
        for g, b in net._bias_blocks.items():
            dims = (0, 2, 3) if u[g].ndim == 4 else (0,)
            grad[b.start:b.stop] = -u[g].sum(axis=dims) / n
        return grad
