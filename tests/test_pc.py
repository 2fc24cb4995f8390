"""Predictive coding: energy and gradients against independent formulas, and the distance to backprop."""
import numpy as np
import pytest

from dynsim.learning.predictive_coding import pc_gradient, zil_gradient
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions, free_phase, settle
from dynsim.validation import ValidationError

PHI = {"tanh": np.tanh, "logistic": lambda v: 1 / (1 + np.exp(-v)), "relu": lambda v: np.maximum(v, 0),
       "hard_sigmoid": lambda v: np.clip(v, 0, 1),
       # GELU's tanh form (Hendrycks & Gimpel 2016), as jax.nn.gelu computes it by default
       "gelu": lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))}


def dense_energy(net, x, s):
    """F = sum_l 1/(2 sigma_l^2) ||x_l - f(x_{l-1}) W_l - b_l||^2, written out layer by layer."""
    layers = [x] + list(net.split_state(s).values())
    total = np.zeros(x.shape[0])
    for l in range(1, len(layers)):
        mu = PHI[net.activation](layers[l - 1]) @ net.weights(l) + net.biases(l)
        total += 0.5 / net.variances[l - 1] * ((layers[l] - mu) ** 2).sum(1)
    return total


def network(activation, rng, variances=None):
    net = PCNetwork([4, 6, 5, 3], activation=activation, variances=variances, seed=rng)
    theta = net.theta.copy()
    theta[-net.n_free:] = 0.1 * rng.standard_normal(net.n_free)
    net.theta = theta
    return net


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu", "hard_sigmoid", "gelu"])
def test_energy_and_gradients_against_the_formula_and_differences(activation, rng):
    net = network(activation, rng, variances=[1.0, 2.0, 0.5])
    x = rng.uniform(-1, 1, size=(3, 4))
    s = rng.uniform(0.1, 0.9, size=(3, net.n_free))  # away from the kinks of relu and hard sigmoid
    np.testing.assert_allclose(net.energy(x, s), dense_energy(net, x, s), rtol=1e-12)
    h = 1e-6
    fd = np.empty_like(s)
    for j in range(net.n_free):
        e = np.zeros_like(s)
        e[:, j] = h
        fd[:, j] = (dense_energy(net, x, s + e) - dense_energy(net, x, s - e)) / (2 * h)
    np.testing.assert_allclose(net.energy_grad_state(x, s), fd, rtol=1e-6, atol=1e-8)
    grad = net.energy_grad_params(x, s)
    theta = net.theta.copy()
    for k in range(net.n_params):
        e = np.zeros(net.n_params)
        e[k] = h
        net.theta = theta + e
        up = dense_energy(net, x, s).mean()
        net.theta = theta - e
        down = dense_energy(net, x, s).mean()
        net.theta = theta
        assert grad[k] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


def test_feedforward_pass_is_the_free_equilibrium(rng):
    net = network("tanh", rng)
    x = rng.uniform(-1, 1, size=(5, 4))
    ff = net.feedforward(x)
    np.testing.assert_allclose(net.energy(x, ff), 0.0, atol=1e-28)
    assert np.abs(net.energy_grad_state(x, ff)).max() < 1e-14  # zero up to rounding
    # From a perturbed state the free dynamics return to the feedforward pass.
    res = free_phase(net, x, s0=ff + 0.3 * rng.standard_normal(ff.shape),
                     options=SettleOptions(integrator="dopri5", atol=1e-10, rtol=1e-10))
    assert res.converged
    np.testing.assert_allclose(res.state, ff, atol=1e-8)
    # And starting there, nothing moves.
    res = free_phase(net, x, options=SettleOptions(integrator="euler", dt=0.1))
    assert res.converged and res.integration.n_steps == 0


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_backprop_reference_against_finite_differences(rng, activation):
    net = network(activation, rng)
    x = rng.uniform(-1, 1, size=(4, 4))
    y = rng.uniform(-1, 1, size=(4, 3))
    loss = lambda: 0.5 * ((net.feedforward(x)[:, net.output_slice] - y) ** 2).sum(1).mean()
    grad = net.backprop_gradient(x, y)
    theta = net.theta.copy()
    h = 1e-6
    for k in range(net.n_params):
        e = np.zeros(net.n_params)
        e[k] = h
        net.theta = theta + e
        up = loss()
        net.theta = theta - e
        down = loss()
        net.theta = theta
        assert grad[k] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-10)


def deep_problem(rng, variances=None):
    net = PCNetwork([5, 8, 8, 8, 3], activation="tanh", variances=variances, seed=7)
    x = rng.uniform(-1, 1, size=(6, 5))
    y = rng.uniform(-1, 1, size=(6, 3))
    return net, x, y


