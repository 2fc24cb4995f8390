"""Compiled kernels of convolutional couplings: 2-D convolution, its transpose, its weight gradient, pooling.

Feature maps are batched C-ordered arrays (batch, channels, height, width);
a kernel ``w`` has shape (C_out, C_in, kh, kw). :func:`conv2d_into` computes
the cross-correlation PyTorch's ``conv2d`` computes, with stride ``s`` and
zero padding ``p`` on every side:

    y[b, o, i, j] = sum_{c, u, v} w[o, c, u, v] x_pad[b, c, s i + u, s j + v],
    H_out = (H + 2 p - kh) // s + 1

(rows and columns the last window does not reach are dropped). Its adjoint
:func:`conv2d_transpose_into` maps a gradient with respect to ``y`` to one
with respect to ``x``, and :func:`conv2d_weight_grad_into` gives the
gradient with respect to ``w`` summed over the batch. Pooling has no
padding and drops rows the same way; max pooling records the winner of each
window so that its backward pass routes each gradient to that winner alone.

A convolutional coupling between a presynaptic activity ``a`` (batch, C_in,
H, W) and a postsynaptic state ``s_post`` contributes to the energy the term
of Ernoult et al. (2019) and Laborieux et al. (2021),

    E_c = - sum_b < s_post[b], pool(conv(a[b], w)) >,

whose gradients are dE_c/ds_post = -pool(conv(a)),
dE_c/da = -conv_T(unpool(s_post)) and dE_c/dw = -sum_b corr(a_b,
unpool(s_post_b)), where unpool is the backward pass of the pooling (for
max pooling: the routing through the winners, exact wherever the window
maxima are unique). Predictive coding uses the same pieces, its prediction
being mu = pool(conv(f(x))) + b (Millidge et al. 2022). A per-channel bias
commutes with both poolings (pool(z + b) = pool(z) + b), so it is added
after pooling and its gradient is :func:`channel_sum_into`.

Implementation. Each sample is convolved as one matrix product (the
unfolding of Chellapilla et al. 2006): its receptive fields are copied into
``cols`` (C_in kh kw, H_out W_out), and ``w`` seen as a (C_out, C_in kh kw)
matrix multiplies it through BLAS, the product written straight into the
sample's output. Measured on this machine (one thread), this ran the
convolutions of a Laborieux MNIST network 15 to 40 times faster than direct
nested loops, and unfolding one sample at a time matched or beat one
unfolding of the whole batch (whose ``cols`` leaves the cache, and whose
product must be permuted back to the (batch, C_out, ...) layout): see the
note at the end of the module. On several cores the ``*_chunks_into``
kernels run the minibatch in :data:`CONV_CHUNKS` chunks on Numba's threads,
one workspace per chunk.

Every kernel computes in the dtype of its arrays (float32 or float64, the
same code compiled once for each), takes its weights as arguments, writes
into arrays the caller provides and checks nothing; the Python functions at
the end of the module validate once, allocate and call them. Arrays handed
to the kernels must be C-contiguous (the matrix products read them as
2-D views).

References
----------
.. [1] M. Ernoult, J. Grollier, D. Querlioz, Y. Bengio, B. Scellier,
       "Updates of Equilibrium Prop Match Gradients of Backprop Through Time
       in an RNN with Static Input", NeurIPS 2019 (the convolutional
       primitive function with pooling).
.. [2] A. Laborieux, M. Ernoult, B. Scellier, Y. Bengio, J. Grollier,
       D. Querlioz, "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing Its Gradient Estimator Bias", Front. Neurosci.
       15:633674 (2021).
.. [3] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs", Neural
       Computation 34(6) (2022).
.. [4] K. Chellapilla, S. Puri, P. Simard, "High Performance Convolutional
       Neural Networks for Document Processing", 10th International Workshop
       on Frontiers in Handwriting Recognition (2006).
.. [5] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep
       learning", arXiv:1603.07285 (2016).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from dynsim.validation import FLOAT_DTYPES, ValidationError, positive_int

__all__ = [
    "POOL_NONE", "POOL_MAX", "POOL_AVG", "POOLS",
    "conv_output_size", "pool_output_size",
    "conv2d_into", "conv2d_transpose_into", "conv2d_weight_grad_into", "channel_sum_into",
    "max_pool2d_into", "max_pool2d_backward_into", "avg_pool2d_into", "avg_pool2d_backward_into",
    "pool2d_into", "pool2d_backward_into",
    "conv_pool_into", "conv_pool_transpose_into", "conv_pool_weight_grad_into", "coupling_energy_into",
    "conv_pool_chunks_into", "conv_pool_transpose_chunks_into", "conv_pool_weight_grad_chunks_into",
    "CONV_CHUNKS", "conv_chunks", "ConvWorkspace", "conv_workspace",
    "conv2d", "conv2d_transpose", "conv2d_weight_grad", "conv2d_bias_grad",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "coupling_energy", "coupling_gradients",
]

POOL_NONE = 0
POOL_MAX = 1
POOL_AVG = 2

POOLS = {"none": POOL_NONE, "max": POOL_MAX, "avg": POOL_AVG}
"""Pooling names and their integer codes (a code keeps one compiled signature for every pooling)."""


@njit(cache=True)
def conv_output_size(n, k, stride, pad):
    """Output length of a convolution along one axis: (n + 2 pad - k) // stride + 1 (Dumoulin & Visin 2016)."""
    return (n + 2 * pad - k) // stride + 1


@njit(cache=True)
def pool_output_size(n, k, stride):
    """Output length of a pooling without padding along one axis: (n - k) // stride + 1."""
    return (n - k) // stride + 1


