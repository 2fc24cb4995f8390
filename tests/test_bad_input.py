"""Malformed arguments at every public entry point raise one exception family, naming the argument.

Each case calls one entry point with one bad argument (wrong ndim or shape,
NaN/inf, a non-positive value where a positive one is needed, a wrong type,
text for a number, a bool for an int) and expects a
:class:`dynsim.validation.DynsimError`, a :class:`~dynsim.validation.ValidationError`
for arguments, whose message matches a pattern naming the argument. The
integrators never import dynsim: they raise
:class:`integrators.solve.ArgumentError`, of which ``ValidationError`` is a
subclass, so ``except ArgumentError`` catches both.

Cases that fail because a module owned elsewhere lacks the check are marked
``xfail(strict=True)`` with the fix in the reason.
"""
import math
import re
import types

import h5py
import numpy as np
import pytest
from conftest import LINEAR

import integrators
from dynsim.cli import sweep
from dynsim.datasets import idx, tasks
from dynsim.experiments import estimator_sweep, memory
from dynsim.io.log import TrajectoryLog, read_log
from dynsim.learning import contrastive, predictive_coding, rules
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.references import compare, gradients
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase, settle
from dynsim.training.checkpoint import load_checkpoint
from dynsim.training.loop import fit
from dynsim.training.optimizers import SGD, Adam
from dynsim.validation import DynsimError, ValidationError
from integrators.solve import ArgumentError

NAN = float("nan")


def other_owner(reason):
    """Mark a case whose fix belongs to a module owned by someone else."""
    return pytest.mark.xfail(strict=True, reason=reason)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    rng = np.random.default_rng(0)
    hop = HopfieldNetwork.layered([3, 4, 2], activation="hard_sigmoid", seed=0)
    tanh = HopfieldNetwork.layered([3, 4, 2], activation="tanh", seed=0)
    pc = PCNetwork([3, 4, 2], seed=0)
    x = rng.uniform(size=(2, 3))
    target = np.zeros((2, 2))
    s0 = np.zeros((2, hop.n_free))
    quick = SettleOptions(integrator="euler", dt=0.5, max_steps=50)
    free = free_phase(hop, x, target=target, options=quick)
    folder = tmp_path_factory.mktemp("bad_input")
    garbage = folder / "garbage.h5"
    garbage.write_bytes(b"this is not an HDF5 file\n" * 10)
    not_a_log = folder / "plain.h5"
    with h5py.File(not_a_log, "w") as f:
        f["x"] = np.zeros(3)
    task = tasks.Task("t", x, np.array([0, 1]), np.eye(2))
    return types.SimpleNamespace(hop=hop, tanh=tanh, pc=pc, x=x, target=target, s0=s0, quick=quick, free=free,
                                 folder=folder, garbage=garbage, not_a_log=not_a_log, task=task, rng=rng,
                                 patterns=np.eye(4)[:2])


def integrate(**kwargs):
    """integrators.integrate on y' = -y with two units; ``kwargs`` replace the defaults."""
    call = dict(field=LINEAR, y0=np.ones((1, 2)), args=(-np.eye(2), np.zeros(2)), method="euler", dt=0.1)
    call.update(kwargs)
    return integrators.integrate(call.pop("field"), call.pop("y0"), call.pop("args"), **call)


C = pytest.param  # (call taking env, pattern naming the argument[, expected exception])

