"""Compiled energy, gradients and vector field of the continuous Hopfield network.

The network's units form groups: group 0 is the clamped input ``x``, groups
1..G-1 are free and are stored side by side in the state ``s`` (batch,
n_free); the last group is the output. Connection ``c`` couples group
``pre[c]`` to group ``post[c]`` (``pre <= post``) through the block
``W_c`` (n_pre, n_post), stored C-ordered in the flat parameter vector
``theta`` at ``w_off[c]``; a block with ``pre == post`` is symmetric with a
zero diagonal. The biases of the free units follow at ``b_off``. One compiled
signature therefore serves layered networks of any depth and any symmetric
connectivity. Every kernel computes in the dtype of its state and
parameter arrays (float64 or float32; numba compiles and caches one version
of each for both); per-sample and per-parameter sums are accumulated in
float64 scalars.

Energy (Scellier & Bengio 2017, Eq. 1), over the free state given the clamped input:

    E(s) = 1/2 ||s||^2 - sum_{c, pre != post} rho(s_pre)^T W_c rho(s_post)
           - 1/2 sum_{c, pre == post} rho(s_pre)^T W_c rho(s_pre) - b . rho(s)

Each group has its own activation: ``acts`` (G,) holds the codes of
:mod:`dynsim.networks.activations`, ``acts[0]`` the input's, and rho, rho', rho''
act groupwise (:func:`group_rho_and_prime` and its siblings).

Terms of the clamped units alone (1/2 ||x||^2) are constant and dropped. With
the local field ``h = -dE/drho(s)``, ``dE/ds = s - rho'(s) * h`` and
``E = 1/2 ||s||^2 - 1/2 rho(s) . (h + d)``, where ``d`` (the "drive") holds
the biases plus the input's projection, constant during a relaxation.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
"""
import numpy as np
from numba import njit

from dynsim.networks.activations import rho, unit_rho_and_prime, unit_rho_second
from integrators._numerics import add_rows, copy_rows


@njit(cache=True)
def group_rho_and_prime(s, acts, sizes, free_off):
    """rho(s) and rho'(s) of a free state, each group with its own activation; two arrays (batch, n_free)."""
    r = np.empty(s.shape, dtype=s.dtype)
    rp = np.empty(s.shape, dtype=s.dtype)
    for g in range(1, sizes.shape[0]):
        o = free_off[g]
        act = acts[g]
        for i in range(s.shape[0]):
            for j in range(o, o + sizes[g]):
                r[i, j], rp[i, j] = unit_rho_and_prime(s[i, j], act)
    return r, rp


@njit(cache=True)
def group_rho(s, acts, sizes, free_off):
    """rho(s) of a free state, groupwise, shape (batch, n_free)."""
    return group_rho_and_prime(s, acts, sizes, free_off)[0]


@njit(cache=True)
def group_rho_prime(s, acts, sizes, free_off):
    """rho'(s) of a free state, groupwise, shape (batch, n_free)."""
    return group_rho_and_prime(s, acts, sizes, free_off)[1]


@njit(cache=True)
def group_rho_second(s, acts, sizes, free_off):
    """rho''(s) of a free state, groupwise, shape (batch, n_free)."""
    out = np.empty(s.shape, dtype=s.dtype)
    for g in range(1, sizes.shape[0]):
        o = free_off[g]
        act = acts[g]
        for i in range(s.shape[0]):
            for j in range(o, o + sizes[g]):
                out[i, j] = unit_rho_second(s[i, j], act)
    return out


@njit(cache=True)
def weight_block(theta, c, sizes, pre, post, w_off):
    """View of the block ``W_c``, shape (sizes[pre[c]], sizes[post[c]])."""
    n_a = sizes[pre[c]]
    n_b = sizes[post[c]]
    start = w_off[c]
    return theta[start:start + n_a * n_b].reshape((n_a, n_b))


