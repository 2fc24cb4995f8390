"""Relaxation schemes of the EP literature: the synchronous fixed point and asynchronous block updates.

Besides integrating ds/dt = -dF/ds, equilibrium propagation codes settle
layered Hopfield networks by iterating a map whose fixed points are the
stationary points of F = E + beta C (C = 1/2 ||s_out - y||^2). One update of
a set of groups ``g`` is

    s_g <- P( s_g - D_g^{-1} dF/ds_g ),

with P the projection onto the network's natural box ([0, 1] for the hard
sigmoid; none for the smooth activations) and D the self-curvature of F's
quadratic terms: 1 on hidden units and 1 + beta on nudged output units. With
E = 1/2 ||s||^2 - ... one has s - dE/ds = rho'(s) h (h = -dE/drho, the local
field), so

    hidden groups:        s_g   <- P( rho'(s_g) h_g )
    nudged output group:  s_out <- P( (rho'(s_out) h_out + beta y) / (1 + beta) )

For the hard sigmoid (rho' = 1 inside the box) this is the literature's
s <- rho(-dE/ds + s) (Laborieux et al. 2021; Scellier et al. 2023), and, in a
network without couplings inside a group, each group update is the exact
minimiser of F over that group given the others, so block updates never
raise F. The (1 + beta) matters: the plain map s_out <- h_out + beta (y - s_out)
is s_out minus the gradient with a step of 1, which on the output units has
the multiplier -beta; with beta = 1 (Scellier & Bengio's setting) that is an
eigenvalue -1 and the outputs oscillate for ever, and with beta > 1 they
diverge. Dividing by the curvature 1 + beta makes it the exact minimiser
(multiplier 0) for any beta > -1; for beta <= -1 F has no minimiser along the
outputs and the schemes refuse to run.

Schemes
-------
``fixed_point``
    Every free group from the same state (synchronous, Jacobi). For the hard
    sigmoid with beta = 0 it equals projected Euler with dt = 1. Like the
    synchronous updates of a discrete Hopfield network it may end in a
    2-cycle instead of a fixed point when the couplings are strong (it does
    on a 20-30-30-5 hard-sigmoid network at Glorot initialisation, where
    ``block`` converges); F does not decrease along it in general.
``block``
    The groups of odd depth, then those of even depth, each half-sweep
    reading the freshest state (Gauss--Seidel). The free groups must form a
    bipartite graph: no couplings within a group and no odd cycle; for a
    layered network the halves are the odd and the even layers.

One step is one full sweep over the groups, which costs one evaluation of the
local field (as one step of explicit Euler), so step counts compare with the
integrators'. Samples stop at the integrators' steady-state test, on the
projected residual of ds/dt = -dF/ds.

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. (2021)
       (fixed-point dynamics s <- sigma(dPhi/ds)).
.. [2] B. Scellier et al., "Energy-based learning algorithms for analog computing:
       a comparative study", NeurIPS (2023) (asynchronous even/odd layer updates).
.. [3] M. Ernoult et al., "Updates of Equilibrium Prop Match Gradients of
       Backprop Through Time in an RNN with Static Input", NeurIPS (2019).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from dynsim._threads import merge_chunk_reports, one_blas_thread, store_chunk_report, store_chunk_samples
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.hopfield_kernels import group_rho_and_prime, local_field_of_groups
from dynsim.relax.layered_euler import (_activations, _split, check_batch_shapes, group_box, is_layered,
                                        relaxation_chunks, transposed_couplings)
from dynsim.validation import ValidationError
from integrators import CONVERGED, DIVERGED, STEP_LIMIT, IntegrationResult, Trajectory
from integrators._numerics import all_steady, copy_rows, first_bad_sample, open_recording, record, steady_residual

__all__ = ["RELAXATION_SCHEMES", "group_colours", "update_halves", "fused_applies", "relax", "relax_with_energy"]

RELAXATION_SCHEMES = ("fixed_point", "block")
"""Names of the relaxation schemes (``SettleOptions(integrator=...)`` accepts them)."""

_RUNNING = 99


# ----------------------------------------------------------------------------- compiled core
@njit(cache=True)
def _refresh_activations(s, acts, sizes, free_off, selected, r, rp):
    """rho(s) and rho'(s) of the selected groups (each with its activation ``acts[g]``), into ``r`` and ``rp``."""
    for g in range(1, sizes.shape[0]):
        if selected[g]:
            o = free_off[g]
            _activations(s[:, o:o + sizes[g]], acts[g], r[:, o:o + sizes[g]], rp[:, o:o + sizes[g]])


