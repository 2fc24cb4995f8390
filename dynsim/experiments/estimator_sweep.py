"""Sweep how EP's gradient estimate depends on iteration counts, beta, nudging and integrator.

For one network and one batch, every point of a grid settles the free phase
and the nudged phase(s) with the point's settings, reads the EP estimate and
compares it per parameter block with the recurrent-backprop gradient taken at
a tightly converged free state (:func:`dynsim.references.gradients.implicit_gradient`).
The free and nudged phases run fixed iteration counts, as in the EP papers
(Scellier & Bengio 2017 use 20 free / 4 nudged iterations), or to a
tolerance when ``free_tol`` is swept.

Grid keys: ``integrator`` (an ODE integrator, or the relaxation schemes
``fixed_point`` and ``block`` of :mod:`dynsim.relax.block_relaxation`, whose steps
are sweeps and which ignore ``dt``), ``dt``, ``free_steps``, ``free_tol``,
``nudged_steps``, ``beta``, ``variant``. Each point yields a row with the
point's settings, the free phase's largest residual and, per block (and
'all'), the cosine, relative error, sign agreement and the one-step
normalized RMSE (Ernoult et al. 2019 with K = 1: mean over components of
|g - g_ref| / max(|g|, |g_ref|)).

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] M. Ernoult et al., "Updates of Equilibrium Prop Match Gradients of
       Backprop Through Time in an RNN with Static Input", NeurIPS (2019).
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from dynsim.validation import NotConvergedWarning
from dynsim.references.gradients import implicit_gradient
from dynsim.relax.block_relaxation import RELAXATION_SCHEMES
from dynsim.references.compare import gradient_metrics, normalized_rmse
from dynsim.learning.contrastive import EP_VARIANTS, ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SETTLE_METHODS, SettleOptions, free_phase
from dynsim.validation import ValidationError, float_array, positive_int, real_scalar

__all__ = ["GRID_KEYS", "DEFAULT_POINT", "sweep_ep_estimates", "reference_gradient"]

GRID_KEYS = ("integrator", "dt", "free_steps", "free_tol", "nudged_steps", "beta", "variant")
DEFAULT_POINT = {"integrator": "euler", "dt": 0.2, "free_steps": 200, "free_tol": None, "nudged_steps": 20,
                 "beta": 0.1, "variant": "centered"}
"""Settings of a point for the keys a grid does not sweep."""


def reference_gradient(network, x, target, atol=1e-11, max_steps=1_000_000):
    """Recurrent-backprop gradient at a tightly converged free state; returns (gradient, free PhaseResult)."""
    options = SettleOptions(integrator="rk4", dt=0.5 if network.activation != "hard_sigmoid" else 0.25,
                            atol=atol, rtol=atol, max_steps=max_steps)
    free = free_phase(network, x, target=target, options=options)
    if not free.converged:
        raise RuntimeError(f"the reference free phase did not converge: {free.integration.message}")
    return implicit_gradient(network, x, target, free).gradient, free


def _points(grid):
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        raise ValidationError(f"grid: unknown keys {sorted(unknown)}; the keys are {list(GRID_KEYS)}")
    keys = list(grid)
    for key in keys:
        values = grid[key]
        if not isinstance(values, (list, tuple)) or not values:
            raise ValidationError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
    if "variant" in grid and any(not isinstance(v, str) or v not in EP_VARIANTS for v in grid["variant"]):
        raise ValidationError(f"grid['variant'] values must be among {list(EP_VARIANTS)}, got {grid['variant']}")
    # Every value is checked before the first point runs, with a message naming its key.
    for key in keys:
        for value in grid[key]:
            _check_value(key, value)
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(DEFAULT_POINT)
        point.update(zip(keys, combo))
        yield point


def _check_value(key, value):
    name = f"grid[{key!r}]"
    if key == "integrator":
        if not isinstance(value, str) or value not in SETTLE_METHODS:
            raise ValidationError(f"{name} values must be among {list(SETTLE_METHODS)}, got {value!r}")
    elif key in ("dt", "beta") or key == "free_tol" and value is not None:
        real_scalar(f"{name} value", value, 0.0, np.inf, low_open=True, high_open=True)
    elif key in ("free_steps", "nudged_steps"):
        positive_int(f"{name} value", value)


def _phase_options(point, phase):
    # dopri5 and the relaxation schemes have no fixed step.
    dt = None if point["integrator"] == "dopri5" or point["integrator"] in RELAXATION_SCHEMES else point["dt"]
    if phase == "free" and point["free_tol"] is not None:
        return SettleOptions(integrator=point["integrator"], dt=dt, atol=point["free_tol"], rtol=point["free_tol"],
                             max_steps=1_000_000)
    steps = point["free_steps"] if phase == "free" else point["nudged_steps"]
    return SettleOptions(integrator=point["integrator"], dt=dt, max_steps=int(steps), stop_at_steady_state=False)


def _one_step_rmse(network, estimate, reference):
    return normalized_rmse(network, estimate[None], reference[None])


def sweep_ep_estimates(network, x, target, grid, reference=None, seed=0, progress=None):
    """Run the grid; returns a table (dict of equal-length columns) ready for ``TrajectoryLog.record_table``.

    Parameters
    ----------
    network : HopfieldNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    grid : dict
        Key -> list of values, keys among :data:`GRID_KEYS`.
    reference : ndarray, shape (n_params,), optional
        The reference gradient (default: :func:`reference_gradient`).
    seed : int
        Random sign of the 'random' variant.
    progress : callable, optional
        ``progress(i, n, point)`` before each point.

    Returns
    -------
    dict
        Columns: each grid key; ``free_residual``, ``free_steps_taken``,
        ``nudged_steps_taken``; ``cosine``, ``relative_error``,
        ``sign_agreement``, ``normalized_rmse`` of shape (rows, n_blocks);
        ``blocks`` lists the block names (last one 'all').
    """
    if not isinstance(network, HopfieldNetwork):
        raise ValidationError(f"network must be a HopfieldNetwork (EP against recurrent backprop), "
                              f"got {type(network).__name__}")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    if not isinstance(grid, dict):
        raise ValidationError(f"grid must be a dict of key to a list of values, got {type(grid).__name__}")
    points = list(_points(grid))
    if progress is not None and not callable(progress):
        raise ValidationError(f"progress must be callable, got {progress!r}")
    if reference is None:
        reference, _ = reference_gradient(network, x, target)
    else:
        reference = float_array("reference", reference, shape=(network.n_params,))
    blocks = list(network.parameter_blocks()) + ["all"]
    rows = {k: [] for k in GRID_KEYS}
    rows.update({k: [] for k in ("free_residual", "free_steps_taken", "nudged_steps_taken", "cosine",
                                 "relative_error", "sign_agreement", "normalized_rmse")})
    rng = np.random.default_rng(seed)
    for i, point in enumerate(points):
        if progress is not None:
            progress(i, len(points), point)
        free = free_phase(network, x, target=target, options=_phase_options(point, "free"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)  # unconverged points are the subject here
            est = ep_gradient(network, x, target, point["beta"], point["variant"], free=free,
                              nudged_options=_phase_options(point, "nudged"), rng=rng)
        metrics = gradient_metrics(network, est.gradient, reference)
        rmse = _one_step_rmse(network, est.gradient, reference)
        for key in GRID_KEYS:
            value = point[key]
            rows[key].append(np.nan if value is None else value)
        rows["free_residual"].append(float(free.integration.residual.max()))
        rows["free_steps_taken"].append(free.integration.n_steps)
        rows["nudged_steps_taken"].append(max(p.integration.n_steps for p in est.phases.values()))
        for name in ("cosine", "relative_error", "sign_agreement"):
            rows[name].append([metrics[b][name] for b in blocks])
        rows["normalized_rmse"].append([rmse[b] for b in blocks])
    table = {k: np.asarray(v) for k, v in rows.items()}
    table["integrator"] = np.asarray(rows["integrator"], dtype=str)
    table["variant"] = np.asarray(rows["variant"], dtype=str)
    table["blocks"] = blocks
    return table
