"""The supervised predictive coding update of one minibatch in one compiled call.

:func:`dynsim.learning.predictive_coding.pc_gradient` takes this path when the inference
is fixed-step Euler without a box, trajectory recording or a time limit
(:func:`applies`): the regime of the papers and of pcx (a few small steps
from the feedforward pass). One call of :func:`pc_minibatch` does what the
generic path does in a dozen calls and allocations: f(x_0) of the input,
the feedforward pass (unless the caller has it), clamps the output to the
target, runs the Euler inference with the generic driver's bookkeeping
(:func:`integrators.integrate`: same steps, same f-evaluations, the same
steady-state stop, the same divergence tests with the step and sample where
they fire, the residual of the final state), and reads the energy and the
parameter gradient -dF/dtheta at the final state. It gives the generic
path's states, energies and gradients to rounding (the matrix products are
ordered differently) and its status, counts and messages exactly.

Why a second path: at batch 128 on 784-128-128-128-10 a relaxation step is
three 128 x 128 products and elementwise work on ~3 * 10^4 numbers. The
generic driver's step allocates the errors, the activations and the field
afresh and makes about ten passes over the state; the Python around it
(validation, phase results, a second feedforward pass for the update) cost
as much again. Here

1. every layer's state, activations, errors, field and back-projected error
   is a C-contiguous (batch, n_l) block of a flat buffer, allocated once per
   (batch size, dtype) and kept on the network across minibatches
   (:func:`workspace`), so BLAS reads and writes them without copies;
2. the prediction of layer l, f(x_{l-1}) W_l, and the error fed back to it,
   (p_{l+1} eps_{l+1}) W_{l+1}^T, are written into those blocks by np.dot;
   mu_1 (the input's prediction) is constant: the drive's first block;
3. one pass per layer forms the error, the field, the per-sample sums of the
   divergence and steady-state tests, and after the step the new state.

On divergence (or whatever the generic driver would report as one) the
caller runs the generic path again, which then gives the exact report, the
layer and unit, and the retries with a smaller step.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs",
       Neural Computation 34(6) (2022) (the fixed-prediction variant).
.. [3] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (the 5 x 0.05 Euler regime).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dynsim._threads import chunk_starts as _chunk_starts
from dynsim._threads import chunks_pay, merge_chunk_reports, one_blas_thread, store_chunk_report
from dynsim.networks.pc import PCNetwork
from dynsim.networks.pc_kernels import phi_into
from integrators._numerics import copy_prefix, copy_rows
from integrators.solve import finish_result
from integrators.status import CONVERGED, DIVERGED, STEP_LIMIT

__all__ = ["CHUNK", "applies", "chunk_starts", "workspace", "pc_minibatch", "pc_chunks", "run"]

_RUNNING = 99
_MAX_WORKSPACES = 4
"""Workspaces kept per network (an epoch uses two batch sizes: the full minibatches and the last one)."""
CHUNK = 64
"""Samples per chunk of a fixed-step inference: a minibatch of B samples is ceil(B / CHUNK) chunks of equal size."""


def applies(network, options):
    """Whether :func:`run` reproduces :func:`dynsim.relax.phases.settle` with ``options`` for ``network``.

    Fixed-step ``'euler'`` with no projection box, no trajectory recording
    and no time limit (the driver would shorten the last step).
    """
    return (isinstance(network, PCNetwork) and options.integrator == "euler" and options.record_every == 0
            and math.isinf(options.t_max) and options.box(network) is None)


# ----------------------------------------------------------------------------- compiled core
@njit(cache=True)
def _block(buf, n_batch, free_off, sizes, l):
    """Layer ``l``'s (batch, n_l) C-contiguous view of a flat layer-blocked buffer."""
    a = n_batch * free_off[l]
    return buf[a:a + n_batch * sizes[l]].reshape((n_batch, sizes[l]))