# ---------------------------------------------------------------------------------------------------------------
# Whole-array loops. Slice assignment (``out[:] = x``) and in-place ufuncs compiled several seconds each (measured
# here: a dispatch on pooling with one ``out[:] = x`` took 9 s); a flat loop over a C-contiguous array takes
# a fraction of a second and vectorises.
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _zero(a):
    flat = a.reshape(a.size)
    for i in range(flat.size):
        flat[i] = 0.0


@njit(cache=True)
def _copy(src, dst):
    s = src.reshape(src.size)
    d = dst.reshape(dst.size)
    for i in range(d.size):
        d[i] = s[i]


# ---------------------------------------------------------------------------------------------------------------
# Unfolding of one sample. The unit-stride loops are separate functions: with the stride a runtime value in the
# index, LLVM can neither prove the index non-negative (so Numba's negative-index wrap-around test stays in the
# loop) nor vectorise it; with ``i + u`` and ``j + v`` it does both (measured: 2 to 3 times faster).
# Padding is handled by copying the sample into a zero-bordered buffer first, for the same reason: a test of
# every index against the border in the inner loop cost 2 to 4 times more than this copy.
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def _pad_sample_into(xs, pad, padded):
    """Write ``xs`` (C, H, W) into the centre of ``padded`` (C, H + 2 pad, W + 2 pad), zeros around it."""
    C, H, W = xs.shape
    Hp, Wp = padded.shape[1], padded.shape[2]
    for c in range(C):
        for i in range(pad):
            for j in range(Wp):
                padded[c, i, j] = 0.0
                padded[c, Hp - 1 - i, j] = 0.0
        for i in range(H):
            row = padded[c, pad + i]
            for j in range(pad):
                row[j] = 0.0
                row[Wp - 1 - j] = 0.0
            src = xs[c, i]
            for j in range(W):
                row[pad + j] = src[j]


@njit(cache=True)
def _crop_sample_into(padded, pad, out):
    """Write the centre (C, H, W) of ``padded`` (C, H + 2 pad, W + 2 pad) into ``out`` (C, H, W)."""
    C, H, W = out.shape
    for c in range(C):
        for i in range(H):
            row = padded[c, pad + i]
            dst = out[c, i]
            for j in range(W):
                dst[j] = row[pad + j]


@njit(cache=True)
def _im2col_unit(xp, kh, kw, Ho, Wo, cols):
    """cols[(c kh + u) kw + v, i Wo + j] = xp[c, i + u, j + v] (stride 1; ``xp`` is padded already)."""
    for c in range(xp.shape[0]):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for i in range(Ho):
                    base = i * Wo
                    for j in range(Wo):
                        cols[r, base + j] = xp[c, i + u, j + v]


@njit(cache=True)
def _im2col_strided(xp, kh, kw, s, Ho, Wo, cols):
    """cols[(c kh + u) kw + v, i Wo + j] = xp[c, s i + u, s j + v]."""
    for c in range(xp.shape[0]):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for i in range(Ho):
                    base = i * Wo
                    for j in range(Wo):
                        cols[r, base + j] = xp[c, s * i + u, s * j + v]


@njit(cache=True)
def _im2col(xp, kh, kw, s, Ho, Wo, cols):
    if s == 1:
        _im2col_unit(xp, kh, kw, Ho, Wo, cols)
    else:
        _im2col_strided(xp, kh, kw, s, Ho, Wo, cols)


@njit(cache=True)
def _col2im_unit(cols, kh, kw, Ho, Wo, dxp):
    """dxp[c, i + u, j + v] += cols[(c kh + u) kw + v, i Wo + j]: the adjoint of :func:`_im2col_unit`."""
    for c in range(dxp.shape[0]):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for i in range(Ho):
                    base = i * Wo
                    for j in range(Wo):
                        dxp[c, i + u, j + v] += cols[r, base + j]


@njit(cache=True)
def _col2im_strided(cols, kh, kw, s, Ho, Wo, dxp):
    """dxp[c, s i + u, s j + v] += cols[(c kh + u) kw + v, i Wo + j]."""
    for c in range(dxp.shape[0]):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for i in range(Ho):
                    base = i * Wo
                    for j in range(Wo):
                        dxp[c, s * i + u, s * j + v] += cols[r, base + j]


@njit(cache=True)
def _col2im(cols, kh, kw, s, Ho, Wo, dxp):
    """Zero ``dxp`` and add every column of ``cols`` back onto the window it came from."""
    _zero(dxp)
    if s == 1:
        _col2im_unit(cols, kh, kw, Ho, Wo, dxp)
    else:
        _col2im_strided(cols, kh, kw, s, Ho, Wo, dxp)


@njit(cache=True)
def _unfold_sample(xs, kh, kw, stride, pad, Ho, Wo, padded, cols):
    """The receptive fields of one sample ``xs`` (C, H, W) into ``cols`` (C kh kw, Ho Wo)."""
    if pad == 0:
        _im2col(xs, kh, kw, stride, Ho, Wo, cols)
    else:
        _pad_sample_into(xs, pad, padded)
        _im2col(padded, kh, kw, stride, Ho, Wo, cols)


# ---------------------------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def conv2d_into(x, w, stride, pad, padded, cols, out):
    """Cross-correlation of ``x`` with ``w`` (stride, zero padding) written into ``out``.

    Parameters
    ----------
    x : ndarray, shape (batch, C_in, H, W)
    w : ndarray, shape (C_out, C_in, kh, kw)
    stride, pad : int
    padded : ndarray, shape (C_in, H + 2 pad, W + 2 pad)
        Workspace (unused when ``pad == 0``).
    cols : ndarray, shape (C_in kh kw, H_out W_out)
        Workspace.
    out : ndarray, shape (batch, C_out, H_out, W_out)
    """
    n_batch = x.shape[0]
    C_out, C_in, kh, kw = w.shape
    Ho, Wo = out.shape[2], out.shape[3]
    w2 = w.reshape((C_out, C_in * kh * kw))
    for b in range(n_batch):
        _unfold_sample(x[b], kh, kw, stride, pad, Ho, Wo, padded, cols)
        np.dot(w2, cols, out[b].reshape((C_out, Ho * Wo)))


