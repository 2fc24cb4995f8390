"""Compiled helpers shared by the drivers: residuals, divergence checks, recording.

These take arrays and scalars only; callers have validated shapes and dtypes.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def steady_residual(y, f, lower, upper, project, out):
    """Per-sample Euclidean norm of the (projected) vector field.

    With box constraints a unit held at a bound by a field that points
    outwards does not move, so that component does not count towards the
    residual; otherwise a projected fixed point would never be reported as
    converged.

    Parameters
    ----------
    y, f : ndarray, shape (batch, n)
        State and vector field at that state.
    lower, upper : ndarray, shape (n,)
        Box bounds (used only when ``project`` is true).
    project : bool
    out : ndarray, shape (batch,)
        Receives the norms.
    """
    n_batch, n = y.shape
    for i in range(n_batch):
        # 1-D rows: with 2-D indexing the strides are run-time values and no loop here vectorises.
        yi, fi = y[i], f[i]
        acc = 0.0
        if project:
            # Branch-free so that the loop vectorises: a component counts unless it is pinned.
            for j in range(n):
                v = fi[j]
                pinned = ((yi[j] <= lower[j]) & (v < 0.0)) | ((yi[j] >= upper[j]) & (v > 0.0))
                acc += 0.0 if pinned else v * v
        else:
            for j in range(n):
                acc += fi[j] * fi[j]
        out[i] = np.sqrt(acc)


@njit(cache=True)
def all_steady(y, residual, atol, rtol):
    """True when every sample satisfies ``||f|| <= atol + rtol * ||y||``."""
    n_batch, n = y.shape
    for i in range(n_batch):
        yi = y[i]
        acc = 0.0
        for j in range(n):
            acc += yi[j] * yi[j]
        if not residual[i] <= atol + rtol * np.sqrt(acc):
            return False
    return True


@njit(cache=True)
def first_bad_sample(a, max_abs):
    """Index of the first sample that counts as diverged; -1 if none.

    A sample is bad when an entry is non-finite or above ``max_abs``, or when
    its sum of squares overflows although every entry is finite. The last
    case matters with ``max_abs = inf``: a state of ~1e155 has an infinite
    norm, so its residual and its steady-state tolerance ``atol + rtol ||y||``
    are both inf, and ``inf <= inf`` would report a runaway state as a steady
    state. A sample whose sum of squares is finite and at most ``max_abs**2``
    has no bad entry; that test runs without early exits (it vectorises) and
    only a sample that fails it is scanned entry by entry.
    """
    n_batch, n = a.shape
    limit = max_abs * max_abs
    for i in range(n_batch):
        ai = a[i]
        acc = 0.0
        for j in range(n):
            acc += ai[j] * ai[j]
        if not acc < np.inf:  # a NaN or inf entry, or an overflowing norm
            return i
        if acc <= limit:
            continue
        for j in range(n):
            if not abs(ai[j]) <= max_abs:
                return i
    return -1


@njit(cache=True)
def project_onto_box(y, lower, upper):
    """Clip each column of ``y`` (batch, n) to ``[lower[j], upper[j]]`` in place."""
    n_batch, n = y.shape
    for i in range(n_batch):
        yi = y[i]
        for j in range(n):
            v = yi[j]
            yi[j] = lower[j] if v < lower[j] else (upper[j] if v > upper[j] else v)


@njit(cache=True)
def axpy_stages(out, y, h, weights, K, n_stages):
    """``out = y + h * (sum_{k < n_stages} weights[k] * K[k])``, skipping zero weights.

    The weighted sum is accumulated in ``out`` one stage at a time (contiguous
    loops that vectorise) and then scaled by ``h`` and added to ``y``: the
    association of scipy's ``rk_step``, so adaptive steps agree with scipy's
    to rounding.
    """
    # Flat 1-D views of the C-contiguous arrays: the loops vectorise (with 2-D indexing they did not).
    size = y.size
    of = out.reshape(size)
    yf = y.reshape(size)
    started = False
    for k in range(n_stages):
        w = weights[k]
        if w == 0.0:
            continue
        Kk = K[k].reshape(size)
        if not started:
            for j in range(size):
                of[j] = w * Kk[j]
            started = True
        else:
            for j in range(size):
                of[j] += w * Kk[j]
    if not started:
        for j in range(size):
            of[j] = yf[j]
        return
    for j in range(size):
        of[j] = yf[j] + h * of[j]


@njit(cache=True)
def error_norm(y, y_new, h, b_error, K, atol, rtol):
    """Largest per-sample RMS of the scaled local error estimate.

    Per sample this is scipy's ``RK45._estimate_error_norm``:
    ``rms(h * sum_k b_error[k] K[k] / (atol + max(|y|, |y_new|) * rtol))``;
    taking the maximum over the batch makes every sample meet the tolerance.
    """
    n_batch, n = y.shape
    worst = 0.0
    e = np.empty(n, dtype=np.float64)
    for i in range(n_batch):
        # Row by row over 1-D views, the stages summed first in the same order: the loops vectorise.
        e[:] = 0.0
        for k in range(b_error.shape[0]):
            w = b_error[k]
            if w != 0.0:
                Kki = K[k, i]
                for j in range(n):
                    e[j] += w * Kki[j]
        yi, yni = y[i], y_new[i]
        acc = 0.0
        for j in range(n):
            a = abs(yi[j])
            b = abs(yni[j])
            scale = atol + (a if a > b else b) * rtol
            r = (e[j] * h) / scale
            acc += r * r
        rms = np.sqrt(acc / n)
        # NaN must propagate: `max` would drop it.
        if not rms <= worst:
            worst = rms
    return worst


@njit(cache=True)
def new_recording(capacity, n_record, n, dtype_example):
    """Empty trajectory buffers: times (cap,), states (cap, n_record, n), residuals (cap, n_record)."""
    return (
        np.empty(capacity, dtype=np.float64),
        np.empty((capacity, n_record, n), dtype=dtype_example.dtype),
        np.empty((capacity, n_record), dtype=np.float64),
    )


# Copies as element loops. Numba compiles an array-to-array slice assignment (``a[i:j] = b``, also ``a[i:j] += b``)
# together with the formatting of its shape-mismatch message: measured here, 3.1-3.5 s for a function with one 1-d
# copy in a fresh process and 1.8-2.3 s more for a 2-d one, against 0.5-0.6 s and 0.1 s as loops. With every such
# copy of the kernels written as a loop, the first run of a scenario (empty kernel cache) took 27 % less time for
# lab-mlp EP and 36 % less for pcx's PC setting (medians of 3 alternated runs). The loops keep the slice
# assignment's shape test (Numba does not test indices): a mismatch raises, with a constant message.
@njit(cache=True)
def copy_prefix(dst, src, n):
    """``dst[:n] = src[:n]`` for 1-d arrays; ValueError when either is shorter than ``n``."""
    if n > dst.shape[0] or n > src.shape[0]:
        raise ValueError("copy_prefix: an array is shorter than the count to copy")
    for k in range(n):
        dst[k] = src[k]


@njit(cache=True)
def copy_rows(dst, src):
    """``dst[:, :] = src`` for 2-d arrays of one shape, any strides (column blocks of a batch, say); ValueError when
    the shapes differ."""
    if dst.shape[0] != src.shape[0] or dst.shape[1] != src.shape[1]:
        raise ValueError("copy_rows: the source's shape differs from the destination's")
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


@njit(cache=True)
def add_rows(dst, src):
    """``dst[:, :] += src`` for 2-d arrays of one shape, any strides; ValueError when the shapes differ."""
    if dst.shape[0] != src.shape[0] or dst.shape[1] != src.shape[1]:
        raise ValueError("add_rows: the source's shape differs from the destination's")
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]


@njit(cache=True)
def record(rec_t, rec_y, rec_res, n_rec, t, y, residual, samples):
    """Append one time point, doubling the buffers when full; returns the buffers and the new count."""
    if n_rec == rec_t.shape[0]:
        cap = 2 * rec_t.shape[0] + 1
        new_t = np.empty(cap, dtype=rec_t.dtype)
        new_y = np.empty((cap, rec_y.shape[1], rec_y.shape[2]), dtype=rec_y.dtype)
        new_res = np.empty((cap, rec_res.shape[1]), dtype=rec_res.dtype)
        copy_prefix(new_t, rec_t, n_rec)
        copy_prefix(new_y.reshape(-1), rec_y.reshape(-1), n_rec * rec_y.shape[1] * rec_y.shape[2])
        copy_prefix(new_res.reshape(-1), rec_res.reshape(-1), n_rec * rec_res.shape[1])
        rec_t, rec_y, rec_res = new_t, new_y, new_res
    rec_t[n_rec] = t
    for r in range(samples.shape[0]):
        i = samples[r]
        for j in range(y.shape[1]):
            rec_y[n_rec, r, j] = y[i, j]
        rec_res[n_rec, r] = residual[i]
    return rec_t, rec_y, rec_res, n_rec + 1


@njit(cache=True)
def trial_initial_step(y0, f0, t0, t_max, atol, rtol):
    """First pass of Hairer's starting step size [HNW93, Sec. II.4] (smallest over the batch).

    Per sample this is the first half of scipy's ``select_initial_step``.
    """
    n_batch, n = y0.shape
    h0 = np.inf
    for i in range(n_batch):
        d0 = 0.0
        d1 = 0.0
        for j in range(n):
            scale = atol + abs(y0[i, j]) * rtol
            d0 += (y0[i, j] / scale) ** 2
            d1 += (f0[i, j] / scale) ** 2
        d0 = np.sqrt(d0 / n)
        d1 = np.sqrt(d1 / n)
        hi = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, hi)
    return min(h0, t_max - t0)


@njit(cache=True)
def refined_initial_step(y0, f0, f1, h0, t0, t_max, h_max, error_order, atol, rtol):
    """Second pass of Hairer's starting step size, from ``f1 = f(t0 + h0, y0 + h0 f0)``."""
    n_batch, n = y0.shape
    h = min(100.0 * h0, t_max - t0, h_max)
    for i in range(n_batch):
        d1 = 0.0
        d2 = 0.0
        for j in range(n):
            scale = atol + abs(y0[i, j]) * rtol
            d1 += (f0[i, j] / scale) ** 2
            d2 += ((f1[i, j] - f0[i, j]) / scale) ** 2
        d1 = np.sqrt(d1 / n)
        d2 = np.sqrt(d2 / n) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
        h = min(h, h1)
    return h


@njit(cache=True)
def open_recording(max_steps, record_every, samples, t, y, residual):
    """Trajectory buffers holding the initial point when ``record_every > 0`` (else empty).

    Returns ``(rec_t, rec_y, rec_res, n_rec, last_recorded_step)``.
    """
    capacity = 1
    if record_every > 0:
        capacity = min(max_steps // record_every + 2, 4096)
    rec_t, rec_y, rec_res = new_recording(capacity, samples.shape[0], y.shape[1], y)
    if record_every > 0:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, 0, t, y, residual, samples)
        return rec_t, rec_y, rec_res, n_rec, 0
    return rec_t, rec_y, rec_res, 0, -1
