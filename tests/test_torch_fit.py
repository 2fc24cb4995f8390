"""fit_on_device against fit: the same epochs, figures and checkpoints on the torch backend as on the Numba path.

Skipped when torch is absent (``pip install -e ".[torch]"``).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_conv_pc import small_arch  # noqa: E402

from dynsim.backends.torch.fit import fit_on_device  # noqa: E402
from dynsim.datasets.tasks import Task  # noqa: E402
from dynsim.networks import ConvPCNetwork, HopfieldNetwork  # noqa: E402
from dynsim.networks.pc import PCNetwork  # noqa: E402
from dynsim.relax.phases import SettleOptions  # noqa: E402
from dynsim.training.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from dynsim.training.loop import TrainingDivergedError, fit  # noqa: E402
from dynsim.training.optimizers import SGD, Adam  # noqa: E402
from dynsim.training.schedules import make_schedule  # noqa: E402
from dynsim.validation import ValidationError  # noqa: E402

torch.set_num_threads(1)
PC_OPTIONS = SettleOptions(integrator="euler", dt=0.1, max_steps=8, stop_at_steady_state=False)
EP_OPTIONS = SettleOptions(integrator="block", max_steps=12, stop_at_steady_state=False)
EP_NUDGED = SettleOptions(integrator="block", max_steps=6, stop_at_steady_state=False)


def _task(name, n, n_input, n_classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    x = rng.random((n, n_input))
    x[np.arange(n), labels] += 1.0  # learnable: the label shows in the input
    return Task(name, x, labels, np.eye(n_classes)[labels])


def _data(net):
    return {"train": _task("train", 45, net.n_input, net.n_output, 0),
            "validation": _task("validation", 11, net.n_input, net.n_output, 1)}


def _pc_net():
    net = ConvPCNetwork(small_arch(), seed=5, dtype=np.float64)
    net.theta = net.theta * 2.0  # strong couplings: errors travel between groups
    return net


def _ep_net():
    return HopfieldNetwork.layered([128, 12, 3], seed=1, dtype=np.float64)


CASES = {
    "conv-pc": (_pc_net, "pc-strict", dict(options=PC_OPTIONS), lambda net: Adam(net, 3e-2)),
    "dense-pc": (lambda: PCNetwork([128, 10, 3], seed=2, dtype=np.float64), "pc-fixed-prediction",
                 dict(options=PC_OPTIONS), lambda net: SGD(net, 0.2, momentum=0.5)),
    "ep": (_ep_net, "ep-centered", dict(options=EP_OPTIONS, nudged_options=EP_NUDGED, beta=0.3),
           lambda net: Adam(net, [2e-2, 1e-2])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_epochs_on_the_device_equal_fit_on_the_numba_path(case, tmp_path):
    make, rule, kw, make_opt = CASES[case]
    host, dev = make(), make()
    data = _data(host)
    schedule = make_schedule("warmup-cosine")
    ref = fit(host, data, rule, make_opt(host), 3, 16, seed=4, progress=False, lr_schedule=schedule,
              checkpoint=tmp_path / "host.h5", **kw)
    got = fit_on_device(dev, data, rule, make_opt(dev), 3, 16, device="cpu", seed=4, lr_schedule=schedule,
                        checkpoint=tmp_path / "dev.h5", **kw)
    assert np.abs(host.theta - make().theta).max() > 1e-3  # it trained
    np.testing.assert_allclose(dev.theta, host.theta, rtol=0, atol=1e-10)
    for column in ("epoch", "train_error", "validation_error"):
        np.testing.assert_array_equal(got[column], ref[column])
    for column in ("train_loss", "validation_loss"):
        np.testing.assert_allclose(got[column], ref[column], rtol=1e-10, equal_nan=True)
    np.testing.assert_array_equal(got["free_steps"], ref["free_steps"])
    np.testing.assert_array_equal(got["nudged_steps"], ref["nudged_steps"])
    a, b = load_checkpoint(tmp_path / "host.h5"), load_checkpoint(tmp_path / "dev.h5")
    assert a.fingerprint == b.fingerprint and a.rng_state == b.rng_state and a.epoch == b.epoch == 3
    for name, value in a.optimizer.items():
        np.testing.assert_allclose(np.asarray(b.optimizer[name], float), np.asarray(value, float), rtol=0,
                                   atol=1e-10)


def test_a_run_moves_between_the_device_and_the_numba_path(tmp_path):
    """Epoch 1 on the device, epoch 2 on the Numba path, epoch 3 on the device: the uninterrupted run's result."""
    make, rule, kw, make_opt = CASES["conv-pc"]
    ref_net = make()
    data = _data(ref_net)
    ref = fit(ref_net, data, rule, make_opt(ref_net), 3, 16, seed=7, progress=False, **kw)
    path = tmp_path / "run.h5"
    net = make()
    seen = []
    fit_on_device(net, data, rule, make_opt(net), 1, 16, device="cpu", seed=7, checkpoint=path, **kw)
    net = make()
    fit(net, data, rule, make_opt(net), 2, 16, seed=7, checkpoint=path, resume=True, progress=False, **kw)
    net = make()
    hist = fit_on_device(net, data, rule, make_opt(net), 3, 16, device="cpu", seed=7, checkpoint=path, resume=True,
                         on_epoch=lambda row: seen.append((row["epoch"], row["replayed"])), **kw)
    np.testing.assert_allclose(net.theta, ref_net.theta, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(hist["validation_error"], ref["validation_error"])
    assert seen == [(0, True), (1, True), (2, True), (3, False)]


def test_float32_on_the_device_follows_float64(tmp_path):
    net64 = _pc_net()
    net32 = ConvPCNetwork(small_arch(), seed=5, dtype=np.float32, theta=net64.theta.astype(np.float32))
    data = _data(net64)
    data32 = {k: Task(t.name, t.x.astype(np.float32), t.labels, t.targets.astype(np.float32))
              for k, t in data.items()}
    fit(net64, data, "pc-strict", Adam(net64, 1e-2), 2, 16, options=PC_OPTIONS, progress=False)
    fit_on_device(net32, data32, "pc-strict", Adam(net32, 1e-2), 2, 16, device="cpu", options=PC_OPTIONS)
    assert net32.theta.dtype == np.float32
    np.testing.assert_allclose(net32.theta, net64.theta, rtol=0, atol=2e-4)


def test_bad_input_is_refused_with_the_argument_named(tmp_path):
    net = _pc_net()
    data = _data(net)
    with pytest.raises(ValidationError, match="rule must be one of"):
        fit_on_device(net, data, "pc-zil", Adam(net, 1e-2), 1, 16, device="cpu", options=PC_OPTIONS)
    with pytest.raises(ValidationError, match="device must be"):
        fit_on_device(net, data, "pc-strict", Adam(net, 1e-2), 1, 16, device="tpu", options=PC_OPTIONS)
    soft = dict(data, train=Task("train", data["train"].x, data["train"].labels, 0.5 * data["train"].targets))
    with pytest.raises(ValidationError, match=r"data\['train'\].targets must be the one-hot"):
        fit_on_device(net, soft, "pc-strict", Adam(net, 1e-2), 1, 16, device="cpu", options=PC_OPTIONS)
    with pytest.raises(ValidationError, match="batch_size"):
        fit_on_device(net, data, "pc-strict", Adam(net, 1e-2), 1, 0, device="cpu", options=PC_OPTIONS)
    with pytest.raises(ValidationError, match="optimizer must be"):
        fit_on_device(net, data, "pc-strict", object(), 1, 16, device="cpu", options=PC_OPTIONS)


def test_a_mid_epoch_checkpoint_is_not_resumed_on_the_device(tmp_path):
    net = _pc_net()
    data = _data(net)
    path = tmp_path / "run.h5"
    killed = []

    def kill_after_the_first_minibatch(indices, gradient):
        if killed:
            raise KeyboardInterrupt
        killed.append(1)

    with pytest.raises(KeyboardInterrupt):  # the checkpoint on disk is the one saved after minibatch 0
        fit(net, data, "pc-strict", Adam(net, 1e-2), 1, 16, options=PC_OPTIONS, checkpoint=path,
            checkpoint_every=1, progress=False, step_callback=kill_after_the_first_minibatch)
    assert load_checkpoint(path).partial is not None
    with pytest.raises(CheckpointError, match="middle of epoch"):
        fit_on_device(_pc_net(), data, "pc-strict", Adam(net, 1e-2), 2, 16, device="cpu", options=PC_OPTIONS,
                      checkpoint=path, resume=True)


def test_divergence_on_the_device_keeps_the_last_good_epoch(tmp_path):
    net = _ep_net()
    data = _data(net)
    path = tmp_path / "run.h5"
    fit_on_device(net, data, "ep-centered", SGD(net, 1e-3), 1, 16, device="cpu", options=EP_OPTIONS,
                  nudged_options=EP_NUDGED, beta=0.3, checkpoint=path)
    good = net.theta.copy()
    with pytest.raises(TrainingDivergedError, match="epoch 2.*epoch 1"):
        fit_on_device(net, data, "ep-centered", SGD(net, 1e300), 2, 16, device="cpu", options=EP_OPTIONS,
                      nudged_options=EP_NUDGED, beta=0.3, checkpoint=path, resume=True)
    np.testing.assert_array_equal(net.theta, good)
    assert load_checkpoint(path).epoch == 1
