"""Source template of the compiled integration drivers.

This file is never imported on its own. :mod:`integrators.specialize` copies
its text into a generated module that begins with
``from <module> import <function> as vector_field``, so each vector field gets
its own module-level pair of drivers. Numba then caches that pair on disk and
a new process loads it in milliseconds; passing the vector field as an
argument instead recompiles in every process (measured: 0.6--1.1 s per pair).

The vector field has the signature ``vector_field(t, y, dydt, args)``:
``y`` and ``dydt`` are C-contiguous arrays of shape (batch, n), ``dydt`` is
written in place, and ``args`` is a tuple of arrays and scalars (the
parameters: weights travel here, never in closures).
"""
import numpy as np
from numba import njit

from integrators._numerics import (
    all_steady,
    axpy_stages,
    copy_rows,
    error_norm,
    first_bad_sample,
    open_recording,
    project_onto_box,
    record,
    refined_initial_step,
    steady_residual,
    trial_initial_step,
)
from integrators.status import CONVERGED, DIVERGED, STEP_LIMIT, STEP_TOO_SMALL, TIME_LIMIT

_RUNNING = 99

# `vector_field` is not defined here on purpose: the generated module puts the line
# `from <module> import <function> as vector_field` before this text.


@njit(cache=True)
def explicit_rk(y0, t0, dt, max_steps, t_max, atol, rtol, stop_at_steady_state,
                A, b, c, lower, upper, project, max_abs,
                record_every, record_samples, args):
    """Fixed-step explicit Runge--Kutta driver (Euler, projected Euler, Heun, RK4, ...).

    Returns ``(y, t, status, steps, nfev, residual, bad_step, bad_sample,
    rec_t, rec_y, rec_res, n_rec)``; see :func:`integrators.integrate`.
    """
    n_batch, n = y0.shape
    s = b.shape[0]
    y = y0.copy()
    y_new = np.empty_like(y)
    stage = np.empty_like(y)
    K = np.empty((s, n_batch, n), dtype=y0.dtype)
    residual = np.empty(n_batch, dtype=np.float64)

    t = t0
    steps = 0
    nfev = 1
    bad_step = -1
    bad_sample = -1
    status = _RUNNING
    vector_field(t, y, K[0], args)
    steady_residual(y, K[0], lower, upper, project, residual)

    rec_t, rec_y, rec_res, n_rec, last_recorded = open_recording(
        max_steps, record_every, record_samples, t, y, residual)
    bad_sample = first_bad_sample(K[0], max_abs)
    if bad_sample >= 0:
        status = DIVERGED
        bad_step = 0

    while status == _RUNNING:
        if stop_at_steady_state and all_steady(y, residual, atol, rtol):
            status = CONVERGED
            break
        if steps >= max_steps:
            status = STEP_LIMIT
            break
        if t >= t_max:
            status = TIME_LIMIT
            break
        h = dt
        if t + h > t_max:
            h = t_max - t
        for i in range(1, s):
            axpy_stages(stage, y, h, A[i], K, i)
            if project:
                # Stages outside the box would see a field the dynamics never meet.
                project_onto_box(stage, lower, upper)
            vector_field(t + c[i] * h, stage, K[i], args)
            nfev += 1
        axpy_stages(y_new, y, h, b, K, s)
        if project:
            project_onto_box(y_new, lower, upper)
        bad = first_bad_sample(y_new, max_abs)
        if bad >= 0:
            # Keep the last good state in `y`.
            status = DIVERGED
            bad_step = steps + 1
            bad_sample = bad
            break
        y, y_new = y_new, y
        steps += 1
        t = t0 + steps * dt if h == dt else t_max
        vector_field(t, y, K[0], args)
        nfev += 1
        bad = first_bad_sample(K[0], max_abs)
        if bad >= 0:
            status = DIVERGED
            bad_step = steps
            bad_sample = bad
            break
        steady_residual(y, K[0], lower, upper, project, residual)
        if record_every > 0 and steps % record_every == 0:
            rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, t, y, residual, record_samples)
            last_recorded = steps

    if record_every > 0 and last_recorded != steps and status != DIVERGED:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, t, y, residual, record_samples)
    return (y, t, status, steps, nfev, residual, bad_step, bad_sample,
            rec_t, rec_y, rec_res, n_rec)