@njit(cache=True)
def _field_from_local_field(s, rp, h, sizes, free_off, updated, beta, target, f):
    """ds/dt = -dF/ds = rho'(s) h - s (- beta (s_out - y) on the output); zero on groups held fixed."""
    n_batch = s.shape[0]
    G = sizes.shape[0]
    for g in range(1, G):
        o = free_off[g]
        m = sizes[g]
        if not updated[g]:
            f[:, o:o + m] = 0.0
            continue
        for i in range(n_batch):
            for j in range(o, o + m):
                f[i, j] = rp[i, j] * h[i, j] - s[i, j]
        if g == G - 1 and beta != 0.0:
            for i in range(n_batch):
                for j in range(m):
                    f[i, o + j] -= beta * (s[i, o + j] - target[i, j])


@njit(cache=True)
def _update_groups(s, rp, h, sizes, free_off, selected, beta, target, lower, upper, project, out):
    """``out_g = P(s_g - D_g^-1 dF/ds_g)`` for the selected groups (``out`` may be ``s``).

    Each entry reads only its own entry of ``s``, ``rp`` and ``h``, so the
    update may overwrite ``s`` in place.
    """
    n_batch = s.shape[0]
    G = sizes.shape[0]
    for g in range(1, G):
        if not selected[g]:
            continue
        o = free_off[g]
        m = sizes[g]
        nudged = g == G - 1 and beta != 0.0
        if nudged:
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
def relax_batch(s0, theta, sizes, free_off, pre, post, w_off, acts, drive, beta, target,
                first, second, max_steps, atol, rtol, stop_at_steady_state, lower, upper, project, max_abs,
                record_every, record_samples):
    """Sweep a batch of Hopfield states to a steady state or the step limit.

    Parameters
    ----------
    s0 : ndarray, shape (batch, n_free)
        Starting states (inside the box when ``project``).
    theta, sizes, free_off, pre, post, w_off, acts
        The network (see :mod:`dynsim.networks.hopfield_kernels`).
    drive : ndarray, shape (batch, n_free)
        Biases plus the input's projection, computed once per relaxation.
    beta : float
        Nudging strength (> -1).
    target : ndarray, shape (batch, n_output)
    first, second : ndarray of bool, shape (G,)
        Groups updated in the first and in the second half of a sweep
        (``second`` all False for the synchronous scheme). Groups in
        neither (a clamped output) stay where they are.
    max_steps : int
        Sweep limit.
    atol, rtol, stop_at_steady_state, lower, upper, project, max_abs, record_every, record_samples
        As in :func:`integrators.integrate`.

    Returns
    -------
    tuple
        ``(y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec)``.

    Notes
    -----
    A group's local field depends only on its neighbours. After a sweep the
    field of the second half is still valid (the first half has not moved
    since), so only the first half's is recomputed: that serves both the
    residual of the new state and the next sweep's first half, and a sweep
    costs one evaluation of the local field.
    """
    n_batch, n = s0.shape
    y = s0.copy()
    y_new = np.empty_like(y)
    r, rp = group_rho_and_prime(y, acts, sizes, free_off)
    h = np.empty_like(y)
    f = np.empty_like(y)
    residual = np.empty(n_batch, dtype=np.float64)
    updated = first | second
    has_second = False
    for g in range(second.shape[0]):
        has_second = has_second or second[g]
    local_field_of_groups(r, theta, sizes, free_off, pre, post, w_off, drive, updated, h)

    steps = 0
    status = _RUNNING
    bad_step = -1
    bad_sample = -1
    rec_t, rec_y, rec_res, n_rec, last_recorded = open_recording(
        max_steps, 0, record_samples, 0.0, y, residual)
    while status == _RUNNING:
        if steps > 0:
            local_field_of_groups(r, theta, sizes, free_off, pre, post, w_off, drive, first, h)
        _field_from_local_field(y, rp, h, sizes, free_off, updated, beta, target, f)
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
        _update_groups(y, rp, h, sizes, free_off, first, beta, target, lower, upper, project, y_new)
        if has_second:
            _refresh_activations(y_new, acts, sizes, free_off, first, r, rp)
            local_field_of_groups(r, theta, sizes, free_off, pre, post, w_off, drive, second, h)
            _update_groups(y_new, rp, h, sizes, free_off, second, beta, target, lower, upper, project, y_new)
        bad = first_bad_sample(y_new, max_abs)
        if bad >= 0:
            # `y` keeps the last good state.
            status = DIVERGED
            bad_step = steps + 1
            bad_sample = bad
            break
        y, y_new = y_new, y
        steps += 1
        _refresh_activations(y, acts, sizes, free_off, second if has_second else first, r, rp)

    if record_every > 0 and last_recorded != steps and status != DIVERGED:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, float(steps), y, residual,
                                              record_samples)
    return y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec


