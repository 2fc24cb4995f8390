"""Divergence: runaway norms count, messages name phase, step, sample and layer, and the step-halving retry."""
import math
import warnings

import numpy as np
import pytest

import integrators
from dynsim.learning.contrastive import ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import DivergenceSite, SettleOptions, StepRetry, free_phase, locate_divergence, settle
from dynsim.validation import DivergenceError, StepHalvedWarning, ValidationError

from conftest import LINEAR


# ----------------------------------------------------------------------------- runaway norms
@pytest.mark.parametrize("method,dt", [("euler", 3.0), ("heun", 3.0), ("rk4", 3.5), ("dopri5", None)])
def test_a_state_whose_norm_overflows_is_a_divergence_even_with_max_abs_inf(method, dt):
    # y' = -y: Euler at dt = 3 multiplies y by -2 per step. Every entry stays finite up to ~1e308, but
    # the norm overflows near 1e154; before the fix the residual and the tolerance were both inf and
    # `inf <= inf` reported a steady state. dopri5 grows y instead with y' = +y.
    A = -np.eye(3) if dt is not None else np.eye(3)
    y0 = np.array([[1.0, 0.5, 0.2], [0.1, 0.1, 0.1]])
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(3)), method=method, dt=dt, max_abs=math.inf,
                                max_steps=100_000)
    assert res.status_name == "diverged", res.message
    assert res.diverged_sample == 0 and res.diverged_step > 0
    assert np.isfinite(res.y).all() and np.isfinite(res.residual).all() and np.isfinite(res.tolerance).all()
    assert "norm overflowed" in res.message


def test_a_huge_initial_state_diverges_at_step_zero():
    res = integrators.integrate(LINEAR, np.full((1, 4), 1e200), (-np.eye(4), np.zeros(4)), method="euler",
                                dt=0.1, max_abs=math.inf)
    assert res.status_name == "diverged" and res.diverged_step == 0


def test_large_but_finite_norms_are_not_divergences():
    # Entries of 1e150 in 2 units: the sum of squares 2e300 is finite, and the relaxation converges.
    res = integrators.integrate(LINEAR, np.full((1, 2), 1e150), (-np.eye(2), np.zeros(2)), method="euler",
                                dt=0.5, max_abs=math.inf, max_steps=10_000)
    assert res.status_name == "converged"


# ----------------------------------------------------------------------------- where it diverged
def stiff_pc():
    """A PC network whose inference is linear (fixed prediction) and stiff (output variance 0.1).

    Its Euler stability step lies between 0.15 and 0.3: dt = 0.6 and 0.3 diverge, 0.15 converges.
    """
    rng = np.random.default_rng(0)
    net = PCNetwork([3, 4, 2], activation="tanh", variances=[1.0, 0.1], fixed_prediction=True, seed=0)
    x = rng.uniform(-1, 1, size=(5, 3))
    s0 = net.input_drive(x) + rng.standard_normal((5, net.n_free))
    return net, x, s0


def test_the_phase_message_names_phase_step_sample_layer_and_unit():
    net, x, s0 = stiff_pc()
    res = free_phase(net, x, s0=s0, options=SettleOptions(integrator="euler", dt=0.6, max_steps=1000))
    assert res.status == "diverged" and res.retries == []
    site = res.divergence
    assert isinstance(site, DivergenceSite)
    assert (site.phase, site.layer) == ("free", "output")
    assert site.step == res.integration.diverged_step and site.sample == res.integration.diverged_sample
    assert net.locate_unit(site.column) == (site.layer, site.unit)
    expected = (f"the free phase diverged at step {site.step} in sample {site.sample}, "
                f"layer 'output' (unit {site.unit}): ")
    assert res.message.startswith(expected), res.message
    # The integrator's own message gains the layer, so code quoting it names the layer too.
    assert f"in sample {site.sample}, layer 'output' (unit {site.unit}): " in res.integration.message
    assert np.isfinite(res.state).all()


def test_the_unit_named_is_the_one_that_ran_away():
    # Hopfield tanh network, Euler with a step far beyond stability: the unit named is the first whose
    # one-step prediction (exactly the next Euler state) leaves max_abs.
    net = HopfieldNetwork.layered([4, 6, 5, 3], activation="tanh", seed=0)
    x = np.random.default_rng(0).uniform(size=(3, 4))
    options = SettleOptions(integrator="euler", dt=8.0, max_steps=300)
    res = free_phase(net, x, options=options)
    assert res.status == "diverged"
    f = integrators.solve.evaluate_field(net.vector_field, res.state, net.kernel_args(net.input_drive(x)))
    ahead = res.state + 8.0 * f
    b, site = res.integration.diverged_sample, res.divergence
    assert np.abs(ahead[b]).max() > options.max_abs
    assert site.column == int(np.argmax(np.abs(ahead[b])))
    assert site.value == pytest.approx(ahead[b, site.column])
    assert site.layer in net.group_names[1:]


def test_locate_divergence_is_none_for_a_relaxation_that_did_not_diverge():
    net, x, s0 = stiff_pc()
    res = free_phase(net, x, s0=s0, options=SettleOptions(integrator="euler", dt=0.15, max_steps=1000))
    assert res.converged and res.divergence is None and res.message == res.integration.message
    args = net.kernel_args(net.input_drive(x))
    assert locate_divergence(net, res.integration, args) is None
    with pytest.raises(ValidationError, match="integration must be"):
        locate_divergence(net, res, args)


