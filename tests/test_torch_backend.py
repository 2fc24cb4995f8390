"""The torch backend against the Numba path: fields, energies, every relaxation phase, EP/CHL updates, training steps.

Run on the CPU build of PyTorch (``pip install -e ".[torch]"``); skipped when
torch is absent. The Numba path is the reference (itself checked against
finite differences and exact backprop elsewhere); autograd through the torch
energy is a second, independent reference for the fields.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dynsim.backends.torch import (RelaxationDivergedError, TorchAdam, TorchHopfieldNetwork, TorchSGD,  # noqa: E402
                                   TorchTrainer, estimate, relax)
from dynsim.learning.rules import gradient_estimate  # noqa: E402
from dynsim.networks import Architecture, Conv, ConvHopfieldNetwork, Dense, Group, HopfieldNetwork  # noqa: E402
from dynsim.relax.phases import SettleOptions, settle  # noqa: E402
from dynsim.training.loop import predict  # noqa: E402
from dynsim.training.optimizers import SGD, Adam, NonFiniteGradientError  # noqa: E402
from dynsim.validation import ValidationError  # noqa: E402

torch.set_num_threads(1)
N_BATCH = 6


def _conv_avg_strided(dtype):
    # A strided convolution whose last row and column are never read (output padding), then average pooling,
    # then a padded convolution with overlapping max pooling (stride 1 < size 2), then a dense output.
    groups = [Group("in", (2, 11, 11)), Group("c1", (3, 2, 2)), Group("c2", (4, 2, 2), activation="tanh"),
              Group("out", 5, activation="linear")]
    couplings = [Conv("in", "c1", kernel_size=3, stride=2, pool="avg", pool_size=2),
                 Conv("c1", "c2", kernel_size=2, padding=1, pool="max", pool_size=2, pool_stride=1),
                 Dense("c2", "out")]
    return ConvHopfieldNetwork(Architecture(groups, couplings), seed=3, dtype=dtype)


def _make(kind, dtype=np.float64):
    if kind == "dense":
        return HopfieldNetwork.layered([20, 15, 12, 5], seed=1, dtype=dtype)
    if kind == "dense-linear-out":
        return HopfieldNetwork.layered([20, 16, 5], seed=2, dtype=dtype, output_activation="linear", init_gain=0.7)
    if kind == "conv":
        arch = Architecture.conv_stack((1, 12, 12), [4, 6], [3, 3], "mm", fc=[5])
        return ConvHopfieldNetwork(arch, seed=2, dtype=dtype)
    return _conv_avg_strided(dtype)


KINDS = ["dense", "dense-linear-out", "conv", "conv-avg-strided"]


def _data(net, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((N_BATCH, net.n_input)).astype(net.dtype)
    y = np.eye(net.n_output, dtype=net.dtype)[rng.integers(0, net.n_output, N_BATCH)]
    s = rng.random((N_BATCH, net.n_free)).astype(net.dtype)
    return x, y, s


@pytest.mark.parametrize("kind", KINDS)
def test_drive_energy_and_gradients_agree_with_numba(kind):
    net = _make(kind)
    tn = TorchHopfieldNetwork(net)
    x, _, s = _data(net)
    drive = tn.input_drive(x)
    np.testing.assert_allclose(tn.flatten(drive).numpy(), net.input_drive(x), rtol=0, atol=1e-13)
    ts = tn.unflatten(s)
    np.testing.assert_allclose(tn.energy(ts, drive).numpy(), net.energy(x, s), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tn.flatten(tn.energy_grad_state(ts, drive)).numpy(), net.energy_grad_state(x, s),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(tn.energy_grad_params(x, ts).numpy(), net.energy_grad_params(x, s), rtol=0,
                               atol=1e-12)
    s_b = s + 0.05
    np.testing.assert_allclose(tn.energy_grad_params_difference(x, ts, tn.unflatten(s_b), 2.5).numpy(),
                               net.energy_grad_params_difference(x, s, s_b, 2.5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_field_is_autograd_of_the_energy(kind):
    """dE/ds from torch's autograd through the energy equals s - rho'(s) h (an independent route to the fields)."""
    net = _make(kind)
    tn = TorchHopfieldNetwork(net)
    x, _, s = _data(net, seed=4)
    # States inside (0, 1), off the kinks of the hard sigmoid, where autograd's derivative is the same.
    s = 0.05 + 0.9 * s
    flat = torch.tensor(s, requires_grad=True)
    energy = tn.energy(tn.unflatten(flat), tn.input_drive(x)).sum()
    (auto,) = torch.autograd.grad(energy, flat)
    np.testing.assert_allclose(tn.flatten(tn.energy_grad_state(tn.unflatten(s), tn.input_drive(x))).numpy(),
                               auto.numpy(), rtol=0, atol=1e-12)


PHASES = {"free": (0.0, False), "nudged+": (0.7, False), "nudged-": (-0.4, False), "clamped": (0.0, True)}


# The Numba path relaxes convolutional networks with the sweep schemes only: Euler is compared on the dense one.
CASES = [(k, s) for k in ("dense", "conv", "conv-avg-strided") for s in ("fixed_point", "block")] + \
    [("dense", "projected_euler")]


@pytest.mark.parametrize("kind,scheme", CASES)
@pytest.mark.parametrize("phase", sorted(PHASES))
def test_states_after_each_phase_agree_with_numba(kind, scheme, phase):
    net = _make(kind)
    beta, clamp = PHASES[phase]
    tn = TorchHopfieldNetwork(net)
    x, y, s = _data(net, seed=1)
    start = s if clamp else np.zeros_like(s)
    extra = {"dt": 0.5} if scheme == "projected_euler" else {}
    for stop in (False, True):
        options = SettleOptions(integrator=scheme, max_steps=40, stop_at_steady_state=stop, atol=1e-5, rtol=1e-5,
                                not_converged="ignore", **extra)
        ref = settle(net, x, start, y, beta, clamp, options)
        got = relax(tn, tn.unflatten(start), tn.input_drive(x), options, beta=beta, target=tn.tensor(y),
                    clamp_output=clamp, check_every=1)
        assert got.steps == ref.integration.n_steps
        assert got.converged == (ref.integration.status == 0)
        np.testing.assert_allclose(tn.flatten(got.state).numpy(), ref.state, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.residual.numpy(), ref.integration.residual, rtol=1e-9, atol=1e-13)


def test_steady_state_checked_every_k_steps():
    """With check_every=k the relaxation stops at the first multiple of k past the Numba path's steady step."""
    net = _make("conv")
    tn = TorchHopfieldNetwork(net)
    x, y, _ = _data(net, seed=2)
    options = SettleOptions(integrator="block", max_steps=200, atol=1e-6, rtol=1e-6)
    ref = settle(net, x, None, y, 0.0, False, options)
    got = relax(tn, tn.zeros(N_BATCH), tn.input_drive(x), options, check_every=7)
    n = ref.integration.n_steps
    assert got.converged and got.steps == -(-n // 7) * 7
    assert float(got.residual.max()) <= 1e-6 + 1e-6 * float(np.linalg.norm(ref.state, axis=1).max())
    np.testing.assert_allclose(tn.flatten(got.state).numpy(), ref.state, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["ep-positive", "ep-negative", "ep-centered", "chl"])
def test_updates_agree_with_numba(kind, rule):
    net = _make(kind)
    tn = TorchHopfieldNetwork(net)
    x, y, _ = _data(net, seed=3)
    options = SettleOptions(integrator="block", max_steps=25, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="block", max_steps=8, stop_at_steady_state=False)
    ref = gradient_estimate(rule, net, x, y, beta=0.4, options=options, nudged_options=nudged)
    got = estimate(tn, rule, tn.tensor(x), tn.tensor(y), 0.4, options, nudged)
    np.testing.assert_allclose(got.gradient.numpy(), ref.gradient, rtol=0, atol=1e-12)
    assert np.abs(ref.gradient).max() > 1e-3  # the comparison is not between two zeros


def test_ep_random_draws_the_numba_sign():
    net = _make("dense")
    tn = TorchHopfieldNetwork(net)
    x, y, _ = _data(net, seed=5)
    options = SettleOptions(integrator="block", max_steps=20, stop_at_steady_state=False)
    for seed in range(4):
        ref = gradient_estimate("ep-random", net, x, y, beta=0.5, options=options, rng=np.random.default_rng(seed))
        got = estimate(tn, "ep-random", tn.tensor(x), tn.tensor(y), 0.5, options, rng=np.random.default_rng(seed))
        np.testing.assert_allclose(got.gradient.numpy(), ref.gradient, rtol=0, atol=1e-12)


def _numba_steps(net, rule, optimizer, batches, options, nudged, beta):
    for x, labels in batches:
        y = np.eye(net.n_output, dtype=net.dtype)[labels]
        est = gradient_estimate(rule, net, x, y, beta=beta, options=options, nudged_options=nudged)
        optimizer.step(net.theta, est.gradient)
    return net.theta


@pytest.mark.parametrize("kind,dtype,optimizer", [("dense", np.float64, "adam"), ("conv", np.float64, "sgd"),
                                                  ("conv", np.float32, "adam"),
                                                  ("conv-avg-strided", np.float64, "adam")])
def test_training_steps_agree_with_numba(kind, dtype, optimizer):
    net = _make(kind, dtype)
    tn = TorchHopfieldNetwork(net)  # copies theta: the Numba run below moves `net` on its own
    rng = np.random.default_rng(7)
    batches = [(rng.random((N_BATCH, net.n_input)).astype(dtype), rng.integers(0, net.n_output, N_BATCH))
               for _ in range(3)]
    options = SettleOptions(integrator="block", max_steps=20, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="block", max_steps=6, stop_at_steady_state=False)
    if optimizer == "adam":
        cpu_opt, dev_opt = Adam(net, 1e-2), TorchAdam(tn, 1e-2)
    else:
        cpu_opt, dev_opt = SGD(net, [0.2, 0.1, 0.05], momentum=0.9), TorchSGD(tn, [0.2, 0.1, 0.05], momentum=0.9)
    trainer = TorchTrainer(tn, "ep-centered", dev_opt, beta=0.4, options=options, nudged_options=nudged)
    start = net.theta.copy()
    for x, labels in batches:
        trainer.step(tn.tensor(x), torch.as_tensor(labels))
    ref = _numba_steps(net, "ep-centered", cpu_opt, batches, options, nudged, 0.4)
    assert np.abs(ref - start).max() > 1e-4  # the parameters moved
    tol = 1e-11 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(tn.host_theta(), ref, rtol=0, atol=tol)
    # The optimizer states agree too, so checkpoints move between the two.
    for name, value in cpu_opt.state_dict().items():
        np.testing.assert_allclose(np.asarray(dev_opt.state_dict()[name], dtype=np.float64),
                                   np.asarray(value, dtype=np.float64), rtol=0, atol=tol)


def test_train_epoch_and_evaluate_count_errors():
    net = _make("dense")
    tn = TorchHopfieldNetwork(net)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.random((40, 20)))
    labels = torch.as_tensor(rng.integers(0, 5, 40))
    options = SettleOptions(integrator="block", max_steps=15, stop_at_steady_state=False)
    trainer = TorchTrainer(tn, "ep-centered", TorchAdam(tn, 1e-2), beta=0.5, options=options, seed=0)
    figures = trainer.train_epoch(x, labels, batch_size=16)
    assert figures["n_batches"] == 3 and 0.0 <= figures["train_error"] <= 1.0
    error = trainer.evaluate(x, labels, chunk=7)
    # Independent count: the Numba free phase on the trained parameters.
    tn.to_host()
    ref = settle(net, x.numpy(), None, None, 0.0, False, options)
    assert error == np.mean(predict(ref.state[:, net.output_slice]) != labels.numpy())  # ties count as wrong