CASES = [
    # ------------------------------------------------------------------ integrators.integrate
    C(lambda e: integrate(y0=np.ones(2)), r"y0 must have shape", ArgumentError, id="integrate-y0-1d"),
    C(lambda e: integrate(y0=np.ones((0, 2))), r"y0 must have shape", ArgumentError, id="integrate-y0-empty"),
    C(lambda e: integrate(y0=[[1.0, NAN]]), r"y0 must be finite", ArgumentError, id="integrate-y0-nan"),
    C(lambda e: integrate(y0=[[1.0, math.inf]]), r"y0 must be finite", ArgumentError, id="integrate-y0-inf"),
    C(lambda e: integrate(y0=[["a", "b"]]), r"y0 must be a real float array", ArgumentError, id="integrate-y0-str"),
    C(lambda e: integrate(y0=np.ones((1, 2), bool)), r"y0 must be a real float array", ArgumentError,
      id="integrate-y0-bool"),
    C(lambda e: integrate(y0=np.ones((1, 2), complex)), r"y0 must be a real float array", ArgumentError,
      id="integrate-y0-complex"),
    C(lambda e: integrate(y0=[[1.0], [1.0, 2.0]]), r"y0", ArgumentError, id="integrate-y0-ragged"),
    C(lambda e: integrate(field="linear"), r"field must be an integrators.VectorField", ArgumentError,
      id="integrate-field-str"),
    C(lambda e: integrate(method="midpoint"), r"method must be one of", ArgumentError, id="integrate-method"),
    C(lambda e: integrate(method=["euler"]), r"method must be one of", ArgumentError, id="integrate-method-list"),
    C(lambda e: integrate(dt=None), r"give dt > 0", ArgumentError, id="integrate-dt-missing"),
    C(lambda e: integrate(dt=0.0), r"dt must lie in", ArgumentError, id="integrate-dt-zero"),
    C(lambda e: integrate(dt=-0.1), r"dt must lie in", ArgumentError, id="integrate-dt-negative"),
    C(lambda e: integrate(dt=NAN), r"dt must lie in", ArgumentError, id="integrate-dt-nan"),
    C(lambda e: integrate(dt=math.inf), r"dt must lie in", ArgumentError, id="integrate-dt-inf"),
    C(lambda e: integrate(dt="0.1"), r"dt must be a real number", ArgumentError, id="integrate-dt-str"),
    C(lambda e: integrate(dt=True), r"dt must be a real number", ArgumentError, id="integrate-dt-bool"),
    C(lambda e: integrate(dt=[0.1]), r"dt must be a real number", ArgumentError, id="integrate-dt-list"),
    C(lambda e: integrate(atol=0.0), r"atol must lie in", ArgumentError, id="integrate-atol-zero"),
    C(lambda e: integrate(rtol=NAN), r"rtol must lie in", ArgumentError, id="integrate-rtol-nan"),
    C(lambda e: integrate(max_abs=0.0), r"max_abs must lie in", ArgumentError, id="integrate-max_abs-zero"),
    C(lambda e: integrate(max_steps=0), r"max_steps must be an integer >= 1", ArgumentError,
      id="integrate-max_steps-zero"),
    C(lambda e: integrate(max_steps=True), r"max_steps must be an integer", ArgumentError,
      id="integrate-max_steps-bool"),
    C(lambda e: integrate(max_steps=10.0), r"max_steps must be an integer", ArgumentError,
      id="integrate-max_steps-float"),
    C(lambda e: integrate(max_steps="10"), r"max_steps must be an integer", ArgumentError,
      id="integrate-max_steps-str"),
    C(lambda e: integrate(record_every=-1), r"record_every must be an integer >= 0", ArgumentError,
      id="integrate-record_every-negative"),
    C(lambda e: integrate(t0=NAN), r"t0 must be finite", ArgumentError, id="integrate-t0-nan"),
    C(lambda e: integrate(t_max=-1.0), r"t_max must be greater than t0", ArgumentError, id="integrate-t_max"),
    C(lambda e: integrate(t_max="10"), r"t_max must be a real number", ArgumentError, id="integrate-t_max-str"),
    C(lambda e: integrate(args=[-np.eye(2), np.zeros(2)]), r"args must be a tuple", ArgumentError,
      id="integrate-args-list"),
    C(lambda e: integrate(stop_at_steady_state="no"), r"stop_at_steady_state must be a bool", ArgumentError,
      id="integrate-stop-str"),
    C(lambda e: integrate(lower=[0.0, 1.0, 2.0]), r"lower must be a scalar or have shape \(2,\)", ArgumentError,
      id="integrate-lower-shape"),
    C(lambda e: integrate(upper=NAN), r"upper must not contain NaN", ArgumentError, id="integrate-upper-nan"),
    C(lambda e: integrate(lower="0"), r"lower must be a real number", ArgumentError, id="integrate-lower-str"),
    C(lambda e: integrate(lower=1.0, upper=0.0), r"lower must not exceed upper", ArgumentError,
      id="integrate-lower-above-upper"),
    C(lambda e: integrate(method="projected_euler"), r"needs lower and/or upper", ArgumentError,
      id="integrate-projected-no-box"),
    C(lambda e: integrate(record_every=1, record_samples=[0.5]), r"record_samples must be a 1-D array of sample",
      ArgumentError, id="integrate-record_samples-float"),
    C(lambda e: integrate(record_every=1, record_samples=[3]), r"record_samples must lie in", ArgumentError,
      id="integrate-record_samples-range"),
    C(lambda e: integrate(method="dopri5", dt=None, first_step=0.0), r"first_step must lie in", ArgumentError,
      id="integrate-first_step"),
    C(lambda e: integrate(method="dopri5", dt=None, safety=1.5), r"safety", ArgumentError, id="integrate-safety"),
    C(lambda e: integrate(method="dopri5", dt=None, max_factor=math.inf), r"max_factor", ArgumentError,
      id="integrate-max_factor-inf"),
    C(lambda e: integrate(method="dopri5", dt=None, pi_beta="0.04"), r"pi_beta must be a real number",
      ArgumentError, id="integrate-pi_beta-str"),
    C(lambda e: integrators.solve.evaluate_field(LINEAR, np.ones(2), (-np.eye(2), np.zeros(2))),
      r"y must have shape", ArgumentError, id="evaluate_field-y-1d"),

    # ------------------------------------------------------------------ SettleOptions
    C(lambda e: SettleOptions(integrator="midpoint"), r"integrator must be one of", id="options-integrator"),
    C(lambda e: SettleOptions(integrator=None), r"integrator must be one of", id="options-integrator-none"),
    C(lambda e: SettleOptions(integrator="euler", dt=0.0), r"dt must be finite, in \(0", id="options-dt-zero"),
    C(lambda e: SettleOptions(integrator="euler", dt=-1.0), r"dt must be finite", id="options-dt-negative"),
    C(lambda e: SettleOptions(integrator="euler", dt=NAN), r"dt must be finite", id="options-dt-nan"),
    C(lambda e: SettleOptions(integrator="euler", dt=math.inf), r"dt must be finite", id="options-dt-inf"),
    C(lambda e: SettleOptions(integrator="euler", dt="0.1"), r"dt must be a real number", id="options-dt-str"),
    C(lambda e: SettleOptions(integrator="euler", dt=True), r"dt must be a real number", id="options-dt-bool"),
    C(lambda e: SettleOptions(atol=0.0), r"atol must be finite", id="options-atol-zero"),
    C(lambda e: SettleOptions(rtol=math.inf), r"rtol must be finite", id="options-rtol-inf"),
    C(lambda e: SettleOptions(atol="1e-6"), r"atol must be a real number", id="options-atol-str"),
    C(lambda e: SettleOptions(max_steps=0), r"max_steps must be an integer >= 1", id="options-max_steps-zero"),
    C(lambda e: SettleOptions(max_steps=1.5), r"max_steps must be an integer", id="options-max_steps-float"),
    C(lambda e: SettleOptions(max_steps=True), r"max_steps must be an integer", id="options-max_steps-bool"),
    C(lambda e: SettleOptions(max_steps="100"), r"max_steps must be an integer", id="options-max_steps-str"),
    C(lambda e: SettleOptions(t_max=0.0), r"t_max must be a real number > 0", id="options-t_max-zero"),
    C(lambda e: SettleOptions(t_max=NAN), r"t_max must be a real number > 0", id="options-t_max-nan"),
    C(lambda e: SettleOptions(t_max="5"), r"t_max must be a real number > 0", id="options-t_max-str"),
    C(lambda e: SettleOptions(integrator="block", t_max=5.0), r"t_max limits integration time",
      id="options-t_max-scheme"),
    C(lambda e: SettleOptions(max_abs=-1.0), r"max_abs must be a real number > 0", id="options-max_abs-negative"),
    C(lambda e: SettleOptions(max_abs=NAN), r"max_abs must be a real number > 0", id="options-max_abs-nan"),
    C(lambda e: SettleOptions(max_abs=True), r"max_abs must be a real number > 0", id="options-max_abs-bool"),
    C(lambda e: SettleOptions(bounds=(1.0, 0.0)), r"bounds must be \(low, high\) with low < high",
      id="options-bounds-order"),
    C(lambda e: SettleOptions(bounds=(0.0,)), r"bounds must be a pair", id="options-bounds-short"),
    C(lambda e: SettleOptions(bounds=0.0), r"bounds must be a pair", id="options-bounds-scalar"),
    C(lambda e: SettleOptions(bounds=("a", "b")), r"bounds\[0\] must be a real number", id="options-bounds-str"),
    C(lambda e: SettleOptions(bounds=(NAN, 1.0)), r"bounds\[0\] must be finite", id="options-bounds-nan"),
    C(lambda e: SettleOptions(project="no"), r"project must be True or False", id="options-project-str"),
    C(lambda e: SettleOptions(stop_at_steady_state=1), r"stop_at_steady_state must be True or False",
      id="options-stop-int"),
    C(lambda e: SettleOptions(record_every=-1), r"record_every must be an integer >= 0",
      id="options-record_every-negative"),
    C(lambda e: SettleOptions(record_every=1.0), r"record_every must be an integer", id="options-record_every-float"),
    C(lambda e: SettleOptions(record_samples=[0.5]), r"record_samples entries must be an integer",
      id="options-record_samples-float"),
    C(lambda e: SettleOptions(record_samples=[-1]), r"record_samples entries must be an integer >= 0",
      id="options-record_samples-negative"),
    C(lambda e: SettleOptions(record_samples=[0, 0]), r"record_samples must be distinct",
      id="options-record_samples-repeated"),
    C(lambda e: SettleOptions(record_samples=3), r"record_samples must be a sequence",
      id="options-record_samples-int"),
    C(lambda e: SettleOptions(integrator="euler", retry_smaller_step=-1), r"retry_smaller_step must be an integer",
      id="options-retry-negative"),
    C(lambda e: SettleOptions(retry_smaller_step=1), r"retry_smaller_step halves the step",
      id="options-retry-dopri5"),

    # ------------------------------------------------------------------ settle / free_phase / nudged_phase
    C(lambda e: free_phase(object(), e.x),
      r"network must be a HopfieldNetwork, ConvHopfieldNetwork, VectorFieldHopfieldNetwork or PCNetwork",
      id="settle-network"),
    C(lambda e: free_phase(e.hop, e.x[0]), r"x must have shape \(any, 3\)", id="settle-x-1d"),
    C(lambda e: free_phase(e.hop, e.x[:, :2]), r"x must have shape \(any, 3\)", id="settle-x-width"),
    C(lambda e: free_phase(e.hop, np.where(e.x > 0.5, NAN, e.x)), r"x must be finite", id="settle-x-nan"),
    C(lambda e: free_phase(e.hop, e.x * math.inf), r"x must be finite", id="settle-x-inf"),
    C(lambda e: free_phase(e.hop, [["a", "b", "c"]]), r"x must hold real numbers", id="settle-x-str"),
    C(lambda e: free_phase(e.hop, e.x, s0=e.s0[:1]), r"s0 must have shape \(2, 6\)", id="settle-s0-batch"),
    C(lambda e: free_phase(e.hop, e.x, s0=e.s0 + NAN), r"s0 must be finite", id="settle-s0-nan"),
    C(lambda e: free_phase(e.hop, e.x, target=e.target[:, :1]), r"target must have shape \(2, 2\)",
      id="settle-target-shape"),
    C(lambda e: free_phase(e.hop, e.x, options={"integrator": "euler"}), r"options must be a SettleOptions",
      id="settle-options-dict"),
    C(lambda e: settle(e.hop, e.x, beta=0.5), r"target is required", id="settle-target-missing"),
    C(lambda e: settle(e.hop, e.x, target=e.target, beta=NAN), r"beta must be finite", id="settle-beta-nan"),
    C(lambda e: settle(e.hop, e.x, target=e.target, beta="0.5"), r"beta must be a real number",
      id="settle-beta-str"),
    C(lambda e: settle(e.hop, e.x, target=e.target, beta=True), r"beta must be a real number",
      id="settle-beta-bool"),
    C(lambda e: settle(e.hop, e.x, target=e.target, clamp_output="yes"), r"clamp_output must be True or False",
      id="settle-clamp_output-str"),
    C(lambda e: settle(e.hop, e.x, phase=3), r"phase must be a non-empty label", id="settle-phase-int"),
    C(lambda e: free_phase(e.hop, e.x, options=SettleOptions(record_every=1, record_samples=[5])),
      r"record_samples must lie in \[0, 1\]", id="settle-record_samples-range"),
    C(lambda e: free_phase(e.tanh, e.x, options=SettleOptions(integrator="projected_euler")),
      r"integrator 'projected_euler' needs a box", id="settle-projected-no-box"),
    C(lambda e: free_phase(e.pc, e.x, options=SettleOptions(integrator="block")),
      r"relaxation scheme 'block' applies to HopfieldNetwork only", id="settle-scheme-pc"),
    C(lambda e: nudged_phase(e.hop, e.x, e.target, 0.0, e.s0), r"beta must be finite.*nonzero",
      id="nudged-beta-zero"),
    C(lambda e: nudged_phase(e.hop, e.x, e.target, 0.5, None), r"s0 is required", id="nudged-s0-missing"),
    C(lambda e: nudged_phase(e.hop, e.x, None, 0.5, e.s0), r"target is required", id="nudged-target-missing"),

    # ------------------------------------------------------------------ HopfieldNetwork
    C(lambda e: HopfieldNetwork([3], [(0, 0)]), r"group_sizes needs an input", id="hopfield-sizes-short"),
    C(lambda e: HopfieldNetwork([3, 0], [(0, 1)]), r"group_sizes\[1\] must be an integer >= 1",
      id="hopfield-sizes-zero"),
    C(lambda e: HopfieldNetwork([3, 2.5], [(0, 1)]), r"group_sizes\[1\] must be an integer",
      id="hopfield-sizes-float"),
    C(lambda e: HopfieldNetwork([3, True], [(0, 1)]), r"group_sizes\[1\] must be an integer",
      id="hopfield-sizes-bool"),
    C(lambda e: HopfieldNetwork([3, "2"], [(0, 1)]), r"group_sizes\[1\] must be an integer",
      id="hopfield-sizes-str"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 5)]), r"connection \(0, 5\) names a group outside",
      id="hopfield-connection-range"),
    C(lambda e: HopfieldNetwork([3, 2], []), r"connections must not be empty", id="hopfield-connections-empty"),
    C(lambda e: HopfieldNetwork([3, 2], [("a", "b")]), r"connections must be pairs", id="hopfield-connection-str"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 1)], activation="relu"), r"activation", id="hopfield-activation"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 1)], group_names=["a", "a"]), r"group_names must be 2 distinct",
      id="hopfield-group_names"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 1)], theta=np.zeros(3)), r"theta must have shape",
      id="hopfield-theta-shape"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 1)], theta=np.full(8, NAN)), r"theta must be finite",
      id="hopfield-theta-nan"),
    C(lambda e: HopfieldNetwork([3, 2], [(0, 1)], seed="abc"), r"seed",
      id="hopfield-seed-str"),
    C(lambda e: HopfieldNetwork.layered([3, "4", 2]), r"sizes\[1\] must be an integer", id="layered-sizes-str"),
    C(lambda e: HopfieldNetwork.layered(3), r"sizes",
      id="layered-sizes-int"),
    C(lambda e: HopfieldNetwork.from_dense(np.triu(np.ones((5, 5)), 1), np.zeros(3), 2, 1),
      r"W must be symmetric", id="from_dense-asymmetric"),
    C(lambda e: HopfieldNetwork.from_dense(np.ones((5, 5)), np.zeros(3), 2, 1), r"W must have a zero diagonal",
      id="from_dense-diagonal"),
    C(lambda e: HopfieldNetwork.from_dense(np.zeros((5, 4)), np.zeros(3), 2, 1), r"W must be square",
      id="from_dense-not-square"),
    C(lambda e: HopfieldNetwork.from_dense(np.full((5, 5), NAN), np.zeros(3), 2, 1), r"W must be finite",
      id="from_dense-nan"),
    C(lambda e: HopfieldNetwork.from_dense(np.zeros((5, 5)), np.zeros(4), 2, 1), r"b must have shape \(3,\)",
      id="from_dense-b-shape"),
    C(lambda e: HopfieldNetwork.from_dense(np.zeros((5, 5)), np.zeros(3), 0, 1), r"n_input must be an integer",
      id="from_dense-n_input-zero"),
    C(lambda e: HopfieldNetwork.from_dense(np.zeros((5, 5)), np.zeros(3), 2.0, 1), r"n_input must be an integer",
      id="from_dense-n_input-float"),
    C(lambda e: HopfieldNetwork.from_dense(np.zeros((5, 5)), np.zeros(3), 4, 3), r"n_input \+ n_output = 7 exceeds",
      id="from_dense-too-many-units"),
    C(lambda e: setattr(e.hop, "theta", np.full(e.hop.n_params, NAN)), r"theta must be finite",
      id="theta-setter-nan"),
    C(lambda e: setattr(e.hop, "theta", np.zeros(e.hop.n_params + 1)), r"theta must have shape",
      id="theta-setter-shape"),
    C(lambda e: setattr(e.hop, "theta", ["a"] * e.hop.n_params), r"theta must hold real numbers",
      id="theta-setter-str"),
    C(lambda e: e.hop.energy(e.x, e.s0[:1]), r"s must have shape \(2, 6\)", id="energy-s-batch"),
    C(lambda e: e.hop.energy(e.x[:, :2], e.s0), r"x must have shape", id="energy-x-width"),
    C(lambda e: e.hop.energy(e.x, e.s0[:, :5]), r"s must have shape", id="energy-s-width"),
    C(lambda e: e.hop.energy_grad_state(e.x, e.s0[None]), r"s must have shape", id="energy_grad_state-s-3d"),
    C(lambda e: e.hop.energy_grad_params(e.x, e.s0 + NAN), r"s must be finite", id="energy_grad_params-s-nan"),
    C(lambda e: e.hop.cost(e.s0, e.target[:1]), r"target must have shape \(2, 2\)", id="cost-target-batch"),

    # ------------------------------------------------------------------ PCNetwork
    C(lambda e: PCNetwork([3]), r"sizes needs an input", id="pc-sizes-short"),
    C(lambda e: PCNetwork([3, -1]), r"sizes\[1\] must be an integer >= 1", id="pc-sizes-negative"),
    C(lambda e: PCNetwork([3, 2], activation="bogus"), r"activation", id="pc-activation"),
    C(lambda e: PCNetwork([3, 4, 2], variances=[1.0]), r"variances", id="pc-variances-length"),
    C(lambda e: PCNetwork([3, 4, 2], variances=[1.0, 0.0]), r"variances", id="pc-variances-zero"),
    C(lambda e: PCNetwork([3, 4, 2], variances=[1.0, NAN]), r"variances", id="pc-variances-nan"),
    C(lambda e: PCNetwork([3, 4, 2], theta=np.full(e.pc.n_params, NAN)), r"theta must be finite", id="pc-theta-nan"),
    C(lambda e: PCNetwork([3, 4, 2], fixed_prediction="yes"), r"fixed_prediction",
      id="pc-fixed_prediction-str"),
    C(lambda e: e.pc.energy(e.x, e.s0[:1]), r"s must have shape", id="pc-energy-s-batch"),

    # ------------------------------------------------------------------ learning rules
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, 0.0, options=e.quick), r"beta must be finite",
      id="ep-beta-zero"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, -0.5, options=e.quick), r"beta must be finite",
      id="ep-beta-negative"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, "0.5", options=e.quick), r"beta must be a real number",
      id="ep-beta-str"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, 0.5, variant="both"), r"variant must be one of",
      id="ep-variant"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, None, 0.5), r"target is required", id="ep-target-missing"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target[:1], 0.5), r"target must have shape",
      id="ep-target-batch"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target + NAN, 0.5), r"target must be finite",
      id="ep-target-nan"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, 0.5, free="free"), r"free must be a PhaseResult",
      id="ep-free-str"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, 0.5, options="euler"), r"options must be a SettleOptions",
      id="ep-options-str"),
    C(lambda e: contrastive.ep_gradient(e.hop, e.x, e.target, 0.5, variant="random", free=e.free, rng=1,
                                     nudged_options=e.quick), r"rng",
      id="ep-rng-int"),
    C(lambda e: contrastive.chl_gradient(e.hop, e.x, None), r"target is required", id="chl-target-missing"),
    C(lambda e: contrastive.chl_gradient(e.hop, e.x[:, :2], e.target), r"x must have shape", id="chl-x-width"),
    C(lambda e: rules.gradient_estimate("hebbian", e.hop, e.x, e.target), r"rule", id="gradient_estimate-rule"),

    # ------------------------------------------------------------------ predictive coding learning
    C(lambda e: predictive_coding.pc_gradient(e.pc, e.x, e.target, variant="loose"), r"variant must be one of",
      id="pc_gradient-variant"),
    C(lambda e: predictive_coding.pc_gradient(e.pc, e.x, None), r"target is required", id="pc_gradient-target-missing"),
    C(lambda e: predictive_coding.pc_gradient(e.pc, e.x, e.target[:, :1]), r"target must have shape",
      id="pc_gradient-target-shape"),
    C(lambda e: predictive_coding.pc_gradient(e.hop, e.x, e.target), r"network must be a PCNetwork",
      id="pc_gradient-network"),
    C(lambda e: predictive_coding.pc_gradient(e.pc, e.x, e.target, rescale="no"), r"rescale",
      id="pc_gradient-rescale-str"),
    C(lambda e: predictive_coding.zil_gradient(PCNetwork([3, 4, 2], variances=[1.0, 0.5], seed=0), e.x, e.target),
      r"Z-IL needs unit variances", id="zil-variances"),

    # ------------------------------------------------------------------ reference gradients
    C(lambda e: gradients.implicit_gradient(e.pc, e.x, e.target, e.free), r"network must be a HopfieldNetwork",
      id="implicit-network"),
    C(lambda e: gradients.implicit_gradient(e.hop, e.x, e.target, e.free, method="lu"), r"method must be",
      id="implicit-method"),
    C(lambda e: gradients.implicit_gradient(e.hop, e.x, e.target, "free"), r"free",
      id="implicit-free-str"),
    C(lambda e: gradients.implicit_gradient(e.hop, e.x, e.target[:1], e.free), r"target must have shape",
      id="implicit-target-batch"),
    C(lambda e: gradients.implicit_gradient(e.hop, e.x, e.target, e.free, residual_tol=-1.0), r"residual_tol",
      id="implicit-residual_tol"),
    C(lambda e: gradients.bptt_gradients(e.hop, e.x, e.target, 0, 1, 0.5), r"n_steps must be an integer",
      id="bptt-n_steps-zero"),
    C(lambda e: gradients.bptt_gradients(e.hop, e.x, e.target, 5, 6, 0.5), r"truncation must be <= n_steps",
      id="bptt-truncation"),
    C(lambda e: gradients.bptt_gradients(e.hop, e.x, e.target, 5, 2, 0.0), r"dt must be finite", id="bptt-dt-zero"),
    C(lambda e: gradients.bptt_gradients(e.hop, e.x, e.target, 5, 2, 0.5, integrator="rk4"),
      r"bptt_gradients integrates with 'euler', 'projected_euler' or 'fixed_point'", id="bptt-integrator"),
    C(lambda e: gradients.bptt_gradients(e.hop, e.x, e.target, 5.0, 2, 0.5), r"n_steps must be an integer",
      id="bptt-n_steps-float"),

    # ------------------------------------------------------------------ compare
    C(lambda e: compare.gradient_metrics(e.hop, np.zeros(3), np.zeros(e.hop.n_params)),
      r"estimate must have shape", id="metrics-estimate-shape"),
    C(lambda e: compare.gradient_metrics(e.hop, np.zeros(e.hop.n_params), np.zeros((2, e.hop.n_params))),
      r"reference must have shape", id="metrics-reference-shape"),
    C(lambda e: compare.gradient_metrics(e.hop, np.full(e.hop.n_params, NAN), np.zeros(e.hop.n_params)),
      r"estimate must be finite", id="metrics-estimate-nan"),
    C(lambda e: compare.gradient_metrics(object(), np.zeros(3), np.zeros(3)), r"network must",
      id="metrics-network"),
    C(lambda e: compare.normalized_rmse(e.hop, np.zeros((2, e.hop.n_params)), np.zeros((3, e.hop.n_params))),
      r"reference_steps must have shape \(2, \d+\)", id="rmse-shape-mismatch"),
    C(lambda e: compare.normalized_rmse(e.hop, np.zeros(e.hop.n_params), np.zeros(e.hop.n_params)),
      r"estimate_steps must have shape", id="rmse-1d"),
    C(lambda e: compare.normalized_rmse(e.hop, np.zeros((2, e.hop.n_params)), np.zeros((2, e.hop.n_params)),
                                        floor=-1.0), r"floor must be finite", id="rmse-floor"),
    C(lambda e: compare.ep_step_updates(e.hop, e.x, e.target, 0.0, e.s0, 3, 0.5), r"beta must be finite",
      id="ep_step_updates-beta"),
    C(lambda e: compare.ep_step_updates(e.hop, e.x, e.target, 0.1, e.s0, 0, 0.5), r"n_steps must be an integer",
      id="ep_step_updates-n_steps"),
    C(lambda e: compare.ep_step_updates(e.hop, e.x, e.target, 0.1, e.s0, 3, "0.5"), r"dt must be a real number",
      id="ep_step_updates-dt-str"),
    C(lambda e: compare.ep_step_updates(e.hop, e.x, e.target, 0.1, e.s0, 3, 0.5, box=(1.0,)), r"box",
      id="ep_step_updates-box"),
    C(lambda e: compare.gdu_check(e.hop, e.x, e.target, 0.1, 3, 5, 0.5),
      r"n_nudged_steps must be <= n_free_steps", id="gdu-nudged-steps"),
    C(lambda e: compare.gdu_check(e.hop, e.x, e.target, 0.1, 3, 2, 0.5, integrator="rk4"), r"integrator",
      id="gdu-integrator"),

    # ------------------------------------------------------------------ optimizers
    C(lambda e: SGD(e.hop, -0.1), r"lr must be finite", id="sgd-lr-negative"),
    C(lambda e: SGD(e.hop, NAN), r"lr must be finite", id="sgd-lr-nan"),
    C(lambda e: SGD(e.hop, "0.1"), r"lr must be a real number", id="sgd-lr-str"),
    C(lambda e: SGD(e.hop, [0.1]), r"lr: give one rate per free layer", id="sgd-lr-list"),
    C(lambda e: SGD(e.hop, {"W_bogus": 0.1}), r"lr: unknown blocks", id="sgd-lr-dict"),
    C(lambda e: SGD(e.hop, 0.1, momentum=1.0), r"momentum must be finite", id="sgd-momentum"),
    C(lambda e: Adam(e.hop, 0.1, beta1=1.0), r"beta1 must be finite", id="adam-beta1"),
    C(lambda e: Adam(e.hop, 0.1, eps=0.0), r"eps must be finite", id="adam-eps"),
    C(lambda e: SGD(e.hop, 0.1).step(e.hop.theta.copy(), np.zeros(3)), r"grad must have shape",
      id="sgd-step-grad-shape"),
    C(lambda e: Adam(e.hop, 0.1).step(e.hop.theta.copy(), np.full(e.hop.n_params, NAN)), r"grad holds a non-finite",
      id="adam-step-grad-nan"),

    # ------------------------------------------------------------------ tasks
    C(lambda e: tasks.moons(n=1), r"n must be an integer >= 2", id="moons-n-small"),
    C(lambda e: tasks.moons(n="10"), r"n must be an integer", id="moons-n-str"),
    C(lambda e: tasks.moons(n=True), r"n must be an integer", id="moons-n-bool"),
    C(lambda e: tasks.moons(noise=-0.1), r"noise must be finite", id="moons-noise-negative"),
    C(lambda e: tasks.moons(noise=NAN), r"noise must be finite", id="moons-noise-nan"),
    C(lambda e: tasks.moons(seed="abc"), r"seed must be", id="moons-seed-str"),
    C(lambda e: tasks.two_spirals(turns=0.0), r"turns must be finite", id="spirals-turns-zero"),
    C(lambda e: tasks.two_spirals(noise=-1.0), r"noise must be finite", id="spirals-noise-negative"),
    C(lambda e: tasks.two_spirals(n=2.5), r"n must be an integer", id="spirals-n-float"),

    # ------------------------------------------------------------------ memory
    C(lambda e: memory.random_patterns(0, 8, e.rng), r"n_patterns must be an integer >= 1",
      id="patterns-n_patterns"),
    C(lambda e: memory.random_patterns(2, True, e.rng), r"n_units must be an integer", id="patterns-n_units-bool"),
    C(lambda e: memory.random_patterns(2, 8, e.rng, min_distance=-1), r"min_distance must be an integer >= 0",
      id="patterns-min_distance"),
    C(lambda e: memory.random_patterns(2, 8, 0), r"rng must be a numpy.random.Generator", id="patterns-rng"),
    C(lambda e: memory.flipped_bits(0.7, 8), r"corruption must be finite, in \[0.0, 0.5\]",
      id="flipped_bits-fraction"),
    C(lambda e: memory.flipped_bits(0.2, 0), r"n_units must be an integer >= 1", id="flipped_bits-n_units"),
    C(lambda e: memory.corrupt(e.patterns[0], 1, e.rng), r"patterns must have 2 dimensions", id="corrupt-1d"),
    C(lambda e: memory.corrupt(e.patterns, 5, e.rng), r"n_flips must lie in \[0, 4\]", id="corrupt-n_flips-range"),
    C(lambda e: memory.corrupt(e.patterns, 1.5, e.rng), r"n_flips must be", id="corrupt-n_flips-float"),
    C(lambda e: memory.corrupt(e.patterns, [1, 1, 1], e.rng), r"n_flips must be", id="corrupt-n_flips-shape"),
    C(lambda e: memory.nearest_pattern(e.patterns[:, :3], e.patterns), r"cues must have shape \(any, 4\)",
      id="nearest-width"),
    C(lambda e: memory.recall_scores(e.patterns[:, :3], e.patterns), r"recalled must have shape \(2, 4\)",
      id="recall_scores-shape"),
    C(lambda e: memory.memory_network(0, 2), r"n_units must be an integer >= 1", id="memory_network-n_units"),
    C(lambda e: memory.memory_network(4, -1), r"n_hidden must be an integer >= 0", id="memory_network-n_hidden"),
    C(lambda e: memory.train_memory(memory.memory_network(4, 2, seed=0), e.patterns[:, :3], "ep-positive",
                                    None, 1, 0.1), r"must have 3 units \(the pattern size\)", id="train_memory-patterns-width"),
    C(lambda e: memory.train_memory(memory.memory_network(4, 2, seed=0), e.patterns, "ep-positive", None, -1, 0.1),
      r"epochs must be an integer >= 0", id="train_memory-epochs"),
    C(lambda e: memory.train_memory(memory.memory_network(4, 2, seed=0), e.patterns, "ep-positive", None, 1, 0.9),
      r"corruption must be finite", id="train_memory-corruption"),
    C(lambda e: memory.train_memory(memory.memory_network(4, 2, seed=0), e.patterns, "bogus", None, 1, 0.1),
      r"rule must be one of", id="train_memory-rule"),
    C(lambda e: memory.recall_table(memory.memory_network(4, 2, seed=0), e.patterns, [], 2, e.rng),
      r"levels must be a non-empty sequence", id="recall_table-levels-empty"),
    C(lambda e: memory.recall_table(memory.memory_network(4, 2, seed=0), e.patterns, [0.9], 2, e.rng),
      r"corruption must be finite", id="recall_table-level-range"),
    C(lambda e: memory.recall_table(memory.memory_network(4, 2, seed=0), e.patterns, [0.1], 0, e.rng),
      r"trials must be an integer >= 1", id="recall_table-trials"),

    # ------------------------------------------------------------------ sweeps
    C(lambda e: sweep.parse_grid(["beta"]), r"a grid entry must look like key=v1,v2", DynsimError,
      id="parse_grid-no-equals"),
    C(lambda e: sweep.parse_grid(["seed=3..1"]), r"grid range '3..1' of 'seed' is empty", DynsimError,
      id="parse_grid-empty-range"),
    C(lambda e: sweep.parse_grid(["beta=1", "beta=2"]), r"grid key 'beta' is given twice", DynsimError,
      id="parse_grid-twice"),
    C(lambda e: sweep.parse_grid([]), r"the grid is empty", DynsimError, id="parse_grid-empty"),
    C(lambda e: sweep.parse_grid("beta=1"), r"grid items must be a list of 'key=values' strings", DynsimError,
      id="parse_grid-str"),
    C(lambda e: sweep.grid_points([("beta", ["1"])]), r"grid must be a dict", DynsimError, id="grid_points-list"),
    C(lambda e: sweep.run_sweep("settle_hopfield", {"beta": ["0.1"]}, e.folder / "s", workers=0),
      r"workers must be an integer >= 1", DynsimError, id="run_sweep-workers-zero"),
    C(lambda e: sweep.run_sweep("settle_hopfield", {"beta": ["0.1"]}, e.folder / "s", workers="2"),
      r"workers must be an integer >= 1", DynsimError, id="run_sweep-workers-str"),
    C(lambda e: sweep.run_sweep("settle_hopfield", {"out": ["x"]}, e.folder / "s"), r"the grid cannot set 'out'",
      DynsimError, id="run_sweep-grid-out"),
    C(lambda e: sweep.run_sweep("no_such_scenario", {"beta": ["0.1"]}, e.folder / "s"), r"no_such_scenario",
      DynsimError, id="run_sweep-scenario"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"gamma": [1]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid: unknown keys \['gamma'\]", id="ep_sweep-grid-key"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"beta": 0.1},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['beta'\] must be a non-empty list", id="ep_sweep-grid-scalar"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"beta": [-0.1]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['beta'\]", id="ep_sweep-grid-beta"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"dt": [0.0]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['dt'\]", id="ep_sweep-grid-dt"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"integrator": ["midpoint"]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['integrator'\]", id="ep_sweep-grid-integrator"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"free_steps": [0]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['free_steps'\]", id="ep_sweep-grid-free_steps"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"variant": ["both"]},
                                                   reference=np.zeros(e.hop.n_params)),
      r"grid\['variant'\]", id="ep_sweep-grid-variant"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.hop, e.x, e.target, {"beta": [0.1]}, reference=np.zeros(3)),
      r"reference must have shape", id="ep_sweep-reference"),
    C(lambda e: estimator_sweep.sweep_ep_estimates(e.pc, e.x, e.target, {"beta": [0.1]},
                                                   reference=np.zeros(e.pc.n_params)),
      r"network must be a HopfieldNetwork", id="ep_sweep-network"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.hop, e.x, e.target, {"dt": [0.1]}), r"network must be a PCNetwork",
      id="pc_sweep-network"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.pc, e.x, e.target, {"speed": [1]}), r"grid: unknown keys",
      id="pc_sweep-grid-key"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.pc, e.x, e.target, {"output_variance": [0.0]}),
      r"grid\['output_variance'\]", id="pc_sweep-grid-variance"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.pc, e.x, e.target, {"inference_steps": [2.5]}),
      r"grid\['inference_steps'\]", id="pc_sweep-grid-steps"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.pc, e.x, e.target, {"integrator": ["block"]}),
      r"grid\['integrator'\]", id="pc_sweep-grid-integrator"),
    C(lambda e: estimator_sweep.error_norms(e.pc, e.x, e.free), r"the phase has no recorded trajectory",
      id="error_norms-no-trajectory"),
    C(lambda e: estimator_sweep.sweep_estimates(object(), e.x, e.target, {}),
      r"network must be a HopfieldNetwork, a ConvHopfieldNetwork, a PCNetwork or a ConvPCNetwork, got object",
      id="sweep_estimates-network"),
    C(lambda e: estimator_sweep.sweep_estimates(e.pc, e.x, e.target, {"beta": [0.1]}), r"grid: unknown keys",
      id="sweep_estimates-pc-grid-key"),
    C(lambda e: estimator_sweep.sweep_pc_updates(e.pc, e.x, e.target, {"dt": [0.1]}, progress=3),
      r"progress must be callable", id="pc_sweep-progress"),

    # ------------------------------------------------------------------ datasets, fitting, checkpoints, logs
    C(lambda e: idx.load("cifar", data_dir=e.folder, download=False), r"cifar", id="load-name"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False, validation_size=-1),
      r"validation_size", id="load-validation_size-negative"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False, validation_size=60_000),
      r"validation_size", id="load-validation_size-large"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False, validation_size=True),
      r"validation_size", id="load-validation_size-bool"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False, validation_size="10"),
      r"validation_size", id="load-validation_size-str"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False, dtype=np.int32), r"dtype",
      id="load-dtype"),
    C(lambda e: idx.load("mnist", data_dir=e.folder, download=False), r"missing", DynsimError, id="load-missing-files"),
    C(lambda e: fit(e.hop, [e.task], "ep-positive", SGD(e.hop, 0.1), 1, 2), r"data must be a dict",
      id="fit-data-list"),
    C(lambda e: fit(e.hop, {"test": e.task}, "ep-positive", SGD(e.hop, 0.1), 1, 2), r"'train' split",
      id="fit-data-no-train"),
    C(lambda e: fit(e.hop, {"train": (e.x, e.target)}, "ep-positive", SGD(e.hop, 0.1), 1, 2),
      r"data\['train'\] must be a dynsim.datasets.tasks.Task", id="fit-data-tuple"),
    C(lambda e: fit(e.hop, {"train": tasks.Task("t", e.x[:, :2], np.array([0, 1]), np.eye(2))},
                            "ep-positive", SGD(e.hop, 0.1), 1, 2), r"data\['train'\].x must have shape",
      id="fit-data-x-width"),
    C(lambda e: fit(e.hop, {"train": e.task}, "ep-positive", SGD(e.hop, 0.1), -1, 2),
      r"epochs must be an integer", id="fit-epochs"),
    C(lambda e: fit(e.hop, {"train": e.task}, "ep-positive", SGD(e.hop, 0.1), 1, 0),
      r"batch_size must be an integer", id="fit-batch_size"),
    C(lambda e: fit(e.hop, {"train": e.task}, "ep-positive", SGD(e.hop, 0.1), 1, 2, beta=0.0),
      r"beta must be finite", id="fit-beta"),
    C(lambda e: fit(e.hop, {"train": e.task}, "ep-positive", SGD(e.hop, 0.1), 1, 2, resume=True),
      r"resume=True needs a checkpoint", id="fit-resume"),
    C(lambda e: fit(e.hop, {"train": e.task}, "hebbian", SGD(e.hop, 0.1), 1, 2, options=e.quick),
      r"rule", id="fit-rule"),
    C(lambda e: fit(e.hop, {"train": e.task}, "ep-positive", "sgd", 1, 2, options=e.quick),
      r"optimizer", id="fit-optimizer-str"),
    C(lambda e: load_checkpoint(e.garbage), r"garbage.h5", DynsimError, id="checkpoint-garbage"),
    C(lambda e: load_checkpoint(e.not_a_log), r"plain.h5 is not a dynsim checkpoint", DynsimError,
      id="checkpoint-not-ours"),
    C(lambda e: load_checkpoint(e.folder / "missing.h5"), r"no checkpoint at", DynsimError, id="checkpoint-missing"),
    C(lambda e: TrajectoryLog(e.folder / "a.h5", config="beta=1"), r"config must be a dict", id="log-config-str"),
    C(lambda e: TrajectoryLog(e.folder / "b.h5", {}).record_relaxation([]), r"phases must hold at least one",
      id="log-phases-empty"),
    C(lambda e: TrajectoryLog(e.folder / "c.h5", {}).record_relaxation([e.free], every=0), r"every",
      id="log-every-zero"),
    C(lambda e: TrajectoryLog(e.folder / "d.h5", {}).record_table("t", {"a": [1, 2], "b": [1]}), r"column",
      id="log-table-ragged"),
    C(lambda e: read_log(e.garbage), r"garbage.h5.*not an HDF5 file", DynsimError, id="read_log-garbage"),
    C(lambda e: read_log(e.not_a_log), r"plain.h5", DynsimError, id="read_log-not-ours"),
    C(lambda e: read_log(e.folder), r"is a folder", DynsimError, id="read_log-folder"),
    C(lambda e: read_log(e.folder / "missing.h5"), r"no such log file", DynsimError, id="read_log-missing"),
]


