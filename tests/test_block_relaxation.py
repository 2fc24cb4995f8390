"""The relaxation schemes of the EP literature (synchronous fixed point, block sweeps) against the integrators."""
import numpy as np
import pytest

from dynsim.learning.contrastive import ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.block_relaxation import group_colours
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase, settle
from dynsim.validation import ValidationError

SCHEMES = ["fixed_point", "block"]
TIGHT_DOPRI5 = SettleOptions(integrator="dopri5", atol=1e-11, rtol=1e-11, max_steps=1_000_000)


def with_biases(net, value, weight_scale=1.0):
    theta = net.theta.copy()
    theta[:-net.n_free] *= weight_scale
    theta[-net.n_free:] = value
    net.theta = theta
    return net


def skip_network(seed=2):
    """Bipartite but not layered: hidden_1 feeds hidden_2 and the output, hidden_2 feeds hidden_3."""
    return HopfieldNetwork([6, 7, 5, 4, 3], [(0, 1), (0, 3), (1, 2), (2, 3), (1, 4)], activation="hard_sigmoid",
                           seed=seed)


def odd_cycle_network(activation="hard_sigmoid"):
    # hidden_1 - hidden_2 - output - hidden_1: a triangle of groups.
    return HopfieldNetwork([5, 6, 4, 3], [(0, 1), (1, 2), (2, 3), (1, 3)], activation=activation, seed=4)


def free_and_nudged(net, x, target, beta, options):
    free = free_phase(net, x, options=options)
    nudged = nudged_phase(net, x, target, beta, free.state, options=options)
    return free, nudged


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic"])
def test_schemes_reach_the_equilibrium_of_a_tightly_converged_ode_settle(rng, scheme, activation):
    net = HopfieldNetwork.layered([8, 12, 10, 4], activation=activation, seed=3)
    if activation == "hard_sigmoid":
        with_biases(net, 0.2)
    x = rng.uniform(size=(5, 8))
    target = np.eye(4)[rng.integers(0, 4, 5)]
    options = SettleOptions(integrator=scheme, atol=1e-10, rtol=1e-10)
    # beta = 1 is where the map without the 1/(1 + beta) factor would oscillate; -0.5 shrinks the curvature.
    for beta in (0.5, 1.0, -0.5):
        ref_free, ref_nudged = free_and_nudged(net, x, target, beta, TIGHT_DOPRI5)
        free, nudged = free_and_nudged(net, x, target, beta, options)
        assert free.status == nudged.status == "converged", (free.integration.message, nudged.integration.message)
        np.testing.assert_allclose(free.state, ref_free.state, atol=1e-8)
        np.testing.assert_allclose(nudged.state, ref_nudged.state, atol=1e-8)
        assert nudged.integration.method == scheme
        # The reported residual is the integrators' projected one, below the tolerance.
        assert np.all(nudged.integration.residual <= nudged.integration.tolerance)


def test_projected_euler_reference_and_a_bipartite_network_that_is_not_layered(rng):
    net = with_biases(skip_network(), 0.1)
    assert group_colours(net) == {1: 1, 2: 0, 3: 1, 4: 0}
    x = rng.uniform(size=(4, 6))
    target = rng.uniform(size=(4, 3))
    reference = SettleOptions(integrator="projected_euler", dt=0.5, atol=1e-11, rtol=1e-11, max_steps=1_000_000)
    ref_free, ref_nudged = free_and_nudged(net, x, target, 0.7, reference)
    for scheme in SCHEMES:
        free, nudged = free_and_nudged(net, x, target, 0.7, SettleOptions(integrator=scheme, atol=1e-10, rtol=1e-10))
        np.testing.assert_allclose(free.state, ref_free.state, atol=1e-8, err_msg=scheme)
        np.testing.assert_allclose(nudged.state, ref_nudged.state, atol=1e-8, err_msg=scheme)


def test_fixed_point_also_settles_a_network_with_an_odd_cycle(rng):
    net = odd_cycle_network("logistic")
    x = rng.uniform(size=(3, 5))
    ref = free_phase(net, x, options=TIGHT_DOPRI5)
    res = free_phase(net, x, options=SettleOptions(integrator="fixed_point", atol=1e-10, rtol=1e-10))
    assert res.converged
    np.testing.assert_allclose(res.state, ref.state, atol=1e-8)


