"""How close a rule's update comes to the exact gradient, over a grid of ways to run its phases.

For one network and one batch, every point of a grid runs the rule's phases
with the point's settings, reads the update and compares it per parameter
block (and 'all') with the exact gradient of the same network. One helper
serves both families (:func:`sweep_estimates` picks by network); the grid,
its checks and the table are shared, the phases are the family's own:

- **Hopfield networks, EP** (:func:`sweep_ep_estimates`): the free and the
  nudged phase(s) run fixed iteration counts, as in the EP papers (Scellier
  & Bengio 2017 use 20 free / 4 nudged iterations), or to a tolerance when
  ``free_tol`` is swept; the reference is recurrent backprop at a tightly
  converged free state (:func:`reference_gradient`). Grid keys
  (:data:`GRID_KEYS`): ``integrator`` (an ODE integrator, or the relaxation
  schemes ``fixed_point`` and ``block`` of :mod:`dynsim.relax.block_relaxation`,
  whose steps are sweeps and which ignore ``dt``), ``dt``, ``free_steps``,
  ``free_tol``, ``nudged_steps``, ``beta``, ``variant``. Each row holds the
  free phase's largest residual and, per block, the cosine, relative error,
  sign agreement and the one-step normalized RMSE (Ernoult et al. 2019 with
  K = 1: mean over components of |g - g_ref| / max(|g|, |g_ref|)).
- **Predictive coding networks** (:func:`sweep_pc_updates`): supervised
  inference (output clamped to the target, from the feedforward pass) with
  the point's integrator, step, iteration count and output variance; the
  reference is exact backprop (:meth:`PCNetwork.backprop_gradient`). Grid
  keys (:data:`PC_GRID_KEYS`): ``variant`` ('strict', 'fixed_prediction',
  'zil'), ``output_variance`` (sigma_L^2), ``integrator``, ``dt``,
  ``inference_steps`` (a fixed iteration count; ``None`` settles to the
  tolerance instead). A point whose inference diverges (explicit Euler above
  its stability step) stays in the table with status 'diverged' and NaN
  metrics: the comparison shows where the adaptive integrator keeps going.

Every value of a grid is checked, with a message naming its key, before the
first point runs.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] M. Ernoult et al., "Updates of Equilibrium Prop Match Gradients of
       Backprop Through Time in an RNN with Static Input", NeurIPS (2019).
.. [3] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
.. [4] B. Millidge, A. Tschantz, C. L. Buckley, Neural Computation 34(6) (2022).
.. [5] Y. Song et al., NeurIPS (2020) (Z-IL).
.. [6] R. Rosenbaum, PLoS ONE 17(3) (2022) (relative error and cosine per layer).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dynsim.learning.contrastive import EP_VARIANTS, ep_gradient
from dynsim.learning.predictive_coding import PC_NETWORKS, pc_gradient, zil_gradient
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.references.compare import gradient_metrics, normalized_rmse
from dynsim.references.gradients import implicit_gradient
from dynsim.relax.block_relaxation import RELAXATION_SCHEMES
from dynsim.relax.phases import SETTLE_METHODS, SettleOptions, free_phase
from dynsim.validation import NotConvergedWarning, ValidationError, float_array, positive_int, real_scalar

__all__ = ["GRID_KEYS", "DEFAULT_POINT", "PC_GRID_KEYS", "PC_DEFAULT_POINT", "sweep_estimates",
           "sweep_ep_estimates", "sweep_pc_updates", "reference_gradient", "error_norms"]

GRID_KEYS = ("integrator", "dt", "free_steps", "free_tol", "nudged_steps", "beta", "variant")
DEFAULT_POINT = {"integrator": "euler", "dt": 0.2, "free_steps": 200, "free_tol": None, "nudged_steps": 20,
                 "beta": 0.1, "variant": "centered"}
"""Settings of an EP point for the keys a grid does not sweep."""

PC_GRID_KEYS = ("variant", "output_variance", "integrator", "dt", "inference_steps")
PC_DEFAULT_POINT = {"variant": "strict", "output_variance": 1.0, "integrator": "euler", "dt": 0.1,
                    "inference_steps": 200}
"""Settings of a predictive coding point for the keys a grid does not sweep."""

_PC_VARIANTS = ("strict", "fixed_prediction", "zil")
_PC_INTEGRATORS = ("euler", "heun", "rk4", "dopri5")
"""ODE integrators of a predictive coding inference (the relaxation schemes are Hopfield-only)."""


@dataclass(frozen=True)
class _Family:
    """What differs between the two sweeps' grids: the keys, the defaults, and how one value is checked."""

    keys: tuple
    defaults: dict
    variants: tuple
    check_value: Callable
    none_as: float  # a None setting (e.g. no tolerance) in the table's numeric column