@pytest.mark.filterwarnings("ignore::dynsim.validation.NotConvergedWarning")  # the short fixture relaxations
@pytest.mark.parametrize("call,pattern,expected", [
    c if len(c.values) == 3 else pytest.param(*c.values, ValidationError, marks=c.marks, id=c.id) for c in CASES])
def test_bad_argument_is_refused_with_a_message_naming_it(env, call, pattern, expected):
    with np.errstate(all="ignore"), pytest.raises(expected, match=pattern) as info:
        call(env)
    if expected is not ArgumentError:
        assert isinstance(info.value, DynsimError), type(info.value)


def test_validation_errors_are_integrator_argument_errors_and_value_errors():
    assert issubclass(ValidationError, ArgumentError) and issubclass(ValidationError, ValueError)
    assert issubclass(ValidationError, DynsimError)


CLI_CASES = [
    pytest.param(["run", "no_such_scenario"], "no_such_scenario", id="cli-run-unknown"),
    pytest.param(["run", "settle_hopfield", "--set", "beta"], "beta", id="cli-run-set-malformed"),
    pytest.param(["show", "{folder}/missing.h5"], "missing.h5", id="cli-show-missing"),
    pytest.param(["show", "{folder}/garbage.h5"], "garbage.h5", id="cli-show-garbage"),
    pytest.param(["plot", "{folder}/plain.h5"], "plain.h5", id="cli-plot-not-a-log"),
    pytest.param(["sweep", "settle_hopfield", "--grid", "beta"], "grid entry", id="cli-sweep-grid"),
    pytest.param(["sweep", "settle_hopfield", "--grid", "beta=0.1", "--workers", "0"], "workers",
                 id="cli-sweep-workers"),
]


