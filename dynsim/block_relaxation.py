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
from numba import njit

from dynsim.activations import rho_and_prime
from dynsim.hopfield import HopfieldNetwork
from dynsim.hopfield_kernels import local_field_of_groups
from dynsim.validation import ValidationError
from integrators import CONVERGED, DIVERGED, STEP_LIMIT, IntegrationResult, Trajectory
from integrators._numerics import all_steady, first_bad_sample, open_recording, record, steady_residual

__all__ = ["RELAXATION_SCHEMES", "group_colours", "update_halves", "relax"]

RELAXATION_SCHEMES = ("fixed_point", "block")
"""Names of the relaxation schemes (``SettleOptions(integrator=...)`` accepts them)."""

_RUNNING = 99


# ----------------------------------------------------------------------------- compiled core
@njit(cache=True)
def _refresh_activations(s, act, sizes, free_off, selected, r, rp):
    """rho(s) and rho'(s) of the selected groups, written into ``r`` and ``rp``."""
    every = True
    for g in range(1, sizes.shape[0]):
        every = every and selected[g]
    if every:
        # One pass over the whole state: no column copies.
        rg, rpg = rho_and_prime(s, act)
        r[:, :] = rg
        rp[:, :] = rpg
        return
    for g in range(1, sizes.shape[0]):
        if selected[g]:
            o = free_off[g]
            m = sizes[g]
            rg, rpg = rho_and_prime(np.ascontiguousarray(s[:, o:o + m]), act)
            r[:, o:o + m] = rg
            rp[:, o:o + m] = rpg


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
def relax_batch(s0, theta, sizes, free_off, pre, post, w_off, act, drive, beta, target,
                first, second, max_steps, atol, rtol, stop_at_steady_state, lower, upper, project, max_abs,
                record_every, record_samples):
    """Sweep a batch of Hopfield states to a steady state or the step limit.

    Parameters
    ----------
    s0 : ndarray, shape (batch, n_free)
        Starting states (inside the box when ``project``).
    theta, sizes, free_off, pre, post, w_off, act
        The network (see :mod:`dynsim.hopfield_kernels`).
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
    r, rp = rho_and_prime(y, act)
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
        y_new[:, :] = y
        _update_groups(y, rp, h, sizes, free_off, first, beta, target, lower, upper, project, y_new)
        if has_second:
            _refresh_activations(y_new, act, sizes, free_off, first, r, rp)
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
        _refresh_activations(y, act, sizes, free_off, second if has_second else first, r, rp)

    if record_every > 0 and last_recorded != steps and status != DIVERGED:
        rec_t, rec_y, rec_res, n_rec = record(rec_t, rec_y, rec_res, n_rec, float(steps), y, residual,
                                              record_samples)
    return y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec


# ----------------------------------------------------------------------------- Python boundary
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
          record_samples=None):
    """Relax a batch of Hopfield states by fixed-point or block sweeps.

    :func:`dynsim.phases.settle` calls this for ``SettleOptions(integrator='fixed_point' | 'block')``.

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
    box : (float, float), optional
        Projection box (None: no projection).
    max_abs : float
    record_every : int
        Keep every that many sweeps (0: none); ``t`` counts sweeps.
    record_samples : ndarray of int, optional

    Returns
    -------
    integrators.IntegrationResult
        ``n_steps`` sweeps, ``nfev`` local-field evaluations (one per sweep plus
        the initial one), ``t`` the number of sweeps.
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
    (theta, sizes, free_off, pre, post, w_off, act, drive, beta, target, _clamp) = network.kernel_args(
        drive, beta, target, clamp_output)
    n = s0.shape[1]
    project = box is not None
    lower = np.full(n, box[0] if project else -np.inf)
    upper = np.full(n, box[1] if project else np.inf)
    y0 = np.ascontiguousarray(s0, dtype=np.float64)
    if project:
        y0 = np.clip(y0, lower, upper)
    samples = (np.arange(n_batch, dtype=np.int64) if record_samples is None
               else np.ascontiguousarray(record_samples, dtype=np.int64))
    out = relax_batch(y0, theta, sizes, free_off, pre, post, w_off, act, np.ascontiguousarray(drive),
                      beta, np.ascontiguousarray(target, dtype=np.float64), first, second, int(max_steps),
                      float(atol), float(rtol), bool(stop_at_steady_state), lower, upper, project, float(max_abs),
                      int(record_every), samples)
    y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec = out
    with np.errstate(over="ignore"):
        tolerance = atol + rtol * np.linalg.norm(y, axis=1)
    trajectory = None
    if record_every > 0:
        trajectory = Trajectory(t=rec_t[:n_rec].copy(), y=rec_y[:n_rec].copy(), residual=rec_res[:n_rec].copy(),
                                samples=samples)
    status = int(status)
    return IntegrationResult(
        y=y, t=float(steps), status=status,
        message=_message(status, steps, residual, tolerance, bad_step, bad_sample, stop_at_steady_state),
        n_steps=int(steps), n_accepted=int(steps), n_rejected=0, nfev=int(steps) + 1, residual=residual,
        tolerance=tolerance, diverged_step=int(bad_step), diverged_sample=int(bad_sample),
        trajectory=trajectory, method=scheme)
