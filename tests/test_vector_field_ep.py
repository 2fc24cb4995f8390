"""Vector-field (asymmetric) Hopfield networks and equilibrium propagation without weight transport.

The references are independent of the compiled kernels: a plain numpy vector
field written here from the paper's formula (Scellier et al. 2018), its
fixed points by scipy's root finder, and central finite differences of the
settled loss; and dynsim's symmetric network, its EP and its recurrent
backprop, which a tied vector-field network must reproduce.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

from dynsim.learning.contrastive import ep_gradient
from dynsim.learning.vector_field_ep import vf_ep_gradient, vf_evaluate, vf_train_epoch, weight_mirror_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork, angle_between
from dynsim.references.gradients import implicit_gradient
from dynsim.references.vector_field import vf_alignment, vf_ep_limit, vf_implicit_gradient
from dynsim.relax.phases import SettleOptions, settle
from dynsim.relax.vector_field import settle_vector_field
from dynsim.training.optimizers import SGD
from dynsim.validation import NotConvergedError, NotConvergedWarning, ValidationError

ROOT = Path(__file__).resolve().parents[1]
SIZES = [5, 4, 3, 2]
TIGHT = SettleOptions(integrator="dopri5", atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------- a plain numpy version
def np_rho(v, act):
    """(rho, rho') of the three activations, as the papers define them (hard sigmoid: rho' = 1 on [0, 1])."""
    if act == "logistic":
        e = 1 / (1 + np.exp(-v))
        return e, e * (1 - e)
    if act == "tanh":
        t = np.tanh(v)
        return t, 1 - t * t
    return np.clip(v, 0, 1), ((v >= 0) & (v <= 1)).astype(float)


def unpack(theta, sizes, tied):
    """W_k (n_k, n_{k+1}), b_g, B_k (n_{k+1}, n_k) from the documented layout of theta."""
    L = len(sizes) - 1
    o, W, b, B = 0, [], [None], [None]
    for k in range(L):
        W.append(theta[o:o + sizes[k] * sizes[k + 1]].reshape(sizes[k], sizes[k + 1]))
        o += sizes[k] * sizes[k + 1]
    for g in range(1, L + 1):
        b.append(theta[o:o + sizes[g]])
        o += sizes[g]
    for k in range(1, L):
        if tied:
            B.append(W[k].T)
        else:
            B.append(theta[o:o + sizes[k] * sizes[k + 1]].reshape(sizes[k + 1], sizes[k]))
            o += sizes[k] * sizes[k + 1]
    assert o == theta.size
    return W, b, B


def np_field(theta, sizes, act, tied, x, s, beta=0.0, y=None, clamp=False):
    """ds_g/dt = rho'(s_g) (rho(s_{g-1}) W_{g-1} + rho(s_{g+1}) B_g + b_g) - s_g, output nudged or clamped."""
    W, b, B = unpack(theta, sizes, tied)
    L = len(sizes) - 1
    edges = np.concatenate(([0], np.cumsum(sizes[1:])))
    layers = [x] + [s[:, edges[g - 1]:edges[g]] for g in range(1, L + 1)]
    r = [np_rho(v, act)[0] for v in layers]
    out = []
    for g in range(1, L + 1):
        h = b[g] + r[g - 1] @ W[g - 1]
        if g < L:
            h = h + r[g + 1] @ B[g]
        f = np_rho(layers[g], act)[1] * h - layers[g]
        if g == L and clamp:
            f = 0 * f
        elif g == L and beta:
            f = f - beta * (layers[g] - y)
        out.append(f)
    return np.concatenate(out, axis=1)


def np_fixed_point(theta, sizes, act, tied, x, s0):
    shape = s0.shape
    sol = scipy.optimize.root(lambda v: np_field(theta, sizes, act, tied, x, v.reshape(shape)).ravel(), s0.ravel(),
                              method="hybr", options={"xtol": 1e-15})
    # hybr reports "xtol too small" when it stops at machine precision: judge by the residual instead.
    assert np.abs(sol.fun).max() < 1e-13, sol.message
    return sol.x.reshape(shape)


def np_loss(theta, sizes, act, tied, x, y, s0):
    """Batch-mean 1/2 ||s_out - y||^2 at the fixed point found from s0."""
    s = np_fixed_point(theta, sizes, act, tied, x, s0)
    return 0.5 * np.mean(np.sum((s[:, -sizes[-1]:] - y) ** 2, axis=1))


def network(feedback="random", activation="logistic", seed=3, sizes=SIZES, dtype=np.float64, init_gain=None,
            bias=(0.0, 0.3)):
    """A small network with random biases (zero biases leave the hard sigmoid's units on a bound)."""
    net = VectorFieldHopfieldNetwork(sizes, activation, feedback=feedback, seed=seed, init_gain=init_gain,
                                     dtype=dtype)
    theta = net.theta.copy()
    theta[net.n_forward - net.n_free:net.n_forward] = np.random.default_rng(seed).normal(*bias, net.n_free)
    net.theta = theta
    return net


