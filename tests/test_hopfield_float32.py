"""Hopfield networks in float32 against the same network in float64.

Tolerances. float32 keeps 24 bits (unit roundoff u = 6e-8). One relaxation
step rounds each local field, a sum of ~n products of magnitude <= 1 (rho in
[0, 1] or [-1, 1], Glorot weights ~ 1/sqrt(n)), to about sqrt(n) u |h| ~ 1e-6
here, and the dynamics damp an error by the leak (contract) except near
the kinks of the hard sigmoid, where projection onto [0, 1] is 1-Lipschitz;
over 30-60 steps the states then differ by ~1e-6 (measured: <= 9e-7 on the
networks below, every scheme), so states are compared at ``atol = 1e-5``. The weights
themselves enter rounded to float32 (relative 6e-8). The EP estimate divides
the difference of two states' dE/dtheta by beta_2 - beta_1 = 1: an error of
1e-6 in the states is an error of ~1e-6 in gradients of size ~1e-2 to 1, so
gradients are compared at ``1e-4`` of their largest entry (measured: <= 7e-7
relative).
"""
import numpy as np
import pytest

from dynsim.learning.contrastive import chl_gradient, ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax import block_relaxation, layered_euler
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import ValidationError

STATE_ATOL = 1e-5
GRADIENT_RTOL = 1e-4
SCHEMES = [("projected_euler", 0.5), ("euler", 0.2), ("fixed_point", None), ("block", None)]


def _pair(sizes, activation, seed=0):
    n64 = HopfieldNetwork.layered(sizes, activation=activation, seed=seed)
    n32 = HopfieldNetwork.layered(sizes, activation=activation, seed=seed, dtype=np.float32)
    return n64, n32


def _options(integrator, dt, steps=40):
    return SettleOptions(integrator=integrator, dt=dt, max_steps=steps, stop_at_steady_state=False)


@pytest.mark.parametrize("integrator,dt", SCHEMES)
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic"])
def test_float32_phases_agree_with_float64(rng, integrator, dt, activation):
    if integrator == "projected_euler" and activation != "hard_sigmoid":
        pytest.skip("projected Euler needs the hard sigmoid's box")
    n64, n32 = _pair([20, 30, 16, 10], activation)
    x = rng.random((8, 20))
    target = np.eye(10)[rng.integers(0, 10, 8)]
    options = _options(integrator, dt)
    free64 = settle(n64, x, target=target, options=options)
    free32 = settle(n32, x, target=target, options=options)  # float64 data: converted at the call
    assert free32.state.dtype == free32.energy.dtype == np.float32
    assert free32.integration.n_steps == free64.integration.n_steps
    np.testing.assert_allclose(free32.state, free64.state, rtol=0, atol=STATE_ATOL)
    np.testing.assert_allclose(free32.energy, free64.energy, rtol=1e-4, atol=1e-4)
    for beta, clamp in [(0.5, False), (-0.5, False), (0.0, True)]:
        p64 = settle(n64, x, s0=free64.state, target=target, beta=beta, clamp_output=clamp, options=options)
        p32 = settle(n32, x, s0=free32.state, target=target, beta=beta, clamp_output=clamp, options=options)
        assert p32.state.dtype == np.float32
        np.testing.assert_allclose(p32.state, p64.state, rtol=0, atol=STATE_ATOL)


@pytest.mark.parametrize("integrator,dt", SCHEMES)
def test_float32_ep_and_chl_updates_agree_with_float64(rng, integrator, dt):
    n64, n32 = _pair([20, 30, 10], "hard_sigmoid", seed=1)
    x = rng.random((8, 20))
    target = np.eye(10)[rng.integers(0, 10, 8)]
    options = _options(integrator, dt, steps=30)
    nudged = _options(integrator, dt, steps=10)
    for variant in ("positive", "centered"):
        g64 = ep_gradient(n64, x, target, 0.5, variant, options=options, nudged_options=nudged).gradient
        g32 = ep_gradient(n32, x, target, 0.5, variant, options=options, nudged_options=nudged).gradient
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=0, atol=GRADIENT_RTOL * np.abs(g64).max())
    c64 = chl_gradient(n64, x, target, options=options, clamped_options=nudged).gradient
    c32 = chl_gradient(n32, x, target, options=options, clamped_options=nudged).gradient
    assert c32.dtype == np.float32
    np.testing.assert_allclose(c32, c64, rtol=0, atol=GRADIENT_RTOL * np.abs(c64).max())


def test_float32_kernels_agree_with_float64(rng):
    n64, n32 = _pair([6, 9, 4], "logistic", seed=2)
    x = rng.random((5, 6))
    s = rng.random((5, n64.n_free))
    for name in ("energy", "energy_grad_state", "energy_grad_params"):
        a, b = getattr(n64, name)(x, s), getattr(n32, name)(x, s)
        assert b.dtype == np.float32, name
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=name)
    v = rng.standard_normal(s.shape)
    np.testing.assert_allclose(n32.energy_hvp(x, s, v), n64.energy_hvp(x, s, v), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(n32.energy_grad_params_difference(x, s, 0.5 * s, 2.0),
                               n64.energy_grad_params_difference(x, s, 0.5 * s, 2.0), rtol=1e-5, atol=1e-5)


def test_float32_network_holds_float32_parameters_and_converts_at_the_boundary(rng):
    net = HopfieldNetwork.layered([4, 5, 3], seed=0, dtype=np.float32)
    assert net.theta.dtype == np.float32 and net.dtype == np.float32
    net.theta = np.ones(net.n_params)  # float64 given: converted once
    assert net.theta.dtype == np.float32
    assert net.check_input(rng.random((2, 4))).dtype == np.float32
    assert net.describe()["dtype"] == "float32"
    dense = HopfieldNetwork.from_dense(np.zeros((12, 12)), np.zeros(8), 4, 3, dtype="float32")
    assert dense.theta.dtype == np.float32
    assert HopfieldNetwork.layered([4, 5, 3], seed=0).theta.dtype == np.float64  # the default


@pytest.mark.parametrize("bad", [np.float16, np.int32, "complex128", True, "nonsense"])
def test_other_dtypes_are_refused_naming_dtype(bad):
    with pytest.raises(ValidationError, match=r"dtype must be numpy.float32 or numpy.float64"):
        HopfieldNetwork.layered([4, 5, 3], seed=0, dtype=bad)


@pytest.mark.parametrize("integrator,dt", SCHEMES)
def test_repeated_float32_minibatches_compile_nothing_new(rng, integrator, dt):
    # Once the first minibatch has run, later ones (float64 data converted at the boundary) reuse its compiled
    # versions: no specialisation appears for a mixed-dtype call inside the loop.
    net = HopfieldNetwork.layered([8, 12, 4], seed=0, dtype=np.float32)
    options = _options(integrator, dt, steps=5)
    target = np.eye(4)[rng.integers(0, 4, 6)]
    ep_gradient(net, rng.random((6, 8)), target, 0.5, "centered", options=options)
    kernels = (layered_euler.euler_layered, block_relaxation.sweep_layered)
    before = [len(k.signatures) for k in kernels]
    for _ in range(2):
        ep_gradient(net, rng.random((6, 8)), target, 0.5, "centered", options=options)
    assert [len(k.signatures) for k in kernels] == before