# ----------------------------------------------------------------------------- fused loop, layered networks
@njit(cache=True, fastmath={"reassoc"})
def _sweep_field(yg, rg, rpg, bg, ag, hg, drive, o, tg, nudge, keep, lo, hi, max_abs, en, y2, f2, res2, f_over):
    """One group at the top of a sweep: local field into ``hg``, and the per-sample sums of the tests.

    ``h = drive + below + above`` (the order in which the generic
    :func:`dynsim.networks.hopfield_kernels.local_field_of_groups` adds them), the
    vector field ``f = keep (rho'(s) h - s - nudge (s - y))``, the projected
    residual, the energy ``1/2 s^2 - 1/2 rho(s) (h + drive)`` and the sums
    of the divergence test. Written like
    :func:`dynsim.relax.layered_euler._field_step` (1-D row views, sums only, no
    flag assuming finite values) so that the loop vectorises.
    """
    n_batch, m = yg.shape
    zero = keep - keep  # the sums, counts and constants in the arrays' dtype, as in _field_step
    one = zero + 1
    for i in range(n_batch):
        e_acc = zero
        y_acc = zero
        f_acc = zero
        r_acc = zero
        f_cnt = zero
        ys, rs, rps, bs, as_, hs = yg[i], rg[i], rpg[i], bg[i], ag[i], hg[i]
        ds = drive[i, o:o + m]
        ts = tg[i]
        for j in range(m):
            s = ys[j]
            d = ds[j]
            h = d + bs[j] + as_[j]
            hs[j] = h
            e_acc += s * s - rs[j] * (h + d)
            y_acc += s * s
            f = keep * (rps[j] * h - s - nudge * (s - ts[j]))
            f_acc += f * f
            f_cnt += one if abs(f) > max_abs else zero
            pinned = ((s <= lo) & (f < zero)) | ((s >= hi) & (f > zero))
            r_acc += zero if pinned else f * f
        en[i] += 0.5 * e_acc
        y2[i] += y_acc
        f2[i] += f_acc
        res2[i] += r_acc
        f_over[i] += f_cnt


@njit(cache=True, fastmath={"reassoc"})
def _sweep_update(rpg, hg, ng, tg, nudged, beta, scale, lo, hi, project, max_abs, yn2, yn_over):
    """``ng = P(rho'(s) h)``, or ``P((rho'(s) h + beta y) / (1 + beta))`` on the nudged output, and its sums.

    The same expressions as :func:`_update_groups` (``scale = 1 / (1 + beta)``),
    so the states agree with the generic sweep to rounding.
    """
    n_batch, m = ng.shape
    zero = scale - scale  # sums and counts in the arrays' dtype, as in _sweep_field
    one = zero + 1
    for i in range(n_batch):
        v_acc = zero
        v_cnt = zero
        rps, hs, ns, ts = rpg[i], hg[i], ng[i], tg[i]
        for j in range(m):
            if nudged:
                v = (rps[j] * hs[j] + beta * ts[j]) * scale
            else:
                v = rps[j] * hs[j]
            if project:
                v = min(max(v, lo), hi)
            ns[j] = v
            v_acc += v * v
            v_cnt += one if abs(v) > max_abs else zero
        yn2[i] += v_acc
        yn_over[i] += v_cnt


