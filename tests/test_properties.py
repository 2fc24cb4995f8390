"""Property-based tests (hypothesis) of the networks' energies and of the integrators' divergence report.

Shapes vary among a few sizes only: the compiled kernels specialise on dtype
and dimension, not shape, so no example recompiles anything.
"""
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions, free_phase, settle

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

SIZES = st.sampled_from([(3, 4, 2), (4, 6, 5, 3), (2, 3)])
SMOOTH = st.sampled_from(["logistic", "tanh"])
ACTIVATIONS = st.sampled_from(["logistic", "tanh", "hard_sigmoid"])
SEEDS = st.integers(0, 2 ** 32 - 1)
BATCH = st.sampled_from([1, 3])
H = 1e-6


def hopfield(sizes, activation, seed, bias_scale=0.3):
    rng = np.random.default_rng(seed)
    net = HopfieldNetwork.layered(list(sizes), activation=activation, seed=rng)
    theta = net.theta.copy()
    theta[-net.n_free:] = bias_scale * rng.standard_normal(net.n_free)
    net.theta = theta
    return net, rng


def away_from_kinks(s, margin=1e-3):
    """Move states off the hard sigmoid's kinks at 0 and 1, where E is not differentiable."""
    s = s.copy()
    for kink in (0.0, 1.0):
        near = np.abs(s - kink) < margin
        s[near] = kink + np.where(s[near] >= kink, 1, -1) * 2 * margin
    return s


def central_differences_state(energy, s):
    fd = np.empty_like(s)
    for j in range(s.shape[1]):
        e = np.zeros_like(s)
        e[:, j] = H
        fd[:, j] = (energy(s + e) - energy(s - e)) / (2 * H)
    return fd


def central_differences_params(net, mean_energy):
    theta = net.theta.copy()
    fd = np.empty(net.n_params)
    try:
        for k in range(net.n_params):
            e = np.zeros(net.n_params)
            e[k] = H
            net.theta = theta + e
            up = mean_energy()
            net.theta = theta - e
            fd[k] = (up - mean_energy()) / (2 * H)
    finally:
        net.theta = theta
    return fd


# ----------------------------------------------------------------------------- Hopfield
@PROPERTY
@given(sizes=SIZES, activation=ACTIVATIONS, seed=SEEDS, batch=BATCH,
       method=st.sampled_from(["euler", "projected_euler"]), dt=st.sampled_from([0.01, 0.05]))
def test_hopfield_energy_never_increases_along_small_step_free_trajectories(sizes, activation, seed, batch,
                                                                             method, dt):
    if method == "projected_euler" and activation != "hard_sigmoid":
        method = "euler"  # projected Euler needs the hard sigmoid's box
    net, rng = hopfield(sizes, activation, seed)
    x = rng.uniform(size=(batch, net.n_input))
    low, high = (0.0, 1.0) if activation == "hard_sigmoid" else (-2.0, 2.0)
    s0 = rng.uniform(low, high, size=(batch, net.n_free))
    res = free_phase(net, x, s0=s0, options=SettleOptions(integrator=method, dt=dt, max_steps=150,
                                                          stop_at_steady_state=False, record_every=1))
    assert res.status != "diverged", res.integration.message
    energy = res.trajectory_energy  # (m, batch): one row per step
    assert energy.shape[0] == 151
    rise = np.diff(energy, axis=0)
    slack = 1e-12 * (1.0 + np.abs(energy[:-1]))
    assert (rise <= slack).all(), f"energy rises by up to {rise.max():.3e}"


@PROPERTY
@given(sizes=SIZES, activation=ACTIVATIONS, seed=SEEDS, batch=BATCH)
def test_hopfield_state_gradient_is_the_derivative_of_the_energy(sizes, activation, seed, batch):
    net, rng = hopfield(sizes, activation, seed)
    x = rng.uniform(size=(batch, net.n_input))
    s = away_from_kinks(rng.uniform(-0.5, 1.5, size=(batch, net.n_free)))
    fd = central_differences_state(lambda v: net.energy(x, v), s)
    np.testing.assert_allclose(net.energy_grad_state(x, s), fd, rtol=1e-5, atol=1e-7)


