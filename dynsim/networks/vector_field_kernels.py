"""Compiled vector field and relaxation sweeps of the layered vector-field (asymmetric) Hopfield network.

Layers 0..L (layer 0 the clamped input, layer L the output); the free layers
1..L are stored side by side in the state ``s`` (batch, n_free), layer ``g``
at columns ``free_off[g]:free_off[g] + sizes[g]``. The flat parameter vector
``theta`` holds, C-ordered:

- the forward blocks ``W_k`` (sizes[k], sizes[k+1]) at ``w_off[k]``, k = 0..L-1,
  and the biases of the free units at ``b_off`` (the layout of a layered
  :class:`dynsim.networks.hopfield.HopfieldNetwork`, so the forward part of
  ``theta`` is a valid Hopfield parameter vector);
- then the feedback blocks ``B_k`` (sizes[k+1], sizes[k]) at ``fb_off[k]``,
  k = 1..L-1 (``fb_off[0]`` is unused: nothing feeds back into the clamped
  input). With ``tied`` the feedback blocks are absent and ``W_k^T`` serves.

Dynamics (Scellier et al. 2018; the "VF" models of Laborieux et al. 2021):

    ds_g/dt = rho'(s_g) * h_g - s_g,
    h_g     = b_g + rho(s_{g-1}) W_{g-1} + rho(s_{g+1}) B_g     (no last term for the output)

and the output is nudged by ``-beta (s_out - y)``. With ``B_g = W_g^T`` this is
the gradient flow -dE/ds of the symmetric network; otherwise it is no
gradient flow and the relaxation need not converge.

Every kernel computes in the dtype of its state and parameter arrays
(float64 or float32).

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. 15 (2021).
"""
import numpy as np
from numba import njit

from dynsim.networks.activations import unit_rho_and_prime
from dynsim.networks.hopfield_kernels import group_rho_and_prime
from integrators._numerics import all_steady, copy_rows, first_bad_sample, open_recording, record, steady_residual
from integrators.status import CONVERGED, DIVERGED, STEP_LIMIT

_RUNNING = 99


@njit(cache=True)
def _columns(r, o, m):
    """Columns ``o:o + m`` of ``r`` as a C-contiguous array (BLAS reads it without a copy of its own)."""
    if o == 0 and m == r.shape[1]:
        return r
    return np.ascontiguousarray(r[:, o:o + m])


@njit(cache=True)
def _block(theta, start, n_rows, n_cols):
    """View of the C-ordered block of ``theta`` starting at ``start``, shape (n_rows, n_cols)."""
    return theta[start:start + n_rows * n_cols].reshape((n_rows, n_cols))


@njit(cache=True)
def _add_into(h, o, p):
    """``h[:, o:o + m] += p`` for ``p`` (batch, m)."""
    n_batch, m = p.shape
    for i in range(n_batch):
        for j in range(m):
            h[i, o + j] += p[i, j]


@njit(cache=True)
def layer_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, g, h):
    """Overwrite the local field of free layer ``g`` in ``h`` (batch, n_free); other columns untouched.

    ``h_g = drive_g + rho(s_{g-1}) W_{g-1} + rho(s_{g+1}) B_g``: the drive
    (biases, and for layer 1 the clamped input's projection) is constant in
    a relaxation; the term from below exists for g >= 2, the one from above
    for g < L. With ``tied`` the feedback is ``rho(s_{g+1}) W_g^T`` (BLAS
    reads the transposed block; no copy).
    """
    L = sizes.shape[0] - 1
    o = free_off[g]
    m = sizes[g]
    n_batch = h.shape[0]
    for i in range(n_batch):
        for j in range(m):
            h[i, o + j] = drive[i, o + j]
    if g >= 2:
        W = _block(theta, w_off[g - 1], sizes[g - 1], m)
        _add_into(h, o, np.dot(_columns(r, free_off[g - 1], sizes[g - 1]), W))
    if g < L:
        above = _columns(r, free_off[g + 1], sizes[g + 1])
        if tied:
            W = _block(theta, w_off[g], m, sizes[g + 1])
            _add_into(h, o, np.dot(above, W.T))
        else:
            B = _block(theta, fb_off[g], sizes[g + 1], m)
            _add_into(h, o, np.dot(above, B))