def test_fixed_prediction_equals_backprop(rng):
    net, x, y = deep_problem(rng)
    est = pc_gradient(net, x, y, "fixed_prediction",
                      options=SettleOptions(integrator="rk4", dt=0.5, atol=1e-13, rtol=1e-13))
    bp = net.backprop_gradient(x, y)
    assert est.inference.converged
    assert np.linalg.norm(est.gradient - bp) / np.linalg.norm(bp) <= 1e-6


def test_zil_equals_backprop_after_L_minus_1_steps(rng):
    net, x, y = deep_problem(rng)
    est = zil_gradient(net, x, y)
    bp = net.backprop_gradient(x, y)
    assert est.inference.integration.n_steps == 3  # L - 1 with L = 4
    assert np.linalg.norm(est.gradient - bp) / np.linalg.norm(bp) <= 1e-6


def test_strict_pc_approaches_backprop_as_the_output_variance_grows(rng):
    # With the update rescaled by sigma_L^2 the error falls like 1/sigma_L^2 (Whittington & Bogacz 2017);
    # its constant grows with the output error |y - y_hat| (O(1) here, at initialisation).
    options = SettleOptions(integrator="rk4", dt=0.5, atol=1e-12, rtol=1e-12)
    errors = {}
    for var_out in (1.0, 100.0, 1000.0):
        net, x, y = deep_problem(rng, variances=[1.0, 1.0, 1.0, var_out])
        est = pc_gradient(net, x, y, "strict", options=options)
        assert est.inference.converged
        bp = net.backprop_gradient(x, y)
        errors[var_out] = np.linalg.norm(est.gradient - bp) / np.linalg.norm(bp)
    assert errors[1.0] > 0.5, errors  # equal precisions: the magnitude is off whatever the iterations
    assert errors[100.0] <= 0.1 and errors[1000.0] <= 0.01, errors
    assert 7 < errors[100.0] / errors[1000.0] < 13, errors


def test_euler_beyond_its_stability_step_is_reported_as_diverged(rng):
    net, x, y = deep_problem(rng)
    theta_before = net.theta.copy()
    res = settle(net, x, target=y, clamp_output=True,
                 options=SettleOptions(integrator="euler", dt=2.5, max_steps=10_000), phase="inference")
    assert res.status == "diverged"
    assert np.isfinite(res.state).all()
    with pytest.raises(RuntimeError, match="diverged"):
        pc_gradient(net, x, y, options=SettleOptions(integrator="euler", dt=2.5, max_steps=10_000))
    np.testing.assert_array_equal(net.theta, theta_before)
    # The adaptive integrator keeps going where Euler blew up.
    ok = pc_gradient(net, x, y, options=SettleOptions(integrator="dopri5", atol=1e-9, rtol=1e-9))
    assert ok.inference.converged and np.isfinite(ok.gradient).all()


def test_bad_input_to_predictive_coding(rng):
    with pytest.raises(ValidationError, match="activation must be one of"):
        PCNetwork([3, 2], activation="softplus")
    with pytest.raises(ValidationError, match="variances must be > 0"):
        PCNetwork([3, 2], variances=[0.0])
    net, x, y = deep_problem(rng)
    with pytest.raises(ValidationError, match="variant must be one of"):
        pc_gradient(net, x, y, "approximate")
    with pytest.raises(ValidationError, match="target is required"):
        pc_gradient(net, x, None)
    with pytest.raises(ValidationError, match="Z-IL needs unit variances"):
        zil_gradient(PCNetwork([3, 4, 2], variances=[1.0, 10.0]), x[:, :3], y[:, :2])
    with pytest.raises(ValidationError, match="projected_euler' needs a box"):
        free_phase(net, x, options=SettleOptions(integrator="projected_euler"))


def test_fan_in_initialisation_bounds_weights_and_biases_by_one_over_sqrt_fan_in():
    sizes = [784, 128, 64, 10]
    net = PCNetwork(sizes, activation="gelu", seed=0, init="fan-in")
    glorot = PCNetwork(sizes, activation="gelu", seed=0)
    for l in range(1, len(sizes)):
        limit = 1 / np.sqrt(sizes[l - 1])
        for block in (net.weights(l), net.biases(l)):
            assert np.abs(block).max() <= limit
            assert np.abs(block).max() > 0.9 * limit  # uniform over the whole interval, not a narrower one
        assert np.all(glorot.biases(l) == 0)
    with pytest.raises(ValidationError, match="init must be"):
        PCNetwork(sizes, init="he")