def test_fixed_point_is_projected_euler_with_unit_step_on_the_free_hard_sigmoid_network(rng):
    net = with_biases(HopfieldNetwork.layered([8, 12, 10, 4], seed=5), 0.2)
    x = rng.uniform(size=(3, 8))
    kw = dict(max_steps=25, stop_at_steady_state=False, record_every=1)
    fp = free_phase(net, x, options=SettleOptions(integrator="fixed_point", **kw))
    pe = free_phase(net, x, options=SettleOptions(integrator="projected_euler", dt=1.0, **kw))
    assert fp.integration.n_steps == pe.integration.n_steps == 25
    assert fp.integration.trajectory.y.shape == pe.integration.trajectory.y.shape == (26, 3, net.n_free)
    np.testing.assert_allclose(fp.integration.trajectory.y, pe.integration.trajectory.y, atol=1e-12)
    np.testing.assert_allclose(fp.integration.trajectory.residual, pe.integration.trajectory.residual, atol=1e-10)


@pytest.mark.parametrize("make_net", [
    lambda: with_biases(HopfieldNetwork.layered([8, 12, 10, 6, 4], seed=6), 0.1),
    lambda: with_biases(skip_network(seed=7), 0.1),
], ids=["layered", "skip"])
def test_block_sweeps_never_raise_the_total_energy(rng, make_net):
    net = make_net()
    x = rng.uniform(size=(6, net.n_input))
    target = np.eye(net.n_output)[rng.integers(0, net.n_output, 6)]
    options = SettleOptions(integrator="block", max_steps=60, stop_at_steady_state=False, record_every=1)
    free = settle(net, x, target=target, options=options)
    for beta in (0.0, 1.0, 3.0):
        phase = free if beta == 0.0 else nudged_phase(net, x, target, beta, free.state, options=options)
        F = phase.trajectory_energy + beta * phase.trajectory_cost
        assert F.shape == (61, 6)
        rises = np.diff(F, axis=0)
        assert rises.max() <= 1e-12 * np.abs(F).max(), (beta, rises.max())
        assert (F[0] - F[-1]).max() > 1e-3


def test_block_needs_fewer_sweeps_than_the_synchronous_fixed_point(rng):
    # Weights at half their Glorot scale: at full scale the synchronous map ends in a 2-cycle (next test).
    net = with_biases(HopfieldNetwork.layered([20, 30, 30, 5], seed=8), 0.1, weight_scale=0.5)
    x = rng.uniform(size=(10, 20))
    target = np.eye(5)[rng.integers(0, 5, 10)]
    counts = {}
    for scheme in ("fixed_point", "block"):
        free, nudged = free_and_nudged(net, x, target, 0.5, SettleOptions(integrator=scheme, atol=1e-8, rtol=1e-8))
        assert free.converged and nudged.converged
        counts[scheme] = (free.integration.n_steps, nudged.integration.n_steps)
    print(f"sweeps to 1e-8 (free, nudged): {counts}")
    assert counts["block"][0] <= counts["fixed_point"][0] and counts["block"][1] <= counts["fixed_point"][1]
    # Gauss-Seidel squares the Jacobi contraction on a bipartite graph: about half the sweeps.
    assert counts["block"][0] <= 0.7 * counts["fixed_point"][0]


def test_synchronous_updates_can_end_in_a_two_cycle_where_block_updates_converge(rng):
    net = with_biases(HopfieldNetwork.layered([20, 30, 30, 5], seed=8), 0.1)
    x = rng.uniform(size=(10, 20))
    kw = dict(atol=1e-8, rtol=1e-8, max_steps=2000, record_every=1)
    sync = free_phase(net, x, options=SettleOptions(integrator="fixed_point", **kw))
    block = free_phase(net, x, options=SettleOptions(integrator="block", **kw))
    assert block.converged
    assert sync.status == "step_limit"
    traj = sync.integration.trajectory.y
    # Period two: every other state repeats while consecutive states stay far apart.
    assert np.abs(traj[-1] - traj[-3]).max() < 1e-9 < 0.1 < np.abs(traj[-1] - traj[-2]).max()


