"""Distance of predictive coding's updates to backprop, as a function of how inference is run.

Every point of a grid runs supervised inference (output clamped to the
target, from the feedforward pass) with the point's integrator, step,
iteration count and output variance, reads the PC update and compares it per
parameter block with exact backprop (:meth:`PCNetwork.backprop_gradient`).
A point whose inference diverges (explicit Euler above its stability step)
is kept in the table with status 'diverged' and NaN metrics: the comparison
shows where the adaptive integrator keeps going.

Grid keys: ``variant`` ('strict', 'fixed_prediction', 'zil'),
``output_variance`` (sigma_L^2), ``integrator``, ``dt``,
``inference_steps`` (a fixed iteration count; ``None`` settles to the
tolerance instead).

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, Neural Computation 34(6) (2022).
.. [3] Y. Song et al., NeurIPS (2020) (Z-IL).
.. [4] R. Rosenbaum, PLoS ONE 17(3) (2022) (relative error and cosine per layer).
"""
from __future__ import annotations

import itertools

import numpy as np

from dynsim.references.compare import gradient_metrics
from dynsim.networks.pc import PCNetwork
from dynsim.learning.predictive_coding import pc_gradient, zil_gradient
from dynsim.relax.phases import SettleOptions
from dynsim.validation import ValidationError, positive_int, real_scalar

__all__ = ["PC_GRID_KEYS", "PC_DEFAULT_POINT", "sweep_pc_updates", "error_norms"]

PC_GRID_KEYS = ("variant", "output_variance", "integrator", "dt", "inference_steps")
PC_DEFAULT_POINT = {"variant": "strict", "output_variance": 1.0, "integrator": "euler", "dt": 0.1,
                    "inference_steps": 200}
_VARIANTS = ("strict", "fixed_prediction", "zil")


def _points(grid):
    unknown = set(grid) - set(PC_GRID_KEYS)
    if unknown:
        raise ValidationError(f"grid: unknown keys {sorted(unknown)}; the keys are {list(PC_GRID_KEYS)}")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValidationError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
    if any(not isinstance(v, str) or v not in _VARIANTS for v in grid.get("variant", [])):
        raise ValidationError(f"grid['variant'] values must be among {list(_VARIANTS)}, got {grid['variant']}")
    # Every value is checked before the first point runs, with a message naming its key.
    for key, values in grid.items():
        for value in values:
            _check_value(key, value)
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(PC_DEFAULT_POINT)
        point.update(zip(keys, combo))
        yield point


_INTEGRATORS = ("euler", "heun", "rk4", "dopri5")
"""ODE integrators of a predictive coding inference (the relaxation schemes are Hopfield-only)."""


def _check_value(key, value):
    name = f"grid[{key!r}] value"
    if key == "integrator":
        if not isinstance(value, str) or value not in _INTEGRATORS:
            raise ValidationError(f"{name} must be among {list(_INTEGRATORS)}, got {value!r}")
    elif key in ("output_variance", "dt"):
        real_scalar(name, value, 0.0, np.inf, low_open=True, high_open=True)
    elif key == "inference_steps" and value is not None:
        positive_int(name, value)


def _options(point):
    dt = None if point["integrator"] == "dopri5" else point["dt"]
    steps = point["inference_steps"]
    if steps is None:
        # A cap well above what a stable step needs: an oscillating Euler run stops there, not hours later.
        return SettleOptions(integrator=point["integrator"], dt=dt, atol=1e-10, rtol=1e-10, max_steps=50_000,
                             not_converged="ignore")  # unsettled points are part of what the sweep shows
    return SettleOptions(integrator=point["integrator"], dt=dt, max_steps=int(steps), stop_at_steady_state=False)


def sweep_pc_updates(network, x, target, grid, progress=None):
    """Run the grid; returns a table (dict of equal-length columns) for ``TrajectoryLog.record_table``.

    Parameters
    ----------
    network : PCNetwork
        Its parameters are used as they are; its variances are set per point
        (all 1 but the output's) and restored afterwards.
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    grid : dict
        Key -> list of values, keys among :data:`PC_GRID_KEYS`.

    Returns
    -------
    dict
        The grid columns, ``status``, ``steps_taken``, ``residual`` and per
        block (last 'all') ``cosine`` and ``relative_error`` of shape
        (rows, n_blocks); ``blocks`` names them.
    """
    if not isinstance(network, PCNetwork):
        raise ValidationError(f"network must be a PCNetwork, got {type(network).__name__}")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    if not isinstance(grid, dict):
        raise ValidationError(f"grid must be a dict of key to a list of values, got {type(grid).__name__}")
    list(_points(grid))  # checks every value before anything runs
    reference = network.backprop_gradient(x, target)
    blocks = list(network.parameter_blocks()) + ["all"]
    rows = {k: [] for k in PC_GRID_KEYS + ("status", "steps_taken", "residual", "cosine", "relative_error")}
    saved = network.variances.copy()
    L = len(network.group_sizes) - 1
    points = list(_points(grid))
    try:
        for i, point in enumerate(points):
            if progress is not None:
                progress(i, len(points), point)
            variances = np.ones(L)
            variances[-1] = 1.0 if point["variant"] == "zil" else point["output_variance"]
            network.variances = variances
            try:
                if point["variant"] == "zil":
                    est = zil_gradient(network, x, target)
                else:
                    est = pc_gradient(network, x, target, point["variant"], options=_options(point))
                metrics = gradient_metrics(network, est.gradient, reference)
                it = est.inference.integration
                status, steps, residual = it.status_name, it.n_steps, float(it.residual.max())
            except RuntimeError as exc:
                if "diverged" not in str(exc):
                    raise
                metrics = {b: {"cosine": np.nan, "relative_error": np.nan} for b in blocks}
                status, steps, residual = "diverged", -1, np.nan
            for key in PC_GRID_KEYS:
                value = point[key]
                rows[key].append(-1 if value is None else value)
            rows["status"].append(status)
            rows["steps_taken"].append(steps)
            rows["residual"].append(residual)
            rows["cosine"].append([metrics[b]["cosine"] for b in blocks])
            rows["relative_error"].append([metrics[b]["relative_error"] for b in blocks])
    finally:
        network.variances = saved
    table = {k: np.asarray(v) for k, v in rows.items()}
    for key in ("variant", "integrator", "status"):
        table[key] = np.asarray(rows[key], dtype=str)
    table["blocks"] = blocks
    return table


def error_norms(network, x, phase):
    """Norms of each layer's prediction error along a recorded inference.

    Parameters
    ----------
    network : PCNetwork
    x : ndarray, shape (batch, n_input)
        The clamped input of the relaxation.
    phase : PhaseResult
        A relaxation recorded with ``record_every > 0``.

    Returns
    -------
    dict
        ``t`` (m,) and, per layer, ``eps_<layer>`` (m, n_recorded): ||eps_l|| per recorded sample.
    """
    traj = phase.integration.trajectory
    if traj is None:
        raise ValidationError("the phase has no recorded trajectory: settle it with record_every > 0")
    xs = network.check_input(x)[traj.samples]
    out = {"t": traj.t}
    norms = {name: np.empty((traj.t.size, traj.samples.size)) for name in network.group_names[1:]}
    for k in range(traj.t.size):
        for name, eps in network.errors(xs, traj.y[k]).items():
            norms[name][k] = np.linalg.norm(eps, axis=1)
    out.update({f"eps_{name}": v for name, v in norms.items()})
    return out
