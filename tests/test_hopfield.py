"""The Hopfield network's energy and gradients against an independent dense formula and finite differences."""
import numpy as np
import pytest

from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.validation import ValidationError

ACTIVATIONS = ["hard_sigmoid", "logistic", "tanh"]
RHO = {
    "hard_sigmoid": lambda s: np.clip(s, 0.0, 1.0),
    "logistic": lambda s: 1.0 / (1.0 + np.exp(-s)),
    "tanh": np.tanh,
}


def dense_energy(net, x, s):
    """E from the formula of Scellier & Bengio (2017) on the full symmetric matrix.

    E = 1/2 sum_i s_i^2 - 1/2 sum_{i != j} W_ij rho_i rho_j - sum_i b_i rho_i over all units,
    minus the terms of the clamped inputs alone (constant).
    """
    W = net.dense_weights()
    rho = RHO[net.activation]
    u = np.concatenate([x, s], axis=1)
    r = rho(u)
    n_in = net.n_input
    b = np.concatenate([np.zeros(n_in), net.theta[-net.n_free:]])
    W_no_diag = W - np.diag(np.diag(W))
    full = 0.5 * (u ** 2).sum(1) - 0.5 * np.einsum("bi,ij,bj->b", r, W_no_diag, r) - r @ b
    const = 0.5 * (x ** 2).sum(1) - 0.5 * np.einsum("bi,ij,bj->b", r[:, :n_in], W_no_diag[:n_in, :n_in],
                                                     r[:, :n_in])
    return full - const


def away_from_kinks(s, margin=1e-3):
    """Move states off the hard sigmoid's kinks at 0 and 1, where E is not differentiable."""
    s = s.copy()
    for kink in (0.0, 1.0):
        near = np.abs(s - kink) < margin
        s[near] = kink + np.where(s[near] >= kink, 1, -1) * 2 * margin
    return s