@njit(cache=True)
def _weights(theta, l, sizes, w_off):
    start = w_off[l]
    return theta[start:start + sizes[l - 1] * sizes[l]].reshape((sizes[l - 1], sizes[l]))


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _errors_and_field(y, theta, sizes, w_off, b_off, free_off, act, precisions, fixed, start, mu_hat, f, fp, eps,
                      pe, back, field, f2):
    """Errors ``eps`` and field ``-dF/dx`` (output held) of the state ``y``; ``f2`` gets sum_j field^2 per sample.

    ``y``, ``mu_hat``, ``f``, ``fp``, ``eps``, ``pe``, ``back`` and ``field``
    are flat layer-blocked buffers (:func:`_block`). Without ``fixed`` the
    activations ``f``, ``fp`` of layers 1..L-1 are those of ``y`` (computed
    here); with it they hold the feedforward pass's, and the predictions are
    the drive's. The arithmetic is that of
    :func:`dynsim.networks.pc_kernels.energy_grad_state` and
    :func:`dynsim.networks.pc_kernels.pc_vector_field`.

    ``start``: ``y`` is the feedforward pass with the output clamped, and
    ``f``, ``fp`` hold its activations. Its predictions are then the
    drive's (x_l = mu_l for every hidden layer), so the hidden errors are
    exactly 0 and only the output's error is fed back: no prediction
    product, and one back product instead of L - 1. (The generic path
    computes the same numbers from the products; its hidden errors are 0 up
    to the rounding of mu_l + b_l - mu_l - b_l.)
    """
    L = sizes.shape[0] - 1
    n_batch = f2.shape[0]
    zero = y.dtype.type(0)  # sums in the state's dtype: float64 terms would widen a float32 pass
    f2[:] = 0.0
    if start:
        fixed = True
    if not fixed:
        for l in range(1, L):
            phi_into(_block(y, n_batch, free_off, sizes, l), act, _block(f, n_batch, free_off, sizes, l),
                     _block(fp, n_batch, free_off, sizes, l))
    for l in range(1, L + 1):
        n = sizes[l]
        yl = _block(y, n_batch, free_off, sizes, l)
        el = _block(eps, n_batch, free_off, sizes, l)
        ml = _block(mu_hat, n_batch, free_off, sizes, l)
        if l == 1 or fixed:
            for i in range(n_batch):
                ys, es, ms = yl[i], el[i], ml[i]
                for j in range(n):
                    es[j] = ys[j] - ms[j]
        else:
            # The prediction f(x_{l-1}) W_l into the back buffer of layer l (free until the field pass below).
            bl = _block(back, n_batch, free_off, sizes, l)
            np.dot(_block(f, n_batch, free_off, sizes, l - 1), _weights(theta, l, sizes, w_off), bl)
            b0 = b_off + free_off[l]
            bias = theta[b0:b0 + n]
            for i in range(n_batch):
                ys, es, bs = yl[i], el[i], bl[i]
                for j in range(n):
                    es[j] = ys[j] - bs[j] - bias[j]
    for l in range(1, L):
        n = sizes[l]
        pa = _block(pe, n_batch, free_off, sizes, l + 1)
        ea = _block(eps, n_batch, free_off, sizes, l + 1)
        p_above = precisions[l + 1]
        bl = _block(back, n_batch, free_off, sizes, l)
        if start and l + 1 < L:
            bl[:, :] = 0.0  # the error above is zero at the start
        else:
            for i in range(n_batch):
                ps, es = pa[i], ea[i]
                for j in range(sizes[l + 1]):
                    ps[j] = es[j] * p_above
            np.dot(pa, _weights(theta, l + 1, sizes, w_off).T, bl)
        el = _block(eps, n_batch, free_off, sizes, l)
        fpl = _block(fp, n_batch, free_off, sizes, l)
        fl = _block(field, n_batch, free_off, sizes, l)
        p = precisions[l]
        for i in range(n_batch):
            es, fps, bs, fs = el[i], fpl[i], bl[i], fl[i]
            acc = zero
            for j in range(n):
                g = p * es[j]
                g = g - fps[j] * bs[j]
                v = -g
                fs[j] = v
                acc += v * v
            f2[i] += acc
    # The output is clamped: its field is zero (and adds nothing to the sums).
    _block(field, n_batch, free_off, sizes, L)[:, :] = 0.0


@njit(cache=True)
def _first_bad(buf, n_batch, free_off, sizes, sums, max_abs):
    """:func:`integrators._numerics.first_bad_sample` of a layer-blocked buffer whose row sums of squares are ``sums``."""
    L = sizes.shape[0] - 1
    limit = max_abs * max_abs
    for i in range(n_batch):
        acc = sums[i]
        if not acc < np.inf:
            return i
        if acc <= limit:
            continue
        for l in range(1, L + 1):
            row = _block(buf, n_batch, free_off, sizes, l)[i]
            for j in range(sizes[l]):
                if not abs(row[j]) <= max_abs:
                    return i
    return -1


