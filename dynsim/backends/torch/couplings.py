"""The couplings of a Hopfield network as torch operators: ``K(a)``, its transpose, its weight gradient.

A coupling from group ``pre`` to group ``post`` contributes
``-<rho(s_post), K(rho(s_pre))>`` to the energy. Each operator here works
on whole batches of group tensors shaped ``(batch, *group_shape)``:

- :meth:`forward` returns ``K(a_pre)`` and whatever the transpose needs
  (the max pooling's winners);
- :meth:`transpose` returns ``J^T g``, ``J`` the Jacobian of ``K`` at the
  ``a_pre`` whose forward produced ``memo``;
- :meth:`weight_grad` returns ``sum_b d<g_b, K(a_b)>/dW`` (batch sum).

Dense couplings are matrix products (``a @ W``, ``W`` of shape
(n_pre, n_post), the layout of :class:`dynsim.networks.hopfield.HopfieldNetwork`);
convolutions are PyTorch's ``conv2d`` (cross-correlation, weight
(C_post, C_pre, kh, kw)) then optional max or average pooling, the
primitive of Laborieux et al. (2021). The max pooling routes the transpose
to each window's first maximum in row-major order, as the Numba kernels and
PyTorch's own pooling do.

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
.. [2] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning", arXiv:1603.07285 (2016)
       (transposed convolutions and their output padding).
"""
from __future__ import annotations

from dynsim.backends.torch._torch import require_torch

torch = require_torch()
F = torch.nn.functional

__all__ = ["DenseCoupling", "ConvCoupling", "torch_couplings"]


class DenseCoupling:
    """All-to-all coupling ``K(a) = a W``; feature maps are flattened in (C, H, W) order.

    Parameters
    ----------
    pre, post : int
        Group indices.
    pre_shape, post_shape : tuple
        Group shapes without the batch.
    start, stop : int
        The weight block's slice of ``theta``; shape (n_pre, n_post).
    """

    kind = "dense"

    def __init__(self, pre, post, pre_shape, post_shape, start, stop):
        self.pre, self.post = pre, post
        self.pre_shape, self.post_shape = tuple(pre_shape), tuple(post_shape)
        self.n_pre = int(torch.Size(pre_shape).numel())
        self.n_post = int(torch.Size(post_shape).numel())
        self.start, self.stop = start, stop

    def weight(self, theta):
        return theta[self.start:self.stop].view(self.n_pre, self.n_post)

    def forward(self, theta, a):
        out = a.reshape(a.shape[0], self.n_pre) @ self.weight(theta)
        return out.view((a.shape[0],) + self.post_shape), None

    def transpose(self, theta, g, memo):
        out = g.reshape(g.shape[0], self.n_post) @ self.weight(theta).T
        return out.view((g.shape[0],) + self.pre_shape)

    def weight_grad(self, theta, a, g, memo=None):
        return a.reshape(a.shape[0], self.n_pre).T @ g.reshape(g.shape[0], self.n_post)


class ConvCoupling:
    """Convolution then optional pooling, ``K(a) = pool(conv(a, W))``.

    Parameters
    ----------
    pre, post : int
        Group indices (both feature maps).
    pre_shape, post_shape : tuple
        (C, H, W) of each.
    start, stop : int
        The weight block's slice of ``theta``.
    coupling : dynsim.networks.architecture.Conv
        Geometry: kernel, stride, padding, pooling.
    """

    kind = "conv"

    def __init__(self, pre, post, pre_shape, post_shape, start, stop, coupling):
        self.pre, self.post = pre, post
        self.pre_shape, self.post_shape = tuple(pre_shape), tuple(post_shape)
        self.start, self.stop = start, stop
        kh, kw = coupling.kernel
        c_pre, h_pre, w_pre = pre_shape
        self.w_shape = (post_shape[0], c_pre, kh, kw)
        self.stride, self.padding = coupling.stride, coupling.padding
        self.pool = coupling.pool
        self.pool_size = coupling.pool_size if coupling.pool is not None else 1
        self.pool_stride = coupling.pool_step if coupling.pool is not None else 1
        hc = (h_pre + 2 * self.padding - kh) // self.stride + 1
        wc = (w_pre + 2 * self.padding - kw) // self.stride + 1
        self.conv_hw = (hc, wc)
        # Rows and columns the strided convolution never reads: the transposed convolution must give them back.
        self.output_padding = (h_pre + 2 * self.padding - kh - (hc - 1) * self.stride,
                               w_pre + 2 * self.padding - kw - (wc - 1) * self.stride)

    def weight(self, theta):
        return theta[self.start:self.stop].view(self.w_shape)

    def _conv(self, theta, a):
        return F.conv2d(a, self.weight(theta), stride=self.stride, padding=self.padding)

    def forward(self, theta, a):
        c = self._conv(theta, a)
        if self.pool == "max":
            out, winners = F.max_pool2d(c, self.pool_size, self.pool_stride, return_indices=True)
            return out, winners
        if self.pool == "avg":
            return F.avg_pool2d(c, self.pool_size, self.pool_stride), None
        return c, None

    def _unpool(self, g, memo):
        """The pooling's transpose: ``g`` (batch, C, H', W') back onto the convolution's grid."""
        if self.pool is None:
            return g
        n, ch = g.shape[0], g.shape[1]
        hc, wc = self.conv_hw
        if self.pool == "max":
            # scatter_add rather than max_unpool2d: overlapping windows (stride < size) may share a winner.
            out = g.new_zeros((n, ch, hc * wc))
            out.scatter_add_(2, memo.reshape(n, ch, -1), g.reshape(n, ch, -1))
            return out.view(n, ch, hc, wc)
        like = g.new_empty((n, ch, hc, wc))
        return torch.ops.aten.avg_pool2d_backward(g, like, [self.pool_size] * 2, [self.pool_stride] * 2, [0, 0],
                                                  False, True, None)

    def transpose(self, theta, g, memo):
        return F.conv_transpose2d(self._unpool(g, memo), self.weight(theta), stride=self.stride,
                                  padding=self.padding, output_padding=self.output_padding)

    def weight_grad(self, theta, a, g, memo=None):
        if memo is None and self.pool == "max":
            memo = self.forward(theta, a)[1]
        return torch.nn.grad.conv2d_weight(a, self.w_shape, self._unpool(g, memo), stride=self.stride,
                                           padding=self.padding)


def torch_couplings(network, group_shapes):
    """The couplings of an architecture network (conv or PC) as torch operators, in the network's order."""
    out = []
    for link in network._links:
        a, b = link.pre, link.post
        if link.coupling.kind == "dense":
            out.append(DenseCoupling(a, b, group_shapes[a], group_shapes[b], link.start, link.stop))
        else:
            out.append(ConvCoupling(a, b, group_shapes[a], group_shapes[b], link.start, link.stop, link.coupling))
    return tuple(out)
