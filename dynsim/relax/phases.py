"""Free and nudged phases: relax a network's state to equilibrium with a chosen integrator.

Free phase: ds/dt = -dE/ds with the input clamped. Nudged phase: from the free
equilibrium, ds/dt = -d(E + beta C)/ds with C = 1/2 ||s_out - y||^2
(Scellier & Bengio 2017, Sec. 3). The integrator comes from the generic
``integrators`` package, or, for Hopfield networks, is one of the relaxation
schemes of :mod:`dynsim.relax.block_relaxation` (synchronous fixed point, block
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
import warnings
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

import integrators
from dynsim.networks.hopfield import HOPFIELD_FIELD
from dynsim.relax import block_relaxation, layered_euler
from dynsim.relax.block_relaxation import RELAXATION_SCHEMES
from dynsim.validation import StepHalvedWarning, ValidationError, boolean, float_array, positive_int, real_scalar
from integrators.solve import evaluate_field

__all__ = ["SETTLE_METHODS", "NOT_CONVERGED_ACTIONS", "SettleOptions", "PhaseResult", "DivergenceSite", "StepRetry", "locate_divergence",
           "free_phase", "nudged_phase", "settle", "settle_checked", "HOPFIELD_FIELD"]

_NETWORK_INTERFACE = ("natural_box", "initial_state", "input_drive", "energy_from_drive", "cost", "check_input",
                      "check_state", "check_target", "locate_unit")
"""What settle asks of every network; and either a compiled field for the integrators or its own relaxation."""
_FIELD_INTERFACE = ("vector_field", "kernel_args")

DEFAULT_DT = {"euler": 0.1, "projected_euler": 0.5, "heun": 0.2, "rk4": 0.5}
"""Default steps of the fixed-step methods (0.5 for projected Euler: Scellier & Bengio's epsilon)."""

SETTLE_METHODS = tuple(sorted(integrators.METHODS)) + RELAXATION_SCHEMES
NOT_CONVERGED_ACTIONS = ("warn", "raise", "ignore")
"""What :attr:`SettleOptions.not_converged` may ask when a phase stopped short of its steady state."""
"""Names ``SettleOptions(integrator=...)`` accepts: the ODE integrators, then the relaxation schemes."""

MAX_STEP_HALVINGS = 30
"""Most halvings ``retry_smaller_step`` may ask for (dt / 2**30 is below any useful step)."""


@dataclass(frozen=True)
class SettleOptions:
    """How to relax a state: integrator, steps, tolerances, what to record.

    Parameters
    ----------
    integrator : {'euler', 'projected_euler', 'heun', 'rk4', 'dopri5', 'fixed_point', 'block'}
        An ODE integrator of :mod:`integrators`, or a relaxation scheme of
        :mod:`dynsim.relax.block_relaxation` (Hopfield networks only):
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
    retry_smaller_step : int
        When a fixed-step relaxation ('euler', 'projected_euler', 'heun',
        'rk4') diverges, run it again from the same start with half the step,
        up to this many times (0: never). Each retry doubles ``max_steps`` so
        that it covers the same integration time, is recorded in
        :attr:`PhaseResult.retries` and issues a
        :class:`~dynsim.validation.StepHalvedWarning`.
    not_converged : {'warn', 'raise', 'ignore'}
        What a rule, a reference or an evaluation that reads the settled
        state does when a phase asked to reach the steady state
        (``stop_at_steady_state=True``) stopped short of it: warn
        (:class:`~dynsim.validation.NotConvergedWarning`), raise
        (:class:`~dynsim.validation.NotConvergedError`) or go on silently.
        Phases run for a fixed iteration count are never warned about;
        training logs count their unsettled samples either way.
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
    retry_smaller_step: int = 0
    not_converged: str = "warn"

    def __post_init__(self):
        if not isinstance(self.integrator, str) or self.integrator not in SETTLE_METHODS:
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
        object.__setattr__(self, "stop_at_steady_state", boolean("stop_at_steady_state", self.stop_at_steady_state))
        object.__setattr__(self, "project", boolean("project", self.project))
        if self.not_converged not in NOT_CONVERGED_ACTIONS:
            raise ValidationError(f"not_converged must be one of {list(NOT_CONVERGED_ACTIONS)}, got "
                                  f"{self.not_converged!r}")
        if self.dt is not None and self.integrator == "dopri5":
            raise ValidationError("dt is the step of the fixed-step integrators; dopri5 chooses its own steps "
                                  "(leave dt unset; atol and rtol set where it stops)")
        t_max = self.t_max
        if isinstance(t_max, (str, bytes, bool, np.bool_)) or np.ndim(t_max) != 0 \
                or not isinstance(t_max, (int, float, np.integer, np.floating)) or not t_max > 0:
            raise ValidationError(f"t_max must be a real number > 0 (inf for no limit), got {t_max!r}")
        object.__setattr__(self, "t_max", float(t_max))
        if self.is_relaxation_scheme and not math.isinf(self.t_max):
            raise ValidationError(f"t_max limits integration time; the relaxation scheme {self.integrator!r} "
                                  "counts sweeps: leave t_max at inf and use max_steps")
        max_abs = self.max_abs
        if isinstance(max_abs, (str, bytes, bool, np.bool_)) or np.ndim(max_abs) != 0 \
                or not isinstance(max_abs, (int, float, np.integer, np.floating)) or not max_abs > 0:
            raise ValidationError(f"max_abs must be a real number > 0 (inf: only non-finite values count), "
                                  f"got {max_abs!r}")
        object.__setattr__(self, "max_abs", float(max_abs))
        if self.bounds is not None:
            try:
                lo, hi = self.bounds
            except (TypeError, ValueError):
                raise ValidationError(f"bounds must be a pair (low, high), got {self.bounds!r}") from None
            lo = real_scalar("bounds[0]", lo, low=-math.inf)
            hi = real_scalar("bounds[1]", hi)
            if not lo < hi:
                raise ValidationError(f"bounds must be (low, high) with low < high, got {self.bounds!r}")
            object.__setattr__(self, "bounds", (lo, hi))
        if self.record_samples is not None:
            try:
                samples = tuple(self.record_samples)
            except TypeError:
                raise ValidationError(f"record_samples must be a sequence of sample indices, "
                                      f"got {self.record_samples!r}") from None
            for i in samples:
                positive_int("record_samples entries", i, minimum=0)
            samples = tuple(int(i) for i in samples)
            if not samples or len(set(samples)) != len(samples):
                raise ValidationError(f"record_samples must be distinct sample indices >= 0, got {samples}")
            object.__setattr__(self, "record_samples", samples)
        positive_int("retry_smaller_step", self.retry_smaller_step, minimum=0)
        if self.retry_smaller_step > MAX_STEP_HALVINGS:
            raise ValidationError(f"retry_smaller_step must be at most {MAX_STEP_HALVINGS}, "
                                  f"got {self.retry_smaller_step}")
        if self.retry_smaller_step and self.step() is None:
            raise ValidationError(
                f"retry_smaller_step halves the step of a fixed-step integrator; {self.integrator!r} has none "
                "(dopri5 adapts its step, the relaxation schemes count sweeps): leave it at 0")

    @property
    def is_relaxation_scheme(self):
        """True for 'fixed_point' and 'block' (sweeps of :mod:`dynsim.relax.block_relaxation`, not an ODE)."""
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
                "record_samples": None if self.record_samples is None else list(self.record_samples),
                "retry_smaller_step": self.retry_smaller_step, "not_converged": self.not_converged}


class StepRetry(NamedTuple):
    """A fixed-step relaxation that diverged and was run again with half the step."""

    dt: float
    """The step that diverged."""
    message: str
    """Where it diverged (:attr:`DivergenceSite.message`)."""


@dataclass(frozen=True)
class DivergenceSite:
    """Where a relaxation diverged: phase, step, sample, and the layer and unit that ran away.

    Attributes
    ----------
    phase : str
    step : int
        Step (sweep, for the relaxation schemes) at which the divergence was detected.
    sample : int
        Batch index of the first diverged sample.
    layer : str
        Group (``network.group_names``) of the unit that ran away.
    unit : int
        Index of that unit within its group.
    column : int
        Its column in the free state ``s``.
    value : float
        Its value one step ahead (non-finite, or the largest in magnitude).
    detail : str
        What the integrator reported.
    """

    phase: str
    step: int
    sample: int
    layer: str
    unit: int
    column: int
    value: float
    detail: str

    @property
    def message(self):
        """``"the free phase diverged at step 37 in sample 4, layer 'hidden_1' (unit 12): ..."``."""
        return (f"the {self.phase} phase diverged at step {self.step} in sample {self.sample}, "
                f"layer {self.layer!r} (unit {self.unit}): {self.detail}")


def locate_divergence(network, integration, args, step=None, phase="free"):
    """The layer and unit where a diverged relaxation ran away.

    The relaxation keeps the last finite state ``s`` of the diverged sample;
    the vector field ``f`` there says where it was heading. The unit named is
    the first whose field or one-step prediction ``s + h f`` is non-finite,
    else the one whose prediction is largest in magnitude (``h`` the fixed
    step; the state itself for adaptive and sweep methods), else, when the
    state is all zero, the one with the largest field.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    integration : integrators.IntegrationResult
        A result with status 'diverged'.
    args : tuple
        ``network.kernel_args(...)`` of that relaxation.
    step : float, optional
        Its fixed step.
    phase : str
        Label used in the message.

    Returns
    -------
    DivergenceSite or None
        None when ``integration`` did not diverge.
    """
    if not isinstance(integration, integrators.IntegrationResult):
        raise ValidationError(f"integration must be an integrators.IntegrationResult, "
                              f"got {type(integration).__name__}")
    if integration.status != integrators.DIVERGED:
        return None
    b = integration.diverged_sample
    s = integration.y[b].astype(np.float64)
    f = evaluate_field(network.vector_field, integration.y, args, t=integration.t)[b].astype(np.float64)
    with np.errstate(all="ignore"):
        ahead = s + step * f if step else s.copy()
    bad = ~(np.isfinite(f) & np.isfinite(ahead))
    if bad.any():
        column = int(np.argmax(bad))
    elif np.abs(ahead).max() > 0:
        column = int(np.argmax(np.abs(ahead)))
    else:
        column = int(np.argmax(np.abs(f)))
    layer, unit = network.locate_unit(column)
    _, sep, detail = integration.message.partition(": ")
    return DivergenceSite(phase=phase, step=integration.diverged_step, sample=b, layer=layer, unit=unit,
                          column=column, value=float(ahead[column] if np.isfinite(f[column]) else f[column]),
                          detail=detail if sep else integration.message)


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
    dt : float or None
        The fixed step of the final relaxation (None for dopri5 and the
        relaxation schemes); smaller than the options' after a retry.
    divergence : DivergenceSite or None
        Where the relaxation diverged (status 'diverged'), else None; its
        ``message`` names the phase, step, sample, layer and unit.
    retries : list of StepRetry
        The relaxations that diverged before this one and were run again with
        half the step (``SettleOptions.retry_smaller_step``).
    """

    phase: str
    beta: float
    state: np.ndarray
    energy: np.ndarray
    cost: np.ndarray | None
    integration: integrators.IntegrationResult
    trajectory_energy: np.ndarray | None = None
    trajectory_cost: np.ndarray | None = None
    dt: float | None = None
    divergence: DivergenceSite | None = None
    retries: list = field(default_factory=list)

    @property
    def converged(self):
        return self.integration.success

    @property
    def message(self):
        """The integrator's message; after a divergence, the one naming phase, step, sample and layer."""
        return self.divergence.message if self.divergence is not None else self.integration.message

    @property
    def status(self):
        return self.integration.status_name


def settle(network, x, s0=None, target=None, beta=0.0, clamp_output=False, options=None, phase="free",
           drive=None):
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
    drive : ndarray, shape (batch, n_free), optional
        ``network.input_drive(x)`` when the caller has it: the phases of one
        minibatch share it (it is a matrix product with the input weights,
        the largest single product of a phase of a 784-500-10 network).

    Returns
    -------
    PhaseResult
    """
    missing = [name for name in _NETWORK_INTERFACE if not hasattr(network, name)]
    if not hasattr(network, "relax_with_energy"):
        missing += [name for name in _FIELD_INTERFACE if not hasattr(network, name)]
    if missing:
        raise ValidationError(f"network must be a HopfieldNetwork, ConvHopfieldNetwork, VectorFieldHopfieldNetwork "
                              f"or PCNetwork, got "
                              f"{type(network).__name__} "
                              f"(it lacks {', '.join(missing)})")
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    if not isinstance(phase, str) or not phase:
        raise ValidationError(f"phase must be a non-empty label such as 'free', got {phase!r}")
    clamp_output = boolean("clamp_output", clamp_output)
    x = network.check_input(x)
    batch = x.shape[0]
    beta = real_scalar("beta", beta)
    if target is None:
        if beta != 0.0 or clamp_output:
            raise ValidationError("target is required for a nudged or clamped phase (beta != 0 or clamp_output)")
    else:
        target = network.check_target(target, batch)
    if drive is None:
        drive = network.input_drive(x)
    else:
        drive = float_array("drive", drive, shape=(batch, network.n_free), dtype=network.dtype)
    s0 = None if s0 is None else network.check_state(s0, batch, name="s0")
    return settle_checked(network, x, s0, target, beta, clamp_output, options, phase, drive)


def settle_checked(network, x, s0, target, beta, clamp_output, options, phase, drive):
    """:func:`settle` on arguments already checked, for the learning rules that have checked them once.

    ``x`` (batch, n_input), ``target`` (batch, n_output) or None, ``drive``
    (batch, n_free) and ``s0`` (batch, n_free) or None are finite
    C-contiguous arrays of the network's dtype and of those shapes (``network.check_input``,
    ``check_target``, ``input_drive``, ``check_state`` give them), ``beta``
    a float (``target`` given when it is not 0 or with ``clamp_output``),
    ``options`` a :class:`SettleOptions`, ``phase`` a label. Nothing is
    checked again; the results are :func:`settle`'s.
    """
    batch = x.shape[0]
    if s0 is None:
        s0 = network.initial_state(drive)
    if clamp_output:
        s0 = s0.copy()
        s0[:, network.output_slice] = target
    samples = options.record_samples
    if samples is not None and any(not 0 <= i < batch for i in samples):
        raise ValidationError(f"record_samples must lie in [0, {batch - 1}], got {list(samples)}")

    record = None if samples is None else np.array(samples, dtype=np.int64)
    if hasattr(network, "relax_with_energy") and (options.is_relaxation_scheme or not hasattr(network, "vector_field")):
        # Its own sweeps; the ODE integrators only for a network that also has a compiled vector field.
        return _settle_own_scheme(network, x, s0, target, beta, clamp_output, options, phase, drive, record)
    box = options.box(network)
    args = network.kernel_args(drive, beta, target, clamp_output)
    dt, max_steps, retries = options.step(), options.max_steps, []
    while True:
        energy = None
        if options.is_relaxation_scheme:
            # A layered network without recording runs the fused loop, which also gives the final energy.
            result, energy = block_relaxation.relax_with_energy(
                network, s0, drive, options.integrator, beta, target, clamp_output, max_steps=max_steps,
                atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state, box=box,
                max_abs=options.max_abs, record_every=options.record_every, record_samples=record)
        elif layered_euler.applies(network, options.integrator, options.t_max, options.record_every, box):
            # Same steps, same stopping rules, one compiled loop (and the final energy with it).
            result, energy = layered_euler.relax(
                network, s0, drive, options.integrator, beta, target, clamp_output, dt=dt, max_steps=max_steps,
                atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state, box=box,
                max_abs=options.max_abs)
        else:
            result = integrators.integrate(
                network.vector_field, s0, args,
                method=options.integrator, dt=dt, max_steps=max_steps, t_max=options.t_max,
                atol=options.atol, rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state,
                lower=None if box is None else box[0], upper=None if box is None else box[1],
                max_abs=options.max_abs, record_every=options.record_every, record_samples=record)
        site = locate_divergence(network, result, args, step=dt, phase=phase)
        if site is None:
            break
        # The integrator's message gains the layer, so code that quotes it names the layer too.
        where, _, detail = result.message.partition(": ")
        result = replace(result, message=f"{where}, layer {site.layer!r} (unit {site.unit}): {detail}")
        if len(retries) == options.retry_smaller_step:
            break
        retries.append(StepRetry(dt=dt, message=site.message))
        warnings.warn(f"{site.message}; retrying with dt={dt / 2:.6g} and max_steps={2 * max_steps} "
                      f"(halving {len(retries)} of at most {options.retry_smaller_step})",
                      StepHalvedWarning, stacklevel=2)
        # Half the step, twice the steps: the retry covers the same integration time.
        dt, max_steps = dt / 2, 2 * max_steps

    # The drive is constant in a relaxation: reuse it for every energy evaluated here.
    if energy is None:
        energy = network.energy_from_drive(result.y, drive)
    cost = None if target is None else network.cost(result.y, target)
    traj_e, traj_c = _trajectory_figures(network, result, drive, target)
    return PhaseResult(phase=phase, beta=beta, state=result.y, energy=energy, cost=cost,
                       integration=result, trajectory_energy=traj_e, trajectory_cost=traj_c, dt=dt,
                       divergence=site, retries=retries)


def _trajectory_figures(network, result, drive, target):
    """Energy and cost along a recorded trajectory, each (m, n_recorded); None where not recorded."""
    if result.trajectory is None:
        return None, None
    traj = result.trajectory
    m, r, n = traj.y.shape
    flat = traj.y.reshape(m * r, n)
    drives = np.repeat(drive[traj.samples][None], m, axis=0).reshape(m * r, n)
    energy = network.energy_from_drive(flat, drives).reshape(m, r)
    cost = None
    if target is not None:
        ys = np.repeat(target[traj.samples][None], m, axis=0).reshape(m * r, -1)
        cost = network.cost(flat, ys).reshape(m, r)
    return energy, cost


def _settle_own_scheme(network, x, s0, target, beta, clamp_output, options, phase, drive, record):
    """A network that relaxes itself (a network built from an Architecture): its own loops over the couplings.

    Such a network has no compiled vector field for the ODE integrators; it
    runs what its ``relaxation_schemes`` name: the relaxation schemes of the
    EP literature (a convolutional Hopfield network, each group projected onto
    its own activation's box unless ``options`` say otherwise) or Euler steps
    (a convolutional predictive coding network).
    """
    schemes = getattr(network, "relaxation_schemes", block_relaxation.RELAXATION_SCHEMES)
    if options.integrator not in schemes:
        raise ValidationError(f"integrator {options.integrator!r}: a {type(network).__name__} relaxes with "
                              f"{list(schemes)} only")
    extra = {}
    if not options.is_relaxation_scheme:  # an ODE method the network runs itself (a conv PC network's Euler steps)
        if options.retry_smaller_step or not math.isinf(options.t_max):
            raise ValidationError(f"a {type(network).__name__} counts its {options.integrator} steps with max_steps "
                                  "and does not retry: leave t_max at inf and retry_smaller_step at 0")
        extra["dt"] = options.step()
    box = (options.bounds if options.bounds is not None else "natural") if options.project else None
    result, energy = network.relax_with_energy(
        s0, drive, options.integrator, beta, target, clamp_output, max_steps=options.max_steps, atol=options.atol,
        rtol=options.rtol, stop_at_steady_state=options.stop_at_steady_state, box=box, max_abs=options.max_abs,
        record_every=options.record_every, record_samples=record, **extra)
    # A network that also has a compiled field (the vector-field network) names the layer and unit of a divergence.
    site = (locate_divergence(network, result, network.kernel_args(drive, beta, target, clamp_output), step=None,
                              phase=phase) if hasattr(network, "vector_field") else None)
    cost = None if target is None else network.cost(result.y, target)
    traj_e, traj_c = _trajectory_figures(network, result, drive, target)
    return PhaseResult(phase=phase, beta=beta, state=result.y, energy=energy, cost=cost, integration=result,
                       trajectory_energy=traj_e, trajectory_cost=traj_c, dt=options.step(), divergence=site)


def free_phase(network, x, s0=None, target=None, options=None, drive=None):
    """Free phase: relax ds/dt = -dE/ds from ``s0`` (zeros by default).

    ``target`` is optional and only used to report the cost of the free state.
    """
    return settle(network, x, s0=s0, target=target, beta=0.0, options=options, phase="free", drive=drive)


def nudged_phase(network, x, target, beta, s0, options=None, drive=None):
    """Nudged phase: from ``s0`` (the free equilibrium) relax ds/dt = -d(E + beta C)/ds.

    ``beta`` may be positive or negative but not zero.
    """
    beta = real_scalar("beta", beta, nonzero=True)
    if target is None:
        raise ValidationError("target is required for the nudged phase")
    if s0 is None:
        raise ValidationError("s0 is required for the nudged phase: pass the free equilibrium state")
    return settle(network, x, s0=s0, target=target, beta=beta, options=options, phase="nudged", drive=drive)