@njit(cache=True)
def conv2d_transpose_into(g, w, stride, pad, padded, cols, out):
    """The adjoint of :func:`conv2d_into`: the gradient with respect to its input, written into ``out``.

    out[b, c, y, x] = sum over the outputs (o, i, j) whose window covers
    (y, x) of w[o, c, y + pad - s i, x + pad - s j] g[b, o, i, j]; entries
    no window reaches get zero.

    Parameters
    ----------
    g : ndarray, shape (batch, C_out, H_out, W_out)
    w : ndarray, shape (C_out, C_in, kh, kw)
    stride, pad : int
    padded : ndarray, shape (C_in, H + 2 pad, W + 2 pad)
        Workspace (unused when ``pad == 0``).
    cols : ndarray, shape (C_in kh kw, H_out W_out)
        Workspace.
    out : ndarray, shape (batch, C_in, H, W)
        Its shape gives H and W (several input sizes share one output size when the stride drops rows).
    """
    n_batch = g.shape[0]
    C_out, C_in, kh, kw = w.shape
    Ho, Wo = g.shape[2], g.shape[3]
    w2t = w.reshape((C_out, C_in * kh * kw)).T
    for b in range(n_batch):
        np.dot(w2t, g[b].reshape((C_out, Ho * Wo)), cols)
        if pad == 0:
            _col2im(cols, kh, kw, stride, Ho, Wo, out[b])
        else:
            _col2im(cols, kh, kw, stride, Ho, Wo, padded)
            _crop_sample_into(padded, pad, out[b])


@njit(cache=True)
def conv2d_weight_grad_into(x, g, stride, pad, padded, cols, prod, dw):
    """Gradient with respect to the kernel, summed over the batch, written into ``dw``.

    dw[o, c, u, v] = sum_{b, i, j} g[b, o, i, j] x_pad[b, c, s i + u, s j + v]:
    the gradient of sum(g * conv2d(x, w)) with respect to ``w``.

    Parameters
    ----------
    x : ndarray, shape (batch, C_in, H, W)
    g : ndarray, shape (batch, C_out, H_out, W_out)
    stride, pad : int
    padded : ndarray, shape (C_in, H + 2 pad, W + 2 pad)
        Workspace (unused when ``pad == 0``).
    cols : ndarray, shape (C_in kh kw, H_out W_out)
        Workspace.
    prod : ndarray, shape (C_out, C_in kh kw)
        Workspace: one sample's product, added to ``dw``.
    dw : ndarray, shape (C_out, C_in, kh, kw)
    """
    n_batch = x.shape[0]
    C_out, C_in, kh, kw = dw.shape
    Ho, Wo = g.shape[2], g.shape[3]
    n_k = C_in * kh * kw
    dw2 = dw.reshape((C_out, n_k))
    if n_batch == 0:
        _zero(dw2)
    for b in range(n_batch):
        _unfold_sample(x[b], kh, kw, stride, pad, Ho, Wo, padded, cols)
        g2 = g[b].reshape((C_out, Ho * Wo))
        if b == 0:
            np.dot(g2, cols.T, dw2)
        else:
            np.dot(g2, cols.T, prod)
            for o in range(C_out):
                for r in range(n_k):
                    dw2[o, r] += prod[o, r]


@njit(cache=True)
def channel_sum_into(g, out):
    """out[c] = sum_{b, y, x} g[b, c, y, x]: the gradient of a per-channel bias (accumulated in float64).

    Parameters
    ----------
    g : ndarray, shape (batch, C, H, W)
    out : ndarray, shape (C,)
    """
    n_batch, C, H, W = g.shape
    for c in range(C):
        acc = 0.0
        for b in range(n_batch):
            for i in range(H):
                for j in range(W):
                    acc += g[b, c, i, j]
        out[c] = acc


# ---------------------------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def max_pool2d_into(x, k, stride, out, argmax):
    """Max pooling over k x k windows, no padding; the winner of each window recorded in ``argmax``.

    The winner is the first maximum in row-major order within its window;
    ``argmax[b, c, i, j]`` holds its flat index y W + x within the (H, W)
    plane of ``x``.

    Parameters
    ----------
    x : ndarray, shape (batch, C, H, W)
    k, stride : int
    out : ndarray, shape (batch, C, (H - k) // stride + 1, (W - k) // stride + 1)
    argmax : ndarray of int64, shape of ``out``
    """
    n_batch, C, H, W = x.shape
    Ho, Wo = out.shape[2], out.shape[3]
    for b in range(n_batch):
        for c in range(C):
            plane = x[b, c]
            for i in range(Ho):
                for j in range(Wo):
                    y0 = i * stride
                    x0 = j * stride
                    best = plane[y0, x0]
                    where = y0 * W + x0
                    for u in range(k):
                        for v in range(k):
                            val = plane[y0 + u, x0 + v]
                            if val > best:
                                best = val
                                where = (y0 + u) * W + x0 + v
                    out[b, c, i, j] = best
                    argmax[b, c, i, j] = where


