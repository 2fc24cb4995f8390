"""Predictive coding in float32: the dtype choice, its boundary, and agreement with float64.

Tolerance: float32 rounds each operation to 2^-24 ~ 6e-8 relative. A state
or gradient entry here is a sum over at most ~10 products per matrix
product, passed through a few Euler steps and activations whose derivatives
are at most ~1.1, so its accumulated relative error stays a few hundred
ulp at worst: rtol 1e-4 with a small atol (for entries that cancel to near
zero) holds with a wide margin, and a float32 path that silently computed
in float64 somewhere, or dropped a term, would still be caught by the float64
checks elsewhere. Both networks hold the same (float32-rounded) parameters,
so the difference is the arithmetic alone.
"""
import numpy as np
import pytest

from dynsim.learning import pc_fused
from dynsim.learning import predictive_coding as pc_learning
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions, settle
from dynsim.training.optimizers import SGD, Adam
from dynsim.validation import ValidationError

RTOL, ATOL = 1e-4, 1e-5
OPTIONS = SettleOptions(integrator="euler", dt=0.1, max_steps=8, stop_at_steady_state=False)


def _pair(activation="tanh", sizes=(6, 7, 5, 3), variances=None):
    net32 = PCNetwork(list(sizes), activation=activation, variances=variances, seed=2, init="fan-in",
                      dtype=np.float32)
    net64 = PCNetwork(list(sizes), activation=activation, variances=variances, theta=net32.theta.astype(np.float64))
    return net32, net64


@pytest.mark.parametrize("dtype", [np.int32, np.float16, "float128", "complex64", None, True, "fp32"])
def test_a_dtype_other_than_float32_or_float64_is_refused_by_name(dtype):
    with pytest.raises(ValidationError, match=r"dtype must be numpy.float32 or numpy.float64"):
        PCNetwork([3, 2], dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, "float32", np.dtype("float32")])
def test_float32_networks_keep_parameters_states_and_gradients_in_float32(rng, dtype):
    net = PCNetwork([5, 4, 3], dtype=dtype, seed=0)
    assert net.theta.dtype == np.float32 and net.describe()["dtype"] == "float32"
    x = rng.random((3, 5))  # float64 data: converted once at the boundary
    target = rng.random((3, 3))
    assert net.check_input(x).dtype == np.float32 and net.input_drive(x).dtype == np.float32
    net.theta = np.ones(net.n_params)  # so is a float64 theta
    assert net.theta.dtype == np.float32
    for options in (OPTIONS, SettleOptions(integrator="heun", dt=0.1, max_steps=3)):  # fused and generic
        est = pc_learning.pc_gradient(net, x, target, options=options)
        assert est.gradient.dtype == np.float32 and est.inference.state.dtype == np.float32
    assert net.energy_grad_params(x, est.inference.state).dtype == np.float32
    assert PCNetwork([5, 4, 3]).theta.dtype == np.float64


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu", "hard_sigmoid", "gelu"])
@pytest.mark.parametrize("variant", ["strict", "fixed_prediction"])
def test_float32_inference_and_update_agree_with_float64(rng, activation, variant):
    net32, net64 = _pair(activation, variances=[1.0, 1.0, 2.0])
    x = rng.random((4, 6))
    target = np.eye(3)[rng.integers(0, 3, 4)]
    for options in (OPTIONS, SettleOptions(integrator="rk4", dt=0.1, max_steps=4, stop_at_steady_state=False)):
        a = pc_learning.pc_gradient(net32, x, target, variant, options=options)
        b = pc_learning.pc_gradient(net64, x, target, variant, options=options)
        assert a.inference.integration.n_steps == b.inference.integration.n_steps
        np.testing.assert_allclose(a.inference.state, b.inference.state, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(a.inference.energy, b.inference.energy, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(a.gradient, b.gradient, rtol=RTOL, atol=ATOL)


def test_float32_fused_path_is_the_float32_generic_path(rng, monkeypatch):
    net, _ = _pair("gelu")
    x = rng.random((5, 6)).astype(np.float32)
    target = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)]
    fused = pc_learning.pc_gradient(net, x, target, options=OPTIONS)
    monkeypatch.setattr(pc_fused, "applies", lambda *a: False)
    generic = pc_learning.pc_gradient(net, x, target, options=OPTIONS)
    assert fused.inference.integration.message == generic.inference.integration.message
    # Both in float32, differently ordered products: a few ulp of float32.
    np.testing.assert_allclose(fused.inference.state, generic.inference.state, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.gradient, generic.gradient, rtol=1e-5, atol=1e-6)


def test_float64_data_gives_the_float32_result_of_float32_data(rng):
    net, _ = _pair("tanh")
    x = rng.random((4, 6))
    target = rng.random((4, 3))
    a = pc_learning.pc_gradient(net, x, target, options=OPTIONS)
    b = pc_learning.pc_gradient(net, x.astype(np.float32), target.astype(np.float32), options=OPTIONS)
    np.testing.assert_array_equal(a.gradient, b.gradient)
    s = settle(net, x, target=target, clamp_output=True, options=SettleOptions(integrator="euler", dt=0.1,
                                                                               max_steps=2))
    assert s.state.dtype == np.float32


def _adam_numpy(theta, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam as Kingma & Ba (2015) write it, in float64 numpy: the reference."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        theta = theta - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return theta


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizers_keep_their_state_in_the_parameters_dtype_and_follow_the_reference(rng, dtype):
    net = PCNetwork([5, 4, 3], dtype=dtype, seed=0)
    theta0 = net.theta.astype(np.float64)
    grads = [rng.standard_normal(net.n_params) for _ in range(4)]
    adam = Adam(net, 0.01)
    sgd = SGD(net, 0.01, momentum=0.5)
    assert adam.m.dtype == adam.v.dtype == sgd.velocity.dtype == dtype
    theta_sgd = net.theta.copy()
    for g in grads:
        adam.step(net.theta, g)
        sgd.step(theta_sgd, g)
    assert net.theta.dtype == adam.m.dtype == theta_sgd.dtype == sgd.velocity.dtype == dtype
    want = _adam_numpy(theta0, grads, 0.01)
    if dtype == np.float64:
        np.testing.assert_allclose(net.theta, want, rtol=1e-15, atol=1e-15)
    else:
        # The moments are stored in float32: relative error ~1e-7 per step on steps of size lr.
        np.testing.assert_allclose(net.theta, want, rtol=RTOL, atol=1e-6)
    v = np.zeros(net.n_params)
    theta = theta0.copy()
    for g in grads:
        v = 0.5 * v + g
        theta = theta - 0.01 * v
    np.testing.assert_allclose(theta_sgd, theta, rtol=RTOL if dtype == np.float32 else 1e-15, atol=1e-6)
