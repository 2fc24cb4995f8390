"""The couplings of an :class:`~dynsim.networks.architecture.Architecture` as operations on group buffers.

Both network families built from an architecture (the convolutional Hopfield
network and the convolutional predictive coding network) apply each coupling
``K_c`` in three ways: forward (``K_c(a)``, the pre group's drive of the post
group), transposed (``J_c^T g``, the Jacobian of ``K_c`` at the last forward
argument, routed through the max pooling's winners) and as a weight gradient
(``d <g, K_c(a)> / dW_c`` summed over the batch). :class:`DenseOps` and
:class:`ConvOps` hold a coupling's geometry and workspaces and give those
three products with one call signature; :class:`GroupBuffers` holds one
flat array per role with a (batch, n) and a (batch, *shape) view of every
free group.

References
----------
.. [1] A. Laborieux, M. Ernoult, B. Scellier, Y. Bengio, J. Grollier,
       D. Querlioz, "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing Its Gradient Estimator Bias", Front. Neurosci.
       15:633674 (2021) (the coupling ``pool(conv(a))``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from dynsim._threads import one_blas_thread
from dynsim.networks import conv_kernels as ck
from dynsim.networks.pc_kernels import phi_into

__all__ = ["DenseOps", "ConvOps", "ConvScratch", "GroupBuffers", "coupling_ops", "activate_into", "copy_into",
           "add_into"]


# Each helper takes C-contiguous blocks of one group and checks nothing.

@njit(cache=True, parallel=True)
def activate_into(s, act, r, rp):
    """r = rho(s), rp = rho'(s) for one group: :func:`~dynsim.networks.pc_kernels.phi_into` (vectorised tanh and
    GELU, the hard sigmoid in the group's dtype) on chunks of rows on Numba's threads.

    Each row's numbers are its own, so every thread count gives the same
    bits. With libm's scalar tanh, rho and rho' of a tanh group cost 18-21 ns
    a unit here (one thread), numpy's tanh with its derivative 0.8 ns and
    this 1.0 ns; the activations had been 29 % of a conv PC training step.
    """
    n_batch = s.shape[0]
    n_chunks = min(n_batch, ck.CONV_CHUNKS)
    for c in prange(n_chunks):
        lo = c * n_batch // n_chunks
        hi = (c + 1) * n_batch // n_chunks
        phi_into(s[lo:hi], act, r[lo:hi], rp[lo:hi])


@njit(cache=True)
def copy_into(src, dst):
    """dst = src (same shape, both C-contiguous)."""
    s = src.reshape(src.size)
    d = dst.reshape(dst.size)
    for k in range(d.size):
        d[k] = s[k]


@njit(cache=True)
def add_into(dst, src):
    """dst += src (same shape, both C-contiguous)."""
    s = src.reshape(src.size)
    d = dst.reshape(dst.size)
    for k in range(d.size):
        d[k] += s[k]


class DenseOps:
    """A :class:`~dynsim.networks.architecture.Dense` coupling: its block of ``theta`` and its products.

    ``forward_into`` writes ``K(a) = a W`` into the post group's buffer,
    ``transpose_into`` ``J^T g = g W^T`` into the pre group's,
    ``weight_grad_into`` ``a^T g`` (summed over the batch) into a block of a
    gradient. Arrays are (batch, n) views of group buffers; the 4-D views
    are accepted and ignored, so both link kinds share one call signature.
    """

    pool_max = False

    def __init__(self, index, coupling, pre, post, block):
        self.index, self.coupling, self.pre, self.post = index, coupling, pre, post
        self.start, self.stop, self.shape = block.start, block.stop, block.shape

    def scratch(self, n_batch, dtype):
        return None

    def forward_into(self, theta, a2, a4, out2, out4, scratch):
        np.dot(a2, theta[self.start:self.stop].reshape(self.shape), out=out2)

    def transpose_into(self, theta, g2, g4, out2, out4, scratch):
        np.dot(g2, theta[self.start:self.stop].reshape(self.shape).T, out=out2)

    def weight_grad_into(self, theta, a2, a4, g2, g4, scratch, post4, out):
        np.dot(a2.T, g2, out=out.reshape(self.shape))


def _held(scratch):
    """BLAS held to one thread while a minibatch's chunks run: on several of Numba's threads they would oversubscribe
    the cores, and on one, each product on one BLAS thread keeps the bits of every thread count."""
    return one_blas_thread(scratch.starts.shape[0] > 2)


class ConvScratch(NamedTuple):
    """The buffers of one :class:`ConvOps` for one batch size."""

    conv_out: np.ndarray
    """(batch, C_out, H_c, W_c): the convolution before pooling, then the unpooled gradient (one-element stand-in
    without pooling)."""
    argmax: np.ndarray
    """int64, the post group's (batch, C, H, W): the max pooling's winners (stand-in without max pooling)."""
    starts: np.ndarray
    """(n_chunks + 1,) int64: the chunks of the minibatch (:func:`~dynsim.networks.conv_kernels.conv_chunks`)."""
    ws: ck.ConvWorkspace
    """One workspace per chunk."""
    partial: np.ndarray
    """(n_chunks, C_out, C_in, kh, kw): each chunk's weight gradient."""