def _check_ep_value(key, value):
    name = f"grid[{key!r}] value"
    if key == "integrator":
        if not isinstance(value, str) or value not in SETTLE_METHODS:
            raise ValidationError(f"grid[{key!r}] values must be among {list(SETTLE_METHODS)}, got {value!r}")
    elif key in ("dt", "beta") or key == "free_tol" and value is not None:
        real_scalar(name, value, 0.0, np.inf, low_open=True, high_open=True)
    elif key in ("free_steps", "nudged_steps"):
        positive_int(name, value)


def _check_pc_value(key, value):
    name = f"grid[{key!r}] value"
    if key == "integrator":
        if not isinstance(value, str) or value not in _PC_INTEGRATORS:
            raise ValidationError(f"{name} must be among {list(_PC_INTEGRATORS)}, got {value!r}")
    elif key in ("output_variance", "dt"):
        real_scalar(name, value, 0.0, np.inf, low_open=True, high_open=True)
    elif key == "inference_steps" and value is not None:
        positive_int(name, value)


_EP = _Family(GRID_KEYS, DEFAULT_POINT, EP_VARIANTS, _check_ep_value, np.nan)
_PC = _Family(PC_GRID_KEYS, PC_DEFAULT_POINT, _PC_VARIANTS, _check_pc_value, -1)


def _points(grid, family):
    """Every point of ``grid`` (the defaults completed), all values checked before the first is returned."""
    if not isinstance(grid, dict):
        raise ValidationError(f"grid must be a dict of key to a list of values, got {type(grid).__name__}")
    unknown = set(grid) - set(family.keys)
    if unknown:
        raise ValidationError(f"grid: unknown keys {sorted(unknown)}; the keys are {list(family.keys)}")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValidationError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
    if any(not isinstance(v, str) or v not in family.variants for v in grid.get("variant", [])):
        raise ValidationError(f"grid['variant'] values must be among {list(family.variants)}, got {grid['variant']}")
    for key, values in grid.items():
        for value in values:
            family.check_value(key, value)
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point = dict(family.defaults)
        point.update(zip(keys, combo))
        points.append(point)
    return points


def _run(points, family, run_point, metric_names, blocks, progress):
    """Run every point; a table of the grid columns, ``run_point``'s scalars and per-block metric rows."""
    if progress is not None and not callable(progress):
        raise ValidationError(f"progress must be callable, got {progress!r}")
    rows = {k: [] for k in family.keys}
    for i, point in enumerate(points):
        if progress is not None:
            progress(i, len(points), point)
        scalars, metrics = run_point(point)
        for key in family.keys:
            rows[key].append(family.none_as if point[key] is None else point[key])
        for name, value in scalars.items():
            rows.setdefault(name, []).append(value)
        for name in metric_names:
            rows.setdefault(name, []).append([metrics[b][name] for b in blocks])
    table = {k: np.asarray(v) for k, v in rows.items()}
    for key, values in rows.items():
        if values and isinstance(values[0], str):
            table[key] = np.asarray(values, dtype=str)
    table["blocks"] = blocks
    return table


def sweep_estimates(network, x, target, grid, progress=None, **kwargs):
    """The sweep of ``network``'s family: :func:`sweep_ep_estimates` (Hopfield) or :func:`sweep_pc_updates` (PC).

    ``kwargs`` go to that function (``reference`` and ``seed`` are EP's).
    """
    if isinstance(network, PC_NETWORKS):
        return sweep_pc_updates(network, x, target, grid, progress=progress, **kwargs)
    if isinstance(network, (HopfieldNetwork, ConvHopfieldNetwork)):
        return sweep_ep_estimates(network, x, target, grid, progress=progress, **kwargs)
    raise ValidationError(f"network must be a HopfieldNetwork, a ConvHopfieldNetwork, a PCNetwork or a "
                          f"ConvPCNetwork, got {type(network).__name__}")


# --------------------------------------------------------------------------- equilibrium propagation
def reference_gradient(network, x, target, atol=1e-11, max_steps=1_000_000):
    """Recurrent-backprop gradient at a tightly converged free state; returns (gradient, free PhaseResult)."""
    if isinstance(network, ConvHopfieldNetwork):
        # Block sweeps (a conv net has no ODE path) and conjugate gradients on Hessian-vector products.
        options = SettleOptions(integrator="block", atol=atol, rtol=atol, max_steps=max_steps)
        method = "cg"
    else:
        options = SettleOptions(integrator="rk4", dt=0.5 if network.activation != "hard_sigmoid" else 0.25,
                                atol=atol, rtol=atol, max_steps=max_steps)
        method = "dense"
    free = free_phase(network, x, target=target, options=options)
    if not free.converged:
        raise RuntimeError(f"the reference free phase did not converge: {free.integration.message}")
    return implicit_gradient(network, x, target, free, method=method).gradient, free