def networks(activation, rng):
    layered = HopfieldNetwork.layered([5, 7, 6, 3], activation=activation, seed=rng)
    layered.theta = layered.theta + 0.1 * rng.standard_normal(layered.n_params) * (
        np.arange(layered.n_params) >= layered.n_params - layered.n_free)  # nonzero biases
    n = 12
    W = rng.standard_normal((n, n)) * 0.4
    W = np.triu(W, 1)
    W = W + W.T
    dense = HopfieldNetwork.from_dense(W, rng.standard_normal(n - 4) * 0.2, n_input=4, n_output=3,
                                       activation=activation)
    return [layered, dense]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_energy_matches_the_dense_formula(activation, rng):
    for net in networks(activation, rng):
        x = rng.uniform(size=(5, net.n_input))
        s = rng.uniform(-0.5, 1.5, size=(5, net.n_free))
        np.testing.assert_allclose(net.energy(x, s), dense_energy(net, x, s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_state_gradient_against_central_differences(activation, rng):
    h = 1e-6
    for net in networks(activation, rng):
        x = rng.uniform(size=(3, net.n_input))
        s = away_from_kinks(rng.uniform(-0.5, 1.5, size=(3, net.n_free)))
        grad = net.energy_grad_state(x, s)
        fd = np.empty_like(s)
        for j in range(net.n_free):
            e = np.zeros_like(s)
            e[:, j] = h
            fd[:, j] = (dense_energy(net, x, s + e) - dense_energy(net, x, s - e)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_parameter_gradient_against_central_differences(activation, rng):
    h = 1e-6
    for net in networks(activation, rng):
        x = rng.uniform(size=(4, net.n_input))
        s = rng.uniform(-0.5, 1.5, size=(4, net.n_free))
        grad = net.energy_grad_params(x, s)
        theta0 = net.theta.copy()
        mean_energy = lambda theta: (net.__setattr__("theta", theta), net.energy(x, s).mean())[1]
        for c, (a, b) in enumerate(net.connections):
            block = net.weights(c)
            start = int(np.shares_memory(block, net.theta) and (block.ctypes.data - net.theta.ctypes.data) // 8)
            rows, cols = block.shape
            for i in range(rows):
                for j in range(cols):
                    if a == b and i == j:
                        continue
                    step = np.zeros_like(theta0)
                    step[start + i * cols + j] = h
                    if a == b:  # keep the block symmetric: W_ij and W_ji move together
                        step[start + j * cols + i] = h
                    fd = (mean_energy(theta0 + step) - mean_energy(theta0 - step)) / (2 * h)
                    analytic = grad[start + i * cols + j] * (2 if a == b else 1)
                    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9), (c, i, j)
            if a == b:
                np.testing.assert_array_equal(np.diag(grad[start:start + rows * cols].reshape(rows, cols)), 0)
        for k in range(net.n_params - net.n_free, net.n_params):
            step = np.zeros_like(theta0)
            step[k] = h
            fd = (mean_energy(theta0 + step) - mean_energy(theta0 - step)) / (2 * h)
            assert grad[k] == pytest.approx(fd, rel=1e-6, abs=1e-9)
        net.theta = theta0


def test_vector_field_is_minus_the_gradient_of_the_total_energy(rng):
    from dynsim.networks import hopfield_kernels

    net = networks("logistic", rng)[0]
    x = rng.uniform(size=(3, net.n_input))
    s = rng.uniform(-1, 1, size=(3, net.n_free))
    target = rng.uniform(size=(3, net.n_output))
    for beta in (0.0, 0.7, -0.3):
        dsdt = np.empty_like(s)
        hopfield_kernels.hopfield_vector_field(0.0, s, dsdt, net.kernel_args(net.input_drive(x), beta, target))
        grad_cost = np.zeros_like(s)
        grad_cost[:, net.output_slice] = s[:, net.output_slice] - target
        np.testing.assert_allclose(dsdt, -(net.energy_grad_state(x, s) + beta * grad_cost), rtol=1e-13, atol=1e-13)


def test_layered_and_dense_descriptions_of_one_network_agree(rng):
    layered = HopfieldNetwork.layered([4, 6, 3], activation="tanh", seed=rng)
    layered.theta = layered.theta + 0.2 * np.r_[np.zeros(layered.n_params - layered.n_free),
                                                rng.standard_normal(layered.n_free)]
    dense = HopfieldNetwork.from_dense(layered.dense_weights(), layered.theta[-layered.n_free:],
                                       n_input=4, n_output=3, activation="tanh")
    x = rng.uniform(size=(2, 4))
    s = rng.uniform(-1, 1, size=(2, 9))
    np.testing.assert_allclose(dense.energy(x, s), layered.energy(x, s), rtol=1e-13)
    np.testing.assert_allclose(dense.energy_grad_state(x, s), layered.energy_grad_state(x, s), rtol=1e-13)


@pytest.mark.parametrize("activation,integrator,dt", [
    ("logistic", "euler", 0.01), ("tanh", "euler", 0.01), ("hard_sigmoid", "projected_euler", 0.01),
])
def test_energy_never_increases_along_small_step_free_trajectories(rng, activation, integrator, dt):
    for net in networks(activation, rng):
        x = rng.uniform(size=(4, net.n_input))
        opt = SettleOptions(integrator=integrator, dt=dt, max_steps=3000, record_every=1,
                            stop_at_steady_state=False)
        res = free_phase(net, x, options=opt)
        energy = res.trajectory_energy
        assert energy.shape == (3001, 4)
        increases = np.diff(energy, axis=0)
        assert increases.max() <= 1e-12 * np.abs(energy).max(), increases.max()
        assert energy[-1].max() < energy[0].max()


@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic"])
def test_all_integrators_reach_the_same_equilibrium(rng, activation):
    net = HopfieldNetwork.layered([8, 12, 10, 4], activation=activation, seed=3)
    x = rng.uniform(size=(5, 8))
    target = np.eye(4)[rng.integers(0, 4, 5)]
    states, nudged = {}, {}
    for integrator in ["euler", "projected_euler", "heun", "rk4", "dopri5"]:
        if integrator == "projected_euler" and activation != "hard_sigmoid":
            continue
        opt = SettleOptions(integrator=integrator, atol=1e-9, rtol=1e-9)
        free = free_phase(net, x, options=opt)
        assert free.status == "converged", (integrator, free.integration.message)
        nud = nudged_phase(net, x, target, 0.5, free.state, options=opt)
        assert nud.status == "converged", (integrator, nud.integration.message)
        states[integrator], nudged[integrator] = free.state, nud.state
        # A fixed point of the free dynamics: dE/ds = 0 off the box, by an independent evaluation.
        grad = net.energy_grad_state(x, free.state)
        if activation == "hard_sigmoid":
            at_lower = (free.state <= 0) & (grad > 0)
            at_upper = (free.state >= 1) & (grad < 0)
            grad = np.where(at_lower | at_upper, 0.0, grad)
        assert np.linalg.norm(grad, axis=1).max() <= 1e-9 * (1 + np.linalg.norm(free.state, axis=1).max())
    reference = states["dopri5"]
    for name, state in states.items():
        np.testing.assert_allclose(state, reference, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(nudged[name], nudged["dopri5"], atol=1e-7, err_msg=name)


def test_nudged_equilibrium_balances_energy_and_cost(rng):
    net = HopfieldNetwork.layered([6, 10, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(4, 6))
    target = np.eye(3)[[0, 1, 2, 0]]
    opt = SettleOptions(integrator="rk4", atol=1e-10, rtol=1e-10)
    free = free_phase(net, x, target=target, options=opt)
    for beta in (0.5, -0.5):
        nud = nudged_phase(net, x, target, beta, free.state, options=opt)
        grad = net.energy_grad_state(x, nud.state)
        grad[:, net.output_slice] += beta * (nud.state[:, net.output_slice] - target)
        assert np.abs(grad).max() < 1e-9
        # Positive nudging lowers the cost, negative nudging raises it.
        assert np.all(np.sign(free.cost - nud.cost) == np.sign(beta))


def test_clamped_output_phase_holds_the_target(rng):
    from dynsim.relax.phases import settle

    net = HopfieldNetwork.layered([6, 10, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(2, 6))
    target = np.array([[0.2, 0.9, 0.1], [0.7, 0.3, 0.5]])
    res = settle(net, x, target=target, clamp_output=True, options=SettleOptions(integrator="rk4"),
                 phase="clamped")
    np.testing.assert_array_equal(res.state[:, net.output_slice], target)
    assert res.status == "converged"


@pytest.mark.parametrize("call,match", [
    (lambda net, x: net.energy(x[:, :3], np.zeros((2, 13))), r"x must have shape \(any, 5\)"),
    (lambda net, x: net.energy(np.full_like(x, np.nan), np.zeros((2, 13))), "x must be finite"),
    (lambda net, x: net.energy(x, np.zeros((3, 13))), r"s must have shape \(2, 13\)"),
    (lambda net, x: nudged_phase(net, x, np.zeros((2, 6)), 0.0, np.zeros((2, 13))), "beta must be .*nonzero"),
    (lambda net, x: nudged_phase(net, x, np.zeros((2, 4)), 0.5, np.zeros((2, 13))), r"target must have shape \(2, 6\)"),
    (lambda net, x: nudged_phase(net, x, None, 0.5, np.zeros((2, 13))), "target is required"),
    (lambda net, x: SettleOptions(integrator="leapfrog"), "integrator must be one of"),
    (lambda net, x: SettleOptions(atol=-1.0), "atol must be finite, in"),
    (lambda net, x: SettleOptions(integrator="euler", dt=0.0), "dt must be finite, in"),
    (lambda net, x: HopfieldNetwork.layered([5, 0, 3]), r"group_sizes\[1\] must be an integer >= 1"),
    (lambda net, x: HopfieldNetwork.layered([5, 4], activation="relu"), "activation must be one of"),
    (lambda net, x: HopfieldNetwork.from_dense(np.triu(np.ones((4, 4)), 1), np.zeros(2), 2, 1), "W must be symmetric"),
    (lambda net, x: HopfieldNetwork.from_dense(np.ones((4, 4)), np.zeros(2), 2, 1), "zero diagonal"),
    (lambda net, x: HopfieldNetwork([3, 2], [(0, 0)]), "cannot couple to itself"),
    (lambda net, x: setattr(net, "theta", np.zeros(3)), r"theta must have shape \(90,\)"),
    (lambda net, x: free_phase(net, x, options=SettleOptions(integrator="projected_euler", project=False)),
     "projected_euler' needs a box"),
])
def test_bad_input_gets_a_clear_error(call, match, rng):
    net = HopfieldNetwork.layered([5, 7, 6], seed=0)
    x = rng.uniform(size=(2, 5))
    with pytest.raises(ValidationError, match=match):
        call(net, x)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_hessian_and_its_products_against_differences_of_the_gradient(activation, rng):
    h = 1e-6
    for net in networks(activation, rng):
        x = rng.uniform(size=(3, net.n_input))
        s = away_from_kinks(rng.uniform(-0.5, 1.5, size=(3, net.n_free)), margin=1e-3)
        v = rng.standard_normal(s.shape)
        fd = (net.energy_grad_state(x, s + h * v) - net.energy_grad_state(x, s - h * v)) / (2 * h)
        np.testing.assert_allclose(net.energy_hvp(x, s, v), fd, rtol=1e-6, atol=1e-8)
        H = net.energy_hessian(x, s)
        np.testing.assert_allclose(np.einsum("bij,bj->bi", H, v), fd, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(H, H.transpose(0, 2, 1), atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_directional_parameter_gradient_against_differences(activation, rng):
    h = 1e-6
    for net in networks(activation, rng):
        x = rng.uniform(size=(3, net.n_input))
        s = away_from_kinks(rng.uniform(-0.5, 1.5, size=(3, net.n_free)), margin=1e-3)
        v = rng.standard_normal(s.shape)
        fd = (net.energy_grad_params(x, s + h * v) - net.energy_grad_params(x, s - h * v)) / (2 * h)
        np.testing.assert_allclose(net.energy_grad_params_directional(x, s, v), fd, rtol=1e-6, atol=1e-9)