@njit(cache=True)
def max_pool2d_backward_into(g, argmax, out):
    """Route each entry of ``g`` to the winner of its window; every other entry of ``out`` gets zero.

    A unit that wins several overlapping windows (stride < k) receives the sum.

    Parameters
    ----------
    g : ndarray, shape (batch, C, H_out, W_out)
    argmax : ndarray of int64, shape of ``g``
        From :func:`max_pool2d_into`.
    out : ndarray, shape (batch, C, H, W)
    """
    n_batch, C, Ho, Wo = g.shape
    W = out.shape[3]
    _zero(out)
    for b in range(n_batch):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    where = argmax[b, c, i, j]
                    out[b, c, where // W, where % W] += g[b, c, i, j]


@njit(cache=True)
def avg_pool2d_into(x, k, stride, out):
    """Average pooling over k x k windows, no padding.

    Parameters
    ----------
    x : ndarray, shape (batch, C, H, W)
    k, stride : int
    out : ndarray, shape (batch, C, (H - k) // stride + 1, (W - k) // stride + 1)
    """
    n_batch, C = x.shape[0], x.shape[1]
    Ho, Wo = out.shape[2], out.shape[3]
    inv = 1.0 / (k * k)
    for b in range(n_batch):
        for c in range(C):
            plane = x[b, c]
            for i in range(Ho):
                for j in range(Wo):
                    acc = 0.0
                    for u in range(k):
                        for v in range(k):
                            acc += plane[i * stride + u, j * stride + v]
                    out[b, c, i, j] = acc * inv


@njit(cache=True)
def avg_pool2d_backward_into(g, k, stride, out):
    """Spread each entry of ``g`` evenly (1 / k^2) over its window; entries no window covers get zero.

    Parameters
    ----------
    g : ndarray, shape (batch, C, H_out, W_out)
    k, stride : int
    out : ndarray, shape (batch, C, H, W)
    """
    n_batch, C, Ho, Wo = g.shape
    inv = 1.0 / (k * k)
    _zero(out)
    for b in range(n_batch):
        for c in range(C):
            plane = out[b, c]
            for i in range(Ho):
                for j in range(Wo):
                    share = g[b, c, i, j] * inv
                    for u in range(k):
                        for v in range(k):
                            plane[i * stride + u, j * stride + v] += share


@njit(cache=True)
def pool2d_into(x, pool, k, stride, out, argmax):
    """Pooling selected by its code (:data:`POOLS`); ``argmax`` is written by max pooling only.

    With ``POOL_NONE`` ``out`` (of the shape of ``x``) receives a copy of ``x``.
    """
    if pool == POOL_MAX:
        max_pool2d_into(x, k, stride, out, argmax)
    elif pool == POOL_AVG:
        avg_pool2d_into(x, k, stride, out)
    else:
        _copy(x, out)


@njit(cache=True)
def pool2d_backward_into(g, pool, k, stride, argmax, out):
    """Backward pass of :func:`pool2d_into`: the gradient with respect to its input, written into ``out``."""
    if pool == POOL_MAX:
        max_pool2d_backward_into(g, argmax, out)
    elif pool == POOL_AVG:
        avg_pool2d_backward_into(g, k, stride, out)
    else:
        _copy(g, out)


# ---------------------------------------------------------------------------------------------------------------
# The coupling: pool(conv(a))
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True)
def conv_pool_into(a, w, stride, pad, pool, pool_k, pool_stride, padded, cols, conv_out, argmax, out):
    """``out = pool(conv(a, w))``, the drive of the postsynaptic group (-dE_c/ds_post), winners into ``argmax``.

    Parameters
    ----------
    a : ndarray, shape (batch, C_in, H, W)
        Presynaptic activity (rho(s_pre), or f(x) in predictive coding).
    w : ndarray, shape (C_out, C_in, kh, kw)
    stride, pad : int
        Of the convolution.
    pool, pool_k, pool_stride : int
        Pooling code (:data:`POOLS`), window and stride.
    padded, cols : ndarray
        Workspaces of :func:`conv2d_into`.
    conv_out : ndarray, shape (batch, C_out, H_c, W_c)
        The convolution before pooling (unused with ``POOL_NONE``).
    argmax : ndarray of int64, shape of ``out``
        Written with ``POOL_MAX``; what :func:`conv_pool_transpose_into` and
        :func:`conv_pool_weight_grad_into` route through afterwards.
    out : ndarray, shape (batch, C_out, H', W')
    """
    if pool == POOL_NONE:
        conv2d_into(a, w, stride, pad, padded, cols, out)
    else:
        conv2d_into(a, w, stride, pad, padded, cols, conv_out)
        pool2d_into(conv_out, pool, pool_k, pool_stride, out, argmax)


@njit(cache=True)
def conv_pool_transpose_into(g, w, stride, pad, pool, pool_k, pool_stride, argmax, padded, cols, unpooled, out):
    """``out = conv_T(unpool(g))``: the adjoint of :func:`conv_pool_into` applied to ``g``.

    With ``g = s_post`` this is the drive of the presynaptic activity
    (-dE_c/da). Max pooling routes through the winners ``argmax`` recorded by
    :func:`conv_pool_into` at the current ``a``.

    Parameters
    ----------
    g : ndarray, shape (batch, C_out, H', W')
    w : ndarray, shape (C_out, C_in, kh, kw)
    stride, pad, pool, pool_k, pool_stride : int
        As in :func:`conv_pool_into`.
    argmax : ndarray of int64, shape of ``g``
    padded, cols : ndarray
        Workspaces of :func:`conv2d_transpose_into`.
    unpooled : ndarray, shape (batch, C_out, H_c, W_c)
        Workspace (unused with ``POOL_NONE``); may be the ``conv_out`` of
        :func:`conv_pool_into`, which is no longer needed once pooled.
    out : ndarray, shape (batch, C_in, H, W)
    """
    if pool == POOL_NONE:
        conv2d_transpose_into(g, w, stride, pad, padded, cols, out)
    else:
        pool2d_backward_into(g, pool, pool_k, pool_stride, argmax, unpooled)
        conv2d_transpose_into(unpooled, w, stride, pad, padded, cols, out)