@njit(cache=True, fastmath={"reassoc"})
def _held_sums(yg, ng, max_abs, yn2, yn_over):
    """A group held where it is (a clamped output): copied into ``ng``, with its sums of the divergence test."""
    n_batch, m = yg.shape
    zero = yg.dtype.type(0)
    one = yg.dtype.type(1)
    for i in range(n_batch):
        v_acc = zero
        v_cnt = zero
        ys, ns = yg[i], ng[i]
        for j in range(m):
            v = ys[j]
            ns[j] = v
            v_acc += v * v
            v_cnt += one if abs(v) > max_abs else zero
        yn2[i] += v_acc
        yn_over[i] += v_cnt


@njit(cache=True)
def _couplings(theta, w_t, sizes, w_off, r, below, above, selected):
    """The products feeding the groups with ``selected[g]``: ``below_g = rho(s_{g-1}) W_{g-1}`` (g >= 2) and
    ``above_g = rho(s_{g+1}) W_g^T`` (g <= G - 2), into buffers kept for the relaxation; ``w_t`` holds the
    transposes (:func:`dynsim.relax.layered_euler.transposed_couplings`)."""
    G = sizes.shape[0]
    for c in range(1, G - 1):
        if selected[c + 1] or selected[c]:
            W = theta[w_off[c]:w_off[c] + sizes[c] * sizes[c + 1]].reshape((sizes[c], sizes[c + 1]))
            if selected[c + 1]:
                np.dot(r[c], W, below[c + 1])
            if selected[c]:
                np.dot(r[c + 1], w_t[c], above[c])


@njit(cache=True)
def sweep_layered(y0, theta, sizes, free_off, w_off, acts, drive, beta, target, first, second, max_steps, atol,
                  rtol, stop_at_steady_state, lo, hi, project, max_abs):
    """Fixed-point or block sweeps of a layered Hopfield network in one compiled loop.

    The same sweeps, tests and counts as :func:`relax_batch` for a network
    whose groups form a chain (connection ``c`` couples group ``c`` to
    ``c + 1``), with each group's state, activations, local field and the
    products from its neighbours ("below", "above") in C-contiguous buffers
    kept for the whole relaxation, and one vectorised pass per group and
    half-sweep.

    Parameters
    ----------
    y0 : ndarray, shape (batch, n_free)
        Start, inside the box when ``project``.
    theta, sizes, free_off, w_off, acts
        The network (see :mod:`dynsim.networks.hopfield_kernels`).
    drive : ndarray, shape (batch, n_free)
        Biases plus the input's projection (constant).
    beta : float
        Nudging strength (> -1), a scalar of the arrays' dtype.
    target : ndarray, shape (batch, n_output)
    first, second : ndarray of bool, shape (G,)
        As in :func:`relax_batch` (:func:`update_halves`).
    max_steps, atol, rtol, stop_at_steady_state, max_abs
        As in :func:`relax_batch`.
    lo, hi : ndarray, shape (G,)
        The box of each group's units (in the arrays' dtype); ``project`` whether to clip to it.

    Returns
    -------
    tuple
        ``(y, status, steps, residual, bad_step, bad_sample, energy)``: the
        first six as :func:`relax_batch`'s, ``energy`` (batch,) of ``y``.

    Notes
    -----
    Per sweep the products feeding the first half (and any group held
    fixed, whose field the energy needs) are recomputed from the current
    state; the second half's are still valid, having been computed after
    the first half moved in the previous sweep. So a sweep costs one
    evaluation of the local field, as in :func:`relax_batch`.
    """
    n_batch, n = y0.shape
    G = sizes.shape[0]
    out_g = G - 1
    y = _split(y0, sizes, free_off)
    y_new = _split(y0, sizes, free_off)
    r = _split(y0, sizes, free_off)
    rp = _split(y0, sizes, free_off)
    h = _split(y0, sizes, free_off)
    below = _split(y0, sizes, free_off)
    above = _split(y0, sizes, free_off)
    every = np.ones(G, dtype=np.bool_)
    top = np.zeros(G, dtype=np.bool_)
    has_second = False
    for g in range(1, G):
        _activations(y[g], acts[g], r[g], rp[g])
        below[g][:, :] = 0.0
        above[g][:, :] = 0.0
        top[g] = first[g] or not second[g]
        has_second = has_second or second[g]
    w_t = transposed_couplings(theta, sizes, w_off)
    _couplings(theta, w_t, sizes, w_off, r, below, above, every)
    residual = np.empty(n_batch, dtype=np.float64)
    energy = np.empty(n_batch, dtype=y0.dtype)
    res2 = np.empty(n_batch)
    en = np.empty(n_batch)
    y2 = np.empty(n_batch)
    f2 = np.empty(n_batch)
    f_over = np.empty(n_batch)
    yn2 = np.empty(n_batch)
    yn_over = np.empty(n_batch)
    limit = float(max_abs) * float(max_abs)
    # 0, 1 and 1 / (1 + beta) in the arrays' dtype: a float64 literal would promote a float32 pass to float64.
    unit = np.ones(2, dtype=y0.dtype)
    unit[0] = 0.0
    zero = unit[0]
    one = unit[1]
    scale = one / (one + beta)

    steps = 0
    status = _RUNNING
    bad_step = -1
    bad_sample = -1
    while status == _RUNNING:
        if steps > 0:
            _couplings(theta, w_t, sizes, w_off, r, below, above, top)
        res2[:] = 0.0
        en[:] = 0.0
        y2[:] = 0.0
        f2[:] = 0.0
        f_over[:] = 0.0
        for g in range(1, G):
            moving = first[g] or second[g]
            nudge = beta if (g == out_g and moving) else zero
            keep = one if moving else zero
            tg = target if g == out_g else drive  # any (batch, >= n_g) array when nudge is 0
            _sweep_field(y[g], r[g], rp[g], below[g], above[g], h[g], drive, free_off[g], tg, nudge, keep, lo[g],
                         hi[g], max_abs, en, y2, f2, res2, f_over)
        all_steady = True
        bad = -1
        for i in range(n_batch):
            residual[i] = np.sqrt(res2[i])
            energy[i] = en[i]
            if bad < 0 and (not (f2[i] < np.inf) or (f2[i] > limit and f_over[i] > 0.0)):
                bad = i
            if not residual[i] <= atol + rtol * np.sqrt(y2[i]):
                all_steady = False
        if bad >= 0:
            status = DIVERGED
            bad_step = steps
            bad_sample = bad
            break
        if stop_at_steady_state and all_steady:
            status = CONVERGED
            break
        if steps >= max_steps:
            status = STEP_LIMIT
            break
        yn2[:] = 0.0
        yn_over[:] = 0.0
        for g in range(1, G):
            if first[g]:
                tg = target if g == out_g else drive
                _sweep_update(rp[g], h[g], y_new[g], tg, g == out_g and beta != 0.0, beta, scale, lo[g], hi[g],
                              project, max_abs, yn2, yn_over)
            elif not second[g]:
                _held_sums(y[g], y_new[g], max_abs, yn2, yn_over)
        if has_second:
            for g in range(1, G):
                if first[g]:
                    _activations(y_new[g], acts[g], r[g], rp[g])
            _couplings(theta, w_t, sizes, w_off, r, below, above, second)
            for g in range(1, G):
                if second[g]:
                    o = free_off[g]
                    m = sizes[g]
                    for i in range(n_batch):
                        hs, ds, bs, as_ = h[g][i], drive[i, o:o + m], below[g][i], above[g][i]
                        for j in range(m):
                            hs[j] = ds[j] + bs[j] + as_[j]
                    tg = target if g == out_g else drive
                    _sweep_update(rp[g], h[g], y_new[g], tg, g == out_g and beta != 0.0, beta, scale, lo[g],
                                  hi[g], project, max_abs, yn2, yn_over)
        for i in range(n_batch):
            if not (yn2[i] < np.inf) or (yn2[i] > limit and yn_over[i] > 0.0):
                # `y` keeps the last good state.
                status = DIVERGED
                bad_step = steps + 1
                bad_sample = i
                break
        if status != _RUNNING:
            break
        y, y_new = y_new, y
        steps += 1
        for g in range(1, G):
            if second[g] if has_second else first[g]:
                _activations(y[g], acts[g], r[g], rp[g])

    out = np.empty((n_batch, n), dtype=y0.dtype)
    for g in range(1, G):
        copy_rows(out[:, free_off[g]:free_off[g] + sizes[g]], y[g])
    return out, status, steps, residual, bad_step, bad_sample, energy


@njit(cache=True, parallel=True)
def sweep_layered_chunks(y0, theta, sizes, free_off, w_off, acts, drive, beta, target, first, second, max_steps,
                         atol, rtol, stop_at_steady_state, lo, hi, project, max_abs, starts, out, residual, energy,
                         info):
    """:func:`sweep_layered` on the chunks ``starts`` of a minibatch, on Numba's threads.

    The samples relax independently (the weights are fixed during a
    relaxation), so chunk c, samples ``starts[c]:starts[c + 1]``, is one
    :func:`sweep_layered` call. ``out`` (batch, n_free), ``residual`` and
    ``energy`` (batch,) receive the samples' results, ``info[c]`` the
    chunk's (status, sweeps, local-field evaluations, bad_step, bad_sample
    in the minibatch or -1). Meant for a fixed number of sweeps: a
    steady-state stop would stop each chunk on its own.
    """
    for c in prange(starts.shape[0] - 1):
        a = starts[c]
        b = starts[c + 1]
        y, status, steps, res, bad_step, bad_sample, e = sweep_layered(
            y0[a:b], theta, sizes, free_off, w_off, acts, drive[a:b], beta, target[a:b], first, second, max_steps,
            atol, rtol, stop_at_steady_state, lo, hi, project, max_abs)
        store_chunk_samples(a, y, res, e, out, residual, energy)
        store_chunk_report(info, c, status, steps, steps + 1, bad_step, bad_sample, a)


# ----------------------------------------------------------------------------- Python boundary
def fused_applies(network, record_every=0, box=None):
    """Whether :func:`relax` runs the fused loop :func:`sweep_layered`: a layered Hopfield network, nothing recorded,
    a box the same within each group."""
    return (record_every == 0 and isinstance(network, HopfieldNetwork) and is_layered(network)
            and group_box(network, box) is not None)


def group_colours(network):
    """Two-colour the free groups of ``network`` by their couplings: ``{group: 1 (odd) or 0 (even)}``.

    Each connected set of free groups takes the parity of its lowest-numbered
    group for that group, so in a layered network a group's colour is the
    parity of its depth. Couplings with the clamped input do not count.

    Raises
    ------
    ValidationError
        When a group is coupled to itself or the couplings contain an odd
        cycle (the message names the groups): no split into two halves then
        leaves each half uncoupled.
    """
    names = network.group_names
    G = len(network.group_sizes)
    intra = [names[a] for a, b in network.connections if a == b]
    if intra:
        raise ValidationError(
            f"integrator 'block' updates each group at once and needs groups without couplings inside them; "
            f"group(s) {', '.join(repr(n) for n in intra)} are coupled to themselves: use 'fixed_point' or an "
            "ODE integrator")
    neighbours = {g: [] for g in range(1, G)}
    for a, b in network.connections:
        if a >= 1:
            neighbours[a].append(b)
            neighbours[b].append(a)
    colour, parent = {}, {}
    for root in range(1, G):
        if root in colour:
            continue
        colour[root], parent[root] = root % 2, None
        queue = [root]
        while queue:
            g = queue.pop(0)
            for k in neighbours[g]:
                if k not in colour:
                    colour[k], parent[k] = 1 - colour[g], g
                    queue.append(k)
                elif colour[k] == colour[g]:
                    raise ValidationError(
                        "integrator 'block' needs free groups that split into two halves without couplings "
                        f"inside a half, but the couplings form an odd cycle: {' - '.join(_cycle(parent, g, k, names))}; "
                        "use 'fixed_point' or an ODE integrator")
    return colour


def _cycle(parent, g, k, names):
    def up(v):
        path = [v]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        return path
    pg, pk = up(g), up(k)
    common = next(v for v in pg if v in pk)
    loop = pg[:pg.index(common) + 1] + pk[:pk.index(common)][::-1] + [g]
    return [names[v] for v in loop]


def update_halves(network, scheme, clamp_output=False):
    """Masks of the groups each half-sweep updates, shapes (G,) and (G,).

    ``fixed_point`` updates every free group in the first half and none in
    the second; ``block`` the odd groups of :func:`group_colours`, then the
    even ones. A clamped output is in neither.
    """
    if scheme not in RELAXATION_SCHEMES:
        raise ValidationError(f"scheme must be one of {list(RELAXATION_SCHEMES)}, got {scheme!r}")
    G = len(network.group_sizes)
    first = np.zeros(G, dtype=np.bool_)
    second = np.zeros(G, dtype=np.bool_)
    if scheme == "fixed_point":
        first[1:] = True
    else:
        for g, c in group_colours(network).items():
            (first if c == 1 else second)[g] = True
    if clamp_output:
        first[G - 1] = second[G - 1] = False
    return first, second


def _message(status, steps, residual, tolerance, bad_step, bad_sample, stop_at_steady_state):
    if status == CONVERGED:
        return f"steady state reached by every sample after {steps} sweeps"
    if status == STEP_LIMIT:
        if not stop_at_steady_state:
            return f"step limit reached after {steps} sweeps"
        with np.errstate(all="ignore"):
            worst = int(np.nanargmax(residual / np.maximum(tolerance, np.finfo(float).tiny))) \
                if np.isfinite(residual).any() else 0
        return (f"step limit reached after {steps} sweeps; largest residual {residual[worst]:.3e} "
                f"(sample {worst}) against tolerance {tolerance[worst]:.3e}")
    return (f"diverged at sweep {bad_step} in sample {bad_sample}: a state or vector field value became "
            "non-finite or exceeded max_abs; y holds the last finite state")


def relax(network, s0, drive, scheme, beta=0.0, target=None, clamp_output=False, *, max_steps=100_000,
          atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box=None, max_abs=1e6, record_every=0,
          record_samples=None, fused=True):
    """Relax a batch of Hopfield states by fixed-point or block sweeps.

    :func:`dynsim.relax.phases.settle` calls this (through :func:`relax_with_energy`)
    for ``SettleOptions(integrator='fixed_point' | 'block')``.

    Parameters
    ----------
    network : HopfieldNetwork
    s0 : ndarray, shape (batch, n_free)
        Starting state (projected onto ``box``).
    drive : ndarray, shape (batch, n_free)
        :meth:`HopfieldNetwork.input_drive` of the clamped input.
    scheme : {'fixed_point', 'block'}
    beta : float
        Nudging strength, > -1 (the outputs' curvature 1 + beta must be positive).
    target : ndarray, shape (batch, n_output), optional
    clamp_output : bool
        Hold the outputs where ``s0`` has them.
    max_steps : int
        Sweep limit.
    atol, rtol : float
        Steady state when every sample has ``||ds/dt|| <= atol + rtol ||s||``,
        ``ds/dt = -dF/ds`` projected as the integrators do.
    stop_at_steady_state : bool
        False runs exactly ``max_steps`` sweeps.
    box : (float, float) or (ndarray, ndarray), optional
        Projection box (None: no projection), for every unit or per unit (n_free,) each.
    max_abs : float
    record_every : int
        Keep every that many sweeps (0: none); ``t`` counts sweeps.
    record_samples : ndarray of int, optional
    fused : bool
        Run a layered network without recording in the fused compiled loop
        :func:`sweep_layered` (same sweeps, statuses and counts as the
        generic :func:`relax_batch`, states equal to rounding); False always
        takes the generic loop (the reference in the tests).

    Returns
    -------
    integrators.IntegrationResult
        ``n_steps`` sweeps, ``nfev`` local-field evaluations (one per sweep plus
        the initial one), ``t`` the number of sweeps.
    """
    return relax_with_energy(network, s0, drive, scheme, beta, target, clamp_output, max_steps=max_steps, atol=atol,
                             rtol=rtol, stop_at_steady_state=stop_at_steady_state, box=box, max_abs=max_abs,
                             record_every=record_every, record_samples=record_samples, fused=fused)[0]