def batch(sizes=SIZES, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]


# ----------------------------------------------------------------------------- the network
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_tied_network_is_the_symmetric_hopfield_network(activation):
    net = network("tied", activation)
    sym = HopfieldNetwork.layered(SIZES, activation, theta=net.forward_theta.copy())
    assert net.n_params == net.n_forward == sym.n_params
    x, y = batch()
    s = np.random.default_rng(1).uniform(-0.2, 1.2, size=(4, net.n_free))
    expected = -sym.energy_grad_state(x, s)
    expected[:, -2:] -= 0.7 * (s[:, -2:] - y)
    np.testing.assert_allclose(net.dsdt(x, s, 0.7, y), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.energy(x, s), sym.energy(x, s), rtol=0, atol=1e-12)
    for opts in (TIGHT, SettleOptions(integrator="block", atol=1e-12, rtol=1e-12, max_steps=3000)):
        mine = settle_vector_field(net, x, target=y, beta=0.3, options=opts)
        theirs = settle(sym, x, target=y, beta=0.3, options=opts)
        # (The block map s <- rho'(s) h does not converge for this tanh network, symmetric or not: the same
        # sweeps, the same states and status.)
        assert mine.status == theirs.status and (mine.converged or activation == "tanh")
        np.testing.assert_allclose(mine.state, theirs.state, rtol=0, atol=1e-12)
    # Untied feedback set to W^T is the same network.
    free = network("random", activation)
    free.tie_feedback()
    assert all(a < 1e-12 for a in free.feedback_angles().values())
    np.testing.assert_allclose(free.dsdt(x, s, 0.7, y), expected, rtol=0, atol=1e-12)


def test_linear_output_layer():
    # Scellier 2024's linear output, in the tied network: the symmetric network with the same output.
    net = VectorFieldHopfieldNetwork(SIZES, "hard_sigmoid", feedback="tied", seed=1, init_gain=0.7,
                                     output_activation="linear")
    sym = net.symmetric_network()
    assert sym.activations == ("hard_sigmoid",) * 3 + ("linear",) and net.describe()["activation"][-1] == "linear"
    lower, upper = net.natural_box
    assert np.all(lower[:7] == 0) and np.all(upper[:7] == 1) and np.all(np.isinf(lower[7:]))
    x, y = batch()
    s = np.random.default_rng(3).uniform(-0.5, 1.5, size=(4, net.n_free))
    expected = -sym.energy_grad_state(x, s)
    expected[:, -2:] -= 0.4 * (s[:, -2:] - y)
    np.testing.assert_allclose(net.dsdt(x, s, 0.4, y), expected, rtol=0, atol=1e-12)
    swept = settle_vector_field(net, x, target=y, beta=0.4, options=SettleOptions(integrator="block", atol=1e-12,
                                                                                    rtol=1e-12))
    ode = settle(sym, x, target=y, beta=0.4, options=TIGHT)
    assert swept.converged and ode.converged
    np.testing.assert_allclose(swept.state, ode.state, rtol=0, atol=1e-10)
    free = settle(sym, x, options=TIGHT)
    np.testing.assert_allclose(vf_implicit_gradient(net, x, y, free.state).gradient,
                               implicit_gradient(sym, x, y, free).gradient, rtol=0, atol=1e-12)
    # Untied: the output is still linear, the hidden layers clipped.
    loose = VectorFieldHopfieldNetwork(SIZES, "hard_sigmoid", feedback="random", seed=1, output_activation="linear")
    state = settle_vector_field(loose, x, options=TIGHT).state
    assert np.all((state[:, :7] >= 0) & (state[:, :7] <= 1))


def test_float32_network_computes_in_float32():
    net64 = network("random", "logistic")
    net32 = net64.astype(np.float32)
    x, y = batch()
    s = np.random.default_rng(1).normal(size=(4, net64.n_free))
    f32 = net32.dsdt(x, s, 0.5, y)
    assert f32.dtype == np.float32 and net32.theta.dtype == np.float32
    np.testing.assert_allclose(f32, net64.dsdt(x, s, 0.5, y), rtol=0, atol=2e-6)
    opts = SettleOptions(integrator="fixed_point", atol=1e-5, rtol=1e-5)
    est = vf_ep_gradient(net32, x, y, 0.1, options=opts)
    assert est.gradient.dtype == np.float32 and est.free.state.dtype == np.float32
    ref = vf_ep_gradient(net64, x, y, 0.1, options=SettleOptions(integrator="fixed_point", atol=1e-10, rtol=1e-10))
    assert angle_between(est.gradient, ref.gradient) < 0.1