@PROPERTY
@given(sizes=SIZES, activation=ACTIVATIONS, seed=SEEDS, batch=BATCH)
def test_hopfield_parameter_gradient_is_the_derivative_of_the_mean_energy(sizes, activation, seed, batch):
    # rho(s) is fixed while theta moves, so the hard sigmoid's kinks do not matter here.
    net, rng = hopfield(sizes, activation, seed)
    x = rng.uniform(size=(batch, net.n_input))
    s = rng.uniform(-0.5, 1.5, size=(batch, net.n_free))
    fd = central_differences_params(net, lambda: net.energy(x, s).mean())
    np.testing.assert_allclose(net.energy_grad_params(x, s), fd, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- predictive coding
def pc_network(sizes, activation, seed):
    rng = np.random.default_rng(seed)
    variances = rng.uniform(0.5, 2.0, size=len(sizes) - 1)
    net = PCNetwork(list(sizes), activation=activation, variances=variances, seed=rng)
    theta = net.theta.copy()
    theta[-net.n_free:] = 0.3 * rng.standard_normal(net.n_free)
    net.theta = theta
    return net, rng


@PROPERTY
@given(sizes=SIZES, activation=SMOOTH, seed=SEEDS, batch=BATCH)
def test_pc_state_gradient_is_the_derivative_of_the_energy(sizes, activation, seed, batch):
    # Strict predictive coding only: with fixed_prediction the dynamics are by design not the gradient
    # flow of F (Millidge et al. 2020 hold predictions and f' at their feedforward values).
    net, rng = pc_network(sizes, activation, seed)
    x = rng.uniform(-1, 1, size=(batch, net.n_input))
    s = rng.uniform(-1.5, 1.5, size=(batch, net.n_free))
    drive = net.input_drive(x)
    fd = central_differences_state(lambda v: net.energy_from_drive(v, drive), s)
    np.testing.assert_allclose(net.energy_grad_state(x, s), fd, rtol=1e-5, atol=1e-7)


@PROPERTY
@given(sizes=SIZES, activation=SMOOTH, seed=SEEDS, batch=BATCH)
def test_pc_parameter_gradient_is_the_derivative_of_the_mean_energy(sizes, activation, seed, batch):
    net, rng = pc_network(sizes, activation, seed)
    x = rng.uniform(-1, 1, size=(batch, net.n_input))
    s = rng.uniform(-1.5, 1.5, size=(batch, net.n_free))
    fd = central_differences_params(net, lambda: net.energy(x, s).mean())
    np.testing.assert_allclose(net.energy_grad_params(x, s), fd, rtol=1e-5, atol=1e-7)


@PROPERTY
@given(sizes=SIZES, activation=SMOOTH, seed=SEEDS, batch=BATCH, dt=st.sampled_from([0.01, 0.05]))
def test_pc_energy_never_increases_along_small_step_inference(sizes, activation, seed, batch, dt):
    net, rng = pc_network(sizes, activation, seed)
    x = rng.uniform(-1, 1, size=(batch, net.n_input))
    s0 = net.input_drive(x) + rng.standard_normal((batch, net.n_free))
    res = free_phase(net, x, s0=s0, options=SettleOptions(integrator="euler", dt=dt, max_steps=150,
                                                          stop_at_steady_state=False, record_every=1))
    energy = res.trajectory_energy
    rise = np.diff(energy, axis=0)
    assert (rise <= 1e-12 * (1.0 + np.abs(energy[:-1]))).all(), f"energy rises by up to {rise.max():.3e}"


# ----------------------------------------------------------------------------- divergence
@PROPERTY
@given(kind=st.sampled_from(["hopfield", "pc"]), sizes=SIZES, activation=ACTIVATIONS, seed=SEEDS, batch=BATCH,
       method=st.sampled_from(["euler", "heun", "rk4", "dopri5"]), dt=st.sampled_from([0.1, 1.0, 2.5, 8.0]),
       weight_scale=st.sampled_from([1.0, 10.0, 300.0]), max_abs=st.sampled_from([1e6, math.inf]),
       nudged=st.booleans())
def test_no_integrator_returns_a_non_finite_state_unless_it_says_diverged(kind, sizes, activation, seed, batch,
                                                                         method, dt, weight_scale, max_abs,
                                                                         nudged):
    if kind == "hopfield":
        net, rng = hopfield(sizes, activation, seed, bias_scale=weight_scale)
    else:
        net, rng = pc_network(sizes, activation, seed)
    net.theta = net.theta * weight_scale
    x = rng.uniform(-1, 1, size=(batch, net.n_input)) * weight_scale
    target = rng.uniform(size=(batch, net.n_output))
    # dopri5 chooses its own steps: a dt is refused there.
    options = SettleOptions(integrator=method, dt=None if method == "dopri5" else dt, max_steps=300, project=False,
                            max_abs=max_abs)
    with np.errstate(over="ignore", invalid="ignore"):  # energies and costs of huge states overflow
        res = settle(net, x, target=target, beta=5.0 if nudged else 0.0, options=options)
    finite = np.isfinite(res.state).all()
    assert finite or res.status == "diverged", (res.status, res.integration.message)
    if res.status != "diverged":
        assert finite and (np.abs(res.state) <= max_abs).all()
        if math.isfinite(max_abs):
            # With max_abs = inf a state may grow to ~1e250 without a divergence: finite, but
            # its residual norm overflows to inf. A finite max_abs is what catches that.
            assert np.isfinite(res.integration.residual).all()
    else:
        assert "diverged" in res.integration.message
        assert 0 <= res.integration.diverged_sample < batch


def test_divergence_is_provoked_and_reported():
    """The property above is not vacuous: Euler beyond its stability step diverges and says so."""
    net, rng = hopfield((4, 6, 5, 3), "tanh", 0)
    x = rng.uniform(size=(3, 4))
    res = free_phase(net, x, options=SettleOptions(integrator="euler", dt=8.0, max_steps=300))
    assert res.status == "diverged"
    assert np.isfinite(res.state).all()