@njit(cache=True)
def embedded_rk(y0, t0, first_step, max_steps, t_max, atol, rtol, err_atol, err_rtol, stop_at_steady_state,
                A, b, c, b_error, error_order, fsal,
                safety, min_factor, max_factor, pi_beta, h_max,
                lower, upper, project, max_abs,
                record_every, record_samples, args):
    """Adaptive embedded Runge--Kutta driver (Dormand--Prince 5(4)) with PI step control.

    The step-size factor after an accepted step is
    ``safety * err**(-alpha) * err_prev**pi_beta`` with
    ``alpha = 1/(error_order + 1) - 0.75 * pi_beta`` [HNW93, Sec. IV.2; Hairer's
    DOPRI5 code]; ``pi_beta = 0`` gives the integral controller of
    ``scipy.integrate.RK45``, step for step. ``max_steps`` bounds step
    attempts (accepted plus rejected). ``atol``/``rtol`` define the steady
    state, ``err_atol``/``err_rtol`` the local error tolerance.

    Returns ``(y, t, status, n_accepted, n_rejected, nfev, residual, bad_step,
    bad_sample, rec_t, rec_y, rec_res, n_rec)``.
    """
    n_batch, n = y0.shape
    s = b.shape[0]
    # With FSAL the last stage is f(t + h, y_new), evaluated after y_new.
    n_inner = s - 1 if fsal else s
    alpha = 1.0 / (error_order + 1) - 0.75 * pi_beta
    y = y0.copy()
    y_new = np.empty_like(y)
    stage = np.empty_like(y)
    K = np.empty((s, n_batch, n), dtype=y0.dtype)
    residual = np.empty(n_batch, dtype=np.float64)

    t = t0
    n_accepted = 0
    n_rejected = 0
    bad_step = -1
    bad_sample = -1
    status = _RUNNING
    vector_field(t, y, K[0], args)
    nfev = 1
    steady_residual(y, K[0], lower, upper, project, residual)

    rec_t, rec_y, rec_res, n_rec, last_recorded = open_recording(
        max_steps, record_every, record_samples, t, y, residual)
    bad_sample = first_bad_sample(K[0], max_abs)
    if bad_sample >= 0:
        status = DIVERGED
        bad_step = 0

    h_abs = first_step
    if status == _RUNNING and h_abs <= 0.0:
        h0 = trial_initial_step(y, K[0], t0, t_max, err_atol, err_rtol)
        axpy_stages(stage, y, h0, np.ones(1), K, 1)
        vector_field(t0 + h0, stage, K[1], args)
        nfev += 1
        h_abs = refined_initial_step(y, K[0], K[1], h0, t0, t_max, h_max, error_order, err_atol, err_rtol)
    err_prev = 1e-4  # Hairer's initial value of `facold`.
    nonfinite_trial = False

    while status == _RUNNING:
        if stop_at_steady_state and all_steady(y, residual, atol, rtol):
            status = CONVERGED
            break
        if n_accepted + n_rejected >= max_steps:
            status = STEP_LIMIT
            break
        if t >= t_max:
            status = TIME_LIMIT
            break
        min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
        if h_abs > h_max:
            h_abs = h_max
        elif h_abs < min_step:
            h_abs = min_step
        step_rejected = False
        accepted = False
        while not accepted:
            if h_abs < min_step:
                # A step forced this small by non-finite or runaway trial states is a divergence.
                status = DIVERGED if nonfinite_trial else STEP_TOO_SMALL
                if nonfinite_trial:
                    bad_step = n_accepted + n_rejected
                    bad_sample = first_bad_sample(y_new, max_abs)
                break
            if n_accepted + n_rejected >= max_steps:
                status = STEP_LIMIT
                break
            t_new = t + h_abs
            if t_new > t_max:
                t_new = t_max
            h = t_new - t
            for i in range(1, n_inner):
                axpy_stages(stage, y, h, A[i], K, i)
                if project:
                    project_onto_box(stage, lower, upper)
                vector_field(t + c[i] * h, stage, K[i], args)
                nfev += 1
            axpy_stages(y_new, y, h, b, K, n_inner)
            if project:
                project_onto_box(y_new, lower, upper)
            if fsal:
                vector_field(t_new, y_new, K[s - 1], args)
                nfev += 1
            err = error_norm(y, y_new, h, b_error, K, err_atol, err_rtol)
            trial_bad = first_bad_sample(y_new, max_abs) >= 0 or not np.isfinite(err)
            if err < 1.0 and not trial_bad:
                if err == 0.0:
                    factor = max_factor
                else:
                    factor = min(max_factor, safety * err ** (-alpha) * err_prev ** pi_beta)
                    factor = max(factor, min_factor)
                if step_rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                err_prev = max(err, 1e-4)
                accepted = True
                nonfinite_trial = False
            else:
                if trial_bad:
                    nonfinite_trial = True
                    h_abs *= min_factor
                else:
                    h_abs *= max(min_factor, safety * err ** (-alpha))
                n_rejected += 1
                step_rejected = True
        if not accepted:
            break
        n_accepted += 1
        y, y_new = y_new, y
        t = t_new
        if fsal:
            copy_rows(K[0], K[s - 1])
        else:
            vector_field(t, y, K[0], args)
            nfev += 1
        bad = first_bad_sample(K[0], max_abs)
        if bad >= 0:
            status = DIVERGED
            bad_step = n_accepted + n_rejected
            bad_sample = bad
            break
        steady_residual(y, K[0], lower, upper, project, residual)
        if record_every > 0 and n_accepted % record_every == 0:
            rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, t, y, residual, record_samples)
            last_recorded = n_accepted

    if record_every > 0 and last_recorded != n_accepted and status != DIVERGED:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, t, y, residual, record_samples)
    return (y, t, status, n_accepted, n_rejected, nfev, residual, bad_step, bad_sample,
            rec_t, rec_y, rec_res, n_rec)
