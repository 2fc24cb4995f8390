"""EP and CHL against recurrent backprop, BPTT and finite differences; the GDU property; training."""
import warnings

import numpy as np
import pytest

from dynsim.datasets.tasks import moons, two_spirals, xor
from dynsim.learning.contrastive import chl_gradient, ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.references.compare import gdu_check, gradient_metrics, normalized_rmse
from dynsim.references.gradients import bptt_gradients, implicit_gradient
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.training.loop import train
from dynsim.training.optimizers import SGD, Adam, NonFiniteGradientError, learning_rates
from dynsim.validation import NotConvergedWarning, ValidationError

TIGHT = SettleOptions(integrator="rk4", dt=0.5, atol=1e-11, rtol=1e-11)


@pytest.fixture
def problem(rng):
    """A converged two-hidden-layer logistic network with a batch of 5."""
    net = HopfieldNetwork.layered([6, 10, 8, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(5, 6))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    free = free_phase(net, x, target=y, options=TIGHT)
    assert free.converged
    return net, x, y, free


def loss_by_relaxation(net, x, y, theta, s0):
    saved = net.theta.copy()
    net.theta = theta
    try:
        return net.cost(free_phase(net, x, s0=s0, options=TIGHT).state, y).mean()
    finally:
        net.theta = saved


def test_recurrent_backprop_equals_finite_differences_of_the_settled_cost(problem, rng):
    net, x, y, free = problem
    ref = implicit_gradient(net, x, y, free)
    # The settled states carry errors ~1e-11 (the tolerance): h = 1e-4 keeps their effect on the
    # difference quotient near 1e-7, above the O(h^2) truncation error.
    h = 1e-4
    for k in rng.choice(net.n_params, 12, replace=False):
        e = np.zeros(net.n_params)
        e[k] = h
        fd = (loss_by_relaxation(net, x, y, net.theta + e, free.state)
              - loss_by_relaxation(net, x, y, net.theta - e, free.state)) / (2 * h)
        assert ref.gradient[k] == pytest.approx(fd, rel=1e-4, abs=3e-7)


def test_recurrent_backprop_with_a_box_equals_finite_differences(rng):
    # Hard sigmoid: many units pinned at 0 or 1; the active-set solve must still be exact.
    net = HopfieldNetwork.layered([2, 8, 2], seed=1)
    theta = net.theta.copy()
    theta[-net.n_free:] = 0.3
    net.theta = theta
    task = xor()
    opt = SettleOptions(integrator="projected_euler", dt=0.5, atol=1e-12, rtol=1e-12)
    free = free_phase(net, task.x, target=task.targets, options=opt)
    ref = implicit_gradient(net, task.x, task.targets, free)
    assert 0 < ref.pinned.sum() < ref.pinned.size
    assert np.abs(ref.gradient).max() > 1e-2
    h = 1e-6
    for k in range(net.n_params):
        e = np.zeros(net.n_params)
        e[k] = h
        costs = []
        for sign in (1, -1):
            net.theta = theta + sign * e
            costs.append(net.cost(free_phase(net, task.x, s0=free.state, options=opt).state, task.targets).mean())
        net.theta = theta
        assert ref.gradient[k] == pytest.approx((costs[0] - costs[1]) / (2 * h), abs=1e-6)


def test_dense_and_conjugate_gradient_solves_agree(problem):
    net, x, y, free = problem
    dense = implicit_gradient(net, x, y, free, method="dense").gradient
    cg = implicit_gradient(net, x, y, free, method="cg").gradient
    np.testing.assert_allclose(cg, dense, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant,order", [("positive", 1), ("negative", 1), ("centered", 2)])
def test_ep_error_shrinks_with_beta_at_the_expected_order(problem, variant, order):
    net, x, y, free = problem
    ref = implicit_gradient(net, x, y, free).gradient
    betas = np.array([0.1, 0.05, 0.02, 0.01])
    errors = [np.linalg.norm(ep_gradient(net, x, y, b, variant, options=TIGHT, free=free).gradient - ref)
              / np.linalg.norm(ref) for b in betas]
    slope = np.polyfit(np.log(betas), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, f"{variant}: error ~ beta^{slope:.2f}, expected beta^{order}"


def test_centered_ep_matches_recurrent_backprop_in_every_layer(problem):
    net, x, y, free = problem
    ref = implicit_gradient(net, x, y, free).gradient
    est = ep_gradient(net, x, y, 0.01, "centered", options=TIGHT, free=free)
    metrics = gradient_metrics(net, est.gradient, ref)
    assert {"W_input_hidden_1", "W_hidden_1_hidden_2", "W_hidden_2_output", "b_output"} <= set(metrics)
    for block, m in metrics.items():
        assert m["cosine"] >= 0.999, (block, m)
        assert m["sign_agreement"] == 1.0


def test_one_sided_estimates_bracket_the_gradient(problem):
    # Positive and negative nudging err in opposite directions; their mean is the centered estimate.
    net, x, y, free = problem
    pos = ep_gradient(net, x, y, 0.05, "positive", options=TIGHT, free=free).gradient
    neg = ep_gradient(net, x, y, 0.05, "negative", options=TIGHT, free=free).gradient
    cen = ep_gradient(net, x, y, 0.05, "centered", options=TIGHT, free=free).gradient
    np.testing.assert_allclose((pos + neg) / 2, cen, rtol=1e-10, atol=1e-13)
    ref = implicit_gradient(net, x, y, free).gradient
    assert np.dot(pos - ref, neg - ref) < 0


def test_random_sign_draws_both_signs(problem):
    net, x, y, free = problem
    rng = np.random.default_rng(0)
    signs = {np.sign(ep_gradient(net, x, y, 0.05, "random", options=TIGHT, free=free, rng=rng).betas[1])
             for _ in range(12)}
    signs |= {np.sign(ep_gradient(net, x, y, 0.05, "random", options=TIGHT, free=free, rng=rng).betas[0])
              for _ in range(12)}
    assert {-1.0, 1.0} <= signs


def test_bptt_over_all_steps_equals_finite_differences_of_the_discrete_dynamics(rng):
    net = HopfieldNetwork.layered([4, 6, 3], activation="tanh", seed=2)
    x = rng.uniform(size=(3, 4))
    y = np.eye(3)[[0, 1, 2]]
    T, dt = 25, 0.3
    res = bptt_gradients(net, x, y, n_steps=T, truncation=T, dt=dt)
    euler = SettleOptions(integrator="euler", dt=dt, max_steps=T, stop_at_steady_state=False)
    theta = net.theta.copy()
    h = 1e-6
    for k in range(net.n_params):
        e = np.zeros(net.n_params)
        e[k] = h
        costs = []
        for sign in (1, -1):
            net.theta = theta + sign * e
            costs.append(net.cost(free_phase(net, x, options=euler).state, y).mean())
        net.theta = theta
        assert res.cumulative[-1][k] == pytest.approx((costs[0] - costs[1]) / (2 * h), rel=1e-6, abs=1e-10)


def test_long_bptt_equals_recurrent_backprop(problem):
    net, x, y, free = problem
    ref = implicit_gradient(net, x, y, free).gradient
    bptt = bptt_gradients(net, x, y, n_steps=2000, truncation=1500, dt=0.2)
    np.testing.assert_allclose(bptt.cumulative[-1], ref, rtol=1e-8, atol=1e-11)


def test_gdu_ep_per_step_updates_match_bptt_per_step_gradients(problem):
    net, x, y, _ = problem
    result = gdu_check(net, x, y, beta=0.01, n_free_steps=800, n_nudged_steps=40, dt=0.2)
    for block, rmse in result.rmse.items():
        assert rmse <= 0.05, (block, rmse)
    assert result.sign_agreement["all"] == 1.0
    # At a large beta the two differ clearly: the test can fail.
    coarse = gdu_check(net, x, y, beta=1.0, n_free_steps=800, n_nudged_steps=40, dt=0.2)
    assert coarse.rmse["all"] > 0.2


def test_normalized_rmse_formula():
    net = HopfieldNetwork.layered([1, 1], activation="tanh", seed=0)  # 1 weight + 1 bias
    n = np.array([[1.0, 0.0], [2.0, 0.0]])
    d = np.array([[1.0, 0.0], [1.0, 0.0]])
    out = normalized_rmse(net, n, d)
    assert out["W_input_output"] == pytest.approx(np.sqrt(1.0 / 5.0))
    assert np.isnan(out["b_output"])  # both sequences zero there


def test_chl_and_ep_update_only_parameters_and_leave_inputs_alone(problem):
    net, x, y, free = problem
    x_before = x.copy()
    for est in (chl_gradient(net, x, y, options=TIGHT, free=free),
                ep_gradient(net, x, y, 0.1, "centered", options=TIGHT, free=free)):
        assert est.gradient.shape == (net.n_params,)
        np.testing.assert_array_equal(x, x_before)
    # The clamped inputs are not units of the state and have no bias to learn.
    assert "b_input" not in net.parameter_blocks()
    assert free.state.shape == (5, net.n_free) and net.n_free == 10 + 8 + 3


def test_chl_clamped_phase_holds_the_output_at_the_target(problem):
    net, x, y, free = problem
    est = chl_gradient(net, x, y, options=TIGHT, free=free)
    np.testing.assert_array_equal(est.phases["clamped"].state[:, net.output_slice], y)


@pytest.mark.parametrize("rule", ["ep-positive", "ep-centered", "chl"])
def test_xor_is_learned_to_full_accuracy(rule):
    task = xor()
    net = HopfieldNetwork.layered([2, 16, 2], seed=1)
    theta = net.theta.copy()
    theta[-net.n_free:] = 0.1  # small positive biases: no unit starts pinned at 0 for every input
    net.theta = theta
    options = SettleOptions(integrator="projected_euler", dt=0.5, atol=1e-6, rtol=1e-6)
    history = train(net, task, rule, SGD(net, lr=0.2), epochs=150, batch_size=4, beta=0.5, options=options)
    assert history.accuracy[0] < 1.0
    assert history.accuracy[-1] == 1.0, history.accuracy[-10:]
    assert history.loss[-1] < 0.5 * history.loss[0]


def test_optimizers_and_learning_rates(problem):
    net, *_ = problem
    rates = learning_rates(net, [0.1, 0.05, 0.01])
    blocks = net.parameter_blocks()
    assert np.all(rates[blocks["W_input_hidden_1"]] == 0.1) and np.all(rates[blocks["b_hidden_1"]] == 0.1)
    assert np.all(rates[blocks["W_hidden_2_output"]] == 0.01) and np.all(rates[blocks["b_output"]] == 0.01)
    grad = np.linspace(-1, 1, net.n_params)
    theta = net.theta.copy()
    SGD(net, lr=0.1).step(theta, grad)
    np.testing.assert_allclose(theta, net.theta - 0.1 * grad)
    # Adam's first step moves every parameter by lr in the direction of -sign(grad).
    theta = net.theta.copy()
    Adam(net, lr=1e-3).step(theta, grad)
    np.testing.assert_allclose(theta - net.theta, -1e-3 * np.sign(grad), rtol=1e-6, atol=1e-12)
    bad = grad.copy()
    bad[3] = np.nan
    theta = net.theta.copy()
    with pytest.raises(NonFiniteGradientError, match="index 3"):
        SGD(net, lr=0.1).step(theta, bad)
    np.testing.assert_array_equal(theta, net.theta)
    with pytest.raises(ValidationError, match="one rate per free layer"):
        learning_rates(net, [0.1, 0.2])


def test_generated_tasks_are_in_the_unit_box():
    for task in (moons(50), two_spirals(60), xor()):
        assert task.x.min() >= 0 and task.x.max() <= 1
        assert task.targets.shape == (task.x.shape[0], 2)
        np.testing.assert_array_equal(task.targets.argmax(1), task.labels)


def test_bad_input_to_the_learning_rules(problem):
    net, x, y, free = problem
    with pytest.raises(ValidationError, match="beta must be finite, in"):
        ep_gradient(net, x, y, 0.0, options=TIGHT, free=free)
    with pytest.raises(ValidationError, match="target is required"):
        ep_gradient(net, x, None, 0.1, options=TIGHT, free=free)
    with pytest.raises(ValidationError, match=r"target must have shape \(5, 3\)"):
        ep_gradient(net, x, y[:, :2], 0.1, options=TIGHT, free=free)
    with pytest.raises(ValidationError, match="variant must be one of"):
        ep_gradient(net, x, y, 0.1, "sideways", options=TIGHT, free=free)


def test_a_free_phase_that_did_not_converge_gives_a_warning_with_the_residual(problem):
    net, x, y, _ = problem
    short = free_phase(net, x, target=y, options=SettleOptions(integrator="euler", dt=0.1, max_steps=3))
    assert not short.converged
    with pytest.warns(NotConvergedWarning, match="largest residual"):
        implicit_gradient(net, x, y, short)
    with pytest.warns(NotConvergedWarning, match=r"largest residual \|\|dE/ds\|\| = "):
        implicit_gradient(net, x, y, short.state)


def test_estimates_warn_when_a_phase_stops_short_of_its_steady_state(problem):
    net, x, y, free = problem
    short = SettleOptions(integrator="euler", dt=0.1, max_steps=2)
    with pytest.warns(NotConvergedWarning, match=r"nudged\+ phase did not reach the steady state"):
        ep_gradient(net, x, y, 0.1, "positive", options=TIGHT, nudged_options=short, free=free)
    with pytest.warns(NotConvergedWarning, match="clamped phase"):
        chl_gradient(net, x, y, options=TIGHT, clamped_options=short, free=free)
    # Fixed iteration counts, as in the EP papers, are deliberate: no warning.
    fixed = SettleOptions(integrator="euler", dt=0.1, max_steps=2, stop_at_steady_state=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        ep_gradient(net, x, y, 0.1, "positive", options=TIGHT, nudged_options=fixed, free=free)


def test_predictions_count_ties_as_no_decision():
    from dynsim.training.loop import predict

    out = np.array([[0.2, 0.9], [1.0, 1.0], [0.0, 0.0], [0.7, 0.1]])
    np.testing.assert_array_equal(predict(out), [1, -1, -1, 0])


def test_centered_ep_names_its_two_nudged_phases(problem):
    net, x, y, free = problem
    est = ep_gradient(net, x, y, 0.1, "centered", options=TIGHT, free=free)
    assert [p.phase for p in est.phases.values()] == list(est.phases) and set(est.phases) == {"nudged+", "nudged-"}


def test_a_phase_short_of_its_steady_state_warns_raises_or_passes_as_the_options_say():
    import dataclasses
    import warnings

    from dynsim.validation import NotConvergedError, NotConvergedWarning

    net = HopfieldNetwork.layered([4, 6, 3], activation="hard_sigmoid", seed=2)
    x = np.random.default_rng(0).uniform(size=(5, 4))
    y = np.eye(3)[[0, 1, 2, 0, 1]]
    for scheme in ("block", "fixed_point"):
        short = SettleOptions(integrator=scheme, max_steps=1, atol=1e-10, rtol=1e-10)
        with pytest.warns(NotConvergedWarning, match="free phase did not reach the steady state"):
            ep_gradient(net, x, y, 0.5, options=short)
        with pytest.raises(NotConvergedError, match="did not reach the steady state"):
            ep_gradient(net, x, y, 0.5, options=dataclasses.replace(short, not_converged="raise"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ep_gradient(net, x, y, 0.5, options=dataclasses.replace(short, not_converged="ignore"),
                        nudged_options=dataclasses.replace(short, not_converged="ignore"))


def test_settle_options_refuse_what_they_would_ignore():
    from dynsim.validation import ValidationError

    with pytest.raises(ValidationError, match="dt is the step of the fixed-step integrators; dopri5"):
        SettleOptions(integrator="dopri5", dt=0.1)
    with pytest.raises(ValidationError, match=r"not_converged must be one of \['warn', 'raise', 'ignore'\]"):
        SettleOptions(not_converged="skip")
