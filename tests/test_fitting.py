"""The dataset training loop: metrics, checkpoints, exact resume, divergence."""
import dataclasses
import warnings

import numpy as np
import pytest

from dynsim.datasets.tasks import Task, moons
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions
from dynsim.training.checkpoint import CheckpointError, CheckpointFallbackWarning, load_checkpoint
from dynsim.training.loop import (TrainingDivergedError, describe_evaluation, evaluate_split, fit, metric_columns,
                                  predict)
from dynsim.training.optimizers import SGD, Adam, NonFiniteGradientError
from dynsim.validation import NotConvergedError, NotConvergedWarning, ValidationError

OPTIONS = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=15, stop_at_steady_state=False)
NUDGED = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=4, stop_at_steady_state=False)


def splits():
    train = moons(60, seed=0)
    held = moons(30, seed=1)
    return {"train": train, "validation": held, "test": Task("t", held.x[:10], held.labels[:10], held.targets[:10])}


def network(seed=3):
    net = HopfieldNetwork.layered([2, 12, 2], activation="hard_sigmoid", seed=seed)
    theta = net.theta.copy()
    theta[-net.n_free:] = 0.1
    net.theta = theta
    return net


def run(net, epochs, **kw):
    return fit(net, splits(), "ep-random", SGD(net, [0.2, 0.1], momentum=0.5), epochs, 8, beta=0.5,
               options=OPTIONS, nudged_options=NUDGED, persistent=True, seed=11, progress=False, **kw)


def test_metrics_rows_and_evaluation_agree_with_a_direct_count(tmp_path):
    rows = []
    net = network()
    history = run(net, 2, on_epoch=rows.append)
    assert list(history) == metric_columns(["validation", "test"])
    assert history["epoch"].tolist() == [0, 1, 2]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # The logged test error is the error of the final network, counted independently here.
    data = splits()
    from dynsim.relax.phases import free_phase
    state = free_phase(net, data["test"].x, options=OPTIONS).state
    wrong = np.mean(predict(state[:, net.output_slice]) != data["test"].labels)
    assert history["test_error"][-1] == pytest.approx(wrong)
    assert evaluate_split(net, data["test"], OPTIONS)["error"] == pytest.approx(wrong)
    assert history["free_steps"][1] == 15 and history["nudged_steps"][1] == 4
    assert np.all(history["examples_per_s"][1:] > 0)
    # The held-out evaluation is timed apart from the training (epoch 0: the evaluation before training).
    assert np.all(history["eval_seconds"] > 0) and history["seconds"][0] == 0.0


def test_training_split_is_evaluated_before_training_only_when_asked():
    default = run(network(), 1)
    assert np.isnan(default["train_loss"][0]) and np.isnan(default["train_error"][0])
    assert np.isfinite(default["validation_error"][0])
    asked = run(network(), 1, eval_train_at_start=True)
    m = evaluate_split(network(), splits()["train"], OPTIONS)  # the untrained network, with the training's options
    assert asked["train_loss"][0] == pytest.approx(m["loss"]) and asked["train_error"][0] == pytest.approx(m["error"])
    # Training is the same either way.
    for column in ("train_loss", "validation_error", "test_error"):
        np.testing.assert_array_equal(default[column][1:], asked[column][1:])