@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_vector_field_is_the_papers_formula(activation):
    net = network("random", activation)
    x, y = batch()
    s = np.random.default_rng(2).uniform(-0.3, 1.3, size=(4, net.n_free))
    for beta, clamp in ((0.0, False), (0.8, False), (-0.4, False), (0.0, True)):
        np.testing.assert_allclose(net.dsdt(x, s, beta, y, clamp_output=clamp),
                                   np_field(net.theta, SIZES, activation, False, x, s, beta, y, clamp),
                                   rtol=0, atol=1e-13)


def test_parameter_layout_and_views():
    net = network("kolen-pollack", "tanh")
    W, b, B = unpack(net.theta, SIZES, False)
    for k in range(3):
        np.testing.assert_array_equal(net.weights(k), W[k])
    for g in (1, 2, 3):
        np.testing.assert_array_equal(net.biases(g), b[g])
    for k in (1, 2):
        np.testing.assert_array_equal(net.feedback_weights(k), B[k])
        assert np.shares_memory(net.feedback_weights(k), net.theta)
    np.testing.assert_array_equal(net.symmetric_network().theta, net.forward_theta)
    blocks = net.parameter_blocks()
    assert list(blocks)[-2:] == ["B_hidden_2_hidden_1", "B_output_hidden_2"]
    assert blocks["B_output_hidden_2"].stop == net.n_params
    # Kolen-Pollack's transposed update must come with W_k's learning rate.
    layers = net.layer_of_block()
    assert layers["B_hidden_2_hidden_1"] == layers["W_hidden_1_hidden_2"] == 2
    assert layers["B_output_hidden_2"] == layers["W_hidden_2_output"] == 3
    assert net.describe()["feedback"] == "kolen-pollack"
    # Same seed, same forward weights as the symmetric network.
    plain = VectorFieldHopfieldNetwork(SIZES, "tanh", feedback="random", seed=7)
    np.testing.assert_array_equal(plain.forward_theta, HopfieldNetwork.layered(SIZES, "tanh", seed=7).theta)