@njit(cache=True)
def _product(a, W):
    """``a @ W`` computed as ``(W^T a^T)^T`` (a transposed view of a C array is returned).

    Same numbers, but OpenBLAS takes another kernel for this operand order,
    measured here 1.3-1.8 times faster for a thin ``a`` (20-128 rows) times
    a weight block (784 x 500, 784 x 128, ...).
    """
    return np.dot(W.T, a.T).T


@njit(cache=True)
def input_drive(x, theta, sizes, free_off, pre, post, w_off, b_off, acts):
    """Constant part of the local field: biases plus rho(x) W for input connections.

    Parameters
    ----------
    x : ndarray, shape (batch, n_input)
    theta : ndarray, shape (n_params,)

    Returns
    -------
    ndarray, shape (batch, n_free)
    """
    n_batch = x.shape[0]
    n_free = free_off[-1] + sizes[-1]
    drive = np.empty((n_batch, n_free), dtype=x.dtype)
    for i in range(n_batch):
        for j in range(n_free):
            drive[i, j] = theta[b_off + j]
    rx = rho(x, acts[0])
    for c in range(pre.shape[0]):
        if pre[c] == 0:
            b = post[c]
            o = free_off[b]
            p = _product(rx, weight_block(theta, c, sizes, pre, post, w_off))
            for i in range(n_batch):
                for j in range(sizes[b]):
                    drive[i, o + j] += p[i, j]
    return drive


@njit(cache=True)
def _add_product(h, col, a, W, transpose):
    """``h[:, col:col + m] += a @ W`` (or ``a @ W.T``), the product written to one small temporary.

    ``a`` is C-contiguous; the transposed block needs no copy (BLAS reads it
    transposed).
    """
    if transpose:
        p = np.dot(W, a.T).T
    else:
        p = _product(a, W)
    n_batch, m = p.shape
    for i in range(n_batch):
        for j in range(m):
            h[i, col + j] += p[i, j]


@njit(cache=True)
def _group_columns(r, o, n):
    """Columns ``o:o + n`` of ``r`` as a C-contiguous array (the array itself when it spans every column)."""
    if o == 0 and n == r.shape[1]:
        return r
    return np.ascontiguousarray(r[:, o:o + n])


@njit(cache=True)
def local_field_into(r, theta, sizes, free_off, pre, post, w_off, drive, h):
    """Write ``h = -dE/d rho(s)`` into ``h`` (batch, n_free): drive plus the couplings among free groups.

    ``h`` may be any C-contiguous array of the state's shape, e.g. the
    vector field's output, so a relaxation step allocates no field array.
    """
    n_batch, n = h.shape
    for i in range(n_batch):
        for j in range(n):
            h[i, j] = drive[i, j]
    for c in range(pre.shape[0]):
        a = pre[c]
        if a == 0:
            continue
        b = post[c]
        oa = free_off[a]
        ob = free_off[b]
        W = weight_block(theta, c, sizes, pre, post, w_off)
        ra = _group_columns(r, oa, sizes[a])
        if a == b:
            _add_product(h, oa, ra, W, False)
        else:
            rb = _group_columns(r, ob, sizes[b])
            _add_product(h, ob, ra, W, False)
            _add_product(h, oa, rb, W, True)


@njit(cache=True)
def local_field(r, theta, sizes, free_off, pre, post, w_off, drive):
    """``h = -dE/d rho(s)``: drive plus the couplings among free groups.

    Parameters
    ----------
    r : ndarray, shape (batch, n_free)
        rho(s).
    drive : ndarray, shape (batch, n_free)

    Returns
    -------
    ndarray, shape (batch, n_free)
    """
    h = np.empty_like(drive)
    local_field_into(r, theta, sizes, free_off, pre, post, w_off, drive, h)
    return h