def test_evaluation_is_described_for_the_log():
    text = describe_evaluation(OPTIONS, persistent=True)
    assert "projected_euler, 15 steps of 0.5, from each image's state of the previous epoch" in text
    assert "none at epoch 0" in text
    steady = SettleOptions(integrator="block", max_steps=100, atol=1e-5, rtol=1e-5)
    assert "block, to the steady state (atol 1e-05, rtol 1e-05) in at most 100 steps" in describe_evaluation(
        steady, persistent=False, train_at_start=True)
    assert "feedforward pass" in describe_evaluation(None, persistent=False)


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    reference = network()
    run(reference, 4)
    interrupted = network()
    ckpt = tmp_path / "ckpt.h5"
    run(interrupted, 2, checkpoint=ckpt)
    assert load_checkpoint(ckpt).epoch == 2
    resumed = network(seed=99)  # different initial weights: everything must come from the checkpoint
    replayed = []
    history = run(resumed, 4, checkpoint=ckpt, resume=True, on_epoch=replayed.append)
    assert np.array_equal(resumed.theta, reference.theta)
    assert [r["replayed"] for r in replayed] == [True, True, True, False, False]
    assert history["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert not list(tmp_path.glob(".*tmp"))


class StopAfter:
    """An ``on_epoch`` stand-in for a kill: counts minibatches through the optimizer and raises after ``n``."""

    def __init__(self, optimizer, n):
        self.optimizer, self.n, self.seen = optimizer, n, 0
        self.step = optimizer.step
        optimizer.step = self

    def __call__(self, theta, grad):
        self.seen += 1
        if self.seen > self.n:
            raise KeyboardInterrupt("stopped")
        return self.step(theta, grad)


def test_a_run_stopped_mid_epoch_resumes_from_its_mid_epoch_checkpoint_bit_identical(tmp_path):
    reference = network()
    ref = run(reference, 2)
    ckpt = tmp_path / "ckpt.h5"
    stopped = network()
    opt = SGD(stopped, [0.2, 0.1], momentum=0.5)
    StopAfter(opt, 8 + 5)  # epoch 1 has 8 minibatches of 8: stop in the middle of epoch 2
    with pytest.raises(KeyboardInterrupt):
        fit(stopped, splits(), "ep-random", opt, 2, 8, beta=0.5, options=OPTIONS, nudged_options=NUDGED,
            persistent=True, seed=11, progress=False, checkpoint=ckpt, checkpoint_every=2)
    saved = load_checkpoint(ckpt)
    assert saved.epoch == 1 and saved.partial is not None and int(saved.partial["batch"]) == 4
    resumed = network(seed=99)
    history = run(resumed, 2, checkpoint=ckpt, resume=True, checkpoint_every=2)
    assert np.array_equal(resumed.theta, reference.theta)
    for column in ("train_loss", "train_error", "validation_error", "free_steps", "nudged_residual"):
        np.testing.assert_array_equal(history[column], ref[column])
    assert load_checkpoint(ckpt).partial is None and load_checkpoint(ckpt).epoch == 2


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    ckpt = tmp_path / "ckpt.h5"
    run(network(), 2, checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # cut short, as by a full disk
    with pytest.warns(CheckpointFallbackWarning, match=r"cannot read checkpoint .*ckpt.h5.*ckpt.h5.prev "
                                                      r"\(after epoch 1\)"):
        saved = load_checkpoint(ckpt)
    assert saved.epoch == 1
    reference = network()
    run(reference, 3)
    resumed = network(seed=99)
    with pytest.warns(CheckpointFallbackWarning):
        run(resumed, 3, checkpoint=ckpt, resume=True)
    assert np.array_equal(resumed.theta, reference.theta)


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt.h5"
    run(network(), 1, checkpoint=ckpt)
    saved = load_checkpoint(ckpt)
    saved.theta[3] = np.nan
    from dynsim.training.checkpoint import save_checkpoint
    save_checkpoint(ckpt, saved)
    with pytest.raises(CheckpointError, match="not all finite"):
        run(network(), 2, checkpoint=ckpt, resume=True)


def test_resume_refuses_another_configuration(tmp_path):
    ckpt = tmp_path / "ckpt.h5"
    run(network(), 1, checkpoint=ckpt)
    net = network()
    with pytest.raises(CheckpointError, match="batch_size"):
        fit(net, splits(), "ep-random", SGD(net, 0.1), 2, 4, options=OPTIONS, persistent=True, seed=11,
            checkpoint=ckpt, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run(network(), 2, checkpoint=tmp_path / "missing.h5", resume=True)


def test_divergence_names_epoch_and_batch_and_keeps_the_weights(tmp_path):
    net = network()
    ckpt = tmp_path / "ckpt.h5"
    fit(net, splits(), "ep-random", SGD(net, 0.1), 1, 8, options=OPTIONS, nudged_options=NUDGED, seed=11,
        checkpoint=ckpt, progress=False)
    # A learning rate that blows the weights up within epoch 2: either a step would overflow them (refused)
    # or the next relaxation diverges; training stops there and no non-finite value reaches the weights.
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, minibatch \d+: .*last good checkpoint") as info:
        fit(net, splits(), "ep-random", SGD(net, 1e306), 2, 8, options=OPTIONS, nudged_options=NUDGED, seed=11,
            checkpoint=ckpt, resume=True, progress=False)
    assert info.value.epoch == 2 and f"minibatch {info.value.batch}:" in str(info.value)
    assert np.isfinite(net.theta).all()
    assert load_checkpoint(ckpt).epoch == 1


def test_an_overflowing_step_is_refused_whole(rng):
    net = network()
    for opt in (SGD(net, 1e308, momentum=0.9), Adam(net, 1e308)):
        theta = net.theta.copy()
        state = {k: np.copy(v) for k, v in opt.state_dict().items()}
        with pytest.raises(NonFiniteGradientError, match="non-finite"):
            opt.step(net.theta, 10.0 * np.ones(net.n_params))
        assert np.array_equal(net.theta, theta)
        assert all(np.array_equal(v, state[k]) for k, v in opt.state_dict().items())


def test_predictive_coding_network_trains_with_backprop_and_pc(tmp_path):
    data = splits()
    for rule in ("bp", "pc-fixed-prediction"):
        net = PCNetwork([2, 16, 2], activation="tanh", seed=0)
        h = fit(net, data, rule, Adam(net, 0.02), 5, 10, options=SettleOptions(integrator="euler", dt=0.1,
                max_steps=50), progress=False, eval_train_at_start=True)
        assert h["train_loss"][-1] < h["train_loss"][0]


def test_bad_arguments():
    net = network()
    with pytest.raises(ValidationError, match="'train' split"):
        fit(net, {"test": splits()["test"]}, "ep-random", SGD(net, 0.1), 1, 4)
    with pytest.raises(ValidationError, match=r"data\['train'\].x must have shape"):
        fit(net, {"train": Task("x", np.zeros((3, 5)), np.zeros(3, int), np.zeros((3, 2)))}, "ep-random",
            SGD(net, 0.1), 1, 4)
    with pytest.raises(ValidationError, match="batch_size"):
        fit(net, splits(), "ep-random", SGD(net, 0.1), 1, 0)
    with pytest.raises(ValidationError, match="resume=True needs a checkpoint"):
        fit(net, splits(), "ep-random", SGD(net, 0.1), 1, 4, resume=True)


def test_compiled_sgd_step_without_momentum_is_plain_gradient_descent_and_refuses_non_finite_steps(rng):
    net = network()
    opt = SGD(net, [0.2, 0.05])
    theta = net.theta.copy()
    grad = rng.standard_normal(net.n_params)
    opt.step(net.theta, grad)
    np.testing.assert_array_equal(net.theta, theta - opt.rates * grad)
    steep = SGD(net, 4.0)
    # A NaN or inf gradient, and a finite one whose step overflows (4 * 1e308 is inf).
    for optimizer, bad in ((opt, np.nan), (opt, np.inf), (steep, 1e308)):
        before = net.theta.copy()
        g = rng.standard_normal(net.n_params)
        g[net.n_params // 2] = bad
        with pytest.raises(NonFiniteGradientError, match=f"{net.n_params // 2}"):
            optimizer.step(net.theta, g)
        np.testing.assert_array_equal(net.theta, before)


def test_compiled_sgd_step_is_the_heavy_ball_formula(rng):
    net = network()
    opt = SGD(net, [0.2, 0.05], momentum=0.7)
    theta, velocity = net.theta.copy(), np.zeros(net.n_params)
    for _ in range(3):
        grad = rng.standard_normal(net.n_params)
        velocity = 0.7 * velocity + grad
        theta = theta - opt.rates * velocity
        opt.step(net.theta, grad)
    np.testing.assert_allclose(net.theta, theta, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(opt.state_dict()["velocity"], velocity, rtol=1e-15, atol=1e-15)
    with pytest.raises(ValidationError, match="theta must be"):
        opt.step(list(net.theta), grad)


def test_persistent_evaluation_carries_each_examples_state_and_resumes_exactly(tmp_path):
    # Reference: the same training, with the test split's particles relaxed by hand after every epoch.
    data = splits()
    from dynsim.relax.phases import free_phase
    reference_rows = []
    net = network()
    history = run(net, 3, eval_persistent=True, eval_options=OPTIONS, on_epoch=reference_rows.append)
    replay = network()
    particles = np.zeros((data["test"].x.shape[0], replay.n_free))
    errors = []

    def by_hand(row):
        state = free_phase(replay, data["test"].x, s0=particles, options=OPTIONS).state
        particles[:] = state
        errors.append(np.mean(predict(state[:, replay.output_slice]) != data["test"].labels))

    run(replay, 3, on_epoch=by_hand)  # same training; the evaluation above re-done from carried particles
    np.testing.assert_allclose(history["test_error"], errors)
    # Carried states differ from fresh ones: with 15 steps from zero the error is not the same at every epoch.
    fresh = run(network(), 3, eval_options=OPTIONS)
    assert not np.array_equal(fresh["test_error"], history["test_error"]) or \
        not np.array_equal(fresh["test_loss"], history["test_loss"])
    # Interrupted after epoch 1 and resumed: the particles come back from the checkpoint.
    ckpt = tmp_path / "ckpt.h5"
    run(network(), 1, eval_persistent=True, eval_options=OPTIONS, checkpoint=ckpt)
    assert set(load_checkpoint(ckpt).eval_particles) == {"validation", "test"}
    resumed = run(network(), 3, eval_persistent=True, eval_options=OPTIONS, checkpoint=ckpt, resume=True)
    np.testing.assert_array_equal(resumed["test_error"], history["test_error"])
    np.testing.assert_array_equal(resumed["validation_loss"], history["validation_loss"])


def test_sgd_with_one_rate_per_block_is_the_per_parameter_formula(rng):
    from dynsim.training.optimizers import rate_runs

    net = network()
    blocks = net.parameter_blocks()
    lr = {name: float(r) for name, r in zip(blocks, [0.3, 0.3, 0.02, 0.5])}  # two neighbours share a rate
    opt = SGD(net, lr)
    starts, values = rate_runs(opt.rates)
    np.testing.assert_array_equal(np.repeat(values, np.diff(starts)), opt.rates)
    assert len(values) == 3
    theta = net.theta.copy()
    grad = rng.standard_normal(net.n_params)
    opt.step(net.theta, grad)
    np.testing.assert_array_equal(net.theta, theta - opt.rates * grad)
    with pytest.raises(ValueError):
        opt.rates[0] = 1.0  # read-only: the runs could not follow an edit in place
    opt.rates = np.full(net.n_params, 0.1)
    before = net.theta.copy()
    opt.step(net.theta, grad)
    np.testing.assert_array_equal(net.theta, before - 0.1 * grad)


def test_unsettled_samples_are_counted_and_reported_as_asked():
    # A steady-state evaluation capped far too early: every example is unsettled.
    short = SettleOptions(integrator="block", max_steps=1, atol=1e-9, rtol=1e-9)
    data = splits()
    with pytest.warns(NotConvergedWarning, match=r"evaluating 'moons': 30 of 30 examples did not reach"):
        m = evaluate_split(network(), data["validation"], short)
    assert m["not_converged"] == 30
    with pytest.raises(NotConvergedError, match="did not reach the steady state"):
        evaluate_split(network(), data["validation"], dataclasses.replace(short, not_converged="raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = evaluate_split(network(), data["validation"], dataclasses.replace(short, not_converged="ignore"))
    assert quiet["not_converged"] == 30
    # Training counts the unsettled samples of its fixed-count phases per epoch, without warnings.
    history = run(network(), 1)
    free_unsettled = history["free_not_converged"][1]
    assert 0 < free_unsettled <= 60 and history["nudged_not_converged"][1] > 0
    # Counted independently: a 15-step free phase from each carried particle cannot be replayed here, but from
    # zero on the trained network the count is what _unsettled finds, sample by sample.
    from dynsim.relax.phases import free_phase
    net = network()
    free = free_phase(net, data["train"].x, options=OPTIONS)
    expected = int(np.sum(free.integration.residual > free.integration.tolerance))
    assert evaluate_split(net, data["train"], OPTIONS)["not_converged"] == expected


def test_adam_in_pieces_on_numbas_threads_is_the_per_parameter_formula(rng):
    # Three Adam steps with the pieces cut small (many per rate) against numpy's formula, written here.
    from dynsim.training import optimizers
    from dynsim.training.optimizers import rate_runs, slab_runs

    net = HopfieldNetwork.layered([40, 30, 5], seed=0)
    blocks = net.parameter_blocks()
    lr = {name: r for name, r in zip(blocks, [1e-3, 1e-3, 2e-3, 5e-4])}
    opt = Adam(net, lr)
    starts, values = slab_runs(rate_runs(opt.rates), slab=7)
    assert np.all(np.diff(starts) <= 7) and starts[0] == 0 and starts[-1] == net.n_params
    np.testing.assert_array_equal(np.repeat(values, np.diff(starts)), opt.rates)
    opt._slabs = (starts, values)
    theta = net.theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, 4):
        grad = rng.standard_normal(net.n_params)
        opt.step(net.theta, grad)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta = theta - opt.rates * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(net.theta, theta, rtol=1e-14, atol=1e-15)
    # A non-finite gradient in the last piece refuses the whole step and names the parameter.
    bad = rng.standard_normal(net.n_params)
    bad[-1] = np.nan
    before = net.theta.copy()
    with pytest.raises(NonFiniteGradientError):
        opt.step(net.theta, bad)
    np.testing.assert_array_equal(net.theta, before)
    assert optimizers.SLAB >= 1024


def test_fit_holds_blas_to_one_thread_while_numba_has_several(monkeypatch):
    """BLAS's and Numba's spinning threads fought for the cores (an EP epoch 5x slower): fit holds BLAS to one."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import dynsim._threads

    monkeypatch.setattr(dynsim._threads, "kernel_threads", lambda: 2)
    seen = []

    def blas_threads(indices, gradient):
        seen.extend(pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas")

    task = moons(64, noise=0.1, seed=0)
    net = HopfieldNetwork.layered([2, 8, 2], seed=0)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as a 2-core machine starts
        fit(net, {"train": task}, "ep-centered", SGD(net, 0.05), 1, 32, beta=0.5,
            options=SettleOptions(integrator="block", max_steps=5, stop_at_steady_state=False), progress=False,
            step_callback=blas_threads)
    assert seen and set(seen) == {1}