@njit(cache=True)
def local_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, h):
    """The local field of every free layer into ``h`` (batch, n_free)."""
    for g in range(1, sizes.shape[0]):
        layer_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, g, h)


@njit(cache=True)
def local_field(r, theta, sizes, free_off, w_off, fb_off, tied, drive):
    """The local field ``h`` (batch, n_free) from ``r = rho(s)`` (batch, n_free)."""
    h = np.empty_like(drive)
    local_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, h)
    return h


@njit(cache=True)
def _field_from_local_field(s, rp, h, sizes, free_off, beta, target, clamp_output, f):
    """``f = rho'(s) h - s``, minus ``beta (s_out - y)`` on the output, zero on a clamped output."""
    n_batch, n = s.shape
    for i in range(n_batch):
        for j in range(n):
            f[i, j] = rp[i, j] * h[i, j] - s[i, j]
    o = free_off[-1]
    m = sizes[-1]
    if clamp_output:
        f[:, o:o + m] = 0.0
    elif beta != 0.0:
        for i in range(n_batch):
            for j in range(m):
                f[i, o + j] -= beta * (s[i, o + j] - target[i, j])


@njit(cache=True)
def vf_vector_field(t, s, dsdt, args):
    """ds/dt of the vector-field Hopfield network, written into ``dsdt`` (batch, n_free).

    ``args = (theta, sizes, free_off, w_off, fb_off, tied, acts, drive, beta,
    target, clamp_output)``; ``target`` has shape (batch, n_output). With
    ``clamp_output`` the output units do not move.
    """
    theta, sizes, free_off, w_off, fb_off, tied, acts, drive, beta, target, clamp_output = args
    r, rp = group_rho_and_prime(s, acts, sizes, free_off)
    # The local field is accumulated in dsdt itself: an integrator step allocates no field array.
    local_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, dsdt)
    _field_from_local_field(s, rp, dsdt, sizes, free_off, beta, target, clamp_output, dsdt)


@njit(cache=True)
def _update_layer(s, rp, h, sizes, free_off, g, beta, target, lower, upper, project, out):
    """``out_g = P(rho'(s_g) h_g)``, on a nudged output ``P((rho'(s) h + beta y) / (1 + beta))``.

    The same map as the symmetric network's sweeps
    (:mod:`dynsim.relax.block_relaxation`): each unit jumps to the zero of its
    own component of the field given the others, dividing by the output's
    curvature 1 + beta so that beta >= 1 does not make the outputs oscillate.
    """
    n_batch = s.shape[0]
    o = free_off[g]
    m = sizes[g]
    if g == sizes.shape[0] - 1 and beta != 0.0:
        scale = 1.0 / (1.0 + beta)
        for i in range(n_batch):
            for j in range(m):
                out[i, o + j] = (rp[i, o + j] * h[i, o + j] + beta * target[i, j]) * scale
    else:
        for i in range(n_batch):
            for j in range(o, o + m):
                out[i, j] = rp[i, j] * h[i, j]
    if project:
        for i in range(n_batch):
            for j in range(o, o + m):
                out[i, j] = min(max(out[i, j], lower[j]), upper[j])


@njit(cache=True)
def _refresh_layer(s, acts, sizes, free_off, g, r, rp):
    """rho and rho' of layer ``g`` of ``s`` into ``r`` and ``rp`` (the other columns untouched)."""
    o = free_off[g]
    act = acts[g]
    for i in range(s.shape[0]):
        for j in range(o, o + sizes[g]):
            r[i, j], rp[i, j] = unit_rho_and_prime(s[i, j], act)