@njit(cache=True)
def energy(s, theta, sizes, free_off, pre, post, w_off, acts, drive):
    """Energy per sample, shape (batch,)."""
    r = group_rho(s, acts, sizes, free_off)
    h = local_field(r, theta, sizes, free_off, pre, post, w_off, drive)
    n_batch, n = s.shape
    out = np.empty(n_batch, dtype=s.dtype)
    for i in range(n_batch):
        acc = 0.0
        for j in range(n):
            acc += 0.5 * s[i, j] * s[i, j] - 0.5 * r[i, j] * (h[i, j] + drive[i, j])
        out[i] = acc
    return out


@njit(cache=True)
def energy_grad_state(s, theta, sizes, free_off, pre, post, w_off, acts, drive):
    """dE/ds = s - rho'(s) * h, shape (batch, n_free)."""
    r, rp = group_rho_and_prime(s, acts, sizes, free_off)
    h = local_field(r, theta, sizes, free_off, pre, post, w_off, drive)
    return s - rp * h


@njit(cache=True)
def _block_view(grad, c, a, b, sizes, w_off):
    """The slice of ``grad`` holding block ``c``, as a C-contiguous (n_a, n_b) view."""
    start = w_off[c]
    return grad[start:start + sizes[a] * sizes[b]].reshape((sizes[a], sizes[b]))


@njit(cache=True)
def _store_block(grad, c, a, b, sizes, w_off, left, right, scale):
    """Write ``scale * left^T right`` into the slice of block ``c`` of ``grad``, with no temporary.

    ``left`` (k, n_a) and ``right`` (k, n_b) are C-contiguous with k summed
    over (the batch, or two stacked batches). A block between groups takes
    the scale into ``right`` (k x n_b entries, not n_a x n_b); a symmetric
    block within a group is scaled after the product, which keeps it
    exactly symmetric, and gets a zero diagonal (the energy counts each pair
    once).
    """
    out = _block_view(grad, c, a, b, sizes, w_off)
    if a == b:
        np.dot(left.T, right, out)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] *= scale
            out[i, i] = 0.0
    else:
        # Scaled by a loop into an array of right's dtype: `right * scale` with a float64 scale would promote a
        # float32 operand to float64, and np.dot needs one dtype throughout.
        scaled = np.empty_like(right)
        for i in range(right.shape[0]):
            for j in range(right.shape[1]):
                scaled[i, j] = right[i, j] * scale
        np.dot(left.T, scaled, out)


@njit(cache=True)
def _store_bias_gradient(grad, b_off, dr, scale):
    """Biases: ``scale`` times the batch sum of ``dr`` (rho(s), a difference of them, or a derivative)."""
    n_batch, n_free = dr.shape
    for j in range(n_free):
        acc = 0.0
        for i in range(n_batch):
            acc += dr[i, j]
        grad[b_off + j] = scale * acc


@njit(cache=True)
def energy_grad_params(x, s, theta, sizes, free_off, pre, post, w_off, b_off, acts):
    """Gradient of the batch-mean energy with respect to ``theta``, shape (n_params,).

    dE/dW_c = -rho(s_pre)^T rho(s_post) for blocks between groups and
    -1/2 rho(s_a)^T rho(s_a) (zero diagonal) for a symmetric block within a
    group, treating each entry of ``W_c`` as a free parameter; dE/db = -rho(s).
    Each block's product is written straight into the returned vector.
    """
    n_batch = s.shape[0]
    grad = np.empty(theta.shape[0], dtype=theta.dtype)
    r = group_rho(s, acts, sizes, free_off)
    rx = rho(x, acts[0])
    scale = -1.0 / n_batch
    for c in range(pre.shape[0]):
        a = pre[c]
        b = post[c]
        rb = _group_columns(r, free_off[b], sizes[b])
        if a == 0:
            ra = rx
        else:
            ra = _group_columns(r, free_off[a], sizes[a])
        _store_block(grad, c, a, b, sizes, w_off, ra, rb, scale if a != b else 0.5 * scale)
    _store_bias_gradient(grad, b_off, r, scale)
    return grad


@njit(cache=True)
def _stack(top, bottom, sign):
    """``[top; sign * bottom]``, shape (k_top + k_bottom, n), C-contiguous."""
    k1, n = top.shape
    k2 = bottom.shape[0]
    out = np.empty((k1 + k2, n), dtype=top.dtype)
    for i in range(k1):
        for j in range(n):
            out[i, j] = top[i, j]
    for i in range(k2):
        for j in range(n):
            out[k1 + i, j] = sign * bottom[i, j]
    return out


@njit(cache=True)
def energy_grad_params_difference(x, s_a, s_b, scale, theta, sizes, free_off, pre, post, w_off, b_off, acts):
    """``scale * (dE/dtheta(s_b) - dE/dtheta(s_a))`` for two states of one input, shape (n_params,).

    What equilibrium propagation and contrastive Hebbian learning read off
    two settled states, with one matrix product per weight block: for an
    input block the difference is -rho(x)^T (rho(s_b) - rho(s_a)) / B (the
    clamped input is the same in both states), for a block between free
    groups -[r_a; r'_a]^T [r_b; -r'_b] / B with the two states stacked along
    the batch, for biases -(rho(s_b) - rho(s_a)) summed over the batch / B.
    Nothing of the parameters' size is allocated but the result.
    """
    n_batch = s_a.shape[0]
    grad = np.empty(theta.shape[0], dtype=theta.dtype)
    r_a = group_rho(s_a, acts, sizes, free_off)
    r_b = group_rho(s_b, acts, sizes, free_off)
    diff = r_b - r_a
    rx = rho(x, acts[0])
    k = -scale / n_batch
    for c in range(pre.shape[0]):
        a = pre[c]
        b = post[c]
        ob = free_off[b]
        if a == 0:
            _store_block(grad, c, a, b, sizes, w_off, rx, _group_columns(diff, ob, sizes[b]), k)
        else:
            oa = free_off[a]
            left = _stack(_group_columns(r_b, oa, sizes[a]), _group_columns(r_a, oa, sizes[a]), 1.0)
            right = _stack(_group_columns(r_b, ob, sizes[b]), _group_columns(r_a, ob, sizes[b]), -1.0)
            _store_block(grad, c, a, b, sizes, w_off, left, right, k if a != b else 0.5 * k)
    _store_bias_gradient(grad, b_off, diff, k)
    return grad


@njit(cache=True)
def energy_hvp(s, v, theta, sizes, free_off, pre, post, w_off, acts, drive):
    """Hessian-vector products of E per sample: ``(d^2E/ds^2)_b v_b``, shape (batch, n_free).

    With dE/ds = s - rho'(s) h(rho(s)) and h linear in rho(s) (coupling part
    ``W_ff rho(s)``): H v = v - rho''(s) h v - rho'(s) (W_ff (rho'(s) v)).
    """
    r, rp = group_rho_and_prime(s, acts, sizes, free_off)
    h = local_field(r, theta, sizes, free_off, pre, post, w_off, drive)
    zero = np.zeros_like(drive)
    coupled = local_field(rp * v, theta, sizes, free_off, pre, post, w_off, zero)
    return v - group_rho_second(s, acts, sizes, free_off) * h * v - rp * coupled


