"""Learning-rate schedules: their closed forms, and fit applying them step by step."""
import math

import numpy as np
import pytest

from dynsim.datasets.tasks import moons
from dynsim.learning.rules import gradient_estimate
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions
from dynsim.training.loop import fit
from dynsim.training.optimizers import SGD, Adam
from dynsim.training.schedules import Constant, ExponentialPerEpoch, WarmupCosine, make_schedule
from dynsim.validation import ValidationError

OPTIONS = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=10, stop_at_steady_state=False)


def test_warmup_cosine_passes_through_its_defining_points():
    s = WarmupCosine(warmup=0.1, peak=1.1, end=0.1)
    n_batches, epochs = 10, 10  # 100 steps: step k is progress k / 100
    at = lambda k: s(k // n_batches + 1, k % n_batches, n_batches, epochs)  # noqa: E731
    assert at(0) == pytest.approx(1.0)
    assert at(5) == pytest.approx(1.05)  # half-way through the warm-up
    assert at(10) == pytest.approx(1.1)  # the peak
    assert at(55) == pytest.approx(0.6)  # half-way through the decay: the mean of peak and end
    assert at(99) == pytest.approx(0.1 + 1.0 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    values = [at(k) for k in range(10, 100)]
    assert all(a > b for a, b in zip(values, values[1:]))  # decreasing after the warm-up


def test_exponential_and_constant():
    assert [ExponentialPerEpoch(0.5)(e, 3, 10, 5) for e in (1, 2, 3)] == [1.0, 0.5, 0.25]
    assert Constant()(7, 1, 10, 9) == 1.0


def test_bad_schedules_are_refused():
    with pytest.raises(ValidationError, match="schedule must be one of"):
        make_schedule("cosine-please")
    with pytest.raises(ValidationError, match="warmup"):
        WarmupCosine(warmup=1.0)
    with pytest.raises(ValidationError, match="gamma"):
        ExponentialPerEpoch(gamma=0.0)
    net = HopfieldNetwork.layered([2, 4, 2], seed=0)
    with pytest.raises(ValidationError, match="lr_schedule"):
        fit(net, {"train": moons(8, seed=0)}, "ep-positive", SGD(net, 0.1), 1, 8, lr_schedule=0.5, progress=False)


@pytest.mark.parametrize("make_optimizer", [lambda net: SGD(net, [0.2, 0.1]), lambda net: Adam(net, 0.01)])
def test_fit_scales_each_step_by_the_schedule(make_optimizer):
    # One minibatch per epoch: fit's run must equal a hand-written loop whose rates carry the factors.
    train = moons(16, seed=2)
    schedule = ExponentialPerEpoch(0.5)
    net = HopfieldNetwork.layered([2, 6, 2], activation="hard_sigmoid", seed=1)
    manual = HopfieldNetwork.layered([2, 6, 2], activation="hard_sigmoid", seed=1)
    fit(net, {"train": train}, "ep-positive", make_optimizer(net), 3, 16, beta=0.5, options=OPTIONS,
        lr_schedule=schedule, progress=False, seed=0)
    opt = make_optimizer(manual)
    rng = np.random.default_rng(0)
    for epoch in (1, 2, 3):
        order = rng.permutation(16)
        grad = gradient_estimate("ep-positive", manual, train.x[order], train.targets[order], 0.5, OPTIONS,
                                 None, rng=rng).gradient
        opt.lr_scale = 0.5 ** (epoch - 1)
        opt.step(manual.theta, grad)
    np.testing.assert_allclose(net.theta, manual.theta, rtol=1e-12, atol=1e-14)
    # And the factors matter: without them the run ends elsewhere.
    plain = HopfieldNetwork.layered([2, 6, 2], activation="hard_sigmoid", seed=1)
    fit(plain, {"train": train}, "ep-positive", make_optimizer(plain), 3, 16, beta=0.5, options=OPTIONS,
        progress=False, seed=0)
    assert np.abs(plain.theta - net.theta).max() > 1e-3


def test_a_constant_schedule_resumes_runs_saved_without_one_and_another_schedule_is_refused(tmp_path):
    from dynsim.training.checkpoint import CheckpointError

    train = moons(16, seed=2)
    ckpt = tmp_path / "ckpt.h5"

    def run(epochs, **kw):
        net = HopfieldNetwork.layered([2, 6, 2], activation="hard_sigmoid", seed=1)
        fit(net, {"train": train}, "ep-positive", SGD(net, 0.1), epochs, 8, beta=0.5, options=OPTIONS,
            progress=False, seed=0, checkpoint=ckpt, **kw)
        return net

    run(1)  # saved with no schedule, as before schedules existed
    resumed = run(2, resume=True, lr_schedule=Constant())
    plain = HopfieldNetwork.layered([2, 6, 2], activation="hard_sigmoid", seed=1)
    fit(plain, {"train": train}, "ep-positive", SGD(plain, 0.1), 2, 8, beta=0.5, options=OPTIONS, progress=False,
        seed=0)
    np.testing.assert_array_equal(resumed.theta, plain.theta)
    with pytest.raises(CheckpointError, match="lr_schedule"):
        run(3, resume=True, lr_schedule=ExponentialPerEpoch(0.5))