@pytest.mark.parametrize("argv,named", CLI_CASES)
def test_the_command_line_reports_bad_arguments_in_one_line(env, capsys, argv, named):
    from dynsim.cli.main import main

    code = main([a.format(folder=env.folder) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err and "Traceback" not in err


def test_float_array_fast_path_still_finds_every_non_finite_value():
    from dynsim.validation import float_array

    a = np.ones((4, 5))
    assert float_array("a", a, shape=(4, 5)) is a  # already as wanted: returned as it is
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[2, 3] = bad
        with pytest.raises(ValidationError, match=r"a must be finite; found .* at index \[2, 3\]"):
            float_array("a", b, shape=(4, 5))
    # Finite values whose sum overflows are accepted by the exact test.
    big = np.full((2, 2), 1e308)
    assert float_array("big", big) is big


def test_arrays_of_another_batch_are_refused_before_the_kernels_which_do_not_test_indices():
    # The kernels copy with element loops (integrators._numerics.copy_rows and the like), which Numba runs without
    # index tests: a drive or target of another batch must be refused at the boundary or by the loop's own test, never
    # read out of bounds.
    from dynsim.networks.pc import PC_FIELD
    from dynsim.relax import block_relaxation, layered_euler
    from integrators._numerics import add_rows, copy_prefix, copy_rows

    net = HopfieldNetwork.layered([3, 4, 2], activation="hard_sigmoid", seed=0)
    s0 = np.zeros((5, net.n_free))
    drive = net.input_drive(np.ones((5, 3)))
    relaxations = (lambda **kw: block_relaxation.relax(net, s0, scheme="block", max_steps=3, **kw),
                   lambda **kw: layered_euler.relax(net, s0, method="euler", dt=0.1, max_steps=3, **kw))
    for relax in relaxations:
        for bad in (drive[:3], drive[:, :4]):
            with pytest.raises(ValidationError, match=re.escape(f"drive must have shape (5, 6) for the 5 samples of s0, "
                                                                f"got {bad.shape}")):
                relax(drive=bad)
        with pytest.raises(ValidationError, match=r"target must have shape \(5, 2\) .* got \(4, 2\)"):
            relax(drive=drive, target=np.zeros((4, 2)))

    pc = PCNetwork([3, 4, 2], seed=0)
    args = pc.kernel_args(pc.input_drive(np.ones((3, 3))))  # predictions of 3 samples for a state of 5
    with pytest.raises(ValueError, match="mu_hat .* and the state s differ in shape"):
        integrators.integrate(PC_FIELD, np.zeros((5, pc.n_free)), args, method="euler", dt=0.1, max_steps=3)

    with pytest.raises(ValueError, match="copy_rows: the source's shape differs"):
        copy_rows(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="add_rows: the source's shape differs"):
        add_rows(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="copy_prefix: an array is shorter"):
        copy_prefix(np.zeros(4), np.zeros(2), 3)