def test_nonfinite_step_is_refused_and_reported():
    net = _make("dense")
    tn = TorchHopfieldNetwork(net)
    opt = TorchAdam(tn, 1e-2)
    before = tn.theta.clone()
    grad = torch.zeros_like(tn.theta)
    grad[3] = float("nan")
    ok = opt.step(tn.theta, grad)
    assert not bool(ok) and torch.equal(tn.theta, before) and int(opt.t) == 0
    with pytest.raises(NonFiniteGradientError, match="not updated"):
        opt.check(ok)


def test_divergence_is_an_error_naming_the_phase():
    net = HopfieldNetwork.layered([6, 8, 3], activation="tanh", seed=0)
    tn = TorchHopfieldNetwork(net)
    x = torch.ones((2, 6), dtype=torch.float64)
    # Euler with dt = 3 multiplies the deviation from the fixed point by about -2 per step.
    options = SettleOptions(integrator="euler", dt=3.0, max_steps=2000, max_abs=1e6, project=False)
    with pytest.raises(RelaxationDivergedError, match="free phase diverged"):
        relax(tn, tn.zeros(2), tn.input_drive(x), options, check_every=5)


def test_bad_arguments_are_named():
    net = _make("dense")
    tn = TorchHopfieldNetwork(net)
    with pytest.raises(ValidationError, match="options.integrator must be one of"):
        relax(tn, tn.zeros(2), tn.input_drive(np.zeros((2, 20))), SettleOptions(integrator="rk4"))
    with pytest.raises(ValidationError, match="check_every"):
        relax(tn, tn.zeros(2), tn.input_drive(np.zeros((2, 20))), SettleOptions(integrator="block"), check_every=0)
    with pytest.raises(ValidationError, match="device"):
        TorchHopfieldNetwork(net, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValidationError, match="no CUDA GPU"):
            TorchHopfieldNetwork(net, device="cuda")
        with pytest.raises(ValidationError, match="cuda_graph=True needs a CUDA device"):
            TorchTrainer(tn, "ep-centered", TorchAdam(tn, 1e-3), options=SettleOptions(integrator="block"),
                         cuda_graph=True)
    with pytest.raises(ValidationError, match="coupled to itself"):
        TorchHopfieldNetwork(HopfieldNetwork([3, 4, 2], [(0, 1), (1, 1), (1, 2)]))
    with pytest.raises(ValidationError, match="rule must be one of"):
        TorchTrainer(tn, "pc-strict", TorchAdam(tn, 1e-3), options=SettleOptions(integrator="block"))