@njit(cache=True)
def relax_sweeps(s0, theta, sizes, free_off, w_off, fb_off, tied, acts, drive, beta, target, clamp_output,
                 block, max_steps, atol, rtol, stop_at_steady_state, lower, upper, project, max_abs,
                 record_every, record_samples):
    """Fixed-point or block sweeps of a batch of states to a steady state or the sweep limit.

    Parameters
    ----------
    s0 : ndarray, shape (batch, n_free)
        Start (inside the box when ``project``); a clamped output holds the target.
    theta, sizes, free_off, w_off, fb_off, tied, acts, drive, beta, target, clamp_output
        As in :func:`vf_vector_field`; ``beta > -1``.
    block : bool
        False: every layer from the same state (synchronous, Jacobi).
        True: the odd layers, then the even layers, which read the odd
        layers' new values (Gauss-Seidel).
    max_steps : int
        Sweep limit.
    atol, rtol, stop_at_steady_state, lower, upper, project, max_abs, record_every, record_samples
        As in :func:`integrators.integrate`; the residual is the norm of the
        (projected) vector field ds/dt at the state returned.

    Returns
    -------
    tuple
        ``(y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec)``.

    Notes
    -----
    A layer's field depends only on its neighbours, which all lie in the
    other half. After a block sweep the second half's field is still valid
    (the first half has not moved since), so each sweep recomputes only the
    first half's field, which serves both the residual of the current state
    and the update: one evaluation of the local field per sweep. Without an
    energy nothing makes these maps contract: they may cycle or wander.
    """
    n_batch, n = s0.shape
    L = sizes.shape[0] - 1
    y = s0.copy()
    y_new = np.empty_like(y)
    r, rp = group_rho_and_prime(y, acts, sizes, free_off)
    h = np.empty_like(y)
    f = np.empty_like(y)
    residual = np.empty(n_batch, dtype=np.float64)
    first = np.zeros(L + 1, dtype=np.bool_)
    second = np.zeros(L + 1, dtype=np.bool_)
    for g in range(1, L + 1):
        if clamp_output and g == L:
            continue
        if block and g % 2 == 0:
            second[g] = True
        else:
            first[g] = True
    local_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, h)

    steps = 0
    status = _RUNNING
    bad_step = -1
    bad_sample = -1
    rec_t, rec_y, rec_res, n_rec, last_recorded = open_recording(max_steps, 0, record_samples, 0.0, y, residual)
    while status == _RUNNING:
        if steps > 0:
            for g in range(1, L + 1):
                # After a synchronous sweep every layer moved: all fields are recomputed.
                if first[g] or not block:
                    layer_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, g, h)
        _field_from_local_field(y, rp, h, sizes, free_off, beta, target, clamp_output, f)
        steady_residual(y, f, lower, upper, project, residual)
        if steps == 0:
            rec_t, rec_y, rec_res, n_rec, last_recorded = open_recording(
                max_steps, record_every, record_samples, 0.0, y, residual)
        elif record_every > 0 and steps % record_every == 0:
            rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, float(steps), y, residual,
                                                  record_samples)
            last_recorded = steps
        bad = first_bad_sample(f, max_abs)
        if bad >= 0:
            status = DIVERGED
            bad_step = steps
            bad_sample = bad
            break
        if stop_at_steady_state and all_steady(y, residual, atol, rtol):
            status = CONVERGED
            break
        if steps >= max_steps:
            status = STEP_LIMIT
            break
        copy_rows(y_new, y)
        for g in range(1, L + 1):
            if first[g]:
                _update_layer(y, rp, h, sizes, free_off, g, beta, target, lower, upper, project, y_new)
        for g in range(1, L + 1):
            if first[g]:
                _refresh_layer(y_new, acts, sizes, free_off, g, r, rp)
        for g in range(1, L + 1):
            if second[g]:
                layer_field_into(r, theta, sizes, free_off, w_off, fb_off, tied, drive, g, h)
                _update_layer(y_new, rp, h, sizes, free_off, g, beta, target, lower, upper, project, y_new)
        bad = first_bad_sample(y_new, max_abs)
        if bad >= 0:
            # `y` keeps the last good state.
            status = DIVERGED
            bad_step = steps + 1
            bad_sample = bad
            break
        y, y_new = y_new, y
        steps += 1
        for g in range(1, L + 1):
            if second[g]:
                _refresh_layer(y, acts, sizes, free_off, g, r, rp)

    if record_every > 0 and last_recorded != steps and status != DIVERGED:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, float(steps), y, residual,
                                              record_samples)
    return y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec
