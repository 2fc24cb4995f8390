"""Fixed-step (projected) Euler relaxation of layered Hopfield networks, fused into one compiled loop.

:func:`dynsim.relax.phases.settle` takes this path for a layered network (groups
coupled only to the next one: input - hidden_1 - ... - output) settled by
``euler`` or ``projected_euler`` without trajectory recording or a time
limit; it gives what :func:`integrators.integrate` gives with
:func:`dynsim.networks.hopfield_kernels.hopfield_vector_field`, step for step, with
the same stopping rules (steady state, step limit, divergence with the
step and sample where it happened) and the same counts, and in addition the
energy of the final state, which the last field evaluation provides.

Why a second path for one family of networks: with batches of 20-50 and an
output layer of 10 units a relaxation step is a few small matrix products
and elementwise work on ~10^4 numbers. In the generic driver each step
makes a dozen passes over the state (activations, field, step, projection,
two divergence scans, residual) and allocates its temporaries; on the
784-500-10 network of Scellier & Bengio (2017) that is about 44 us a step,
of which the matrix products are 13 us. Here one step is

1. two products per coupling between free layers, into buffers kept for the
   whole relaxation: ``rho(s_{l-1}) W_{l-1}`` ("from below") and
   ``rho(s_{l+1}) W_l^T`` ("from above"), each layer's state and
   activations in its own C-contiguous array so BLAS reads them without
   copies; the input's projection is in the constant drive;
2. one pass over the units that forms the local field
   ``h = drive + below + above`` and the vector field
   ``f = rho'(s) h - s (- beta (s_out - y))``, accumulates per sample the
   (projected) residual, the energy ``1/2 ||s||^2 - 1/2 rho(s).(h + drive)``,
   the norms of the divergence test, takes the step
   ``s <- P(s + dt f)`` and computes the activations of the new state.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017) (the network, projected Euler).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dynsim._threads import (chunk_starts, chunks_pay, merge_chunk_reports, one_blas_thread, store_chunk_report,
                             store_chunk_samples)
from dynsim.networks.activations import HARD_SIGMOID, unit_rho_and_prime
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.validation import ValidationError
from integrators._numerics import copy_rows
from integrators.solve import finish_result
from integrators.status import CONVERGED, DIVERGED, STEP_LIMIT

__all__ = ["FUSED_METHODS", "CHUNK", "SMALLEST_CHUNK", "relaxation_chunks", "is_layered", "applies", "relax"]

FUSED_METHODS = ("euler", "projected_euler")
"""Integrators this path reproduces (single-stage explicit schemes)."""

_RUNNING = 99
CHUNK = 32
"""Samples per chunk of a fixed-step relaxation (a minibatch of B is ceil(B / CHUNK) near-equal chunks): small,
because a step here is elementwise work over the batch and products of at most a few hundred columns; the 50
samples of Laborieux et al.'s MNIST setting are two chunks."""
SMALLEST_CHUNK = 8
"""A minibatch of at least twice this many samples is split in two chunks even below CHUNK, so that the small
minibatches of Scellier & Bengio's (20) and Scellier's (16) presets use a second core; below it, a thread's share
of a step is too small to pay for starting the threads."""


def relaxation_chunks(batch, stop_at_steady_state):
    """Boundaries (n_chunks + 1,) of the chunks a fixed-step relaxation of ``batch`` samples runs in.

    ceil(batch / CHUNK) near-equal chunks, and at least two from 2 x
    SMALLEST_CHUNK samples; one chunk when a steady-state stop is asked for
    or Numba has one thread (:func:`dynsim._threads.chunks_pay`). The
    chunks depend on the batch size alone, not on how many threads run them.
    """
    if not chunks_pay(stop_at_steady_state):
        return chunk_starts(batch, CHUNK, chunked=False)
    if batch <= CHUNK and batch >= 2 * SMALLEST_CHUNK:
        return chunk_starts(batch, -(-batch // 2))
    return chunk_starts(batch, CHUNK)


def is_layered(network):
    """True when ``network``'s groups form a chain input - 1 - 2 - ... - output and nothing else.

    That is every network :meth:`HopfieldNetwork.layered` builds, and any
    other with exactly the connections (g, g + 1).
    """
    G = len(network.group_sizes)
    return G >= 2 and tuple(network.connections) == tuple((g, g + 1) for g in range(G - 1))


def applies(network, method, t_max, record_every, box=None):
    """Whether :func:`relax` reproduces ``integrators.integrate(method=...)`` for these settings."""
    return (method in FUSED_METHODS and math.isinf(t_max) and record_every == 0
            and isinstance(network, HopfieldNetwork) and is_layered(network) and group_box(network, box) is not None)


def group_box(network, box):
    """The projection box per group, ``(lo, hi)`` of shape (G,) each in the network's dtype, or None.

    ``box`` is None (no projection: infinite bounds), a pair of floats (the
    same for every unit) or a pair of per-unit bounds (n_free,). The fused
    loops bound each group by scalars (which keeps their passes vectorised),
    so per-unit bounds that differ within a group give None: the generic
    path then serves them.
    """
    G = len(network.group_sizes)
    real = network.dtype.type
    lo = np.full(G, -np.inf, dtype=network.dtype)
    hi = np.full(G, np.inf, dtype=network.dtype)
    if box is None:
        return lo, hi
    if np.ndim(box[0]) == 0 and np.ndim(box[1]) == 0:
        lo[:] = real(box[0])
        hi[:] = real(box[1])
        return lo, hi
    lower = np.broadcast_to(np.asarray(box[0], dtype=network.dtype), (network.n_free,))
    upper = np.broadcast_to(np.asarray(box[1], dtype=network.dtype), (network.n_free,))
    for g in range(1, G):
        cols = slice(network._free_off[g], network._free_off[g] + network.group_sizes[g])
        if (lower[cols] != lower[cols][0]).any() or (upper[cols] != upper[cols][0]).any():
            return None
        lo[g], hi[g] = lower[cols][0], upper[cols][0]
    return lo, hi


# ----------------------------------------------------------------------------- compiled core
@njit(cache=True, fastmath={"reassoc"})
def _field_step(yg, ng, rg, rpg, bg, ag, drive, o, tg, nudge, keep, dt, lo, hi, max_abs,
                en, y2, f2, res2, yn2, f_over, yn_over):
    """One group of the pass: field, per-sample sums, the projected step into ``ng``.

    ``lo``, ``hi`` bound every unit (``-inf``/``inf``: no projection, the
    pinned test never holds).

    Written for LLVM's vectoriser, which the measurements below decided:
    the bounds are scalars, not per-unit arrays (each array a loop reads
    adds a run-time aliasing check, and past a handful it gives up); the
    loop runs over 1-D row views (2-D indexing has run-time strides); every
    reduction is a sum (entries above ``max_abs`` are counted, not maximised
    over: a max does not vectorise) and ``reassoc`` lets sums vectorise. No
    flag assumes finite values, so NaN and inf still reach the divergence
    test. Each of the three changes halved the time of this pass or better.
    Every scalar, ``max_abs`` and the counts included, has the arrays'
    dtype: one float64 operand widens a float32 pass to float64 lanes
    (measured on a batch of 50 x 512 float32 units, one thread: 21.8 us a
    pass with a float64 ``max_abs`` and integer counts, 12.4 us without).
    """
    n_batch, m = yg.shape
    # The sums run in the arrays' dtype (zero below has it): float64 literals would convert every float32 term
    # to float64, which measured slower than float64 throughout. A float32 sum over a row of <= 10^3 units is
    # off by ~1e-5 relative, far inside the steady-state tolerances a float32 state can meet.
    zero = dt - dt
    one = dt / dt  # dt > 0
    for i in range(n_batch):
        # Scalar sums within a row (kept in registers), added to the per-sample totals after it.
        e_acc = zero
        y_acc = zero
        f_acc = zero
        r_acc = zero
        v_acc = zero
        f_cnt = zero
        v_cnt = zero
        # Rows as 1-D contiguous views: with 2-D indexing the strides are run-time values and the loop does not
        # vectorise (measured: 2 times slower).
        ys, ns, rs, rps, bs, as_ = yg[i], ng[i], rg[i], rpg[i], bg[i], ag[i]
        ds = drive[i, o:o + m]
        ts = tg[i]
        for j in range(m):
            s = ys[j]
            d = ds[j]
            h = d + bs[j] + as_[j]
            e_acc += s * s - rs[j] * (h + d)
            y_acc += s * s
            f = keep * (rps[j] * h - s - nudge * (s - ts[j]))
            f_acc += f * f
            f_cnt += one if abs(f) > max_abs else zero
            # A unit pinned at a bound by an outward field does not count towards the residual.
            pinned = ((s <= lo) & (f < zero)) | ((s >= hi) & (f > zero))
            r_acc += zero if pinned else f * f
            v = s + dt * f
            # Compare-and-select, not min/max: a NaN must stay NaN for the divergence test.
            v = lo if v < lo else (hi if v > hi else v)
            v_acc += v * v
            v_cnt += one if abs(v) > max_abs else zero
            ns[j] = v
        en[i] += 0.5 * e_acc
        y2[i] += y_acc
        f2[i] += f_acc
        res2[i] += r_acc
        yn2[i] += v_acc
        f_over[i] += f_cnt
        yn_over[i] += v_cnt


@njit(cache=True)
def _activations(s, act, r, rp):
    """rho(s) and rho'(s) into ``r`` and ``rp``; one loop per activation (the test is outside the loop).

    The hard sigmoid's constants take the arrays' dtype: with float64
    literals its float32 loop ran in float64 (6.2 us against 4.1 us for
    50 x 512 units, one thread).
    """
    n_batch, m = s.shape
    zero = s.dtype.type(0)
    one = s.dtype.type(1)
    for i in range(n_batch):
        ss, rs, rps = s[i], r[i], rp[i]  # 1-D rows vectorise, see _field_step
        if act == HARD_SIGMOID:
            for j in range(m):
                v = ss[j]
                # Compare-and-select keeps a NaN a NaN, for the divergence test.
                rs[j] = zero if v < zero else (one if v > one else v)
                rps[j] = one if (v >= zero) & (v <= one) else zero
        else:
            for j in range(m):
                rs[j], rps[j] = unit_rho_and_prime(ss[j], act)


@njit(cache=True)
def transposed_couplings(theta, sizes, w_off):
    """C-contiguous copies of each coupling's transpose ``W_c^T`` (sizes[c + 1], sizes[c]) (index 0: unused).

    Made once per relaxation: a product with a transposed view is a strided
    BLAS call (measured for 50 x 10 times 10 x 512 in float32, one thread:
    10.0 us against 5.6 us with the copy).
    """
    w_t = [np.empty((0, 0), dtype=theta.dtype)]
    for c in range(1, sizes.shape[0] - 1):
        w_t.append(theta[w_off[c]:w_off[c] + sizes[c] * sizes[c + 1]].reshape((sizes[c], sizes[c + 1])).T.copy())
    return w_t


@njit(cache=True)
def _split(y, sizes, free_off):
    """Copies of the columns of each free group of ``y`` (batch, n_free), C-contiguous (index 0: unused)."""
    parts = [np.empty((0, 0), dtype=y.dtype)]
    for g in range(1, sizes.shape[0]):
        parts.append(y[:, free_off[g]:free_off[g] + sizes[g]].copy())
    return parts


@njit(cache=True)
def euler_layered(y0, theta, sizes, free_off, w_off, acts, drive, beta, target, clamp_output,
                  dt, max_steps, atol, rtol, stop_at_steady_state, lo, hi, max_abs):
    """(Projected) Euler relaxation of a layered Hopfield network.

    Parameters
    ----------
    y0 : ndarray, shape (batch, n_free)
        Start (projected onto ``[lo, hi]`` here).
    theta, sizes, free_off, w_off, acts
        The network as :mod:`dynsim.networks.hopfield_kernels` stores it; connection
        ``c`` couples group ``c`` to group ``c + 1``.
    drive : ndarray, shape (batch, n_free)
        Biases plus the input's projection (constant).
    beta : float
        Nudging strength; ``target`` (batch, n_output) the output's target.
        The arrays share one dtype (float64 or float32); ``beta``, ``dt`` and
        ``max_abs`` are scalars of that dtype.
    clamp_output : bool
        Hold the output units (their field is zero).
    dt, max_steps, atol, rtol, stop_at_steady_state, max_abs
        As in :func:`integrators.integrate`.
    lo, hi : ndarray, shape (G,)
        The box each group's units are projected onto (-inf, inf: none), in
        the arrays' dtype.

    Returns
    -------
    tuple
        ``(y, t, status, steps, nfev, residual, bad_step, bad_sample, energy)``:
        the first eight as the generic driver's; ``energy`` (batch,) of ``y``.
    """
    n_batch, n = y0.shape
    G = sizes.shape[0]
    y = _split(y0, sizes, free_off)
    for g in range(1, G):
        # The start projected onto the box (a no-op for infinite bounds), as integrators.integrate does.
        lo_g = lo[g]
        hi_g = hi[g]
        for i in range(n_batch):
            row = y[g][i]
            for j in range(sizes[g]):
                v = row[j]
                row[j] = lo_g if v < lo_g else (hi_g if v > hi_g else v)
    y_new = _split(y0, sizes, free_off)
    r = _split(y0, sizes, free_off)
    rp = _split(y0, sizes, free_off)
    below = _split(y0, sizes, free_off)
    above = _split(y0, sizes, free_off)
    zero = dt - dt
    one = dt / dt  # dt > 0
    for g in range(1, G):
        _activations(y[g], acts[g], r[g], rp[g])
        above[g][:, :] = 0.0
        below[g][:, :] = 0.0
    w_t = transposed_couplings(theta, sizes, w_off)
    residual = np.empty(n_batch, dtype=np.float64)
    energy = np.empty(n_batch, dtype=y0.dtype)
    # Per-sample sums of the pass: squared residual, energy, |y|^2, |f|^2, |y_new|^2, and the counts of entries of
    # f and y_new above max_abs.
    res2 = np.empty(n_batch)
    en = np.empty(n_batch)
    y2 = np.empty(n_batch)
    f2 = np.empty(n_batch)
    f_over = np.empty(n_batch)
    yn2 = np.empty(n_batch)
    yn_over = np.empty(n_batch)
    f_bad = np.zeros(n_batch, dtype=np.bool_)
    y_bad = np.zeros(n_batch, dtype=np.bool_)
    limit = float(max_abs) * float(max_abs)
    out_g = G - 1

    steps = 0
    nfev = 0
    status = _RUNNING
    bad_step = -1
    bad_sample = -1
    while status == _RUNNING:
        # Couplings between free layers; group 1's input coupling is in the drive.
        for c in range(1, G - 1):
            W = theta[w_off[c]:w_off[c] + sizes[c] * sizes[c + 1]].reshape((sizes[c], sizes[c + 1]))
            np.dot(r[c], W, below[c + 1])
            np.dot(r[c + 1], w_t[c], above[c])
        nfev += 1
        res2[:] = 0.0
        en[:] = 0.0
        y2[:] = 0.0
        f2[:] = 0.0
        f_over[:] = 0.0
        yn2[:] = 0.0
        yn_over[:] = 0.0
        for g in range(1, G):
            # Each group's arrays fetched once: indexing the lists inside the loop would cost a reference count
            # per unit.
            o = free_off[g]
            # The output's nudge and clamp as factors, so that one branch-free loop (it vectorises) serves
            # every group: f = keep * (rho'(s) h - s - nudge * (s - y)). Both take dt's type (zero and one
            # below), so a float32 relaxation computes in float32.
            nudge = beta if (g == out_g and not clamp_output) else zero
            keep = zero if (g == out_g and clamp_output) else one
            tg = target if g == out_g else drive  # any (batch, >= n_g) array when nudge is 0
            _field_step(y[g], y_new[g], r[g], rp[g], below[g], above[g], drive, o, tg, nudge, keep, dt,
                        lo[g], hi[g], max_abs, en, y2, f2, res2, yn2, f_over, yn_over)
            _activations(y_new[g], acts[g], r[g], rp[g])
        all_steady = True
        for i in range(n_batch):
            residual[i] = np.sqrt(res2[i])
            energy[i] = en[i]
            # The generic driver's divergence test (first_bad_sample): a non-finite sum of squares, or an entry
            # above max_abs.
            f_bad[i] = not (f2[i] < np.inf) or (f2[i] > limit and f_over[i] > 0.0)
            y_bad[i] = not (yn2[i] < np.inf) or (yn2[i] > limit and yn_over[i] > 0.0)
            if not residual[i] <= atol + rtol * np.sqrt(y2[i]):
                all_steady = False
        for i in range(n_batch):
            if f_bad[i]:
                status = DIVERGED
                bad_step = steps
                bad_sample = i
                break
        if status != _RUNNING:
            break
        if stop_at_steady_state and all_steady:
            status = CONVERGED
            break
        if steps >= max_steps:
            status = STEP_LIMIT
            break
        for i in range(n_batch):
            if y_bad[i]:
                status = DIVERGED
                bad_step = steps + 1
                bad_sample = i
                break
        if status != _RUNNING:
            break
        y, y_new = y_new, y
        steps += 1

    out = np.empty((n_batch, n), dtype=y0.dtype)
    for g in range(1, G):
        copy_rows(out[:, free_off[g]:free_off[g] + sizes[g]], y[g])
    return out, steps * dt, status, steps, nfev, residual, bad_step, bad_sample, energy


@njit(cache=True, parallel=True)
def euler_layered_chunks(y0, theta, sizes, free_off, w_off, acts, drive, beta, target, clamp_output, dt, max_steps,
                         atol, rtol, stop_at_steady_state, lo, hi, max_abs, starts, out, residual, energy, info):
    """:func:`euler_layered` on the chunks ``starts`` of a minibatch, on Numba's threads.

    The samples relax independently (the weights are fixed during a
    relaxation), so chunk c, samples ``starts[c]:starts[c + 1]``, is one
    :func:`euler_layered` call. ``out`` (batch, n_free), ``residual`` and
    ``energy`` (batch,) receive the samples' results, ``info[c]`` the
    chunk's (status, steps, nfev, bad_step, bad_sample in the minibatch or
    -1). Meant for a fixed number of steps: a steady-state stop would stop
    each chunk on its own.
    """
    for c in prange(starts.shape[0] - 1):
        a = starts[c]
        b = starts[c + 1]
        y, t, status, steps, nfev, res, bad_step, bad_sample, e = euler_layered(
            y0[a:b], theta, sizes, free_off, w_off, acts, drive[a:b], beta, target[a:b], clamp_output, dt,
            max_steps, atol, rtol, stop_at_steady_state, lo, hi, max_abs)
        store_chunk_samples(a, y, res, e, out, residual, energy)
        store_chunk_report(info, c, status, steps, nfev, bad_step, bad_sample, a)


# ----------------------------------------------------------------------------- Python boundary
def check_batch_shapes(network, s0, drive, target):
    """ValidationError unless ``s0`` and ``drive`` are (batch, n_free) and ``target`` (batch, n_output).

    settle has checked them; this keeps a direct call from reaching the
    kernels, which do not test indices, with arrays of another batch.
    """
    batch = np.shape(s0)[0] if np.ndim(s0) == 2 else None
    if np.shape(s0) != (batch, network.n_free):
        raise ValidationError(f"s0 must have shape (batch, {network.n_free}), got {np.shape(s0)}")
    for name, value, width in (("drive", drive, network.n_free), ("target", target, network.n_output)):
        if np.shape(value) != (batch, width):
            raise ValidationError(f"{name} must have shape ({batch}, {width}) for the {batch} samples of s0, got "
                                  f"{np.shape(value)}")


def relax(network, s0, drive, method, beta=0.0, target=None, clamp_output=False, *, dt, max_steps,
          atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box=None, max_abs=1e6):
    """Relax a layered Hopfield network by (projected) Euler in one compiled call.

    :func:`dynsim.relax.phases.settle` calls this when :func:`applies` holds; the
    arguments have been validated there.

    Parameters
    ----------
    network : HopfieldNetwork
        Layered (:func:`is_layered`).
    s0 : ndarray, shape (batch, n_free)
    drive : ndarray, shape (batch, n_free)
        :meth:`HopfieldNetwork.input_drive` of the clamped input.
    method : {'euler', 'projected_euler'}
    beta, target, clamp_output
        As in :func:`dynsim.networks.hopfield_kernels.hopfield_vector_field`.
    dt : float
    max_steps : int
    atol, rtol, stop_at_steady_state, max_abs
        As in :func:`integrators.integrate`.
    box : (float, float) or (ndarray, ndarray), optional
        Projection box (None: no projection): bounds for every unit, or per
        unit (n_free,) and then the same within each group (:func:`group_box`).

    Returns
    -------
    (integrators.IntegrationResult, ndarray of shape (batch,))
        The integration result, as ``integrators.integrate`` reports it, and
        the energy of its final state.
    """
    (theta, sizes, free_off, _pre, _post, w_off, acts, drive, beta, target, clamp_output) = network.kernel_args(
        drive, beta, target, clamp_output)
    check_batch_shapes(network, s0, drive, target)
    # Arrays and the scalars of the per-unit arithmetic in the network's dtype: with float32 the pass then
    # stays in single precision (a float64 scalar would promote every unit's arithmetic to float64).
    real = network.dtype.type
    lo, hi = group_box(network, box)
    y0 = np.ascontiguousarray(s0, dtype=network.dtype)  # projected onto [lo, hi] by the kernel, as integrate() does
    drive = np.ascontiguousarray(drive, dtype=network.dtype)
    target = np.ascontiguousarray(target, dtype=network.dtype)
    cap = real(min(max_abs, np.finfo(network.dtype).max))  # a cap above the dtype's range is no cap
    args = (theta, sizes, free_off, w_off, acts, drive, real(beta), target, clamp_output, real(dt), int(max_steps),
            float(atol), float(rtol), bool(stop_at_steady_state), lo, hi, cap)
    batch = y0.shape[0]
    starts = relaxation_chunks(batch, stop_at_steady_state)
    if starts.shape[0] == 2:
        y, t, status, steps, nfev, residual, bad_step, bad_sample, energy = euler_layered(y0, *args)
    else:
        # A fixed number of steps: the samples' chunks on Numba's threads (each chunk stops only at the step
        # limit or on a divergence, as the whole batch would), one BLAS thread each.
        y = np.empty_like(y0)
        residual, energy = np.empty(batch), np.empty(batch, dtype=network.dtype)
        info = np.empty((starts.shape[0] - 1, 5), dtype=np.int64)
        with one_blas_thread():
            euler_layered_chunks(y0, theta, sizes, free_off, w_off, acts, drive, real(beta), target, clamp_output,
                                 real(dt), int(max_steps), float(atol), float(rtol), bool(stop_at_steady_state), lo,
                                 hi, cap, starts, y, residual, energy, info)
        status, steps, nfev, bad_step, bad_sample = merge_chunk_reports(info, DIVERGED)
        t = steps * real(dt)
        if status == DIVERGED:
            # The whole batch stops at the first divergence, and its report holds every sample's last finite
            # state there: run it so (rare, and exact).
            y, t, status, steps, nfev, residual, bad_step, bad_sample, energy = euler_layered(y0, *args)
    result = finish_result(y, t, status, steps, 0, nfev, residual, bad_step, bad_sample, atol=atol, rtol=rtol,
                           stop_at_steady_state=stop_at_steady_state, method=method)
    return result, energy