@pytest.mark.parametrize("clamp", [False, True])
def test_a_start_outside_the_box_is_projected_first_as_on_the_numba_path(clamp):
    net = _make("conv-avg-strided")
    tn = TorchHopfieldNetwork(net)
    x, y, s = _data(net, seed=6)
    s0 = 3.0 * s - 1.0  # entries outside [0, 1] in the hard-sigmoid group
    target = 1.5 * y - 0.2  # outside the box too
    options = SettleOptions(integrator="block", max_steps=30, stop_at_steady_state=False, bounds=(-0.5, 0.8))
    ref = settle(net, x, s0, target, 0.0, clamp, options)
    got = relax(tn, tn.unflatten(s0), tn.input_drive(x), options, target=tn.tensor(target), clamp_output=clamp)
    np.testing.assert_allclose(tn.flatten(got.state).numpy(), ref.state, rtol=0, atol=1e-12)


def test_divergence_is_judged_per_entry_not_by_the_norm():
    """A state of 300 units in [0, 1] has a norm above max_abs = 2 but no entry above it: not a divergence."""
    net = HopfieldNetwork.layered([10, 300, 3], seed=0)
    tn = TorchHopfieldNetwork(net)
    x = np.random.default_rng(0).random((2, 10))
    options = SettleOptions(integrator="block", max_steps=20, max_abs=2.0, not_converged="ignore")
    ref = settle(net, x, None, None, 0.0, False, options)
    got = relax(tn, tn.zeros(2), tn.input_drive(x), options, check_every=4)
    assert ref.integration.status_name != "diverged" and got.status in ("converged", "step_limit")
    assert np.linalg.norm(ref.state, axis=1).max() > 2.0


