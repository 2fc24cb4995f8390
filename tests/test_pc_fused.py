"""The fused predictive coding minibatch (dynsim.learning.pc_fused) against the generic path it replaces.

The reference is :func:`dynsim.learning.predictive_coding.pc_gradient` with the fused path
switched off: :func:`dynsim.relax.phases.settle` through :func:`integrators.integrate`
with the network's vector field (itself checked against finite differences
of the energy in test_pc), then :meth:`PCNetwork.energy_grad_params`. Same
steps, f-evaluations, status and messages; states, energies, residuals and
gradients to rounding (the matrix products are ordered differently, and the
hidden errors of the start are exactly 0 here and 0 up to rounding there).
"""
import numpy as np
import pytest

from dynsim.learning import pc_fused
from dynsim.learning import predictive_coding as pc_learning
from dynsim.learning.rules import gradient_estimate
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.validation import DivergenceError
from integrators.status import DIVERGED

ACTIVATIONS = ["tanh", "logistic", "relu", "hard_sigmoid", "gelu"]


def _generic(monkeypatch, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(pc_fused, "applies", lambda *a: False)
        return pc_learning.pc_gradient(*args, **kw)


def _same(fused, generic):
    a, b = fused.inference.integration, generic.inference.integration
    assert (a.status, a.n_steps, a.nfev, a.diverged_step, a.diverged_sample, a.t) == \
        (b.status, b.n_steps, b.nfev, b.diverged_step, b.diverged_sample, b.t), (a.message, b.message)
    assert a.message == b.message
    np.testing.assert_allclose(fused.inference.state, generic.inference.state, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a.residual, b.residual, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fused.inference.energy, generic.inference.energy, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(fused.inference.cost, generic.inference.cost, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fused.gradient, generic.gradient, rtol=1e-11, atol=1e-14)
    assert fused.gradient.dtype == generic.gradient.dtype and fused.inference.state.dtype == generic.inference.state.dtype


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("variant", ["strict", "fixed_prediction"])
def test_fused_minibatch_is_the_generic_path_step_for_step(rng, monkeypatch, activation, variant):
    net = PCNetwork([6, 7, 5, 3], activation=activation, variances=[1.0, 0.5, 2.0], seed=1, init="fan-in")
    net.theta[:] *= 2.0  # strong couplings: the errors travel and the hidden layers move
    x = rng.random((4, 6))
    target = np.eye(3)[rng.integers(0, 3, 4)]
    for stop in (False, True):
        for max_steps in (1, 5, 40):
            options = SettleOptions(integrator="euler", dt=0.2, max_steps=max_steps, stop_at_steady_state=stop,
                                    atol=1e-3, rtol=1e-3)
            for rescale in (True, False):
                for drive in (None, net.input_drive(x)):
                    fused = pc_learning.pc_gradient(net, x, target, variant, options=options, rescale=rescale,
                                                    drive=drive)
                    generic = _generic(monkeypatch, net, x, target, variant, options=options, rescale=rescale,
                                       drive=drive)
                    _same(fused, generic)


def test_fused_minibatch_stops_at_the_steady_state_where_the_generic_driver_does(rng, monkeypatch):
    net = PCNetwork([5, 8, 6, 2], activation="tanh", seed=3)
    x = rng.random((3, 5))
    target = rng.random((3, 2))
    options = SettleOptions(integrator="euler", dt=0.3, max_steps=10_000, atol=1e-9, rtol=1e-9)
    fused = pc_learning.pc_gradient(net, x, target, options=options)
    generic = _generic(monkeypatch, net, x, target, options=options)
    assert generic.inference.integration.status_name == "converged"
    assert 5 < generic.inference.integration.n_steps < 10_000
    _same(fused, generic)


@pytest.mark.parametrize("max_abs", [1e3, np.inf])
def test_a_diverging_inference_is_reported_as_the_generic_path_reports_it(rng, monkeypatch, max_abs):
    # dt = 5 multiplies the leak term of the errors by 1 - 5 = -4 each step: the hidden states run away.
    net = PCNetwork([4, 6, 5, 2], activation="relu", seed=0)
    x = rng.random((3, 4))
    target = 50.0 * rng.standard_normal((3, 2))
    options = SettleOptions(integrator="euler", dt=5.0, max_steps=2000, stop_at_steady_state=False, max_abs=max_abs)
    _, fx, fpx, bufs, grads = pc_fused.workspace(net, 3)
    t, status, steps, nfev, _, bad_step, bad_sample, _, _ = pc_fused.pc_minibatch(
        x, False, np.empty((3, net.n_free)), False, net.check_target(target, 3), net._theta, net._sizes, net._w_off,
        net._b_off, net._free_off, net._act, net._precisions, False, 5.0, 2000, 1e-6, 1e-6, False, max_abs, 1.0, fx,
        fpx, *bufs[0], np.empty((3, net.n_free)), grads[0])
    assert status == DIVERGED
    with pytest.raises(DivergenceError) as generic:
        _generic(monkeypatch, net, x, target, options=options)
    with pytest.raises(DivergenceError) as fused:
        pc_learning.pc_gradient(net, x, target, options=options)
    assert str(fused.value) == str(generic.value)
    assert f"diverged at step {bad_step} in sample {bad_sample}" in str(generic.value)


def test_training_takes_the_fused_path_and_gives_the_generic_estimate(rng, monkeypatch):
    net = PCNetwork([8, 6, 6, 3], activation="gelu", seed=4, init="fan-in")
    x = rng.random((5, 8))
    target = np.eye(3)[rng.integers(0, 3, 5)]
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    calls = []
    run = pc_fused.run
    monkeypatch.setattr(pc_fused, "run", lambda *a: calls.append(1) or run(*a))
    est = gradient_estimate("pc-strict", net, x, target, options=options)
    grad, phases = est.gradient, est.phases
    assert calls == [1]
    monkeypatch.setattr(pc_fused, "applies", lambda *a: False)
    est = gradient_estimate("pc-strict", net, x, target, options=options)
    grad_generic, phases_generic = est.gradient, est.phases
    assert calls == [1]
    np.testing.assert_allclose(grad, grad_generic, rtol=1e-11, atol=1e-14)
    assert phases["inference"].integration.nfev == phases_generic["inference"].integration.nfev == 6


def test_workspaces_are_kept_per_batch_size_and_results_are_fresh_arrays(rng):
    net = PCNetwork([5, 4, 3], activation="tanh", seed=0)
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=3, stop_at_steady_state=False)
    x = rng.random((6, 5))
    target = rng.random((6, 3))
    first = pc_learning.pc_gradient(net, x, target, options=options)
    ws = pc_fused.workspace(net, 6, chunked=True)
    second = pc_learning.pc_gradient(net, x[::-1].copy(), target[::-1].copy(), options=options)
    assert all(a is b for a, b in zip(ws, pc_fused.workspace(net, 6, chunked=True)))  # reused, not reallocated
    assert first.gradient is not second.gradient and first.inference.state is not second.inference.state
    again = pc_learning.pc_gradient(net, x, target, options=options)
    np.testing.assert_array_equal(first.gradient, again.gradient)  # a later minibatch did not overwrite it
    pc_learning.pc_gradient(net, x[:2], target[:2], options=options)
    assert pc_fused.workspace(net, 6, chunked=True)[3] is ws[3]


def test_the_fused_path_applies_only_where_it_reproduces_the_generic_path():
    net = PCNetwork([4, 5, 3], seed=0)
    euler = SettleOptions(integrator="euler", dt=0.1, max_steps=5)
    assert pc_fused.applies(net, euler)
    assert not pc_fused.applies(net, SettleOptions(integrator="heun", dt=0.1))
    assert not pc_fused.applies(net, SettleOptions(integrator="euler", dt=0.1, record_every=1))
    assert not pc_fused.applies(net, SettleOptions(integrator="euler", dt=0.1, t_max=1.0))
    assert not pc_fused.applies(net, SettleOptions(integrator="euler", dt=0.1, bounds=(-1.0, 1.0)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_free_phase_of_training_is_read_off_the_feedforward_pass_as_a_relaxation_reports_it(dtype):
    # The training loop does not relax a PC network's free phase: it starts settled. What it reports must be
    # what a relaxation from the feedforward pass reports.
    from dynsim.learning.predictive_coding import feedforward_phase

    net = PCNetwork([6, 8, 8, 3], activation="gelu", seed=0, dtype=dtype)
    x = np.random.default_rng(0).uniform(size=(4, 6)).astype(dtype)
    y = np.eye(3, dtype=dtype)[[0, 1, 2, 0]]
    drive = net.input_drive(x)
    relaxed = free_phase(net, x, target=y, options=SettleOptions(integrator="euler", dt=0.1, max_steps=1),
                         drive=drive)
    read = feedforward_phase(net, drive, y)
    for name in ("state", "energy", "cost"):
        assert getattr(read, name).dtype == getattr(relaxed, name).dtype
        np.testing.assert_array_equal(getattr(read, name), getattr(relaxed, name))
    for name in ("n_steps", "nfev", "status", "message", "t", "method"):
        assert getattr(read.integration, name) == getattr(relaxed.integration, name), name
    np.testing.assert_array_equal(read.integration.residual, relaxed.integration.residual)
    np.testing.assert_allclose(read.integration.tolerance, relaxed.integration.tolerance, rtol=1e-6)


# ----------------------------------------------------------------------------- chunks on Numba's threads
def _chunked_case(rng, batch=150, dtype=np.float64):
    net = PCNetwork([6, 7, 5, 3], activation="gelu", variances=[1.0, 0.5, 2.0], seed=1, init="fan-in", dtype=dtype)
    net.theta[:] *= 2.0
    x = rng.random((batch, 6)).astype(dtype)
    target = np.eye(3, dtype=dtype)[rng.integers(0, 3, batch)]
    return net, x, target


def _force_chunks(monkeypatch):
    """Run fixed-step inferences in chunks even on one thread (prange then runs the chunks in turn)."""
    monkeypatch.setattr(pc_fused, "chunks_pay", lambda stop: not stop)


def test_a_fixed_step_minibatch_runs_in_chunks_and_gives_the_generic_estimate(rng, monkeypatch):
    # 150 samples: three chunks of 50; the batch mean of the chunks' means is the minibatch's gradient.
    _force_chunks(monkeypatch)
    net, x, target = _chunked_case(rng)
    assert pc_fused.chunk_starts(150, True).tolist() == [0, 50, 100, 150]
    assert pc_fused.chunk_starts(150, False).tolist() == [0, 150]
    assert pc_fused.chunk_starts(64, True).tolist() == [0, 64]
    options = SettleOptions(integrator="euler", dt=0.2, max_steps=5, stop_at_steady_state=False)
    for variant in ("strict", "fixed_prediction"):
        fused = pc_learning.pc_gradient(net, x, target, variant, options=options)
        _same(fused, _generic(monkeypatch, net, x, target, variant, options=options))
    # A steady-state stop is the minibatch's (every sample steady), so it is not chunked.
    assert pc_fused.workspace(net, 150, chunked=False)[0].tolist() == [0, 150]


def test_chunks_on_several_threads_give_the_same_bits_every_time(rng):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        net, x, target = _chunked_case(rng, batch=200, dtype=dtype)
        saved = numba.get_num_threads()
        try:
            numba.set_num_threads(2)
            first = pc_learning.pc_gradient(net, x, target, options=options)
            again = pc_learning.pc_gradient(net, x, target, options=options)
            numba.set_num_threads(1)  # one thread: the minibatch whole, equal to rounding
            single = pc_learning.pc_gradient(net, x, target, options=options)
        finally:
            numba.set_num_threads(saved)
        assert (200, np.dtype(dtype).name, True) in net._fused_workspaces  # the chunked path ran
        np.testing.assert_array_equal(first.gradient, again.gradient)
        np.testing.assert_array_equal(first.inference.state, again.inference.state)
        np.testing.assert_allclose(first.gradient, single.gradient, rtol=tol, atol=tol)
        np.testing.assert_allclose(first.inference.state, single.inference.state, rtol=tol, atol=tol)


def test_a_divergence_in_a_later_chunk_is_reported_as_the_generic_path_reports_it(rng, monkeypatch):
    _force_chunks(monkeypatch)
    net = PCNetwork([4, 6, 5, 2], activation="relu", seed=0)
    x = rng.random((150, 4))
    target = np.zeros((150, 2))
    target[120] = 1e4  # only sample 120 (third chunk) runs away
    options = SettleOptions(integrator="euler", dt=1.9, max_steps=50, stop_at_steady_state=False, max_abs=1e6)
    with pytest.raises(DivergenceError) as generic:
        _generic(monkeypatch, net, x, target, options=options)
    with pytest.raises(DivergenceError) as fused:
        pc_learning.pc_gradient(net, x, target, options=options)
    assert str(fused.value) == str(generic.value)
    assert "in sample 120" in str(generic.value)
    # The chunk kernel itself names the sample by its place in the minibatch.
    result = pc_fused.run(net, net.check_input(x), net.check_target(target, 150), None, False, options, True)[0]
    assert result.status == DIVERGED and result.diverged_sample == 120


def test_blas_threads_are_one_inside_the_chunks_and_the_users_afterwards():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from dynsim._threads import one_blas_thread

    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    with one_blas_thread(True):
        inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert inside and all(n == 1 for n in inside)
    assert after == before
    with pytest.raises(RuntimeError):
        with one_blas_thread(True):
            raise RuntimeError("inside")
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"] == before


def test_a_blas_hold_inside_another_keeps_blas_held_until_the_outer_one_ends():
    """Kernels called once per sweep hold BLAS themselves; inside a training loop's hold they must not give the
    user's thread counts back early (checked with two BLAS threads: the suite runs one, conftest.py)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from dynsim._threads import one_blas_thread

    def counts():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with one_blas_thread(True):
            with one_blas_thread(True):
                assert all(n == 1 for n in counts())
            inside = counts()
        after = counts()
    assert inside and all(n == 1 for n in inside)
    assert after and all(n == 2 for n in after)


def test_the_first_hold_to_open_sets_the_limit_and_the_last_to_close_restores_it_across_python_threads(monkeypatch):
    """The limit is the process's: a hold opened by another Python thread while one is open must keep BLAS held
    after the first closes, and nested or overlapping holds set the limit once."""
    import threading

    from dynsim import _threads

    events = []

    class Limiter:
        def restore_original_limits(self):
            events.append("restore")

    class Controller:
        def limit(self, limits):
            events.append(("limit", limits))
            return Limiter()

    monkeypatch.setattr(_threads, "_blas_controller", lambda: Controller())
    opened, release = threading.Event(), threading.Event()

    def other():
        with _threads.one_blas_thread(True):
            opened.set()
            release.wait(10)
            events.append("other closes")

    with _threads.one_blas_thread(True):
        with _threads.one_blas_thread(True):
            pass
        worker = threading.Thread(target=other)
        worker.start()
        assert opened.wait(10)
    events.append("main closed")
    assert events == [("limit", 1), "main closed"]  # the other thread's hold is still open: no restore yet
    release.set()
    worker.join(10)
    assert events == [("limit", 1), "main closed", "other closes", "restore"]
    with _threads.one_blas_thread(False):
        pass
    assert events[-1] == "restore" and len(events) == 4