@pytest.mark.parametrize("feedback", ["random", "tied"])
def test_jacobian_and_parameter_derivative_against_finite_differences(feedback):
    net = network(feedback, "logistic")
    x, _ = batch()
    s = np.random.default_rng(4).normal(size=(4, net.n_free))
    tied = feedback == "tied"
    eps = 1e-6
    J = net.field_jacobian(x, s)
    for j in range(net.n_free):
        d = np.zeros_like(s)
        d[:, j] = eps
        col = (np_field(net.theta, SIZES, "logistic", tied, x, s + d)
               - np_field(net.theta, SIZES, "logistic", tied, x, s - d)) / (2 * eps)
        np.testing.assert_allclose(J[:, :, j], col, rtol=0, atol=1e-9)
    lam = np.random.default_rng(5).normal(size=s.shape)
    vjp = net.field_vjp_params(x, s, lam)
    fd = np.empty(net.n_params)
    for i in range(net.n_params):
        e = np.zeros(net.n_params)
        e[i] = eps
        df = (np_field(net.theta + e, SIZES, "logistic", tied, x, s)
              - np_field(net.theta - e, SIZES, "logistic", tied, x, s)) / (2 * eps)
        fd[i] = np.sum(lam * df) / s.shape[0]
    np.testing.assert_allclose(vjp, fd, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- relaxation
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic"])
def test_sweeps_reach_the_fixed_point_the_integrators_reach(activation):
    net = network("random", activation)
    x, y = batch()
    ode = settle_vector_field(net, x, target=y, beta=0.4, options=TIGHT)
    assert ode.converged
    for scheme in ("fixed_point", "block"):
        opts = SettleOptions(integrator=scheme, atol=1e-12, rtol=1e-12, record_every=1, record_samples=(0, 2))
        swept = settle_vector_field(net, x, target=y, beta=0.4, options=opts)
        assert swept.converged, swept.message
        assert swept.integration.residual.max() <= 1e-12 * (1 + np.linalg.norm(swept.state, axis=1).max())
        np.testing.assert_allclose(swept.state, ode.state, rtol=0, atol=1e-10)
        traj = swept.integration.trajectory
        assert traj.y.shape == (swept.integration.n_steps + 1, 2, net.n_free)
        assert swept.trajectory_energy.shape == traj.residual.shape
        # The residual recorded at the last point is the one reported.
        np.testing.assert_allclose(traj.residual[-1], swept.integration.residual[[0, 2]])
    if activation == "hard_sigmoid":
        assert np.all((ode.state >= 0) & (ode.state <= 1))


def test_sweeps_of_strongly_asymmetric_feedback_cycle_and_the_rule_says_so():
    # B = -3 W^T: the linearised sweep map has eigenvalues of modulus > 1 on the imaginary axis, so the
    # synchronous sweeps circle the fixed point for ever; the ODE's Jacobian -I + (antisymmetric) still
    # has eigenvalues of real part -1, and Euler with a small step settles.
    net = network("random", "tanh", sizes=[3, 6, 6], init_gain=2.0, bias=(0.0, 0.0))
    net.feedback_weights(1)[...] = -3.0 * net.weights(1).T
    x, y = batch([3, 6, 6])
    cycle = SettleOptions(integrator="fixed_point", max_steps=500, atol=1e-8, rtol=1e-8)
    swept = settle_vector_field(net, x, options=cycle)
    assert swept.status == "step_limit" and swept.integration.residual.max() > 1e-3
    euler = settle_vector_field(net, x, options=SettleOptions(integrator="euler", dt=0.05, atol=1e-8, rtol=1e-8))
    assert euler.converged
    with pytest.warns(NotConvergedWarning, match="largest residual"):
        vf_ep_gradient(net, x, y, 0.1, options=cycle)
    with pytest.raises(NotConvergedError):
        vf_ep_gradient(net, x, y, 0.1, options=SettleOptions(integrator="fixed_point", max_steps=500,
                                                              not_converged="raise"))
    # The pseudo-energy of the forward weights is no Lyapunov function here: it rises along the settling.
    opts = SettleOptions(integrator="euler", dt=0.05, atol=1e-8, rtol=1e-8, record_every=1)
    traj_e = settle_vector_field(net, x, options=opts).trajectory_energy
    assert np.any(np.diff(traj_e, axis=0) > 1e-6)


# ----------------------------------------------------------------------------- reference gradient
@pytest.mark.parametrize("activation", ["logistic", "tanh"])
def test_implicit_gradient_matches_finite_differences_of_the_settled_loss(activation):
    net = network("random", activation)
    x, y = batch()
    free = settle_vector_field(net, x, options=TIGHT)
    ref = vf_implicit_gradient(net, x, y, free)
    assert not ref.pinned.any() and ref.residual.max() < 1e-11
    eps = 1e-5
    fd = np.empty(net.n_params)
    for i in range(net.n_params):
        e = np.zeros(net.n_params)
        e[i] = eps
        fd[i] = (np_loss(net.theta + e, SIZES, activation, False, x, y, free.state)
                 - np_loss(net.theta - e, SIZES, activation, False, x, y, free.state)) / (2 * eps)
    assert np.linalg.norm(ref.gradient - fd) <= 1e-8 * np.linalg.norm(fd)
    # The feedback blocks have a true gradient too (the loss depends on B through the fixed point).
    assert np.abs(ref.gradient[net.n_forward:]).max() > 1e-3


def test_implicit_gradient_with_units_pinned_at_the_box():
    net = network("random", "hard_sigmoid", sizes=[5, 6, 5, 3], init_gain=1.0, bias=(0.3, 0.5))
    x, y = batch([5, 6, 5, 3])
    opts = SettleOptions(integrator="block", atol=1e-14, rtol=1e-14, max_steps=10_000)
    free = settle_vector_field(net, x, options=opts)
    ref = vf_implicit_gradient(net, x, y, free)
    assert 0 < ref.pinned.sum() < ref.pinned.size and np.all(ref.adjoint[ref.pinned] == 0)

    def loss(theta):
        moved = VectorFieldHopfieldNetwork([5, 6, 5, 3], "hard_sigmoid", feedback="random", theta=theta)
        phase = settle_vector_field(moved, x, s0=free.state, target=y, options=opts)
        assert phase.converged
        return phase.cost.mean()

    eps = 1e-6
    fd = np.array([(loss(net.theta + eps * e) - loss(net.theta - eps * e)) / (2 * eps) for e in np.eye(net.n_params)])
    assert np.linalg.norm(ref.gradient - fd) <= 1e-6 * np.linalg.norm(fd)


@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic"])
def test_tied_reference_is_dynsims_recurrent_backprop(activation):
    net = network("tied", activation, sizes=[5, 6, 5, 3], init_gain=1.0, bias=(0.3, 0.5))
    sym = net.symmetric_network()
    x, y = batch([5, 6, 5, 3])
    free = settle(sym, x, options=TIGHT)
    theirs = implicit_gradient(sym, x, y, free)
    mine = vf_implicit_gradient(net, x, y, free.state)
    np.testing.assert_array_equal(mine.pinned, theirs.pinned)
    np.testing.assert_allclose(mine.gradient, theirs.gradient, rtol=0, atol=1e-12)
    np.testing.assert_allclose(vf_ep_limit(net, x, y, free.state), theirs.gradient, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("variant", ["centered", "positive", "negative"])
@pytest.mark.parametrize("integrator", ["dopri5", "block"])
def test_tied_vf_ep_is_dynsims_ep(variant, integrator):
    net = network("tied", "hard_sigmoid", bias=(0.3, 0.3))
    sym = net.symmetric_network()
    x, y = batch()
    opts = SettleOptions(integrator=integrator, atol=1e-12, rtol=1e-12)
    mine = vf_ep_gradient(net, x, y, 0.2, variant, options=opts)
    theirs = ep_gradient(sym, x, y, 0.2, variant, options=opts)
    assert mine.betas == theirs.betas and mine.rule == f"vf-ep-{variant}"
    np.testing.assert_allclose(mine.gradient, theirs.gradient, rtol=0, atol=1e-10)
    assert set(mine.phases) == set(theirs.phases)


def test_vf_ep_tends_to_its_beta_to_zero_limit_which_is_not_the_gradient():
    net = network("random", "logistic")
    x, y = batch()
    free = settle_vector_field(net, x, options=TIGHT)
    limit = vf_ep_limit(net, x, y, free)
    errors = {}
    for variant in ("centered", "positive"):
        for beta in (1e-2, 1e-3):
            est = vf_ep_gradient(net, x, y, beta, variant, options=TIGHT, free=free)
            errors[variant, beta] = np.linalg.norm(est.gradient[:net.n_forward] - limit) / np.linalg.norm(limit)
    # O(beta^2) centered, O(beta) one-sided.
    assert 70 < errors["centered", 1e-2] / errors["centered", 1e-3] < 130
    assert 7 < errors["positive", 1e-2] / errors["positive", 1e-3] < 13
    truth = vf_implicit_gradient(net, x, y, free).gradient[:net.n_forward]
    first = net.parameter_blocks()["W_input_hidden_1"]
    assert angle_between(limit[first], truth[first]) > 10.0
    # Feedback is the whole difference: set B_k = W_k^T and the limit is the true gradient of W_k moving with
    # its feedback, dL/dW_k + (dL/dB_k)^T, which is the tied network's gradient.
    net.tie_feedback()
    free = settle_vector_field(net, x, options=TIGHT)
    full = vf_implicit_gradient(net, x, y, free).gradient
    blocks = net.parameter_blocks()
    moved_together = full[:net.n_forward].copy()
    for k, name in net.feedback_block_names().items():
        w = blocks[f"W_{net.group_names[k]}_{net.group_names[k + 1]}"]
        moved_together[w] += full[blocks[name]].reshape(net.feedback_weights(k).shape).T.ravel()
    limit = vf_ep_limit(net, x, y, free)
    np.testing.assert_allclose(limit, moved_together, rtol=0, atol=1e-12)
    tied = VectorFieldHopfieldNetwork(SIZES, "logistic", feedback="tied", theta=net.forward_theta.copy())
    np.testing.assert_allclose(vf_implicit_gradient(tied, x, y, free.state).gradient, limit, rtol=0, atol=1e-12)


def test_alignment_angles():
    x, y = batch()
    tied = vf_alignment(network("tied", "logistic"), x, y, beta=0.01)
    assert tied.to_symmetric_ep["all"] < 1e-6 and tied.to_true_gradient["all"] < 0.01
    assert all(v == 0 for v in tied.feedback.values())
    rand = vf_alignment(network("random", "logistic"), x, y, beta=0.01)
    assert set(rand.to_true_gradient) == {"W_input_hidden_1", "W_hidden_1_hidden_2", "W_hidden_2_output",
                                          "b_hidden_1", "b_hidden_2", "b_output", "all"}
    # The output layer's update does not pass through any feedback; the hidden layers' do.
    assert rand.to_true_gradient["W_hidden_2_output"] < 10.0
    assert rand.to_true_gradient["W_input_hidden_1"] > 10.0 and rand.to_true_gradient["W_hidden_1_hidden_2"] > 10.0
    assert rand.to_symmetric_ep["W_input_hidden_1"] > 10.0
    assert all(30.0 < v < 150.0 for v in rand.feedback.values())
    np.testing.assert_allclose(rand.to_true_gradient["all"],
                               angle_between(rand.estimate.gradient[:20 + 12 + 6 + 9],
                                             rand.reference.gradient[:20 + 12 + 6 + 9]))


def test_random_feedback_is_never_updated_and_decay_spares_w0():
    net = network("random", "tanh")
    x, y = batch()
    est = vf_ep_gradient(net, x, y, 0.1, options=TIGHT, weight_decay=0.5)
    plain = vf_ep_gradient(net, x, y, 0.1, options=TIGHT, free=est.free)
    assert np.all(est.gradient[net.n_forward:] == 0)
    diff = est.gradient - plain.gradient
    blocks = net.parameter_blocks()
    np.testing.assert_allclose(diff[blocks["W_hidden_1_hidden_2"]], 0.5 * net.weights(1).ravel(), atol=1e-14)
    assert np.all(diff[blocks["W_input_hidden_1"]] == 0) and np.all(diff[net.n_forward - net.n_free:] == 0)


def test_kolen_pollack_feedback_gets_the_transposed_update_and_forgets_its_start():
    net = network("kolen-pollack", "logistic")
    x, y = batch()
    decay, lr = 0.3, [0.5, 0.2, 0.1]
    est = vf_ep_gradient(net, x, y, 0.1, options=TIGHT, weight_decay=decay)
    blocks = net.parameter_blocks()
    for k, name in net.feedback_block_names().items():
        # Both carry their own decay; what remains is EP's update of W_k and its transpose.
        w_grad = est.gradient[blocks[f"W_{net.group_names[k]}_{net.group_names[k + 1]}"]].reshape(
            net.weights(k).shape) - decay * net.weights(k)
        b_grad = est.gradient[blocks[name]].reshape(net.feedback_weights(k).shape) - decay * net.feedback_weights(k)
        np.testing.assert_allclose(b_grad, w_grad.T, rtol=0, atol=1e-14)
    before = {k: np.linalg.norm(net.feedback_weights(k) - net.weights(k).T) for k in (1, 2)}
    SGD(net, lr).step(net.theta, est.gradient)
    for k in (1, 2):
        after = np.linalg.norm(net.feedback_weights(k) - net.weights(k).T)
        np.testing.assert_allclose(after, (1 - lr[k] * decay) * before[k], rtol=1e-12)


def test_weight_mirror_pulls_the_feedback_to_the_forward_transpose():
    net = network("weight-mirror", "logistic", sizes=[5, 8, 6, 3])
    rng = np.random.default_rng(0)
    grads = np.mean([weight_mirror_gradient(net, rng, 64) for _ in range(400)], axis=0)
    blocks = net.parameter_blocks()
    assert np.all(grads[:net.n_forward] == 0)
    for k, name in net.feedback_block_names().items():
        expected = (net.feedback_weights(k) - net.weights(k).T).ravel()
        # 25,600 noise samples: the mean is within a few standard errors (about |W| sqrt(n_k / 25600)).
        np.testing.assert_allclose(grads[blocks[name]], expected, rtol=0, atol=0.05)
    start = net.feedback_angles()
    opt = SGD(net, 0.05)
    for _ in range(300):
        opt.step(net.theta, weight_mirror_gradient(net, rng, 64))
    assert all(start[k] > 45 for k in start) and all(v < 10.0 for v in net.feedback_angles().values())


@pytest.mark.parametrize("call, message", [
    (lambda: VectorFieldHopfieldNetwork([4, 3], feedback="mirror"), "feedback must be one of"),
    (lambda: VectorFieldHopfieldNetwork([4, 0, 2]), r"sizes\[1\] must be an integer >= 1"),
    (lambda: VectorFieldHopfieldNetwork([4]), "at least one free layer"),
    (lambda: VectorFieldHopfieldNetwork([4, 3], activation="relu"), "activation must be one of"),
    (lambda: VectorFieldHopfieldNetwork([4, 3], theta=np.zeros(3)), r"theta must have shape \(15,\)"),
    (lambda: network().feedback_weights(0), r"k must be a feedback block in \[1, 2\]"),
    (lambda: vf_ep_gradient(network(), *batch(), beta=0.0), r"beta must be finite, in \(0.0, inf\)"),
    (lambda: vf_ep_gradient(network(), *batch(), beta=0.1, variant="random"), "variant must be one of"),
    (lambda: vf_ep_gradient(network(), batch()[0], None, beta=0.1), "target is required"),
    (lambda: vf_ep_gradient(network(), *batch(), beta=0.1, weight_decay=-1), "weight_decay must be"),
    (lambda: vf_ep_gradient(HopfieldNetwork.layered(SIZES), *batch(), beta=0.1),
     "network must be a VectorFieldHopfieldNetwork"),
    (lambda: vf_ep_gradient(network(), *batch(), beta=1.0, options=SettleOptions(integrator="block")),
     "beta must be > -1"),
    (lambda: network().dsdt(batch()[0][:, :3], np.zeros((4, 9))), r"x must have shape \(any, 5\)"),
    (lambda: vf_implicit_gradient(network(), *batch(), free="state"), "free must be a PhaseResult"),
])
def test_bad_arguments_are_refused_with_a_message_naming_them(call, message):
    with pytest.raises(ValidationError, match=message):
        call()


# ----------------------------------------------------------------------------- MNIST
def _mnist_run(splits, feedback, epochs, lr, decay, n_train=400, n_val=200, hidden=64):
    net = VectorFieldHopfieldNetwork([784, hidden, 10], feedback=feedback, seed=0)
    tr, va = splits.train, splits.validation
    free = SettleOptions(integrator="fixed_point", max_steps=30, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="fixed_point", max_steps=10, stop_at_steady_state=False)
    ev = SettleOptions(integrator="fixed_point", max_steps=100, atol=1e-5, rtol=1e-5, not_converged="ignore")
    ref = SettleOptions(integrator="block", max_steps=3000, atol=1e-9, rtol=1e-9, not_converged="ignore")
    opt = SGD(net, lr)
    rng = np.random.default_rng(0)
    xv, yv, lv = va.x[:n_val], va.targets[:n_val], va.labels[:n_val]
    errors = [vf_evaluate(net, xv, lv, yv, ev)["error"]]
    feedback_angles = [np.mean(list(net.feedback_angles().values()))]
    aligned = [vf_alignment(net, va.x[-50:], va.targets[-50:], beta=0.5, options=ref)]
    for _ in range(epochs):
        vf_train_epoch(net, opt, tr.x[:n_train], tr.targets[:n_train], tr.labels[:n_train], 20, 0.5, "centered",
                       free, nudged, weight_decay=decay, rng=rng)
        errors.append(vf_evaluate(net, xv, lv, yv, ev)["error"])
        feedback_angles.append(np.mean(list(net.feedback_angles().values())))
    aligned.append(vf_alignment(net, va.x[-50:], va.targets[-50:], beta=0.5, options=ref))
    return errors, feedback_angles, aligned


def test_on_mnist_kolen_pollack_feedback_aligns_and_the_network_learns(mnist_splits):
    errors, angles, aligned = _mnist_run(mnist_splits, "kolen-pollack", 8, [0.4, 0.2], 0.1)
    print(f"\nKolen-Pollack, 784-64-10, 400 images, 8 epochs: validation error {errors[0]:.3f} -> {errors[-1]:.3f}; "
          f"angle(B, W^T) {angles[0]:.1f} -> {angles[-1]:.1f}; angle to symmetric EP (all) "
          f"{aligned[0].to_symmetric_ep['all']:.1f} -> {aligned[-1].to_symmetric_ep['all']:.1f}; to RBP (W_0) "
          f"{aligned[0].to_true_gradient['W_input_hidden_1']:.1f} -> "
          f"{aligned[-1].to_true_gradient['W_input_hidden_1']:.1f}")
    assert all(b < a + 1.0 for a, b in zip(angles, angles[1:]))  # the angle falls, epoch after epoch
    assert angles[0] > 80 and angles[-1] < 40
    assert aligned[-1].to_symmetric_ep["all"] < aligned[0].to_symmetric_ep["all"] - 20
    assert errors[0] > 0.85 and errors[-1] < 0.6


def test_on_mnist_random_feedback_still_learns(mnist_splits):
    errors, angles, aligned = _mnist_run(mnist_splits, "random", 8, [0.4, 0.2], 0.0)
    print(f"\nrandom feedback, 784-64-10, 400 images, 8 epochs: validation error {errors[0]:.3f} -> {errors[-1]:.3f};"
          f" angle(B, W^T) {angles[0]:.1f} -> {angles[-1]:.1f}; angle to RBP (W_0) "
          f"{aligned[0].to_true_gradient['W_input_hidden_1']:.1f} -> "
          f"{aligned[-1].to_true_gradient['W_input_hidden_1']:.1f}")
    assert errors[0] > 0.85 and errors[-1] < 0.75
    # Feedback alignment: the forward weights turn towards the fixed feedback.
    assert angles[-1] < angles[0] - 3


# ----------------------------------------------------------------------------- scenario
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared/data/mnist is not present")
def test_scenario_smoke(tmp_path, cli_plot):
    from dynsim.io.log import read_log

    out = tmp_path / "vf"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scenarios" / "vf_ep.py"), "--train-size", "60", "--eval-size", "40",
         "--angle-batch", "10", "--epochs", "1", "--hidden", "16", "--feedback", "random,kolen-pollack",
         "--dtype", "float64", "--out", str(out), "--no-download"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, DYNSIM_DATA=str(SHARED_DATA)))
    assert proc.returncode == 0, proc.stderr
    assert "kolen-pollack" in proc.stdout and "angle RBP" in proc.stdout
    with read_log(out / "log.h5") as log:
        assert log.config["feedback"] == ["random", "kolen-pollack"]
        for name in ("epochs_random", "epochs_kolen_pollack"):
            table = log.table(name)
            assert table["epoch"].tolist() == [0, 1]
            assert np.all((table["validation_error"] >= 0) & (table["validation_error"] <= 1))
            assert np.all((table["angle_true_all"] >= 0) & (table["angle_true_all"] <= 180))
            assert np.all(np.isfinite(table["angle_feedback_B_output_hidden_1"]))
            assert np.all(table["reference_residual"] < 1e-6)
        # The free and nudged relaxations of a few test images, before and after each mode's training.
        assert [log.relaxation(k).label for k in range(log.n_relaxations)] == [
            "random epoch 0", "random epoch 1", "kolen-pollack epoch 0", "kolen-pollack epoch 1"]
        assert list(log.relaxation(3).phases) == ["free", "nudged+"]
    assert (out / "angles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for kind in ("settling", "training", "gradients"):  # the command line reads the log: trajectories, curves, angles
        cli_plot(out / "log.h5", kind, tmp_path / f"{kind}.png", *(["--relaxation", "-1"] * (kind == "settling")))
    # An existing log is never replaced without --overwrite.
    again = subprocess.run([sys.executable, str(ROOT / "scenarios" / "vf_ep.py"), "--out", str(out), "--epochs", "0",
                            "--no-download"], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, DYNSIM_DATA=str(SHARED_DATA)))
    assert again.returncode != 0 and "already exists" in again.stderr


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared/data/mnist is not present")
def test_scenario_resumes_as_an_uninterrupted_run(tmp_path):
    from dynsim.io.log import read_log
    from dynsim.training.checkpoint import load_checkpoint

    common = [sys.executable, str(ROOT / "scenarios" / "vf_ep.py"), "--train-size", "60", "--eval-size", "40",
              "--angle-batch", "10", "--hidden", "16", "--feedback", "random,kolen-pollack", "--dtype", "float64",
              "--no-download"]
    env = dict(os.environ, DYNSIM_DATA=str(SHARED_DATA))

    def run(*args):
        proc = subprocess.run([*common, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc

    run("--epochs", 2, "--out", tmp_path / "whole")
    run("--epochs", 1, "--out", tmp_path / "split")
    resumed = run("--epochs", 2, "--out", tmp_path / "split", "--resume")
    assert "random         resuming after epoch 1" in resumed.stdout
    for mode in ("random", "kolen-pollack"):
        a = load_checkpoint(tmp_path / "whole" / f"checkpoint_{mode}.h5")
        b = load_checkpoint(tmp_path / "split" / f"checkpoint_{mode}.h5")
        assert a.epoch == b.epoch == 2
        np.testing.assert_array_equal(a.theta, b.theta)
    with read_log(tmp_path / "whole" / "log.h5") as x, read_log(tmp_path / "split" / "log.h5") as y:
        for name in ("epochs_random", "epochs_kolen_pollack"):
            assert y.table(name)["epoch"].tolist() == [0, 1, 2]
            np.testing.assert_array_equal(x.table(name)["test_error"], y.table(name)["test_error"])
    assert (tmp_path / "split" / "angles.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_trains_a_vector_field_network_and_resumes_it(mnist_splits, tmp_path):
    """The rule by name through gradient_estimate and fit: block sweeps, Kolen-Pollack feedback, checkpoints."""
    from dynsim.datasets.tasks import Task
    from dynsim.learning.rules import gradient_estimate
    from dynsim.training.loop import fit

    def task(split, n):
        return Task(split.name, split.x[:n], split.labels[:n], split.targets[:n])

    data = {"train": task(mnist_splits.train, 400), "validation": task(mnist_splits.validation, 200)}
    opts = SettleOptions(integrator="block", max_steps=20, stop_at_steady_state=False, not_converged="ignore")

    def run(epochs, resume=False, seed=0):
        net = VectorFieldHopfieldNetwork([784, 32, 10], feedback="kolen-pollack", output_activation="linear",
                                         init_gain=0.7, seed=seed)
        history = fit(net, data, "ep-centered", SGD(net, [0.05, 0.05]), epochs, 20, beta=0.2, options=opts,
                      checkpoint=tmp_path / "ckpt.h5", resume=resume, rule_options={"weight_decay": 0.05})
        return net, history

    # gradient_estimate by name equals the function.
    net = VectorFieldHopfieldNetwork([784, 32, 10], feedback="kolen-pollack", output_activation="linear", seed=3)
    x, t = data["train"].x[:20], data["train"].targets[:20]
    by_name = gradient_estimate("ep-centered", net, x, t, 0.2, opts, rule_options={"weight_decay": 0.05})
    direct = vf_ep_gradient(net, x, t, 0.2, "centered", options=opts, weight_decay=0.05)
    np.testing.assert_array_equal(by_name.gradient, direct.gradient)
    with pytest.raises(ValidationError, match="must be one of"):
        gradient_estimate("ep-random", net, x, t, 0.2, opts)
    with pytest.raises(ValidationError, match="weight_decay"):
        gradient_estimate("ep-centered", net, x, t, 0.2, opts, rule_options={"decay": 0.05})

    whole, history = run(3)
    errors = history["validation_error"]
    assert errors[-1] < errors[0] - 0.3  # it learns (about 0.9 at the start)
    angle_before = VectorFieldHopfieldNetwork([784, 32, 10], feedback="kolen-pollack", output_activation="linear",
                                              init_gain=0.7, seed=0).feedback_angles()
    assert list(whole.feedback_angles().values())[0] < list(angle_before.values())[0] - 5
    (tmp_path / "ckpt.h5").unlink()
    run(2)
    resumed, _ = run(3, resume=True)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