class ConvOps:
    """A :class:`~dynsim.networks.architecture.Conv` coupling: geometry, workspaces and the kernels of
    :mod:`dynsim.networks.conv_kernels`.

    ``scratch`` gives the buffers of a batch size (the convolution before
    pooling, the max pooling's winners, and a workspace for each chunk of
    the minibatch), kept with the network's buffers for that batch size. The
    three products run the minibatch's chunks on Numba's threads, each chunk
    with one BLAS thread (:func:`dynsim._threads.one_blas_thread`: nothing
    to do inside a training loop, which holds BLAS already).
    """

    def __init__(self, index, coupling, pre_group, post_group, pre, post, block, dtype):
        self.index, self.coupling, self.pre, self.post = index, coupling, pre, post
        self.start, self.stop, self.shape = block.start, block.stop, block.shape
        self.stride, self.pad = coupling.stride, coupling.padding
        self.pool = ck.POOLS["none" if coupling.pool is None else coupling.pool]
        self.pool_max = self.pool == ck.POOL_MAX
        self.pool_k = coupling.pool_size if coupling.pool is not None else 1
        self.pool_stride = coupling.pool_step if coupling.pool is not None else 1
        kh, kw = coupling.kernel
        _, H, W = pre_group.shape
        self.pre_shape = pre_group.shape
        self.conv_shape = (post_group.shape[0], (H + 2 * self.pad - kh) // self.stride + 1,
                           (W + 2 * self.pad - kw) // self.stride + 1)
        self.post_shape = post_group.shape

    def scratch(self, n_batch, dtype):
        # Without pooling the kernels never touch the first two: one-element stand-ins keep the argument types.
        conv_shape = (n_batch,) + self.conv_shape if self.pool != ck.POOL_NONE else (1, 1, 1, 1)
        arg_shape = (n_batch,) + self.post_shape if self.pool_max else (1, 1, 1, 1)
        starts = ck.conv_chunks(n_batch)
        n_chunks = max(1, starts.shape[0] - 1)
        ws = ck.conv_workspace(self.pre_shape, self.shape, self.stride, self.pad, dtype, chunks=n_chunks)
        return ConvScratch(np.empty(conv_shape, dtype=dtype), np.zeros(arg_shape, dtype=np.int64), starts, ws,
                           np.empty((n_chunks,) + self.shape, dtype=dtype))

    def forward_into(self, theta, a2, a4, out2, out4, scratch):
        with _held(scratch):
            ck.conv_pool_chunks_into(a4, theta[self.start:self.stop].reshape(self.shape), self.stride, self.pad,
                                     self.pool, self.pool_k, self.pool_stride, scratch.starts, scratch.ws.padded,
                                     scratch.ws.cols, scratch.conv_out, scratch.argmax, out4)

    def transpose_into(self, theta, g2, g4, out2, out4, scratch):
        # The convolution before pooling is no longer needed once pooled: it serves as the unpooling buffer.
        with _held(scratch):
            ck.conv_pool_transpose_chunks_into(g4, theta[self.start:self.stop].reshape(self.shape), self.stride,
                                               self.pad, self.pool, self.pool_k, self.pool_stride, scratch.argmax,
                                               scratch.starts, scratch.ws.padded, scratch.ws.cols,
                                               scratch.conv_out, out4)

    def weight_grad_into(self, theta, a2, a4, g2, g4, scratch, post4, out):
        """``sum_b corr(a_b, unpool(g_b))`` into ``out``; the winners are found at ``a`` first (into ``post4``)."""
        if self.pool_max:
            self.forward_into(theta, a2, a4, None, post4, scratch)
        with _held(scratch):
            ck.conv_pool_weight_grad_chunks_into(a4, g4, self.stride, self.pad, self.pool, self.pool_k,
                                                 self.pool_stride, scratch.argmax, scratch.starts, scratch.ws.padded,
                                                 scratch.ws.cols, scratch.conv_out, scratch.ws.prod,
                                                 scratch.partial, out.reshape(self.shape))


class GroupBuffers:
    """Everything a batch size needs, allocated once and reused across calls and minibatches.

    Each role (``y`` the state, ``y_new`` the next one, ``r`` = rho(s),
    ``rp`` = rho'(s), ``h`` the local field, ``d`` the drive, ``t`` one
    coupling's contribution; a network may name other roles) is one flat
    array (``flat[role]``) with the free groups' blocks one after the other,
    each C-contiguous: ``v2[role][g]`` sees group g as (batch, n_g),
    ``v4[role][g]`` as (batch, C, H, W) (or (batch, n)).
    """

    ROLES = ("y", "y_new", "r", "rp", "h", "d", "t")

    def __init__(self, net, n_batch, roles=ROLES):
        dtype = net.dtype
        self.n_batch = n_batch
        self.v2, self.v4, self.flat = {}, {}, {}
        for role in roles:
            flat = self.flat[role] = np.empty(n_batch * net.n_free, dtype=dtype)
            v2, v4 = [None], [None]
            for g in range(1, len(net.group_sizes)):
                start = n_batch * int(net._free_off[g])
                block = flat[start:start + n_batch * net.group_sizes[g]]
                v2.append(block.reshape(n_batch, net.group_sizes[g]))
                v4.append(block.reshape((n_batch,) + net.group_shapes[g]))
            self.v2[role], self.v4[role] = v2, v4
        self.scratch = [link.scratch(n_batch, dtype) for link in net._links]
        self.sums = {k: np.zeros(n_batch) for k in ("en", "y2", "f2", "res2", "f_over", "yn2", "yn_over")}

    def swap(self, a, b):
        """Exchange two roles' arrays (the next state becomes the state without a copy)."""
        for views in (self.v2, self.v4, self.flat):
            views[a], views[b] = views[b], views[a]


def coupling_ops(architecture, weight_blocks, dtype):
    """One :class:`DenseOps` or :class:`ConvOps` per coupling of ``architecture``, in coupling order.

    ``weight_blocks`` maps a coupling's index to its
    :class:`~dynsim.networks.architecture.ParameterBlock`.
    """
    groups = architecture.groups
    ops = []
    for k, c in enumerate(architecture.couplings):
        a, b = architecture.group_index[c.pre], architecture.group_index[c.post]
        if c.kind == "dense":
            ops.append(DenseOps(k, c, a, b, weight_blocks[k]))
        else:
            ops.append(ConvOps(k, c, groups[a], groups[b], a, b, weight_blocks[k], dtype))
    return tuple(ops)
