"""Hopfield networks whose groups have their own activations, the linear output group included.

Checked against a plain numpy energy written here, central finite differences, closed-form
equilibria of a linear output, the generic (unfused) relaxations, finite differences of the settled
loss for EP, and, on real MNIST images, the dead-output trap that a linear output removes.
"""
import numpy as np
import pytest

import integrators
from dynsim.learning.contrastive import ep_gradient
from dynsim.learning.rules import gradient_estimate
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.references.gradients import bptt_gradients, implicit_gradient
from dynsim.relax import block_relaxation, layered_euler
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.training.optimizers import SGD
from dynsim.validation import ValidationError

NUMPY_RHO = {"hard_sigmoid": lambda v: np.clip(v, 0.0, 1.0), "logistic": lambda v: 1.0 / (1.0 + np.exp(-v)),
             "tanh": np.tanh, "linear": lambda v: v}
TIGHT = SettleOptions(integrator="rk4", dt=0.25, atol=1e-12, rtol=1e-12, max_steps=200_000)


def mixed_network(seed=3, output="linear", hidden="tanh"):
    """6-9-7-4: tanh hidden groups, a linear output, and a skip coupling from the input to the output."""
    return HopfieldNetwork([6, 9, 7, 4], [(0, 1), (1, 2), (2, 3), (0, 3)], [hidden, hidden, hidden, output],
                           seed=seed)


def numpy_energy(net, x, s):
    """E = 1/2 ||s||^2 - 1/2 rho(u)^T W rho(u) - b . rho(s), u = (x, s), each group with its activation."""
    edges = np.concatenate(([0], np.cumsum(net.group_sizes)))
    u = np.concatenate([x, s], axis=1)
    r = np.empty_like(u)
    for g, act in enumerate(net.activations):
        r[:, edges[g]:edges[g + 1]] = NUMPY_RHO[act](u[:, edges[g]:edges[g + 1]])
    W = net.dense_weights()
    b = net.theta[net._b_off:]
    rs = r[:, net.n_input:]
    return 0.5 * np.sum(s * s, axis=1) - 0.5 * np.einsum("bi,ij,bj->b", r, W, r) - rs @ b


def test_energy_matches_a_numpy_energy_per_group(rng):
    net = mixed_network()
    x = rng.uniform(size=(5, 6))
    s = rng.normal(scale=1.5, size=(5, net.n_free))
    np.testing.assert_allclose(net.energy(x, s), numpy_energy(net, x, s), rtol=1e-12, atol=1e-12)
    # The hard sigmoid's clip acts on its own groups only: the linear output keeps values outside [0, 1].
    hs = mixed_network(hidden="hard_sigmoid")
    np.testing.assert_allclose(hs.energy(x, s), numpy_energy(hs, x, s), rtol=1e-12, atol=1e-12)