@njit(cache=True, fastmath={"reassoc"})
def _row_sums_of_squares(buf, n_batch, free_off, sizes, out):
    L = sizes.shape[0] - 1
    zero = buf.dtype.type(0)
    out[:] = 0.0
    for l in range(1, L + 1):
        b = _block(buf, n_batch, free_off, sizes, l)
        for i in range(n_batch):
            row = b[i]
            acc = zero
            for j in range(sizes[l]):
                acc += row[j] * row[j]
            out[i] += acc


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def pc_minibatch(x, have_fx, drive, have_drive, target, theta, sizes, w_off, b_off, free_off, act, precisions, fixed,
                 dt, max_steps, atol, rtol, stop_at_steady_state, max_abs, grad_scale,
                 fx, fpx, mu_hat, y, y_new, f, fp, eps, pe, back, field, state, grad):
    """Supervised PC inference by Euler from the feedforward pass, then the update -dF/dtheta.

    Parameters
    ----------
    x : ndarray, shape (batch, n_input)
        Clamped input x_0.
    have_fx : bool
        ``fx`` holds f(x_0) already (else computed here).
    drive : ndarray, shape (batch, n_free)
        The feedforward predictions mu_hat when ``have_drive``
        (:meth:`PCNetwork.input_drive`); else they are computed here and
        written into it (the caller's free phase reads them).
    target : ndarray, shape (batch, n_output)
        The output is clamped to it.
    theta, sizes, w_off, b_off, free_off, act, precisions
        The network as :mod:`dynsim.networks.pc_kernels` stores it.
    fixed : bool
        Fixed-prediction inference (predictions and f' at their feedforward values).
    dt, max_steps, atol, rtol, stop_at_steady_state, max_abs
        As in :func:`integrators.integrate` (method 'euler').
    grad_scale : float
        Factor of the returned gradient (sigma_L^2 with ``rescale``).
    fx, fpx : ndarray, shape (batch, n_input)
        f(x_0) (given, or computed here) and workspace.
    mu_hat, y, y_new, f, fp, eps, pe, back, field : ndarray, shape (batch * n_free,)
        Workspace, layer-blocked (:func:`_block`).
    state : ndarray, shape (batch, n_free)
        Receives the final state.
    grad : ndarray, shape (n_params,)
        Receives the gradient estimate grad_scale * dF/dtheta (batch mean).

    Returns
    -------
    tuple
        ``(t, status, steps, nfev, residual, bad_step, bad_sample, energy,
        cost)``: the first seven as the generic driver's; ``energy`` and
        ``cost`` (batch,) float64 at the final state.
    """
    n_batch = x.shape[0]
    L = sizes.shape[0] - 1
    if not have_fx:
        phi_into(x, act, fx, fpx)
    if have_drive:
        for l in range(1, L + 1):
            o = free_off[l]
            copy_rows(_block(mu_hat, n_batch, free_off, sizes, l), drive[:, o:o + sizes[l]])
    else:
        # dynsim.networks.pc_kernels.feedforward_from_activity, into the blocks.
        below = fx
        for l in range(1, L + 1):
            ml = _block(mu_hat, n_batch, free_off, sizes, l)
            np.dot(below, _weights(theta, l, sizes, w_off), ml)
            b0 = b_off + free_off[l]
            for i in range(n_batch):
                ms = ml[i]
                for j in range(sizes[l]):
                    ms[j] += theta[b0 + j]
            if l < L:
                phi_into(ml, act, _block(f, n_batch, free_off, sizes, l), _block(fp, n_batch, free_off, sizes, l))
                below = _block(f, n_batch, free_off, sizes, l)
            o = free_off[l]
            copy_rows(drive[:, o:o + sizes[l]], ml)
    if have_drive:
        # The activations of the feedforward pass: those of the start (and of every state with ``fixed``).
        for l in range(1, L):
            phi_into(_block(mu_hat, n_batch, free_off, sizes, l), act, _block(f, n_batch, free_off, sizes, l),
                     _block(fp, n_batch, free_off, sizes, l))
    # The start: the feedforward pass with the output clamped to the target (dynsim.relax.phases.settle_checked).
    copy_prefix(y, mu_hat, y.shape[0])
    copy_rows(_block(y, n_batch, free_off, sizes, L), target)

    f2 = np.empty(n_batch)
    y2 = np.empty(n_batch)
    residual = np.empty(n_batch)
    steps = 0
    nfev = 1
    bad_step = -1
    bad_sample = -1
    status = _RUNNING
    _errors_and_field(y, theta, sizes, w_off, b_off, free_off, act, precisions, fixed, True, mu_hat, f, fp, eps, pe,
                      back, field, f2)
    for i in range(n_batch):
        residual[i] = np.sqrt(f2[i])
    bad = _first_bad(field, n_batch, free_off, sizes, f2, max_abs)
    if bad >= 0:
        status = DIVERGED
        bad_step = 0
        bad_sample = bad
    while status == _RUNNING:
        if stop_at_steady_state:
            _row_sums_of_squares(y, n_batch, free_off, sizes, y2)
            steady = True
            for i in range(n_batch):
                if not residual[i] <= atol + rtol * np.sqrt(y2[i]):
                    steady = False
                    break
            if steady:
                status = CONVERGED
                break
        if steps >= max_steps:
            status = STEP_LIMIT
            break
        # y_new = y + dt * field; the clamped output does not move. dt and the sums have the state's dtype.
        zero = y.dtype.type(0)
        y2[:] = 0.0
        for l in range(1, L + 1):
            yl = _block(y, n_batch, free_off, sizes, l)
            nl = _block(y_new, n_batch, free_off, sizes, l)
            fl = _block(field, n_batch, free_off, sizes, l)
            for i in range(n_batch):
                ys, ns, fs = yl[i], nl[i], fl[i]
                acc = zero
                for j in range(sizes[l]):
                    ns[j] = ys[j] + dt * fs[j]
                    v = ns[j]  # as stored (float32 networks: rounded), as the driver's tests read it
                    acc += v * v
                y2[i] += acc
        bad = _first_bad(y_new, n_batch, free_off, sizes, y2, max_abs)
        if bad >= 0:
            status = DIVERGED
            bad_step = steps + 1
            bad_sample = bad
            break
        y, y_new = y_new, y
        steps += 1
        _errors_and_field(y, theta, sizes, w_off, b_off, free_off, act, precisions, fixed, False, mu_hat, f, fp, eps,
                          pe, back, field, f2)
        nfev += 1
        bad = _first_bad(field, n_batch, free_off, sizes, f2, max_abs)
        if bad >= 0:
            status = DIVERGED
            bad_step = steps
            bad_sample = bad
            break
        for i in range(n_batch):
            residual[i] = np.sqrt(f2[i])

    for l in range(1, L + 1):
        o = free_off[l]
        copy_rows(state[:, o:o + sizes[l]], _block(y, n_batch, free_off, sizes, l))
    # Energy and cost of the final state (eps is of this state: the last field evaluation was there), summed as
    # dynsim.networks.pc_kernels.energy and NetworkLayout.cost sum them.
    energy = np.zeros(n_batch)
    for l in range(1, L + 1):
        el = _block(eps, n_batch, free_off, sizes, l)
        for i in range(n_batch):
            row = el[i]
            acc = 0.0
            for j in range(sizes[l]):
                acc += row[j] * row[j]
            energy[i] += 0.5 * precisions[l] * acc
    cost = np.zeros(n_batch)
    out = _block(y, n_batch, free_off, sizes, L)
    for i in range(n_batch):
        acc = 0.0
        for j in range(sizes[L]):
            d = out[i, j] - target[i, j]
            acc += d * d
        cost[i] = 0.5 * acc
    if status == DIVERGED:
        return steps * dt, status, steps, nfev, residual, bad_step, bad_sample, energy, cost

    # dF/dW_l = -p_l f(x_{l-1})^T eps_l / B and dF/db_l = -p_l mean(eps_l)
    # (dynsim.networks.pc_kernels.energy_grad_params_from_activity); pe holds the scaled errors.
    for l in range(1, L + 1):
        n = sizes[l]
        scale = -precisions[l] / n_batch
        el = _block(eps, n_batch, free_off, sizes, l)
        sl = _block(pe, n_batch, free_off, sizes, l)
        for i in range(n_batch):
            es, ss = el[i], sl[i]
            for j in range(n):
                ss[j] = es[j] * scale
        below = fx if l == 1 else _block(f, n_batch, free_off, sizes, l - 1)
        n_w = sizes[l - 1] * n
        np.dot(below.T, sl, grad[w_off[l]:w_off[l] + n_w].reshape((sizes[l - 1], n)))
        b0 = b_off + free_off[l]
        gb = grad[b0:b0 + n]
        gb[:] = 0.0
        for i in range(n_batch):  # row by row: contiguous, so the sum over the batch vectorises
            ss = sl[i]
            for j in range(n):
                gb[j] += ss[j]
    if grad_scale != 1.0:
        for k in range(grad.shape[0]):
            grad[k] = grad[k] * grad_scale
    return steps * dt, status, steps, nfev, residual, bad_step, bad_sample, energy, cost


