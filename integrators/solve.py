"""The one public call: integrate a batch of states to a steady state or a limit."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from integrators.specialize import VectorField, drivers_for
from integrators.status import CONVERGED, DIVERGED, STATUS_NAMES, STEP_LIMIT, STEP_TOO_SMALL, TIME_LIMIT
from integrators.tableaus import DOPRI5, EULER, HEUN, RK4, ButcherTableau

__all__ = ["METHODS", "ArgumentError", "ArgumentTypeError", "IntegrationResult", "Trajectory", "integrate",
           "evaluate_field", "finish_result"]


class ArgumentError(ValueError):
    """An argument of :func:`integrate` has the wrong type, shape or value; the message names it.

    ``dynsim.validation.ValidationError`` derives from it, so one ``except``
    clause catches bad arguments anywhere from the integrators up.
    """


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of :func:`integrate` has the wrong type (also a ``TypeError``)."""

# Step-size control constants (scipy.integrate's RK45 values [HNW93, Sec. II.4]).
SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# PI controller weight of the previous error (Hairer's DOPRI5 code uses 0.04).
PI_BETA = 0.04


@dataclass(frozen=True)
class _Method:
    tableau: ButcherTableau
    needs_bounds: bool = False


METHODS = {
    "euler": _Method(EULER),
    "projected_euler": _Method(EULER, needs_bounds=True),
    "heun": _Method(HEUN),
    "rk4": _Method(RK4),
    "dopri5": _Method(DOPRI5),
}
"""Integrator names accepted by :func:`integrate`."""


@dataclass
class Trajectory:
    """States sampled every ``record_every`` accepted steps (and at the end).

    Attributes
    ----------
    t : ndarray, shape (m,)
    y : ndarray, shape (m, n_recorded, n)
    residual : ndarray, shape (m, n_recorded)
        Norm of the (projected) vector field at each sampled state.
    samples : ndarray of int, shape (n_recorded,)
        Batch indices of the recorded samples.
    """

    t: np.ndarray
    y: np.ndarray
    residual: np.ndarray
    samples: np.ndarray


@dataclass
class IntegrationResult:
    """Outcome of :func:`integrate`.

    Attributes
    ----------
    y : ndarray, shape (batch, n)
        Final state; after a divergence, the last finite state before it.
    t : float
        Final time.
    status : int
        One of :mod:`integrators.status`; ``status_name`` spells it.
    message : str
    n_steps : int
        Step attempts (accepted plus rejected).
    n_accepted, n_rejected : int
    nfev : int
        Vector field evaluations (each evaluates the whole batch).
    residual : ndarray, shape (batch,)
        Final ``||f(y)||`` per sample (projected when bounds are active).
    tolerance : ndarray, shape (batch,)
        ``atol + rtol * ||y||`` per sample.
    diverged_step, diverged_sample : int
        Where a divergence happened; -1 otherwise.
    trajectory : Trajectory or None
    method : str
    """

    y: np.ndarray
    t: float
    status: int
    message: str
    n_steps: int
    n_accepted: int
    n_rejected: int
    nfev: int
    residual: np.ndarray
    tolerance: np.ndarray
    diverged_step: int
    diverged_sample: int
    trajectory: Trajectory | None
    method: str

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]

    @property
    def success(self) -> bool:
        """True when the steady state was reached."""
        return self.status == CONVERGED

    @property
    def converged(self) -> np.ndarray:
        """Per-sample steady-state flags, shape (batch,)."""
        return self.residual <= self.tolerance


def _real(name, value):
    # Text and booleans convert to floats silently ("0.1", True): a caller's mistake, not a number.
    if isinstance(value, (str, bytes, bool, np.bool_)) or not np.isscalar(value) and np.ndim(value) != 0:
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}") from None


def _positive(name, value, allow_inf=False):
    value = _real(name, value)
    if not (value > 0) or (math.isinf(value) and not allow_inf) or math.isnan(value):
        bound = "(0, inf]" if allow_inf else "(0, inf)"
        raise ArgumentError(f"{name} must lie in {bound}, got {value!r}")
    return value