def test_state_gradient_hessian_and_parameter_gradient_equal_finite_differences(rng):
    net = mixed_network()
    x = rng.uniform(size=(3, 6))
    s = rng.normal(size=(3, net.n_free))
    h = 1e-6
    grad = net.energy_grad_state(x, s)
    for j in rng.choice(net.n_free, 8, replace=False):
        e = np.zeros_like(s)
        e[:, j] = h
        fd = (net.energy(x, s + e) - net.energy(x, s - e)) / (2 * h)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-7, atol=1e-8)
    v = rng.normal(size=s.shape)
    fd_hvp = (net.energy_grad_state(x, s + h * v) - net.energy_grad_state(x, s - h * v)) / (2 * h)
    np.testing.assert_allclose(net.energy_hvp(x, s, v), fd_hvp, rtol=1e-6, atol=1e-7)
    H = net.energy_hessian(x, s)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", H, v), net.energy_hvp(x, s, v), rtol=1e-10, atol=1e-12)
    gp = net.energy_grad_params(x, s)
    theta = net.theta.copy()
    for k in rng.choice(net.n_params, 12, replace=False):
        e = np.zeros(net.n_params)
        e[k] = h
        net.theta = theta + e
        up = net.energy(x, s).mean()
        net.theta = theta - e
        down = net.energy(x, s).mean()
        net.theta = theta
        assert gp[k] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_a_linear_output_settles_to_its_closed_form():
    """Free: s_out = W rho(s_h) + b; nudged: (W rho(s_h) + b + beta y) / (1 + beta), outside [0, 1] too."""
    net = HopfieldNetwork.layered([5, 8, 3], seed=2, output_activation="linear", init_gain=3.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 5))
    y = np.eye(3)[[0, 1, 2, 0]]
    opts = SettleOptions(integrator="block", max_steps=500, atol=1e-12, rtol=1e-12)
    free = free_phase(net, x, options=opts)
    hidden = np.clip(free.state[:, :8], 0, 1)
    field = hidden @ net.weights(1) + net.biases(2)
    np.testing.assert_allclose(free.state[:, 8:], field, atol=1e-10)
    assert (np.abs(free.state[:, 8:]) > 1).any() or (free.state[:, 8:] < 0).any()  # not a clipped group
    beta = 0.5
    nudged = nudged_phase(net, x, y, beta, free.state, options=opts)
    hidden = np.clip(nudged.state[:, :8], 0, 1)
    field = hidden @ net.weights(1) + net.biases(2)
    np.testing.assert_allclose(nudged.state[:, 8:], (field + beta * y) / (1 + beta), atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_loops_equal_the_generic_paths_with_a_per_group_box(dtype):
    """Hard-sigmoid hidden groups projected onto [0, 1], a linear output unbounded: fused = generic."""
    net = HopfieldNetwork.layered([7, 12, 9, 4], seed=5, output_activation="linear", dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(6, 7)).astype(dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 6)]
    drive = net.input_drive(x)
    box = net.natural_box
    assert np.isinf(box[0][-4:]).all() and (box[0][:-4] == 0).all() and (box[1][:-4] == 1).all()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    for beta in (0.0, 0.7):
        assert layered_euler.applies(net, "projected_euler", np.inf, 0, box)
        fused, _ = layered_euler.relax(net, np.zeros_like(drive), drive, "projected_euler", beta, y, dt=0.4,
                                       max_steps=40, stop_at_steady_state=False, box=box)
        generic = integrators.integrate(net.vector_field, np.zeros_like(drive), net.kernel_args(drive, beta, y),
                                        method="projected_euler", dt=0.4, max_steps=40, stop_at_steady_state=False,
                                        lower=box[0], upper=box[1])
        np.testing.assert_allclose(fused.y, generic.y, **tol)
        assert (fused.y[:, :-4] >= 0).all() and (fused.y[:, :-4] <= 1).all()
        for scheme in block_relaxation.RELAXATION_SCHEMES:
            a = block_relaxation.relax(net, np.zeros_like(drive), drive, scheme, beta, y, max_steps=25,
                                       stop_at_steady_state=False, box=box)
            b = block_relaxation.relax(net, np.zeros_like(drive), drive, scheme, beta, y, max_steps=25,
                                       stop_at_steady_state=False, box=box, fused=False)
            np.testing.assert_allclose(a.y, b.y, **tol)
            assert a.n_steps == b.n_steps == 25


def test_centered_ep_with_a_linear_output_matches_finite_differences_of_the_settled_loss(rng):
    net = HopfieldNetwork.layered([6, 10, 3], activation="tanh", output_activation="linear", seed=4)
    x = rng.uniform(size=(5, 6))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    free = free_phase(net, x, target=y, options=TIGHT)
    assert free.converged
    est = ep_gradient(net, x, y, 1e-3, "centered", options=TIGHT, free=free).gradient
    rbp = implicit_gradient(net, x, y, free).gradient
    theta = net.theta.copy()
    h = 1e-5

    def loss(t):
        net.theta = t
        try:
            return net.cost(free_phase(net, x, s0=free.state, options=TIGHT).state, y).mean()
        finally:
            net.theta = theta

    for k in rng.choice(net.n_params, 10, replace=False):
        e = np.zeros(net.n_params)
        e[k] = h
        fd = (loss(theta + e) - loss(theta - e)) / (2 * h)
        assert rbp[k] == pytest.approx(fd, rel=1e-5, abs=1e-8)
        assert est[k] == pytest.approx(fd, rel=1e-4, abs=1e-7)
    # BPTT over a long horizon converges to recurrent backprop on the same mixed network.
    bptt = bptt_gradients(net, x, y, n_steps=1000, truncation=1000, dt=0.25, integrator="euler")
    np.testing.assert_allclose(bptt.cumulative[-1], rbp, rtol=1e-8, atol=1e-10)