@njit(cache=True, parallel=True, error_model="numpy")
def pc_chunks(x, have_fx, drive, have_drive, target, theta, sizes, w_off, b_off, free_off, act, precisions, fixed, dt,
              max_steps, atol, rtol, stop_at_steady_state, max_abs, grad_scale, starts, fx, fpx, bufs, state, grads,
              grad, residual, energy, cost, info):
    """:func:`pc_minibatch` on the chunks ``starts`` of a minibatch, on Numba's threads; the batch-mean gradient.

    The samples of a PC inference are independent (each settles against
    the same weights), so chunk c, samples ``starts[c]:starts[c + 1]``, runs
    its own :func:`pc_minibatch` in its own workspace ``bufs[c]`` (9, >=
    chunk * n_free) and writes its mean gradient to ``grads[c]``. ``grad``
    gets the batch mean, sum_c (n_c / B) grads[c] (``grads[0]`` exactly for
    one chunk). The chunks are fixed by the batch size, not by the thread
    count, so two threads and eight give the same numbers.

    ``state`` (B, n_free), ``residual``, ``energy``, ``cost`` (B,) receive
    the samples' results; ``info[c]`` the chunk's (status, steps, nfev,
    bad_step, bad_sample in the minibatch or -1). Other arguments as
    :func:`pc_minibatch`, whole-minibatch arrays.
    """
    n = x.shape[0]
    n_chunks = starts.shape[0] - 1
    for c in prange(n_chunks):
        lo = starts[c]
        hi = starts[c + 1]
        b = bufs[c]
        t, status, steps, nfev, res, bad_step, bad_sample, e, co = pc_minibatch(
            x[lo:hi], have_fx, drive[lo:hi], have_drive, target[lo:hi], theta, sizes, w_off, b_off, free_off, act,
            precisions, fixed, dt, max_steps, atol, rtol, stop_at_steady_state, max_abs, grad_scale, fx[lo:hi],
            fpx[lo:hi], b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], state[lo:hi], grads[c])
        for i in range(hi - lo):
            residual[lo + i] = res[i]
            energy[lo + i] = e[i]
            cost[lo + i] = co[i]
        store_chunk_report(info, c, status, steps, nfev, bad_step, bad_sample, lo)
    if n_chunks == 1:
        copy_prefix(grad, grads[0], grad.shape[0])
    else:
        # Chunk after chunk, contiguous passes (a loop over the chunks inside one over the parameters cost 1 ms).
        g0 = grads[0]
        w = grad.dtype.type((starts[1] - starts[0]) / n)
        for k in range(grad.shape[0]):
            grad[k] = g0[k] * w
        for c in range(1, n_chunks):
            gc = grads[c]
            w = grad.dtype.type((starts[c + 1] - starts[c]) / n)
            for k in range(grad.shape[0]):
                grad[k] += gc[k] * w