def _phase_options(point, phase):
    # dopri5 and the relaxation schemes have no fixed step.
    dt = None if point["integrator"] == "dopri5" or point["integrator"] in RELAXATION_SCHEMES else point["dt"]
    if phase == "free" and point["free_tol"] is not None:
        return SettleOptions(integrator=point["integrator"], dt=dt, atol=point["free_tol"], rtol=point["free_tol"],
                             max_steps=1_000_000)
    steps = point["free_steps"] if phase == "free" else point["nudged_steps"]
    return SettleOptions(integrator=point["integrator"], dt=dt, max_steps=int(steps), stop_at_steady_state=False)


def sweep_ep_estimates(network, x, target, grid, reference=None, seed=0, progress=None):
    """Run an EP grid; returns a table (dict of equal-length columns) ready for ``TrajectoryLog.record_table``.

    Parameters
    ----------
    network : HopfieldNetwork or ConvHopfieldNetwork
        (a convolutional one relaxes with the schemes 'block' or 'fixed_point' only)
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
    if not isinstance(network, (HopfieldNetwork, ConvHopfieldNetwork)):
        raise ValidationError(f"network must be a HopfieldNetwork or a ConvHopfieldNetwork (EP against recurrent "
                              f"backprop), got {type(network).__name__}")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    points = _points(grid, _EP)
    if progress is not None and not callable(progress):
        raise ValidationError(f"progress must be callable, got {progress!r}")
    if reference is None:
        reference, _ = reference_gradient(network, x, target)
    else:
        reference = float_array("reference", reference, shape=(network.n_params,))
    blocks = list(network.parameter_blocks()) + ["all"]
    rng = np.random.default_rng(seed)

    def run_point(point):
        free = free_phase(network, x, target=target, options=_phase_options(point, "free"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)  # unconverged points are the subject here
            est = ep_gradient(network, x, target, point["beta"], point["variant"], free=free,
                              nudged_options=_phase_options(point, "nudged"), rng=rng)
        metrics = gradient_metrics(network, est.gradient, reference)
        rmse = normalized_rmse(network, est.gradient[None], reference[None])
        for b in blocks:
            metrics[b]["normalized_rmse"] = rmse[b]
        scalars = {"free_residual": float(free.integration.residual.max()),
                   "free_steps_taken": free.integration.n_steps,
                   "nudged_steps_taken": max(p.integration.n_steps for p in est.phases.values())}
        return scalars, metrics

    return _run(points, _EP, run_point, ("cosine", "relative_error", "sign_agreement", "normalized_rmse"), blocks,
                progress)


# --------------------------------------------------------------------------- predictive coding
def _inference_options(point):
    dt = None if point["integrator"] == "dopri5" else point["dt"]
    steps = point["inference_steps"]
    if steps is None:
        # A cap well above what a stable step needs: an oscillating Euler run stops there, not hours later.
        return SettleOptions(integrator=point["integrator"], dt=dt, atol=1e-10, rtol=1e-10, max_steps=50_000,
                             not_converged="ignore")  # unsettled points are part of what the sweep shows
    return SettleOptions(integrator=point["integrator"], dt=dt, max_steps=int(steps), stop_at_steady_state=False)


def sweep_pc_updates(network, x, target, grid, progress=None):
    """Run a predictive coding grid; returns a table (dict of equal-length columns) for ``record_table``.

    Parameters
    ----------
    network : PCNetwork or ConvPCNetwork
        Its parameters are used as they are; its variances are set per point
        (all 1 but the output's) and restored afterwards.
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    grid : dict
        Key -> list of values, keys among :data:`PC_GRID_KEYS`.
    progress : callable, optional
        ``progress(i, n, point)`` before each point.

    Returns
    -------
    dict
        The grid columns, ``status``, ``steps_taken``, ``residual`` and per
        block (last 'all') ``cosine`` and ``relative_error`` of shape
        (rows, n_blocks); ``blocks`` names them.
    """
    if not isinstance(network, PC_NETWORKS):
        raise ValidationError(f"network must be a PCNetwork or a ConvPCNetwork, got {type(network).__name__}")
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    points = _points(grid, _PC)
    reference = network.backprop_gradient(x, target)
    blocks = list(network.parameter_blocks()) + ["all"]
    n_layers = len(network.group_sizes) - 1

    def run_point(point):
        variances = np.ones(n_layers)
        variances[-1] = 1.0 if point["variant"] == "zil" else point["output_variance"]
        network.variances = variances
        try:
            if point["variant"] == "zil":
                est = zil_gradient(network, x, target)
            else:
                est = pc_gradient(network, x, target, point["variant"], options=_inference_options(point))
        except RuntimeError as exc:
            if "diverged" not in str(exc):
                raise
            nan = {b: {"cosine": np.nan, "relative_error": np.nan} for b in blocks}
            return {"status": "diverged", "steps_taken": -1, "residual": np.nan}, nan
        it = est.inference.integration
        return ({"status": it.status_name, "steps_taken": it.n_steps, "residual": float(it.residual.max())},
                gradient_metrics(network, est.gradient, reference))

    saved = network.variances.copy()
    try:
        return _run(points, _PC, run_point, ("cosine", "relative_error"), blocks, progress)
    finally:
        network.variances = saved


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