def _count(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _bounds(name, value, n, fill, dtype):
    if value is None:
        return np.full(n, fill, dtype=dtype)
    raw = np.asarray(value)
    if raw.dtype.kind not in "fiu":
        raise ArgumentTypeError(f"{name} must be a real number or an array of them, got dtype {raw.dtype}")
    arr = raw.astype(dtype)
    if arr.ndim == 0:
        arr = np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ArgumentError(f"{name} must be a scalar or have shape ({n},), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ArgumentError(f"{name} must not contain NaN")
    return np.ascontiguousarray(arr)


def _message(status, steps, t, residual, tolerance, bad_step, bad_sample, stop_at_steady_state):
    if status == CONVERGED:
        return f"steady state reached by every sample after {steps} steps (t={t:.6g})"
    if status == STEP_LIMIT:
        tail = ""
        if stop_at_steady_state:  # only then is the worst sample news (a fixed iteration count stops here anyway)
            with np.errstate(all="ignore"):
                worst = int(np.nanargmax(residual / np.maximum(tolerance, np.finfo(float).tiny))) \
                    if np.isfinite(residual).any() else 0
            tail = (f"; largest residual {residual[worst]:.3e} (sample {worst}) against tolerance "
                    f"{tolerance[worst]:.3e}")
        return f"step limit reached after {steps} steps (t={t:.6g}){tail}"
    if status == TIME_LIMIT:
        return f"time limit t_max={t:.6g} reached after {steps} steps"
    if status == DIVERGED:
        return (f"diverged at step {bad_step} in sample {bad_sample}: a state or vector field value "
                f"became non-finite or exceeded max_abs, or its norm overflowed; y holds the last finite "
                f"state (t={t:.6g})")
    if status == STEP_TOO_SMALL:
        return f"step size fell below the time resolution at t={t:.6g} after {steps} steps"
    return f"unknown status {status}"


def integrate(field, y0, args=(), *, method="dopri5", dt=None, t0=0.0, t_max=math.inf,
              max_steps=10_000, atol=1e-6, rtol=1e-6, error_atol=None, error_rtol=None,
              stop_at_steady_state=True,
              lower=None, upper=None, max_abs=1e8, record_every=0, record_samples=None,
              first_step=None, max_step=math.inf, pi_beta=PI_BETA, safety=SAFETY,
              min_factor=MIN_FACTOR, max_factor=MAX_FACTOR) -> IntegrationResult:
    """Integrate ``dy/dt = f(t, y, args)`` for a batch of states until a steady state or a limit.

    Parameters
    ----------
    field : VectorField
        The compiled vector field.
    y0 : array_like, shape (batch, n)
        Initial states (float64, or float32 for speed).
    args : tuple
        Parameters handed unchanged to the vector field (arrays and scalars).
    method : {'euler', 'projected_euler', 'heun', 'rk4', 'dopri5'}
        Fixed-step methods need ``dt``; ``projected_euler`` needs ``lower``
        and/or ``upper`` (Scellier & Bengio 2017); ``dopri5`` is adaptive.
    dt : float, optional
        Step of the fixed-step methods (ignored by ``dopri5``).
    t0, t_max : float
        Start time and time limit (``inf`` for none).
    max_steps : int
        Limit on step attempts (accepted plus rejected).
    atol, rtol : float
        Steady state when ``||f(y_b)|| <= atol + rtol * ||y_b||`` for every
        sample b (Euclidean norms over the n components).
    error_atol, error_rtol : float, optional
        Local error tolerances of ``dopri5`` (scipy's meaning: per component,
        RMS norm). By default ten times tighter than the steady-state test,
        in the same RMS units: ``0.1 * atol / sqrt(n)`` and ``0.1 * rtol``.
        Equal tolerances would not do: near equilibrium the controller grows
        the step to the method's stability limit, where the slowest mode
        neither grows nor decays, and the residual then stalls at the level of
        the local error tolerance.
    stop_at_steady_state : bool
        False runs to the step or time limit (fixed iteration counts).
    lower, upper : float or array_like, shape (n,), optional
        Box bounds; when given, every method projects its step onto the box.
    max_abs : float
        A state or field entry above this magnitude is reported as divergence.
    record_every : int
        Sample the trajectory every that many accepted steps (0: do not record).
    record_samples : array_like of int, optional
        Batch indices to record (default: all).
    first_step, max_step, pi_beta, safety, min_factor, max_factor : float
        Step-size control of ``dopri5``; ``first_step=None`` selects it
        automatically and ``pi_beta=0`` reproduces ``scipy.integrate.RK45``.

    Returns
    -------
    IntegrationResult

    References
    ----------
    .. [1] E. Hairer, S. P. Norsett, G. Wanner, "Solving Ordinary Differential
           Equations I", Springer (1993), Sec. II.4 (step size control).
    .. [2] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
           Neurosci. 11:24 (2017) (projected Euler).
    """
    if not isinstance(field, VectorField):
        raise ArgumentTypeError(f"field must be an integrators.VectorField, got {type(field).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise ArgumentError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    spec = METHODS[method]
    try:
        y0 = np.asarray(y0)
    except ValueError as exc:  # ragged nested lists
        raise ArgumentTypeError(f"y0 must be a real float array of shape (batch, n): {exc}") from None
    if y0.dtype not in (np.float64, np.float32):
        if y0.dtype.kind not in "iu":
            raise ArgumentTypeError(f"y0 must be a real float array, got dtype {y0.dtype}")
        y0 = y0.astype(np.float64)
    if y0.ndim != 2 or y0.shape[0] == 0 or y0.shape[1] == 0:
        raise ArgumentError(f"y0 must have shape (batch, n) with batch, n >= 1, got shape {y0.shape}")
    if not np.isfinite(y0).all():
        bad = np.argwhere(~np.isfinite(y0))[0].tolist()
        raise ArgumentError(f"y0 must be finite (it holds NaN or inf), found {y0[tuple(bad)]} at index {bad}")
    y0 = np.ascontiguousarray(y0)
    n_batch, n = y0.shape
    atol = _positive("atol", atol)
    rtol = _positive("rtol", rtol)
    max_abs = _positive("max_abs", max_abs, allow_inf=True)
    t0 = _real("t0", t0)
    if not math.isfinite(t0):
        raise ArgumentError(f"t0 must be finite, got {t0}")
    t_max = _real("t_max", t_max)
    if not t_max > t0:
        raise ArgumentError(f"t_max must be greater than t0={t0}, got {t_max}")
    max_steps = _count("max_steps", max_steps, 1)
    record_every = _count("record_every", record_every, 0)
    if not isinstance(args, tuple):
        raise ArgumentTypeError(f"args must be a tuple, got {type(args).__name__}")
    if not isinstance(stop_at_steady_state, (bool, np.bool_)):
        raise ArgumentTypeError(f"stop_at_steady_state must be a bool, got {stop_at_steady_state!r}")
    if record_samples is None:
        samples = np.arange(n_batch, dtype=np.int64)
    else:
        samples = np.asarray(record_samples)
        if samples.ndim != 1 or samples.dtype.kind not in "iu":
            raise ArgumentError("record_samples must be a 1-D array of sample indices")
        if samples.size and (samples.min() < 0 or samples.max() >= n_batch):
            raise ArgumentError(f"record_samples must lie in [0, {n_batch - 1}], got {samples.tolist()}")
        samples = np.ascontiguousarray(samples, dtype=np.int64)
    if spec.needs_bounds and lower is None and upper is None:
        raise ArgumentError(f"method {method!r} needs lower and/or upper bounds")
    lo = _bounds("lower", lower, n, -np.inf, y0.dtype)
    hi = _bounds("upper", upper, n, np.inf, y0.dtype)
    if (lo > hi).any():
        raise ArgumentError("lower must not exceed upper")
    project = lower is not None or upper is not None
    if project:
        y0 = np.clip(y0, lo, hi)

    drivers = drivers_for(field)
    tab = spec.tableau
    A, b, c = (x.astype(y0.dtype) for x in (tab.A, tab.b, tab.c))
    if tab.adaptive:
        err_atol = 0.1 * atol / math.sqrt(n) if error_atol is None else _positive("error_atol", error_atol)
        err_rtol = 0.1 * rtol if error_rtol is None else _positive("error_rtol", error_rtol)
        h_first = 0.0 if first_step is None else _positive("first_step", first_step)
        max_step = _positive("max_step", max_step, allow_inf=True)
        pi_beta, safety, min_factor, max_factor = (
            _real(name, value) for name, value in (("pi_beta", pi_beta), ("safety", safety),
                                                   ("min_factor", min_factor), ("max_factor", max_factor)))
        for name, value, valid in (("pi_beta", pi_beta, 0 <= pi_beta < 0.2),
                                   ("safety", safety, 0 < safety <= 1),
                                   ("min_factor", min_factor, 0 < min_factor < 1),
                                   ("max_factor", max_factor, math.inf > max_factor > 1)):
            if not valid:
                raise ArgumentError(f"{name}={value!r} is out of range (pi_beta in [0, 0.2), "
                                 "safety in (0, 1], min_factor in (0, 1), max_factor > 1)")
        out = drivers.embedded_rk(
            y0, t0, h_first, int(max_steps), t_max, atol, rtol, err_atol, err_rtol, bool(stop_at_steady_state),
            A, b, c, tab.b_error.astype(y0.dtype), tab.error_order, tab.fsal,
            float(safety), float(min_factor), float(max_factor), float(pi_beta), max_step,
            lo, hi, project, max_abs, int(record_every), samples, args)
        (y, t, status, n_acc, n_rej, nfev, residual, bad_step, bad_sample,
         rec_t, rec_y, rec_res, n_rec) = out
    else:
        if dt is None:
            raise ArgumentError(f"method {method!r} is fixed-step: give dt > 0")
        dt = _positive("dt", dt)
        out = drivers.explicit_rk(
            y0, t0, dt, int(max_steps), t_max, atol, rtol, bool(stop_at_steady_state),
            A, b, c, lo, hi, project, max_abs, int(record_every), samples, args)
        (y, t, status, n_acc, nfev, residual, bad_step, bad_sample,
         rec_t, rec_y, rec_res, n_rec) = out
        n_rej = 0
    trajectory = None
    if record_every > 0:
        trajectory = Trajectory(t=rec_t[:n_rec].copy(), y=rec_y[:n_rec].copy(),
                                residual=rec_res[:n_rec].copy(), samples=samples)
    return finish_result(y, t, status, n_acc, n_rej, nfev, residual, bad_step, bad_sample, atol=atol, rtol=rtol,
                         stop_at_steady_state=stop_at_steady_state, method=method, trajectory=trajectory)


def finish_result(y, t, status, n_accepted, n_rejected, nfev, residual, bad_step, bad_sample, *, atol, rtol,
                  stop_at_steady_state, method, trajectory=None) -> IntegrationResult:
    """The :class:`IntegrationResult` of a driver's raw output: tolerances, the overflow check, the message.

    Shared by :func:`integrate` and by specialised drivers outside this
    package that reproduce one of its methods, so that both report alike.

    Parameters
    ----------
    y : ndarray, shape (batch, n)
        Final states.
    t : float
    status : int
        A driver status (:mod:`integrators.status`).
    n_accepted, n_rejected, nfev : int
    residual : ndarray, shape (batch,)
        Norm of the (projected) vector field at ``y``.
    bad_step, bad_sample : int
        Where a divergence happened (-1 if none).
    atol, rtol : float
        The steady-state tolerances.
    stop_at_steady_state : bool
    method : str
    trajectory : Trajectory, optional
    """
    with np.errstate(over="ignore"):
        tolerance = atol + rtol * np.linalg.norm(y, axis=1)
    if status != DIVERGED:
        # The drivers stop where a norm overflows; this keeps that promise for any state they return:
        # an infinite residual or tolerance would make `inf <= inf` pass for a steady state.
        unfinite = ~(np.isfinite(residual) & np.isfinite(tolerance))
        if unfinite.any():
            status, bad_step, bad_sample = DIVERGED, n_accepted + n_rejected, int(np.argmax(unfinite))
    steps = n_accepted + n_rejected
    return IntegrationResult(
        y=y, t=float(t), status=int(status),
        message=_message(status, steps, t, residual, tolerance, bad_step, bad_sample, stop_at_steady_state),
        n_steps=int(steps), n_accepted=int(n_accepted), n_rejected=int(n_rejected), nfev=int(nfev),
        residual=residual, tolerance=tolerance, diverged_step=int(bad_step),
        diverged_sample=int(bad_sample), trajectory=trajectory, method=method)


def evaluate_field(field, y, args=(), t=0.0):
    """The vector field ``f(t, y, args)`` at a batch of states, shape (batch, n).

    Evaluated by the same compiled function the drivers call (one call, the
    whole batch); used to explain a result, e.g. which component of a
    diverged sample was running away.

    Parameters
    ----------
    field : VectorField
    y : array_like, shape (batch, n)
    args : tuple
    t : float
    """
    if not isinstance(field, VectorField):
        raise ArgumentTypeError(f"field must be an integrators.VectorField, got {type(field).__name__}")
    if not isinstance(args, tuple):
        raise ArgumentTypeError(f"args must be a tuple, got {type(args).__name__}")
    y = np.asarray(y)
    if y.dtype not in (np.float64, np.float32):
        if y.dtype.kind not in "iu":
            raise ArgumentTypeError(f"y must be a real float array, got dtype {y.dtype}")
        y = y.astype(np.float64)
    if y.ndim != 2:
        raise ArgumentError(f"y must have shape (batch, n), got shape {y.shape}")
    y = np.ascontiguousarray(y)
    dydt = np.empty_like(y)
    with np.errstate(all="ignore"):
        drivers_for(field).vector_field(_real("t", t), y, dydt, args)
    return dydt