# ----------------------------------------------------------------------------- Python boundary
def chunk_starts(batch, chunked):
    """Boundaries (n_chunks + 1,) of the chunks of a minibatch: ceil(batch / CHUNK) equal parts, or one."""
    return _chunk_starts(batch, CHUNK, chunked)


def workspace(network, batch, chunked=False):
    """The buffers of :func:`pc_chunks` for ``batch`` samples, allocated once and kept on ``network``.

    Returns
    -------
    tuple
        ``(starts, fx, fpx, bufs, grads)``: the chunk boundaries
        (:func:`chunk_starts`), two (batch, n_input) arrays, the chunks'
        workspaces (n_chunks, 9, rows * n_free) (rows: the largest chunk)
        and their gradients (n_chunks, n_params), in the network's dtype.
    """
    key = (int(batch), np.dtype(network.dtype).name, bool(chunked))
    cache = network.__dict__.setdefault("_fused_workspaces", {})
    ws = cache.get(key)
    if ws is None:
        while len(cache) >= _MAX_WORKSPACES:
            cache.pop(next(iter(cache)))
        dt = network.dtype
        starts = chunk_starts(batch, chunked)
        rows = int(np.max(np.diff(starts)))
        n_chunks = starts.shape[0] - 1
        ws = (starts, np.empty((batch, network.n_input), dtype=dt), np.empty((batch, network.n_input), dtype=dt),
              np.zeros((n_chunks, 9, rows * network.n_free), dtype=dt), np.empty((n_chunks, network.n_params), dtype=dt))
        cache[key] = ws
    return ws