def test_bptt_projects_only_the_bounded_groups(rng):
    """With hard-sigmoid hidden units and a linear output, BPTT under projected Euler takes the per-group box."""
    net = HopfieldNetwork.layered([5, 8, 3], seed=6, output_activation="linear")
    x = rng.uniform(size=(4, 5))
    y = np.eye(3)[rng.integers(0, 3, 4)]
    out = bptt_gradients(net, x, y, n_steps=60, truncation=60, dt=0.5, integrator="projected_euler")
    free = free_phase(net, x, options=SettleOptions(integrator="projected_euler", dt=0.5, max_steps=60,
                                                     stop_at_steady_state=False))
    np.testing.assert_allclose(out.final_state, free.state, rtol=1e-12, atol=1e-12)


def test_bad_activations_get_clear_errors():
    with pytest.raises(ValidationError, match="one activation per group: 3 names, input first, got 2"):
        HopfieldNetwork.layered([4, 5, 2], activation=["tanh", "linear"])
    with pytest.raises(ValidationError, match=r"activation of group 2 must be one of .*got 'softmax'"):
        HopfieldNetwork.layered([4, 5, 2], activation=["tanh", "tanh", "softmax"])
    with pytest.raises(ValidationError, match="free group 1 is linear and coupled to group 2, also linear"):
        HopfieldNetwork.layered([4, 5, 2], activation="linear")
    with pytest.raises(ValidationError, match="free group 1 is linear and coupled to itself"):
        HopfieldNetwork([4, 5], [(0, 1), (1, 1)], ["tanh", "linear"])
    # A linear input is clamped, so coupling it to a linear group is bounded.
    net = HopfieldNetwork.layered([4, 5, 2], activation=["linear", "tanh", "linear"])
    assert net.activations == ("linear", "tanh", "linear")
    assert net.describe()["activation"] == ["linear", "tanh", "linear"]
    assert HopfieldNetwork.layered([4, 5, 2], activation="tanh").activation == "tanh"


def _train_with_a_dead_output(splits, output_activation, dead=3):
    """784-64-10 on 400 MNIST images, 2 epochs of centered EP (block sweeps), output unit ``dead`` started dead."""
    x = splits.train.x[:400].astype(np.float32)
    labels = splits.train.labels[:400]
    targets = splits.train.targets[:400].astype(np.float32)
    net = HopfieldNetwork.layered([784, 64, 10], seed=0, output_activation=output_activation, init_gain=0.7,
                                  dtype=np.float32)
    net.biases(2)[dead] = -5.0  # its field is below -beta on every image: the nudge cannot lift a clipped unit
    before = net.theta[net.parameter_blocks()["W_hidden_1_output"]].reshape(64, 10)[:, dead].copy()
    free_opts = SettleOptions(integrator="block", max_steps=15, stop_at_steady_state=False)
    nudged_opts = SettleOptions(integrator="block", max_steps=10, stop_at_steady_state=False)
    opt = SGD(net, [0.05, 0.05])
    rng = np.random.default_rng(0)
    for _ in range(2):
        for idx in rng.permutation(400).reshape(-1, 20):
            est = gradient_estimate("ep-centered", net, x[idx], targets[idx], 0.2, free_opts, nudged_opts, rng=rng)
            opt.step(net.theta, est.gradient)
    out = free_phase(net, x, options=free_opts).state[:, net.output_slice]
    predicted = out.argmax(axis=1)
    after = net.theta[net.parameter_blocks()["W_hidden_1_output"]].reshape(64, 10)[:, dead]
    recall = np.mean(predicted[labels == dead] == dead)
    return recall, np.mean(predicted != labels), np.array_equal(before, after), float(net.biases(2)[dead])


def test_a_dead_hard_sigmoid_output_never_learns_and_a_linear_output_recovers(mnist_splits):
    """The trap behind sb-2h's stall (issue 15): an output clipped at 0 in both phases gets no EP update.

    With the hard sigmoid the dead unit's weights and bias stay exactly where they were, and its class is
    never predicted; the same start with a linear output (Scellier 2024) learns the class.
    """
    recall, error, unchanged, bias = _train_with_a_dead_output(mnist_splits, None)
    assert unchanged and bias == -5.0
    assert recall == 0.0
    assert 0.1 < error < 0.5  # the other classes learn: the run is not broken, one class is lost
    recall_lin, error_lin, unchanged_lin, bias_lin = _train_with_a_dead_output(mnist_splits, "linear")
    assert not unchanged_lin and bias_lin > -4.0
    # Measured 85 % of the dead class's images recognised after the 40 minibatches.
    assert recall_lin > 0.5
