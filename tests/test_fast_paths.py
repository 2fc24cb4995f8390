"""The fast paths of the learning rules against the reference formulas they replace.

The EP gradient is read as one matrix product per block of the difference of
two states, the input drive of a minibatch is computed once for all its
phases, the kernels write products straight into their outputs, and the PC
rule computes f(x) and the feedforward pass once: each must agree with the
plain formula to rounding.
"""
import numpy as np
import pytest

from dynsim.learning.contrastive import chl_gradient, drive_held, ep_gradient
from dynsim.learning.predictive_coding import pc_gradient
from dynsim.networks import hopfield_kernels
from dynsim.networks.activations import rho
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase, settle

CODES = {"hard_sigmoid": 0, "logistic": 1, "tanh": 2}


def hopfield_networks(rng, activation="logistic"):
    """A deep layered network and a dense one (within-group symmetric blocks, skip couplings)."""
    deep = HopfieldNetwork.layered([6, 5, 4, 3], activation=activation, seed=rng)
    deep.theta = deep.theta + 0.1 * rng.standard_normal(deep.n_params)
    n, n_in, n_out = 11, 4, 3
    W = rng.standard_normal((n, n)) * 0.3
    W = np.triu(W, 1)
    W = W + W.T
    dense = HopfieldNetwork.from_dense(W, 0.1 * rng.standard_normal(n - n_in), n_in, n_out, activation=activation)
    return [deep, dense]


def reference_grad_params(net, x, s):
    """dE/dtheta written block by block in numpy (Scellier & Bengio's Hebbian terms)."""
    act = CODES[net.activation]
    r = rho(s, act)
    rx = rho(x, act)
    B = s.shape[0]
    grad = np.zeros(net.n_params)
    blocks = net.parameter_blocks()
    names = list(blocks)
    groups = net.split_state(r)
    for c, (a, b) in enumerate(net.connections):
        ra = rx if a == 0 else groups[net.group_names[a]]
        rb = groups[net.group_names[b]]
        g = -(ra.T @ rb) / B
        if a == b:
            g = 0.5 * g
            np.fill_diagonal(g, 0.0)
        grad[blocks[names[c]]] = g.ravel()
    grad[net.n_params - net.n_free:] = -r.mean(axis=0)
    return grad


@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_energy_grad_params_matches_the_block_formula(rng, activation):
    for net in hopfield_networks(rng, activation):
        x = rng.uniform(size=(7, net.n_input))
        s = rng.uniform(-0.5, 1.5, size=(7, net.n_free))
        grad = net.energy_grad_params(x, s)
        np.testing.assert_allclose(grad, reference_grad_params(net, x, s), rtol=1e-12, atol=1e-14)
        for c, (a, b) in enumerate(net.connections):
            if a == b:  # a symmetric block stays exactly symmetric, with a zero diagonal
                g = grad[net._w_off[c]:net._w_off[c] + net.group_sizes[a] ** 2].reshape(net.group_sizes[a], -1)
                np.testing.assert_array_equal(g, g.T)
                np.testing.assert_array_equal(np.diag(g), 0.0)


@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_grad_params_difference_is_the_difference_of_the_gradients(rng, activation):
    for net in hopfield_networks(rng, activation):
        x = rng.uniform(size=(5, net.n_input))
        s_a = rng.uniform(-0.5, 1.5, size=(5, net.n_free))
        s_b = s_a + 0.01 * rng.standard_normal(s_a.shape)
        for scale in (1.0, 1 / 0.7, -2.5):
            want = scale * (net.energy_grad_params(x, s_b) - net.energy_grad_params(x, s_a))
            got = net.energy_grad_params_difference(x, s_a, s_b, scale)
            # Rounding of the two routes differs by a few ulp of the terms (not of their small difference).
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13 * abs(scale))