def run(network, x, target, drive, fixed, options, rescale):
    """One fused minibatch on checked arguments (see :func:`dynsim.learning.predictive_coding.pc_gradient`).

    A fixed-step inference (``stop_at_steady_state`` off, the regime of the
    papers) runs in chunks of :data:`CHUNK` samples on Numba's threads, each
    with one BLAS thread (:func:`dynsim._threads.one_blas_thread`), when
    there is more than one thread (:func:`dynsim._threads.chunks_pay`). One
    that stops at the steady state runs as one chunk: the generic driver
    stops when every sample of the minibatch is steady, and so does it.

    Parameters
    ----------
    network : PCNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    drive : ndarray, shape (batch, n_free) or None
        The feedforward pass when the caller has it; None computes it here
        (f(x) and the products of the pass inside the compiled call).
        All in the network's dtype, C-contiguous, finite (checked by the caller).
    fixed : bool
    options : SettleOptions
        :func:`applies` holds.
    rescale : bool

    Returns
    -------
    (integrators.IntegrationResult, state, energy, cost, gradient, drive)
        ``state`` (batch, n_free), ``gradient`` (n_params,) and ``drive``
        (the feedforward pass, the caller's when given) are arrays in the
        network's dtype, the first two new; ``energy`` and ``cost`` (batch,)
        float64.
    """
    batch = x.shape[0]
    starts, fx, fpx, bufs, grads = workspace(network, batch, chunked=chunks_pay(options.stop_at_steady_state))
    have_drive = drive is not None
    if have_drive:
        # f(x) of the feedforward pass the caller has just computed (PCNetwork.input_drive), when x is the same.
        fx = network._input_activity_of(x)
    else:
        drive = np.empty((batch, network.n_free), dtype=network.dtype)
    state = np.empty((batch, network.n_free), dtype=network.dtype)
    grad = np.empty(network.n_params, dtype=network.dtype)
    residual, energy, cost = np.empty(batch), np.empty(batch), np.empty(batch)
    info = np.empty((starts.shape[0] - 1, 5), dtype=np.int64)
    dt = options.step()
    grad_scale = float(network.variances[-1]) if rescale else 1.0
    with one_blas_thread(starts.shape[0] > 2):  # chunks only where chunks_pay: several threads
        pc_chunks(x, have_drive, drive, have_drive, target, network._theta, network._sizes, network._w_off,
                  network._b_off, network._free_off, network._act, network._precisions, bool(fixed),
                  network.dtype.type(dt),
                  int(options.max_steps), float(options.atol), float(options.rtol),
                  bool(options.stop_at_steady_state), float(options.max_abs), grad_scale, starts, fx, fpx, bufs,
                  state, grads, grad, residual, energy, cost, info)
    # On a divergence the caller runs the generic path again for the report.
    status, steps, nfev, bad_step, bad_sample = merge_chunk_reports(info, DIVERGED)
    result = finish_result(state, steps * dt, status, steps, 0, nfev, residual, bad_step, bad_sample,
                           atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state,
                           method="euler")
    return result, state, energy, cost, grad, drive