@njit(cache=True)
def conv_pool_weight_grad_into(a, g, stride, pad, pool, pool_k, pool_stride, argmax, padded, cols, unpooled,
                               prod, dw):
    """``dw = sum_b corr(a_b, unpool(g_b))``: the gradient of sum(g * pool(conv(a, w))) with respect to ``w``.

    dE_c/dw is minus this with ``g = s_post``. Arguments as in
    :func:`conv_pool_transpose_into`, plus ``a`` (batch, C_in, H, W), ``prod``
    (C_out, C_in kh kw, a workspace) and ``dw`` (C_out, C_in, kh, kw).
    """
    if pool == POOL_NONE:
        conv2d_weight_grad_into(a, g, stride, pad, padded, cols, prod, dw)
    else:
        pool2d_backward_into(g, pool, pool_k, pool_stride, argmax, unpooled)
        conv2d_weight_grad_into(a, unpooled, stride, pad, padded, cols, prod, dw)


# ---------------------------------------------------------------------------------------------------------------
# The coupling on chunks of the minibatch, on Numba's threads. Samples are independent in the convolution and its
# transpose, so those give the numbers of the whole-batch kernels whatever the chunks; the weight gradient sums
# each chunk's samples, then the chunks in their order, so its numbers depend on the chunks alone (fixed by the
# batch size: :func:`conv_chunks`), not on how many threads run them.
# ---------------------------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def conv_pool_chunks_into(a, w, stride, pad, pool, pool_k, pool_stride, starts, padded, cols, conv_out, argmax, out):
    """:func:`conv_pool_into` with chunk c, samples ``starts[c]:starts[c + 1]``, on a thread of its own.

    ``padded`` and ``cols`` hold one workspace per chunk (leading axis
    n_chunks: :func:`conv_workspace` with ``chunks``); the other arguments
    are as in :func:`conv_pool_into` (one-row stand-ins for the buffers a
    pooling does not use are never read).
    """
    for c in prange(starts.shape[0] - 1):
        lo, hi = starts[c], starts[c + 1]
        conv_pool_into(a[lo:hi], w, stride, pad, pool, pool_k, pool_stride, padded[c], cols[c], conv_out[lo:hi],
                       argmax[lo:hi], out[lo:hi])


@njit(cache=True, parallel=True)
def conv_pool_transpose_chunks_into(g, w, stride, pad, pool, pool_k, pool_stride, argmax, starts, padded, cols,
                                    unpooled, out):
    """:func:`conv_pool_transpose_into` on the chunks ``starts`` of the minibatch, one workspace per chunk."""
    for c in prange(starts.shape[0] - 1):
        lo, hi = starts[c], starts[c + 1]
        conv_pool_transpose_into(g[lo:hi], w, stride, pad, pool, pool_k, pool_stride, argmax[lo:hi], padded[c],
                                 cols[c], unpooled[lo:hi], out[lo:hi])


@njit(cache=True, parallel=True)
def conv_pool_weight_grad_chunks_into(a, g, stride, pad, pool, pool_k, pool_stride, argmax, starts, padded, cols,
                                      unpooled, prod, partial, dw):
    """:func:`conv_pool_weight_grad_into` on the chunks ``starts``: each chunk's sum into ``partial[c]``, then
    ``dw`` = the chunks' sums added in chunk order.

    ``prod`` (n_chunks, C_out, C_in kh kw) and ``partial`` (n_chunks, C_out,
    C_in, kh, kw) are workspaces; ``dw`` (C_out, C_in, kh, kw) is zero for an
    empty minibatch.
    """
    n_chunks = starts.shape[0] - 1
    for c in prange(n_chunks):
        lo, hi = starts[c], starts[c + 1]
        conv_pool_weight_grad_into(a[lo:hi], g[lo:hi], stride, pad, pool, pool_k, pool_stride, argmax[lo:hi],
                                   padded[c], cols[c], unpooled[lo:hi], prod[c], partial[c])
    if n_chunks == 0:
        _zero(dw)
    else:
        _copy(partial[0], dw)
        total = dw.reshape(dw.size)
        for c in range(1, n_chunks):
            part = partial[c].reshape(dw.size)
            for i in range(dw.size):
                total[i] += part[i]


@njit(cache=True)
def coupling_energy_into(s_post, drive, e):
    """e[b] = -<s_post[b], drive[b]>: the coupling's energy per sample, with ``drive = pool(conv(a))``.

    Parameters
    ----------
    s_post, drive : ndarray, shape (batch, C_out, H', W')
    e : ndarray, shape (batch,)
    """
    n_batch, C, H, W = s_post.shape
    for b in range(n_batch):
        acc = 0.0
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    acc += s_post[b, c, i, j] * drive[b, c, i, j]
        e[b] = -acc


# ---------------------------------------------------------------------------------------------------------------
# Python boundary: validate once, allocate, call the kernels.
# ---------------------------------------------------------------------------------------------------------------