def test_directional_derivative_matches_the_product_rule(rng):
    for net in hopfield_networks(rng, "tanh"):
        x = rng.uniform(size=(4, net.n_input))
        s = rng.uniform(-1, 1, size=(4, net.n_free))
        v = rng.standard_normal(s.shape)
        h = 1e-6
        fd = (reference_grad_params(net, x, s + h * v) - reference_grad_params(net, x, s - h * v)) / (2 * h)
        np.testing.assert_allclose(net.energy_grad_params_directional(x, s, v), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("activation", ["hard_sigmoid", "tanh"])
def test_vector_field_matches_the_dense_formula(rng, activation):
    for net in hopfield_networks(rng, activation):
        x = rng.uniform(size=(3, net.n_input))
        s = rng.uniform(-0.5, 1.5, size=(3, net.n_free))
        target = rng.uniform(size=(3, net.n_output))
        W = net.dense_weights()
        act = CODES[activation]
        r = rho(s, act)
        h = rho(x, act) @ W[:net.n_input, net.n_input:] + r @ W[net.n_input:, net.n_input:] \
            + net.theta[net.n_params - net.n_free:]
        rp = np.where((s >= 0) & (s <= 1), 1.0, 0.0) if activation == "hard_sigmoid" else 1 - np.tanh(s) ** 2
        for beta, clamp in ((0.0, False), (0.8, False), (0.0, True)):
            want = rp * h - s
            if clamp:
                want[:, net.output_slice] = 0.0
            else:
                want[:, net.output_slice] -= beta * (s[:, net.output_slice] - target)
            dsdt = np.full_like(s, np.nan)  # the kernel must write every entry
            hopfield_kernels.hopfield_vector_field(
                0.0, s, dsdt, net.kernel_args(net.input_drive(x), beta, target, clamp))
            np.testing.assert_allclose(dsdt, want, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(hopfield_kernels.local_field(r, *net.kernel_args(net.input_drive(x))[:6],
                                                                    net.input_drive(x)), h, rtol=1e-12, atol=1e-13)


def fixed(steps, dt=0.5):
    return SettleOptions(integrator="projected_euler", dt=dt, max_steps=steps, stop_at_steady_state=False)


@pytest.mark.parametrize("variant", ["positive", "negative", "centered", "random"])
def test_ep_gradient_equals_the_two_phase_formula(rng, variant):
    net = HopfieldNetwork.layered([8, 6, 5, 3], seed=rng)
    x = rng.uniform(size=(6, 8))
    target = np.eye(3)[rng.integers(0, 3, 6)]
    s0 = rng.uniform(size=(6, net.n_free))
    est = ep_gradient(net, x, target, 0.7, variant, options=fixed(12), nudged_options=fixed(4), s0=s0,
                      rng=np.random.default_rng(3))
    # The reference: the phases run one by one (each computing its own drive), the formula as written.
    free = free_phase(net, x, s0=s0, target=target, options=fixed(12))
    np.testing.assert_array_equal(est.free.state, free.state)
    states = {0.0: free.state}
    for b in est.betas:
        if b != 0.0:
            phase = nudged_phase(net, x, target, b, free.state, options=fixed(4))
            np.testing.assert_array_equal(est.phases["nudged+" if b > 0 else "nudged-"].state, phase.state)
            states[b] = phase.state
    lo, hi = est.betas
    want = (net.energy_grad_params(x, states[hi]) - net.energy_grad_params(x, states[lo])) / (hi - lo)
    np.testing.assert_allclose(est.gradient, want, rtol=1e-9, atol=1e-13)


def test_chl_gradient_equals_the_two_phase_formula(rng):
    net = HopfieldNetwork.layered([8, 6, 3], seed=rng)
    x = rng.uniform(size=(4, 8))
    target = np.eye(3)[rng.integers(0, 3, 4)]
    est = chl_gradient(net, x, target, options=fixed(10), clamped_options=fixed(5))
    free = free_phase(net, x, target=target, options=fixed(10))
    clamped = settle(net, x, s0=free.state, target=target, clamp_output=True, options=fixed(5), phase="clamped")
    np.testing.assert_array_equal(est.phases["clamped"].state, clamped.state)
    want = net.energy_grad_params(x, clamped.state) - net.energy_grad_params(x, free.state)
    np.testing.assert_allclose(est.gradient, want, rtol=1e-9, atol=1e-13)


def test_ep_computes_the_input_drive_once_per_minibatch(rng, monkeypatch):
    net = HopfieldNetwork.layered([8, 6, 3], seed=rng)
    x = rng.uniform(size=(4, 8))
    target = np.eye(3)[rng.integers(0, 3, 4)]
    calls = []
    original = HopfieldNetwork.input_drive

    def counting(self, xx):
        calls.append(1)
        return original(self, xx)

    monkeypatch.setattr(HopfieldNetwork, "input_drive", counting)
    ep_gradient(net, x, target, 0.5, "centered", options=fixed(6), nudged_options=fixed(2))
    assert len(calls) == 1  # three phases, one drive


def test_drive_held_answers_other_inputs_and_shares_parameters(rng):
    net = HopfieldNetwork.layered([5, 4, 2], seed=rng)
    x = net.check_input(rng.uniform(size=(3, 5)))
    held = drive_held(net, x)
    assert isinstance(held, HopfieldNetwork) and held.theta is net.theta
    np.testing.assert_array_equal(held.input_drive(x), net.input_drive(x))
    other = rng.uniform(size=(2, 5))
    np.testing.assert_array_equal(held.input_drive(other), net.input_drive(other))
    assert "input_drive" not in vars(net)  # the original network is left as it was


# ----------------------------------------------------------------------------- predictive coding
def reference_pc_grad_params(net, x, s):
    """dF/dtheta of the strict PC energy, layer by layer in numpy."""
    L = len(net.group_sizes) - 1
    layers = [x] + list(net.split_state(s).values())
    f = np.tanh if net.activation == "tanh" else None
    grad = np.zeros(net.n_params)
    blocks = net.parameter_blocks()
    names = list(blocks)
    p = 1.0 / net.variances
    for l in range(1, L + 1):
        eps = layers[l] - (f(layers[l - 1]) @ net.weights(l) + net.biases(l))
        grad[blocks[names[l - 1]]] = (-p[l - 1] * f(layers[l - 1]).T @ eps / x.shape[0]).ravel()
        grad[blocks[names[L + l - 1]]] = -p[l - 1] * eps.mean(axis=0)
    return grad


def test_pc_kernels_from_activity_match_the_plain_ones(rng):
    net = PCNetwork([7, 6, 5, 3], variances=[1.0, 0.5, 2.0], seed=rng)
    net.theta = net.theta + 0.1 * rng.standard_normal(net.n_params)
    x = rng.standard_normal((4, 7))
    s = net.feedforward(x) + 0.1 * rng.standard_normal((4, net.n_free))
    fx = net.input_activity(x)
    np.testing.assert_allclose(fx, np.tanh(x), rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(net.input_drive(x, input_activity=fx), net.input_drive(x))
    grad = net.energy_grad_params(x, s)
    np.testing.assert_allclose(grad, reference_pc_grad_params(net, x, s), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(net.energy_grad_params(x, s, drive=net.input_drive(x), input_activity=fx), grad)


@pytest.mark.parametrize("variant", ["strict", "fixed_prediction"])
def test_pc_gradient_equals_settle_then_read(rng, variant):
    net = PCNetwork([7, 6, 5, 3], seed=rng)
    x = rng.standard_normal((5, 7))
    target = np.eye(3)[rng.integers(0, 3, 5)]
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=5, stop_at_steady_state=False)
    est = pc_gradient(net, x, target, variant, options=options)
    assert net.fixed_prediction is False  # restored
    net.fixed_prediction = variant == "fixed_prediction"
    phase = settle(net, x, target=target, clamp_output=True, options=options, phase="inference")
    want = net.energy_grad_params(x, phase.state) * net.variances[-1]
    net.fixed_prediction = False
    np.testing.assert_array_equal(est.inference.state, phase.state)
    np.testing.assert_allclose(est.gradient, want, rtol=1e-12, atol=1e-15)


def test_vectorised_tanh_is_within_a_few_ulp_of_numpy(rng):
    from dynsim.networks.pc_kernels import phi_and_prime

    xs = np.concatenate([np.linspace(-25, 25, 200_001), 1e-3 * rng.standard_normal(50_000),
                         rng.standard_normal(50_000), [0.55, -0.55, np.nextafter(0.55, 0), 1e-300, 5e-324, 19.1, 40.0,
                                                       700.0, 1e308]])
    f, fp = phi_and_prime(xs[None, :], 2)
    want = np.tanh(xs)
    ulp = np.abs(f[0] - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert ulp.max() <= 4, (ulp.max(), xs[np.argmax(ulp)])
    np.testing.assert_allclose(fp[0], 1 - want ** 2, rtol=1e-14, atol=1e-15)  # 1 - t^2 near t = 1: ulp of 1
    special = np.array([[0.0, -0.0, np.inf, -np.inf, np.nan]])
    f, _ = phi_and_prime(special, 2)
    np.testing.assert_array_equal(f[0, :4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(f[0, 1]) and np.isnan(f[0, 4])


def test_settle_with_the_callers_drive_equals_settle_without(rng):
    from dynsim.relax.phases import SettleOptions, free_phase
    from dynsim.validation import ValidationError

    net = HopfieldNetwork.layered([5, 4, 2], activation="logistic", seed=rng)
    x = rng.uniform(size=(3, 5))
    options = SettleOptions(integrator="euler", dt=0.2, max_steps=30, stop_at_steady_state=False)
    given = free_phase(net, x, options=options, drive=net.input_drive(x))
    np.testing.assert_array_equal(given.state, free_phase(net, x, options=options).state)
    with pytest.raises(ValidationError, match="drive must have shape"):
        free_phase(net, x, options=options, drive=np.zeros((2, net.n_free)))


@pytest.mark.parametrize("rule", ["pc-strict", "pc-fixed-prediction"])
def test_pc_minibatch_shares_the_feedforward_pass_and_gives_the_same_gradient(rng, rule, monkeypatch):
    from dynsim.learning.predictive_coding import pc_gradient
    from dynsim.learning.rules import gradient_estimate
    from dynsim.networks.pc import PCNetwork

    net = PCNetwork([6, 7, 5, 3], activation="tanh", seed=4)
    x = rng.random((5, 6))
    y = np.eye(3)[rng.integers(0, 3, 5)]
    opts = SettleOptions(integrator="euler", dt=0.1, max_steps=5, stop_at_steady_state=False)
    expected = pc_gradient(net, x, y, rule[3:].replace("-", "_"), options=opts).gradient
    calls = []
    feedforward = PCNetwork.input_drive
    monkeypatch.setattr(PCNetwork, "input_drive", lambda self, *a, **k: calls.append(1) or feedforward(self, *a, **k))
    est = gradient_estimate(rule, net, x, y, options=opts)
    grad, free = est.gradient, est.free
    assert calls == []  # the fused minibatch computes the pass itself, once, and hands it to the free phase
    np.testing.assert_allclose(grad, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(free.state, net.feedforward(x), rtol=1e-13, atol=1e-15)
