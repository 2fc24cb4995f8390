"""Free and nudged phases: relax a network's state to equilibrium with a chosen integrator.

Free phase: ds/dt = -dE/ds with the input clamped. Nudged phase: from the free
equilibrium, ds/dt = -d(E + beta C)/ds with C = 1/2 ||s_out - y||^2
(Scellier & Bengio 2017, Sec. 3). The integrator comes from the generic
``integrators`` package, or, for Hopfield networks, is one of the relaxation
schemes of :mod:`dynsim.block_relaxation` (synchronous fixed point, block
sweeps); this module knows which vector field and bounds a network needs, and
evaluates energies and costs on the result.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [2] J. R. Movellan, "Contrastive Hebbian learning in the continuous
       Hopfield model", Connectionist Models (1991) (clamped output phase).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import integrators
from dynsim import block_relaxation
from dynsim.block_relaxation import RELAXATION_SCHEMES
from dynsim.hopfield import HOPFIELD_FIELD
from dynsim.validation import ValidationError, positive_int, real_scalar

__all__ = ["SETTLE_METHODS", "SettleOptions", "PhaseResult", "free_phase", "nudged_phase", "settle",
           "HOPFIELD_FIELD"]

_NETWORK_INTERFACE = ("vector_field", "natural_box", "initial_state", "input_drive", "kernel_args",
                      "energy_from_drive", "cost", "check_input", "check_state", "check_target")

DEFAULT_DT = {"euler": 0.1, "projected_euler": 0.5, "heun": 0.2, "rk4": 0.5}
"""Default steps of the fixed-step methods (0.5 for projected Euler: Scellier & Bengio's epsilon)."""

SETTLE_METHODS = tuple(sorted(integrators.METHODS)) + RELAXATION_SCHEMES
"""Names ``SettleOptions(integrator=...)`` accepts: the ODE integrators, then the relaxation schemes."""


@dataclass(frozen=True)
class SettleOptions:
    """How to relax a state: integrator, steps, tolerances, what to record.

    Parameters
    ----------
    integrator : {'euler', 'projected_euler', 'heun', 'rk4', 'dopri5', 'fixed_point', 'block'}
        An ODE integrator of :mod:`integrators`, or a relaxation scheme of
        :mod:`dynsim.block_relaxation` (Hopfield networks only):
        ``'fixed_point'`` updates every group at once by s <- P(s - D^-1 dF/ds),
        ``'block'`` updates odd then even layers with the freshest state. A
        step of a scheme is one sweep over the groups.
    dt : float, optional
        Step of the fixed-step methods (default from :data:`DEFAULT_DT`);
        ignored by ``dopri5`` and the relaxation schemes.
    atol, rtol : float
        Steady state when every sample has ``||ds/dt|| <= atol + rtol ||s||``.
    max_steps : int
        Step attempts per phase.
    t_max : float
        Time limit per phase (``inf``: none); the relaxation schemes have no
        time and take only ``inf``.
    stop_at_steady_state : bool
        False runs exactly ``max_steps`` steps (the fixed iteration counts of
        the EP papers).
    bounds : (float, float), optional
        Box for projected dynamics. By default the activation's natural box
        ([0, 1] for the hard sigmoid, none for the smooth activations).
    project : bool
        Project the state onto the box after every step (default True). With
        the hard sigmoid this is what makes a steady state reachable by every
        integrator: the vector field jumps at s = 0 and s = 1 and has no zero
        at a saturated unit, so an unprojected relaxation chatters around the
        kink forever, while no equilibrium lies outside [0, 1] and the
        projected residual vanishes there (Scellier & Bengio 2017 clip too).
    max_abs : float
        A state above this magnitude counts as divergence.
    record_every : int
        Keep the trajectory every that many steps (0: none).
    record_samples : sequence of int, optional
        Batch indices whose trajectory is kept (default: all).
    """

    integrator: str = "dopri5"
    dt: float | None = None
    atol: float = 1e-6
    rtol: float = 1e-6
    max_steps: int = 100_000
    t_max: float = math.inf
    stop_at_steady_state: bool = True
    bounds: tuple | None = None
    project: bool = True
    max_abs: float = 1e6
    record_every: int = 0
    record_samples: tuple | None = None

    def __post_init__(self):
        if self.integrator not in SETTLE_METHODS:
            raise ValidationError(
                f"integrator must be one of {list(SETTLE_METHODS)} (ODE integrators, then the relaxation "
                f"schemes of Hopfield networks), got {self.integrator!r}")
        if self.dt is not None:
            object.__setattr__(self, "dt", real_scalar("dt", self.dt, 0.0, math.inf, low_open=True, high_open=True))
        for name in ("atol", "rtol"):
            object.__setattr__(self, name, real_scalar(name, getattr(self, name), 0.0, math.inf,
                                                       low_open=True, high_open=True))
        positive_int("max_steps", self.max_steps)
        positive_int("record_every", self.record_every, minimum=0)
        if not (self.t_max > 0):
            raise ValidationError(f"t_max must be > 0, got {self.t_max!r}")
        if self.is_relaxation_scheme and not math.isinf(self.t_max):
            raise ValidationError(f"t_max limits integration time; the relaxation scheme {self.integrator!r} "
                                  "counts sweeps: leave t_max at inf and use max_steps")
        if not (self.max_abs > 0):
            raise ValidationError(f"max_abs must be > 0, got {self.max_abs!r}")
        if self.bounds is not None:
            lo, hi = (float(v) for v in self.bounds)
            if not lo < hi:
                raise ValidationError(f"bounds must be (low, high) with low < high, got {self.bounds!r}")
            object.__setattr__(self, "bounds", (lo, hi))
        if self.record_samples is not None:
            samples = tuple(int(i) for i in self.record_samples)
            if not samples or len(set(samples)) != len(samples) or min(samples) < 0:
                raise ValidationError(f"record_samples must be distinct sample indices >= 0, got {samples}")
            object.__setattr__(self, "record_samples", samples)

    @property
    def is_relaxation_scheme(self):
        """True for 'fixed_point' and 'block' (sweeps of :mod:`dynsim.block_relaxation`, not an ODE)."""
        return self.integrator in RELAXATION_SCHEMES

    def step(self):
        """The fixed step in use (None for the adaptive method and the relaxation schemes)."""
        if self.integrator == "dopri5" or self.is_relaxation_scheme:
            return None
        return self.dt if self.dt is not None else DEFAULT_DT[self.integrator]

    def box(self, network):
        """Projection box for ``network``'s states, or None."""
        box = None
        if self.project:
            box = self.bounds if self.bounds is not None else network.natural_box
        if box is None and self.integrator == "projected_euler":
            raise ValidationError(
                f"integrator 'projected_euler' needs a box: this {type(network).__name__} with activation "
                f"{network.activation!r} has none (only the hard sigmoid Hopfield network does) or "
                "project=False; pass bounds=(low, high)")
        return box

    def describe(self):
        """Plain dict of the options (for logs)."""
        return {"integrator": self.integrator, "dt": self.step(), "atol": self.atol, "rtol": self.rtol,
                # None for "no limit": strict JSON has no Infinity.
                "max_steps": self.max_steps, "t_max": None if math.isinf(self.t_max) else self.t_max,
                "stop_at_steady_state": self.stop_at_steady_state,
                "bounds": list(self.bounds) if self.bounds else None, "project": self.project,
                "max_abs": self.max_abs,
                "record_every": self.record_every,
                "record_samples": None if self.record_samples is None else list(self.record_samples)}


@dataclass
class PhaseResult:
    """One relaxation of a network.

    Attributes
    ----------
    phase : str
        ``'free'``, ``'nudged'`` or ``'clamped'``.
    beta : float
        Nudging strength (0 for the free phase).
    state : ndarray, shape (batch, n_free)
        Settled (or last) state.
    energy : ndarray, shape (batch,)
        E at the final state.
    cost : ndarray, shape (batch,) or None
        C at the final state when a target was given.
    integration : integrators.IntegrationResult
        Status, message, step and evaluation counts, residuals, trajectory.
    trajectory_energy, trajectory_cost : ndarray, shape (m, n_recorded) or None
        E and C along the recorded trajectory.
    """

    phase: str
    beta: float
    state: np.ndarray
    energy: np.ndarray
    cost: np.ndarray | None
    integration: integrators.IntegrationResult
    trajectory_energy: np.ndarray | None = None
    trajectory_cost: np.ndarray | None = None

    @property
    def converged(self):
        return self.integration.success

    @property
    def status(self):
        return self.integration.status_name


def settle(network, x, s0=None, target=None, beta=0.0, clamp_output=False, options=None, phase="free"):
    """Relax the free state of ``network`` with input ``x`` clamped.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    x : ndarray, shape (batch, n_input)
    s0 : ndarray, shape (batch, n_free), optional
        Starting state (default: the network's, zeros for a Hopfield
        network as in Scellier & Bengio, the feedforward pass for predictive coding).
    target : ndarray, shape (batch, n_output), optional
        Needed when ``beta != 0`` or ``clamp_output``.
    beta : float
        Nudging strength of the cost, positive or negative.
    clamp_output : bool
        Hold the output units at ``target`` (contrastive Hebbian learning).
    options : SettleOptions
    phase : str
        Label of the result.

    Returns
    -------
    PhaseResult
    """
    missing = [name for name in _NETWORK_INTERFACE if not hasattr(network, name)]
    if missing:
        raise ValidationError(f"network must be a HopfieldNetwork or a PCNetwork, got {type(network).__name__} "
                              f"(it lacks {', '.join(missing)})")
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    x = network.check_input(x)
    batch = x.shape[0]
    beta = real_scalar("beta", beta)
    if target is None:
        if beta != 0.0 or clamp_output:
            raise ValidationError("target is required for a nudged or clamped phase (beta != 0 or clamp_output)")
    else:
        target = network.check_target(target, batch)
    drive = network.input_drive(x)
    s0 = network.initial_state(drive) if s0 is None else network.check_state(s0, batch)
    if clamp_output:
        s0 = s0.copy()
        s0[:, network.output_slice] = target
    samples = options.record_samples
    if samples is not None and any(not 0 <= i < batch for i in samples):
        raise ValidationError(f"record_samples must lie in [0, {batch - 1}], got {list(samples)}")

    box = options.box(network)
    if options.is_relaxation_scheme:
        result = block_relaxation.relax(
            network, s0, drive, options.integrator, beta, target, clamp_output, max_steps=options.max_steps,
            atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state, box=box,
            max_abs=options.max_abs, record_every=options.record_every,
            record_samples=None if samples is None else np.array(samples, dtype=np.int64))
    else:
        result = integrators.integrate(
            network.vector_field, s0, network.kernel_args(drive, beta, target, clamp_output),
            method=options.integrator, dt=options.step(), max_steps=options.max_steps, t_max=options.t_max,
            atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state,
            lower=None if box is None else box[0], upper=None if box is None else box[1],
            max_abs=options.max_abs, record_every=options.record_every,
            record_samples=None if samples is None else np.array(samples, dtype=np.int64))

    # The drive is constant in a relaxation: reuse it for every energy evaluated here.
    energy = network.energy_from_drive(result.y, drive)
    cost = None if target is None else network.cost(result.y, target)
    traj_e = traj_c = None
    if result.trajectory is not None:
        traj = result.trajectory
        m, r, n = traj.y.shape
        flat = traj.y.reshape(m * r, n)
        drives = np.repeat(drive[traj.samples][None], m, axis=0).reshape(m * r, n)
        traj_e = network.energy_from_drive(flat, drives).reshape(m, r)
        if target is not None:
            ys = np.repeat(target[traj.samples][None], m, axis=0).reshape(m * r, -1)
            traj_c = network.cost(flat, ys).reshape(m, r)
    return PhaseResult(phase=phase, beta=beta, state=result.y, energy=energy, cost=cost,
                       integration=result, trajectory_energy=traj_e, trajectory_cost=traj_c)


def free_phase(network, x, s0=None, target=None, options=None):
    """Free phase: relax ds/dt = -dE/ds from ``s0`` (zeros by default).

    ``target`` is optional and only used to report the cost of the free state.
    """
    return settle(network, x, s0=s0, target=target, beta=0.0, options=options, phase="free")


def nudged_phase(network, x, target, beta, s0, options=None):
    """Nudged phase: from ``s0`` (the free equilibrium) relax ds/dt = -d(E + beta C)/ds.

    ``beta`` may be positive or negative but not zero.
    """
    beta = real_scalar("beta", beta, nonzero=True)
    if target is None:
        raise ValidationError("target is required for the nudged phase")
    if s0 is None:
        raise ValidationError("s0 is required for the nudged phase: pass the free equilibrium state")
    return settle(network, x, s0=s0, target=target, beta=beta, options=options, phase="nudged")