@njit(cache=True)
def energy_grad_params_directional(x, s, v, theta, sizes, free_off, pre, post, w_off, b_off, acts):
    """Derivative of the batch-mean dE/dtheta along per-sample state directions ``v``.

    Returns ``(1/B) sum_b d/de [dE_b/dtheta (s_b + e v_b)]`` at e = 0, shape
    (n_params,): the mixed second derivative d^2E/(dtheta ds) applied to v,
    which recurrent backprop and BPTT contract with their adjoint states.
    For a block between groups it is -(r'_pre^T r_post + r_pre^T r'_post)
    with r' = rho'(s) v, for a block within a group half of that (zero
    diagonal), for biases -r'. The clamped input has no direction.
    """
    n_batch = s.shape[0]
    grad = np.empty(theta.shape[0], dtype=theta.dtype)
    r, rp = group_rho_and_prime(s, acts, sizes, free_off)
    dr = rp * v
    rx = rho(x, acts[0])
    scale = -1.0 / n_batch
    for c in range(pre.shape[0]):
        a = pre[c]
        b = post[c]
        ob = free_off[b]
        drb = _group_columns(dr, ob, sizes[b])
        if a == 0:
            _store_block(grad, c, a, b, sizes, w_off, rx, drb, scale)
        else:
            oa = free_off[a]
            # dra^T rb + ra^T drb as one product over the stacked batch.
            left = _stack(_group_columns(dr, oa, sizes[a]), _group_columns(r, oa, sizes[a]), 1.0)
            right = _stack(_group_columns(r, ob, sizes[b]), drb, 1.0)
            _store_block(grad, c, a, b, sizes, w_off, left, right, scale if a != b else 0.5 * scale)
    _store_bias_gradient(grad, b_off, dr, scale)
    return grad


@njit(cache=True)
def hopfield_vector_field(t, s, dsdt, args):
    """ds/dt = -dF/ds with F = E + beta * C, C = 1/2 ||s_out - target||^2.

    ``args = (theta, sizes, free_off, pre, post, w_off, acts, drive, beta,
    target, clamp_output)``; ``target`` has shape (batch, n_output). With
    ``clamp_output`` the output units do not move (contrastive Hebbian
    learning's clamped phase, Movellan 1991).
    """
    theta, sizes, free_off, pre, post, w_off, acts, drive, beta, target, clamp_output = args
    r, rp = group_rho_and_prime(s, acts, sizes, free_off)
    # The local field is accumulated in dsdt itself: a step allocates no field array.
    local_field_into(r, theta, sizes, free_off, pre, post, w_off, drive, dsdt)
    n_batch, n = s.shape
    for i in range(n_batch):
        for j in range(n):
            dsdt[i, j] = rp[i, j] * dsdt[i, j] - s[i, j]
    o = free_off[-1]
    n_out = sizes[-1]
    if clamp_output:
        dsdt[:, o:o + n_out] = 0.0
    elif beta != 0.0:
        for i in range(n_batch):
            for j in range(n_out):
                dsdt[i, o + j] -= beta * (s[i, o + j] - target[i, j])


@njit(cache=True)
def local_field_of_groups(r, theta, sizes, free_off, pre, post, w_off, drive, selected, h):
    """Overwrite, in ``h``, the local field ``-dE/d rho(s)`` of the free groups ``g`` with ``selected[g]``.

    The other columns of ``h`` are left as they are: block relaxation
    recomputes the field of the half of the groups whose neighbours just
    moved and keeps the rest.

    Parameters
    ----------
    r : ndarray, shape (batch, n_free)
        rho(s).
    drive : ndarray, shape (batch, n_free)
    selected : ndarray of bool, shape (G,)
        Entry 0 (the clamped input) is ignored.
    h : ndarray, shape (batch, n_free)
        Written in place.
    """
    for g in range(1, sizes.shape[0]):
        if selected[g]:
            o = free_off[g]
            copy_rows(h[:, o:o + sizes[g]], drive[:, o:o + sizes[g]])
    for c in range(pre.shape[0]):
        a = pre[c]
        b = post[c]
        if a == 0 or not (selected[a] or selected[b]):
            continue
        oa = free_off[a]
        ob = free_off[b]
        W = weight_block(theta, c, sizes, pre, post, w_off)
        if selected[b]:
            ra = np.ascontiguousarray(r[:, oa:oa + sizes[a]])
            add_rows(h[:, ob:ob + sizes[b]], np.dot(ra, W))
        if a != b and selected[a]:
            rb = np.ascontiguousarray(r[:, ob:ob + sizes[b]])
            add_rows(h[:, oa:oa + sizes[a]], np.dot(rb, W.T))