def test_data_of_another_dtype_is_converted():
    net = _make("conv", np.float32)
    tn = TorchHopfieldNetwork(net)
    x, y, _ = _data(_make("conv"), seed=7)  # float64 arrays
    options = SettleOptions(integrator="block", max_steps=10, stop_at_steady_state=False)
    for rule in ("ep-centered", "chl"):
        got = estimate(tn, rule, torch.as_tensor(x), torch.as_tensor(y), 0.4, options)
        assert got.gradient.dtype == torch.float32 and torch.isfinite(got.gradient).all()


def test_projected_euler_with_a_linear_output_projects_only_the_bounded_groups():
    net = _make("dense-linear-out")
    tn = TorchHopfieldNetwork(net)
    x, y, _ = _data(net, seed=8)
    options = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=30, stop_at_steady_state=False)
    for beta in (0.0, 0.5):
        ref = settle(net, x, None, y, beta, False, options)
        got = relax(tn, tn.zeros(N_BATCH), tn.input_drive(x), options, beta=beta, target=tn.tensor(y))
        np.testing.assert_allclose(tn.flatten(got.state).numpy(), ref.state, rtol=0, atol=1e-12)


def test_trainer_reports_a_relaxation_that_left_the_range():
    net = _make("dense")
    tn = TorchHopfieldNetwork(net)
    options = SettleOptions(integrator="block", max_steps=5, stop_at_steady_state=False)
    trainer = TorchTrainer(tn, "ep-centered", TorchAdam(tn, 1e-3), options=options)
    trainer.check()  # nothing wrong yet
    trainer._within.fill_(False)  # what a replayed graph's flag says after a state above max_abs
    with pytest.raises(RelaxationDivergedError, match="left the finite range"):
        trainer.check(epoch=3, batch=17)