def test_relaxation_schemes_name_the_layer_too():
    net = HopfieldNetwork.layered([4, 6, 3], activation="hard_sigmoid", seed=1)
    x = np.random.default_rng(1).uniform(size=(2, 4))
    res = free_phase(net, x, options=SettleOptions(integrator="fixed_point", max_abs=1e-3))
    assert res.status == "diverged"
    assert "sweep" in res.integration.message and "layer '" in res.integration.message
    assert res.divergence.layer in net.group_names[1:]


def test_learning_rules_raise_a_divergence_error_naming_the_layer():
    net, x, s0 = stiff_pc()
    hop = HopfieldNetwork.layered([4, 6, 5, 3], activation="tanh", seed=0)
    xh = np.random.default_rng(0).uniform(size=(3, 4))
    with pytest.raises(DivergenceError, match=r"free phase diverged.* in sample \d+, layer '\w+' \(unit \d+\)"):
        ep_gradient(hop, xh, np.zeros((3, 3)), 0.5, options=SettleOptions(integrator="euler", dt=8.0))


# ----------------------------------------------------------------------------- step-halving retry
def test_a_diverged_fixed_step_relaxation_is_retried_with_half_the_step():
    net, x, s0 = stiff_pc()
    options = SettleOptions(integrator="euler", dt=0.6, max_steps=1000, retry_smaller_step=3)
    with pytest.warns(StepHalvedWarning) as record:
        res = free_phase(net, x, s0=s0, options=options)
    assert res.converged, res.message
    assert [r.dt for r in res.retries] == [0.6, 0.3] and res.dt == pytest.approx(0.15)
    assert all(isinstance(r, StepRetry) and "the free phase diverged at step" in r.message and "layer 'output'"
               in r.message for r in res.retries)
    halved = [w for w in record if issubclass(w.category, StepHalvedWarning)]
    assert len(halved) == 2
    assert "retrying with dt=0.3 and max_steps=2000 (halving 1 of at most 3)" in str(halved[0].message)
    # The retry starts from the same state: it equals a direct run at the final step.
    direct = free_phase(net, x, s0=s0, options=SettleOptions(integrator="euler", dt=0.15, max_steps=4000))
    np.testing.assert_array_equal(res.state, direct.state)
    assert res.integration.n_steps == direct.integration.n_steps


def test_the_retries_are_in_the_log(tmp_path):
    import json

    import h5py

    from dynsim.io.log import TrajectoryLog

    net, x, s0 = stiff_pc()
    options = SettleOptions(integrator="euler", dt=0.6, max_steps=1000, retry_smaller_step=3)
    with pytest.warns(StepHalvedWarning):
        res = free_phase(net, x, s0=s0, options=options)
    with TrajectoryLog(tmp_path / "log.h5", {}) as log:
        index = log.record_relaxation([res])
    with h5py.File(tmp_path / "log.h5", "r") as f:
        group = next(iter(f["relaxations"].values()))
        retries = json.loads(group["free"].attrs["retries"])
    assert index == 0
    assert [r["dt"] for r in retries] == [0.6, 0.3]
    assert all("diverged at step" in r["message"] for r in retries)


def test_retries_that_run_out_report_the_last_divergence():
    net, x, s0 = stiff_pc()
    options = SettleOptions(integrator="euler", dt=0.6, max_steps=1000, retry_smaller_step=1)
    with pytest.warns(StepHalvedWarning):
        res = free_phase(net, x, s0=s0, options=options)
    assert res.status == "diverged" and res.dt == pytest.approx(0.3)
    assert [r.dt for r in res.retries] == [0.6]
    assert res.message.startswith("the free phase diverged at step")


def test_without_the_option_nothing_is_retried_and_nothing_is_warned():
    net, x, s0 = stiff_pc()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepHalvedWarning)
        res = free_phase(net, x, s0=s0, options=SettleOptions(integrator="euler", dt=0.6, max_steps=1000))
    assert res.status == "diverged" and res.retries == [] and res.dt == 0.6


def test_the_retry_applies_to_nudged_phases():
    net, x, s0 = stiff_pc()
    target = np.zeros((x.shape[0], net.n_output))
    options = SettleOptions(integrator="euler", dt=0.6, max_steps=1000, retry_smaller_step=2)
    with pytest.warns(StepHalvedWarning, match="the nudged phase diverged"):
        res = settle(net, x, s0=s0, target=target, beta=0.5, options=options, phase="nudged")
    assert res.converged and len(res.retries) == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(integrator="dopri5", retry_smaller_step=1), "dopri5 adapts its step"),
    (dict(integrator="fixed_point", retry_smaller_step=1), "relaxation schemes count sweeps"),
    (dict(integrator="euler", retry_smaller_step=-1), "retry_smaller_step must be an integer >= 0"),
    (dict(integrator="euler", retry_smaller_step=True), "retry_smaller_step must be an integer >= 0"),
    (dict(integrator="euler", retry_smaller_step=2.0), "retry_smaller_step must be an integer >= 0"),
    (dict(integrator="euler", retry_smaller_step=31), "at most 30"),
], ids=["dopri5", "scheme", "negative", "bool", "float", "too-many"])
def test_the_retry_option_is_validated(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        SettleOptions(**kwargs)


def test_the_option_is_in_the_description():
    assert SettleOptions(integrator="rk4", retry_smaller_step=2).describe()["retry_smaller_step"] == 2