@pytest.mark.parametrize("activation", ["logistic", "hard_sigmoid"])
def test_ep_gradient_from_block_settling_matches_the_one_from_dopri5(rng, activation):
    net = HopfieldNetwork.layered([6, 10, 8, 3], activation=activation, seed=2)
    if activation == "hard_sigmoid":
        # Keeps the output units off the bounds, where the nudge would move nothing.
        with_biases(net, 0.3, weight_scale=0.5)
    x = rng.uniform(size=(5, 6))
    target = np.eye(3)[rng.integers(0, 3, 5)]
    reference = ep_gradient(net, x, target, 0.1, "centered", options=TIGHT_DOPRI5).gradient
    estimate = ep_gradient(net, x, target, 0.1, "centered",
                           options=SettleOptions(integrator="block", atol=1e-11, rtol=1e-11))
    assert estimate.free.integration.method == "block"
    assert all(p.integration.method == "block" for p in estimate.phases.values())
    assert np.linalg.norm(reference) > 1e-3
    np.testing.assert_allclose(estimate.gradient, reference, atol=1e-7 * np.abs(reference).max())


def test_clamped_output_is_held_and_the_rest_settles(rng):
    net = HopfieldNetwork.layered([6, 10, 8, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(2, 6))
    target = np.array([[0.2, 0.9, 0.1], [0.7, 0.3, 0.5]])
    ref = settle(net, x, target=target, clamp_output=True, options=TIGHT_DOPRI5, phase="clamped")
    for scheme in SCHEMES:
        res = settle(net, x, target=target, clamp_output=True,
                     options=SettleOptions(integrator=scheme, atol=1e-10, rtol=1e-10), phase="clamped")
        assert res.converged
        np.testing.assert_array_equal(res.state[:, net.output_slice], target)
        np.testing.assert_allclose(res.state, ref.state, atol=1e-8)


def test_statuses_step_limit_and_divergence(rng):
    net = HopfieldNetwork.layered([6, 10, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(2, 6))
    limited = free_phase(net, x, options=SettleOptions(integrator="block", max_steps=2, atol=1e-12, rtol=1e-12))
    assert limited.status == "step_limit" and limited.integration.n_steps == 2
    assert "largest residual" in limited.integration.message
    diverged = free_phase(net, x, options=SettleOptions(integrator="fixed_point", max_abs=1e-3))
    assert diverged.status == "diverged" and np.isfinite(diverged.state).all()
    assert diverged.integration.diverged_step >= 0 and "diverged" in diverged.integration.message


@pytest.mark.parametrize("call,match", [
    (lambda x: free_phase(odd_cycle_network(), x, options=SettleOptions(integrator="block")),
     "odd cycle: hidden_2 - hidden_1 - output - hidden_2"),
    (lambda x: free_phase(HopfieldNetwork([5, 4, 3], [(0, 1), (1, 1), (1, 2)], seed=0), x,
                          options=SettleOptions(integrator="block")), "'hidden_1' are coupled to themselves"),
    (lambda x: free_phase(PCNetwork([5, 4, 3], seed=0), x, options=SettleOptions(integrator="block")),
     "applies to HopfieldNetwork only, got PCNetwork"),
    (lambda x: free_phase(PCNetwork([5, 4, 3], seed=0), x, options=SettleOptions(integrator="fixed_point")),
     "applies to HopfieldNetwork only"),
    (lambda x: SettleOptions(integrator="gauss_seidel"), r"integrator must be one of .*'fixed_point', 'block'"),
    (lambda x: SettleOptions(integrator="block", t_max=10.0), "counts sweeps"),
    (lambda x: nudged_phase(HopfieldNetwork.layered([5, 4, 3], seed=0), x, np.zeros((2, 3)), -1.0,
                            np.zeros((2, 7)), options=SettleOptions(integrator="block")), "beta must be > -1"),
])
def test_bad_input_gets_a_clear_error(call, match, rng):
    x = rng.uniform(size=(2, 5))
    with pytest.raises(ValidationError, match=match):
        call(x)