def _maps(name, value, ndim=4, dtype=None):
    """``value`` as a C-contiguous float32/float64 array of ``ndim`` dimensions (of ``dtype`` when given)."""
    arr = np.asarray(value)
    if arr.dtype not in FLOAT_DTYPES:
        raise ValidationError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValidationError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if dtype is not None and arr.dtype != dtype:
        raise ValidationError(f"{name} must have the dtype of the other arrays ({dtype}), got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _conv_geometry(x_shape, w_shape, stride, padding):
    """(H_out, W_out) of a convolution, after checking that channels agree and the kernel fits."""
    stride = positive_int("stride", stride, 1)
    padding = positive_int("padding", padding, 0)
    _, C_in, H, W = x_shape
    _, C_w, kh, kw = w_shape
    if C_w != C_in:
        raise ValidationError(f"the kernel has {C_w} input channels, the input {C_in}")
    if H + 2 * padding < kh or W + 2 * padding < kw:
        raise ValidationError(f"a {kh}x{kw} kernel does not fit a {H}x{W} input padded by {padding}")
    return (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1, stride, padding


def _pool_geometry(shape, kind, kernel_size, stride):
    """(code, k, stride, H_out, W_out) of a pooling of maps of ``shape``."""
    if kind not in POOLS:
        raise ValidationError(f"pool must be one of {sorted(POOLS)}, got {kind!r}")
    code = POOLS[kind]
    if code == POOL_NONE:
        return code, 1, 1, shape[2], shape[3]
    k = positive_int("pool_size", kernel_size, 1)
    s = k if stride is None else positive_int("pool_stride", stride, 1)
    if shape[2] < k or shape[3] < k:
        raise ValidationError(f"a {k}x{k} pooling window does not fit {shape[2]}x{shape[3]} maps")
    return code, k, s, (shape[2] - k) // s + 1, (shape[3] - k) // s + 1


CONV_CHUNKS = 8
"""Chunks a minibatch's convolutions are split into for Numba's threads (fewer when it has fewer samples): as
many per thread on 1, 2, 4 or 8 threads, and a fixed split, so that every thread count gives the same numbers."""


def conv_chunks(n_batch):
    """Boundaries (n_chunks + 1,) int64 of the :data:`CONV_CHUNKS` near-equal chunks of a minibatch of ``n_batch``.

    One chunk per sample below :data:`CONV_CHUNKS` samples, none for an empty minibatch.
    """
    n_batch = int(n_batch)
    n_chunks = min(n_batch, CONV_CHUNKS)
    if n_chunks == 0:
        return np.zeros(1, dtype=np.int64)
    return (np.arange(n_chunks + 1, dtype=np.int64) * n_batch) // n_chunks


class ConvWorkspace(NamedTuple):
    """Buffers a convolution's kernels reuse between calls (allocated once, e.g. per coupling).

    Without ``chunks`` none depends on the batch size: the kernels work one
    sample at a time. With ``chunks`` (:func:`conv_workspace`) each has a
    leading axis of that length, one workspace per chunk of the minibatch
    (:func:`conv_chunks`: at most :data:`CONV_CHUNKS`, fewer for a smaller
    batch).
    """

    padded: np.ndarray
    """shape (C_in, H + 2 padding, W + 2 padding): the zero-padded sample (unused without padding)."""
    cols: np.ndarray
    """shape (C_in kh kw, H_out W_out): the receptive fields of one sample."""
    prod: np.ndarray
    """shape (C_out, C_in kh kw): one sample's weight gradient."""


def conv_workspace(input_shape, kernel_shape, stride=1, padding=0, dtype=np.float64, chunks=None):
    """Allocate the workspaces of a convolution of maps ``input_shape`` (C_in, H, W) by ``kernel_shape``.

    Parameters
    ----------
    input_shape : tuple of int
        (C_in, H, W) or (batch, C_in, H, W).
    kernel_shape : tuple of int
        (C_out, C_in, kh, kw).
    stride, padding : int
    dtype : numpy.float32 or numpy.float64
    chunks : int, optional
        One workspace for each of this many chunks (the ``*_chunks_into``
        kernels): every array gets a leading axis of this length.

    Returns
    -------
    ConvWorkspace
    """
    C_in, H, W = tuple(input_shape)[-3:]
    C_out, _, kh, kw = kernel_shape
    Ho, Wo, stride, padding = _conv_geometry((1, C_in, H, W), kernel_shape, stride, padding)
    lead = () if chunks is None else (positive_int("chunks", chunks, 1),)
    return ConvWorkspace(np.empty(lead + (C_in, H + 2 * padding, W + 2 * padding), dtype=dtype),
                         np.empty(lead + (C_in * kh * kw, Ho * Wo), dtype=dtype),
                         np.empty(lead + (C_out, C_in * kh * kw), dtype=dtype))


def conv2d(x, w, stride=1, padding=0):
    """2-D cross-correlation with stride and zero padding, as PyTorch's ``conv2d`` (no bias).

    Parameters
    ----------
    x : ndarray, shape (batch, C_in, H, W)
    w : ndarray, shape (C_out, C_in, kh, kw)
        Same dtype as ``x`` (float32 or float64).
    stride, padding : int

    Returns
    -------
    ndarray, shape (batch, C_out, (H + 2 padding - kh) // stride + 1, (W + 2 padding - kw) // stride + 1)

    References
    ----------
    .. [1] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning", arXiv:1603.07285 (2016).
    """
    x = _maps("x", x)
    w = _maps("w", w, dtype=x.dtype)
    Ho, Wo, stride, padding = _conv_geometry(x.shape, w.shape, stride, padding)
    ws = conv_workspace(x.shape, w.shape, stride, padding, x.dtype)
    out = np.empty((x.shape[0], w.shape[0], Ho, Wo), dtype=x.dtype)
    conv2d_into(x, w, stride, padding, ws.padded, ws.cols, out)
    return out


def conv2d_transpose(g, w, input_shape, stride=1, padding=0):
    """The adjoint of :func:`conv2d`: the gradient of sum(g * conv2d(x, w)) with respect to ``x``.

    Parameters
    ----------
    g : ndarray, shape (batch, C_out, H_out, W_out)
    w : ndarray, shape (C_out, C_in, kh, kw)
    input_shape : tuple of int
        (H, W) or (C_in, H, W) or (batch, C_in, H, W) of ``x``: with a
        stride, several input sizes give one output size.
    stride, padding : int

    Returns
    -------
    ndarray, shape (batch, C_in, H, W)

    References
    ----------
    .. [1] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning", arXiv:1603.07285 (2016).
    """
    g = _maps("g", g)
    w = _maps("w", w, dtype=g.dtype)
    H, W = tuple(input_shape)[-2:]
    x_shape = (g.shape[0], w.shape[1], int(H), int(W))
    Ho, Wo, stride, padding = _conv_geometry(x_shape, w.shape, stride, padding)
    if g.shape[1:] != (w.shape[0], Ho, Wo):
        raise ValidationError(f"g must have shape (batch, {w.shape[0]}, {Ho}, {Wo}) for this kernel and input, "
                              f"got {g.shape}")
    ws = conv_workspace(x_shape, w.shape, stride, padding, g.dtype)
    out = np.empty(x_shape, dtype=g.dtype)
    conv2d_transpose_into(g, w, stride, padding, ws.padded, ws.cols, out)
    return out


def conv2d_weight_grad(x, g, kernel_size, stride=1, padding=0):
    """Gradient of sum(g * conv2d(x, w)) with respect to ``w``, summed over the batch.

    Parameters
    ----------
    x : ndarray, shape (batch, C_in, H, W)
    g : ndarray, shape (batch, C_out, H_out, W_out)
    kernel_size : int or tuple of int
        kh = kw, or (kh, kw).
    stride, padding : int

    Returns
    -------
    ndarray, shape (C_out, C_in, kh, kw)
    """
    x = _maps("x", x)
    g = _maps("g", g, dtype=x.dtype)
    kh, kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    w_shape = (g.shape[1], x.shape[1], positive_int("kh", kh, 1), positive_int("kw", kw, 1))
    Ho, Wo, stride, padding = _conv_geometry(x.shape, w_shape, stride, padding)
    if g.shape != (x.shape[0], w_shape[0], Ho, Wo):
        raise ValidationError(f"g must have shape ({x.shape[0]}, C_out, {Ho}, {Wo}), got {g.shape}")
    ws = conv_workspace(x.shape, w_shape, stride, padding, x.dtype)
    dw = np.empty(w_shape, dtype=x.dtype)
    conv2d_weight_grad_into(x, g, stride, padding, ws.padded, ws.cols, ws.prod, dw)
    return dw


def conv2d_bias_grad(g):
    """Gradient of sum(g * (y + b)) with respect to a per-channel bias ``b``: ``g`` summed over batch and positions.

    Parameters
    ----------
    g : ndarray, shape (batch, C, H, W)

    Returns
    -------
    ndarray, shape (C,)
    """
    g = _maps("g", g)
    out = np.empty(g.shape[1], dtype=g.dtype)
    channel_sum_into(g, out)
    return out


def max_pool2d(x, kernel_size, stride=None):
    """Max pooling (no padding; stride = kernel_size unless given) and the winners' routing.

    Parameters
    ----------
    x : ndarray, shape (batch, C, H, W)
    kernel_size : int
    stride : int, optional

    Returns
    -------
    out : ndarray, shape (batch, C, (H - k) // stride + 1, (W - k) // stride + 1)
    argmax : ndarray of int64, shape of ``out``
        Flat index y W + x of each window's winner (its first maximum) within the (H, W) plane.
    """
    x = _maps("x", x)
    _, k, s, Ho, Wo = _pool_geometry(x.shape, "max", kernel_size, stride)
    out = np.empty((x.shape[0], x.shape[1], Ho, Wo), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=np.int64)
    max_pool2d_into(x, k, s, out, argmax)
    return out, argmax


def max_pool2d_backward(g, argmax, input_shape):
    """Route ``g`` to the winners recorded by :func:`max_pool2d`: the gradient with respect to its input.

    Parameters
    ----------
    g : ndarray, shape (batch, C, H_out, W_out)
    argmax : ndarray of int64, shape of ``g``
    input_shape : tuple of int
        (H, W), (C, H, W) or (batch, C, H, W) of the pooled input.

    Returns
    -------
    ndarray, shape (batch, C, H, W)
    """
    g = _maps("g", g)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    if argmax.shape != g.shape:
        raise ValidationError(f"argmax must have the shape of g {g.shape}, got {argmax.shape}")
    H, W = tuple(input_shape)[-2:]
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):
        raise ValidationError(f"argmax holds indices outside a {H}x{W} plane")
    out = np.empty((g.shape[0], g.shape[1], int(H), int(W)), dtype=g.dtype)
    max_pool2d_backward_into(g, argmax, out)
    return out


def avg_pool2d(x, kernel_size, stride=None):
    """Average pooling (no padding; stride = kernel_size unless given).

    Parameters
    ----------
    x : ndarray, shape (batch, C, H, W)
    kernel_size : int
    stride : int, optional

    Returns
    -------
    ndarray, shape (batch, C, (H - k) // stride + 1, (W - k) // stride + 1)
    """
    x = _maps("x", x)
    _, k, s, Ho, Wo = _pool_geometry(x.shape, "avg", kernel_size, stride)
    out = np.empty((x.shape[0], x.shape[1], Ho, Wo), dtype=x.dtype)
    avg_pool2d_into(x, k, s, out)
    return out


def avg_pool2d_backward(g, input_shape, kernel_size, stride=None):
    """The adjoint of :func:`avg_pool2d`: the gradient of sum(g * avg_pool2d(x)) with respect to ``x``.

    Parameters
    ----------
    g : ndarray, shape (batch, C, H_out, W_out)
    input_shape : tuple of int
        (H, W), (C, H, W) or (batch, C, H, W) of the pooled input.
    kernel_size : int
    stride : int, optional

    Returns
    -------
    ndarray, shape (batch, C, H, W)
    """
    g = _maps("g", g)
    H, W = tuple(input_shape)[-2:]
    shape = (g.shape[0], g.shape[1], int(H), int(W))
    _, k, s, Ho, Wo = _pool_geometry(shape, "avg", kernel_size, stride)
    if g.shape[2:] != (Ho, Wo):
        raise ValidationError(f"g must have shape (batch, C, {Ho}, {Wo}) for this pooling, got {g.shape}")
    out = np.empty(shape, dtype=g.dtype)
    avg_pool2d_backward_into(g, k, s, out)
    return out


def _coupling_args(a, s_post, w, stride, padding, pool, pool_size, pool_stride):
    a = _maps("a", a)
    s_post = _maps("s_post", s_post, dtype=a.dtype)
    w = _maps("w", w, dtype=a.dtype)
    Hc, Wc, stride, padding = _conv_geometry(a.shape, w.shape, stride, padding)
    code, k, ps, Hp, Wp = _pool_geometry((a.shape[0], w.shape[0], Hc, Wc), pool, pool_size, pool_stride)
    if s_post.shape != (a.shape[0], w.shape[0], Hp, Wp):
        raise ValidationError(f"s_post must have shape {(a.shape[0], w.shape[0], Hp, Wp)}, got {s_post.shape}")
    return a, s_post, w, stride, padding, code, k, ps


def coupling_energy(a, s_post, w, stride=1, padding=0, pool="none", pool_size=2, pool_stride=None):
    """Energy of a convolutional coupling per sample, E_c[b] = -<s_post[b], pool(conv(a[b], w))>.

    Parameters
    ----------
    a : ndarray, shape (batch, C_in, H, W)
        Presynaptic activity rho(s_pre).
    s_post : ndarray, shape (batch, C_out, H', W')
    w : ndarray, shape (C_out, C_in, kh, kw)
    stride, padding : int
        Of the convolution.
    pool : {'none', 'max', 'avg'}
    pool_size : int
    pool_stride : int, optional
        ``pool_size`` unless given.

    Returns
    -------
    ndarray, shape (batch,)

    References
    ----------
    .. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
           Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
    """
    return coupling_gradients(a, s_post, w, stride, padding, pool, pool_size, pool_stride)[0]


def coupling_gradients(a, s_post, w, stride=1, padding=0, pool="none", pool_size=2, pool_stride=None):
    """Energy of a convolutional coupling per sample and its gradients (see :func:`coupling_energy`).

    With max pooling the gradients route through each window's winner (the
    first maximum): exact wherever the maxima are unique. New arrays each
    call: a relaxation calls the ``*_into`` kernels with its own buffers.

    Returns
    -------
    e : ndarray, shape (batch,)
    grad_a : ndarray, shape (batch, C_in, H, W)
        dE_c/da = -conv_T(unpool(s_post)).
    grad_post : ndarray, shape (batch, C_out, H', W')
        dE_c/ds_post = -pool(conv(a)).
    grad_w : ndarray, shape (C_out, C_in, kh, kw)
        dE_c/dw summed over the batch.

    References
    ----------
    .. [1] M. Ernoult et al., "Updates of Equilibrium Prop Match Gradients of Backprop Through Time in an RNN with
           Static Input", NeurIPS 2019.
    .. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
           Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
    """
    a, s_post, w, stride, padding, pool, k, ps = _coupling_args(a, s_post, w, stride, padding, pool, pool_size,
                                                                pool_stride)
    ws = conv_workspace(a.shape, w.shape, stride, padding, a.dtype)
    n_batch = a.shape[0]
    conv_out = np.empty((n_batch, w.shape[0], conv_output_size(a.shape[2], w.shape[2], stride, padding),
                         conv_output_size(a.shape[3], w.shape[3], stride, padding)), dtype=a.dtype)
    drive = np.empty(s_post.shape, dtype=a.dtype)
    argmax = np.zeros(s_post.shape, dtype=np.int64)
    conv_pool_into(a, w, stride, padding, pool, k, ps, ws.padded, ws.cols, conv_out, argmax, drive)
    e = np.empty(n_batch, dtype=a.dtype)
    coupling_energy_into(s_post, drive, e)
    grad_a = np.empty(a.shape, dtype=a.dtype)
    # conv_out serves as the unpooling buffer: the convolution is no longer needed once pooled.
    conv_pool_transpose_into(s_post, w, stride, padding, pool, k, ps, argmax, ws.padded, ws.cols, conv_out, grad_a)
    grad_w = np.empty(w.shape, dtype=a.dtype)
    conv_pool_weight_grad_into(a, s_post, stride, padding, pool, k, ps, argmax, ws.padded, ws.cols, conv_out,
                               ws.prod, grad_w)
    return e, -grad_a, -drive, -grad_w


# Measured on this machine (AMD EPYC, one thread, the other core busy), batch 128, 5x5 kernels, conv 32->64 on
# 12x12 maps in float32 (float64): direct nested loops 930 ms (1400 ms) per forward pass; unfolding and BLAS product
# 15-25 ms (35-45 ms), of which the product (about 60 GFLOP/s in float32) is 13 ms and the unfolding 2 ms with the
# index arithmetic above (9-14 ms written through flat indices, whose wrap-around tests block vectorisation).
# Products over chunks of 1, 4, 16 or 128 samples took the same time within noise; one sample at a time keeps
# ``cols`` in cache, needs no batch-sized workspace, and lets the product land in place in the output.
# A transpose through max pooling that skips the windows' losers and the zero rates (C_out H' W' products instead of
# C_out H_c W_c, accumulated with the channels last so that the inner loop is contiguous) ran that transpose alone
# 1.3-1.7 times faster on the MNIST conv net's 32 -> 64 coupling, but whole relaxations of 30 block sweeps took the
# same time within noise (4 alternated rounds on 2 cores: 0.40-0.51 s with it, 0.42-0.50 s without): not kept.
