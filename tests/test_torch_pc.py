"""Predictive coding on the torch backend against the Numba path: energy, gradients, inference, PC updates, training.

Skipped when torch is absent (``pip install -e ".[torch]"``).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dynsim.backends.torch import TorchAdam, TorchPCNetwork, TorchTrainer, estimate, pc_relax  # noqa: E402
from dynsim.learning.rules import gradient_estimate  # noqa: E402
from dynsim.networks import PCNetwork  # noqa: E402
from dynsim.relax.phases import SettleOptions, settle  # noqa: E402
from dynsim.training.optimizers import Adam  # noqa: E402
from dynsim.validation import ValidationError  # noqa: E402

torch.set_num_threads(1)
ACTIVATIONS = ["tanh", "gelu", "relu", "logistic", "hard_sigmoid"]


def _net(activation, dtype=np.float64, fixed=False):
    return PCNetwork([12, 10, 9, 4], activation=activation, variances=[1.0, 2.0, 0.5], seed=3, init="fan-in",
                     dtype=dtype, fixed_prediction=fixed)


def _data(net, seed=0, n=7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, net.n_input)).astype(net.dtype)
    y = np.eye(net.n_output, dtype=net.dtype)[rng.integers(0, net.n_output, n)]
    s = rng.normal(size=(n, net.n_free)).astype(net.dtype)
    return x, y, s


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("fixed", [False, True])
def test_energy_and_gradients_agree_with_numba(activation, fixed):
    net = _net(activation, fixed=fixed)
    tn = TorchPCNetwork(net)
    x, _, s = _data(net)
    fx, mu = tn.feedforward(x)
    np.testing.assert_allclose(tn.flatten(mu).numpy(), net.input_drive(x), rtol=0, atol=1e-13)
    ts = tn.unflatten(s)
    np.testing.assert_allclose(tn.energy(ts, fx, mu).numpy(), net.energy(x, s), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tn.flatten(tn.energy_grad_state(ts, fx, mu)).numpy(), net.energy_grad_state(x, s),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(tn.energy_grad_params(ts, fx, mu).numpy(), net.energy_grad_params(x, s), rtol=0,
                               atol=1e-12)


def test_state_gradient_is_autograd_of_the_energy():
    net = _net("gelu")
    tn = TorchPCNetwork(net)
    x, _, s = _data(net, seed=2)
    fx, mu = tn.feedforward(x)
    flat = torch.tensor(s, requires_grad=True)
    (auto,) = torch.autograd.grad(tn.energy(tn.unflatten(flat), fx, mu).sum(), flat)
    np.testing.assert_allclose(tn.flatten(tn.energy_grad_state(tn.unflatten(s), fx, mu)).numpy(), auto.numpy(),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["pc-strict", "pc-fixed-prediction"])
@pytest.mark.parametrize("stop", [False, True])
def test_inference_and_update_agree_with_numba(rule, stop):
    net = _net("tanh")
    tn = TorchPCNetwork(net)
    x, y, _ = _data(net, seed=1)
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=300, stop_at_steady_state=stop, atol=1e-6,
                            rtol=1e-6, not_converged="ignore")
    ref = gradient_estimate(rule, net, x, y, options=options)
    got = estimate(tn, rule, tn.tensor(x), tn.tensor(y), options=options, check_every=1)
    inference = got.phases["inference"]
    assert inference.steps == ref.inference.integration.n_steps
    np.testing.assert_allclose(tn.flatten(inference.state).numpy(), ref.inference.state, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.gradient.numpy(), ref.gradient, rtol=0, atol=1e-12)
    assert np.abs(ref.gradient).max() > 1e-3


def test_inference_starts_at_the_feedforward_pass_with_the_output_clamped():
    net = _net("relu")
    tn = TorchPCNetwork(net)
    x, y, _ = _data(net, seed=4)
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=15, stop_at_steady_state=False)
    ref = settle(net, x, target=y, clamp_output=True, options=options, phase="inference")
    fx, mu = tn.feedforward(x)
    got = pc_relax(tn, [None, mu[1], mu[2], tn.tensor(y)], fx, mu, options)
    np.testing.assert_allclose(tn.flatten(got.state).numpy(), ref.state, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_training_steps_agree_with_numba(dtype, tol):
    net = _net("gelu", dtype=dtype)
    tn = TorchPCNetwork(net)
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    rng = np.random.default_rng(9)
    batches = [(rng.normal(size=(8, 12)).astype(dtype), rng.integers(0, 4, 8)) for _ in range(3)]
    trainer = TorchTrainer(tn, "pc-strict", TorchAdam(tn, 1e-2), options=options)
    opt = Adam(net, 1e-2)
    start = net.theta.copy()
    for x, labels in batches:
        trainer.step(tn.tensor(x), torch.as_tensor(labels))
        est = gradient_estimate("pc-strict", net, x, np.eye(4, dtype=dtype)[labels], options=options)
        opt.step(net.theta, est.gradient)
    assert np.abs(net.theta - start).max() > 1e-3
    np.testing.assert_allclose(tn.host_theta(), net.theta, rtol=0, atol=tol)
    # The errors the trainer counted are those of the feedforward predictions at each step's start.
    assert 0 <= int(trainer._errors) <= 24


def test_pc_rules_are_checked():
    tn = TorchPCNetwork(_net("tanh"))
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=5)
    with pytest.raises(ValidationError, match="pc-strict"):
        TorchTrainer(tn, "ep-centered", TorchAdam(tn, 1e-3), options=options)
    with pytest.raises(ValidationError, match="'euler'"):
        pc_relax(tn, tn.unflatten(np.zeros((2, tn.source.n_free))), *tn.feedforward(np.zeros((2, 12))),
                 SettleOptions(integrator="block"))
    with pytest.raises(ValidationError, match="PCNetwork"):
        TorchPCNetwork(object())


def test_pc_inference_refuses_options_it_does_not_apply():
    tn = TorchPCNetwork(_net("tanh"))
    fx, mu = tn.feedforward(np.zeros((2, 12)))
    with pytest.raises(ValidationError, match="bounds and retry_smaller_step"):
        pc_relax(tn, mu, fx, mu, SettleOptions(integrator="euler", dt=0.1, max_steps=3, bounds=(-1.0, 1.0)))