def relax_with_energy(network, s0, drive, scheme, beta=0.0, target=None, clamp_output=False, *, max_steps=100_000,
                      atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box=None, max_abs=1e6, record_every=0,
                      record_samples=None, fused=True):
    """:func:`relax`, and the energy of the final state when the fused loop provides it.

    Returns
    -------
    (integrators.IntegrationResult, ndarray of shape (batch,) or None)
        The energy comes from the last field evaluation of the fused loop
        (None from the generic loop: the caller evaluates it).
    """
    if not isinstance(network, HopfieldNetwork):
        raise ValidationError(
            f"the relaxation scheme {scheme!r} applies to HopfieldNetwork only, got {type(network).__name__}; "
            "use an ODE integrator ('euler', 'heun', 'rk4', 'dopri5', ...)")
    first, second = update_halves(network, scheme, clamp_output)
    beta = float(beta)
    if not clamp_output and not beta > -1.0:
        raise ValidationError(
            f"the relaxation scheme {scheme!r} divides by the outputs' curvature 1 + beta, which must be "
            f"positive: beta must be > -1, got {beta}")
    n_batch = s0.shape[0]
    (theta, sizes, free_off, pre, post, w_off, acts, drive, beta, target, _clamp) = network.kernel_args(
        drive, beta, target, clamp_output)
    check_batch_shapes(network, s0, drive, target)
    dtype = network.dtype
    real = dtype.type
    n = s0.shape[1]
    project = box is not None
    if project:
        lower = np.ascontiguousarray(np.broadcast_to(np.asarray(box[0], dtype=dtype), (n,)))
        upper = np.ascontiguousarray(np.broadcast_to(np.asarray(box[1], dtype=dtype), (n,)))
    else:
        lower = np.full(n, -np.inf, dtype=dtype)
        upper = np.full(n, np.inf, dtype=dtype)
    y0 = np.ascontiguousarray(s0, dtype=dtype)
    if project:
        y0 = np.clip(y0, lower, upper)
    drive = np.ascontiguousarray(drive, dtype=dtype)
    target = np.ascontiguousarray(target, dtype=dtype)
    energy = None
    trajectory = None
    if fused and fused_applies(network, record_every, box):
        lo, hi = group_box(network, box)
        args = (theta, sizes, free_off, w_off, acts, drive, real(beta), target, first, second, int(max_steps),
                float(atol), float(rtol), bool(stop_at_steady_state), lo, hi, project,
                real(min(max_abs, np.finfo(dtype).max)))  # max_abs in the dtype, as layered_euler.relax passes it
        starts = relaxation_chunks(n_batch, stop_at_steady_state)
        if starts.shape[0] == 2:
            y, status, steps, residual, bad_step, bad_sample, energy = sweep_layered(y0, *args)
        else:
            # A fixed number of sweeps: the samples' chunks on Numba's threads, one BLAS thread each (as
            # layered_euler.relax runs Euler steps).
            y = np.empty_like(y0)
            residual, energy = np.empty(n_batch), np.empty(n_batch, dtype=dtype)
            info = np.empty((starts.shape[0] - 1, 5), dtype=np.int64)
            with one_blas_thread():
                sweep_layered_chunks(y0, *args, starts, y, residual, energy, info)
            status, steps, _nfev, bad_step, bad_sample = merge_chunk_reports(info, DIVERGED)
            if status == DIVERGED:
                # The whole batch stops at the first divergence, and its report holds every sample's last finite
                # state there: run it so (rare, and exact).
                y, status, steps, residual, bad_step, bad_sample, energy = sweep_layered(y0, *args)
    else:
        samples = (np.arange(n_batch, dtype=np.int64) if record_samples is None
                   else np.ascontiguousarray(record_samples, dtype=np.int64))
        out = relax_batch(y0, theta, sizes, free_off, pre, post, w_off, acts, drive, beta, target, first, second,
                          int(max_steps), float(atol), float(rtol), bool(stop_at_steady_state), lower, upper,
                          project, float(max_abs), int(record_every), samples)
        y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec = out
        if record_every > 0:
            trajectory = Trajectory(t=rec_t[:n_rec].copy(), y=rec_y[:n_rec].copy(),
                                    residual=rec_res[:n_rec].copy(), samples=samples)
    with np.errstate(over="ignore"):
        tolerance = atol + rtol * np.linalg.norm(y, axis=1)
    status = int(status)
    result = IntegrationResult(
        y=y, t=float(steps), status=status,
        message=_message(status, steps, residual, tolerance, bad_step, bad_sample, stop_at_steady_state),
        n_steps=int(steps), n_accepted=int(steps), n_rejected=0, nfev=int(steps) + 1, residual=residual,
        tolerance=tolerance, diverged_step=int(bad_step), diverged_sample=int(bad_sample),
        trajectory=trajectory, method=scheme)
    return result, energy
