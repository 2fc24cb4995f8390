"""The fused Euler relaxation of layered Hopfield networks against the generic integrator driver.

The reference is :func:`integrators.integrate` with the network's vector
field (itself checked against finite differences of the energy in
test_hopfield): same states to rounding, same steps, f-evaluations, status,
divergence site and message.
"""
import numpy as np
import pytest

import integrators
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax import layered_euler
from dynsim.relax.phases import SettleOptions, settle


def _start(net, rng, batch, target, clamp):
    s0 = rng.random((batch, net.n_free))
    if clamp:
        s0[:, net.output_slice] = target
    return s0


def _both(net, s0, drive, method, beta, target, clamp, box, **kw):
    args = net.kernel_args(drive, beta, target, clamp)
    ref = integrators.integrate(net.vector_field, s0, args, method=method,
                                lower=None if box is None else box[0], upper=None if box is None else box[1],
                                **kw)
    fused, energy = layered_euler.relax(net, s0, drive, method, beta, target, clamp, box=box, **kw)
    return ref, fused, energy


def _same(ref, fused):
    assert (fused.status, fused.n_steps, fused.nfev, fused.diverged_step, fused.diverged_sample) == \
        (ref.status, ref.n_steps, ref.nfev, ref.diverged_step, ref.diverged_sample), (ref.message, fused.message)
    assert fused.message == ref.message
    np.testing.assert_allclose(fused.y, ref.y, rtol=1e-12, atol=1e-12)
    assert fused.t == ref.t


@pytest.mark.parametrize("sizes", [[4, 3], [5, 7, 3], [6, 8, 9, 4]])
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_fused_relaxation_is_the_generic_euler_step_for_step(rng, sizes, activation):
    net = HopfieldNetwork.layered(sizes, activation=activation, seed=3)
    net.theta[:] *= 3.0  # strong couplings: the hidden layers matter
    batch = 5
    x = rng.random((batch, sizes[0]))
    target = rng.random((batch, sizes[-1]))
    drive = net.input_drive(x)
    for beta, clamp in [(0.0, False), (0.8, False), (-0.3, False), (0.0, True)]:
        s0 = _start(net, rng, batch, target, clamp)
        for method, box in [("euler", None), ("projected_euler", (0.0, 1.0)), ("euler", (-0.5, 2.0))]:
            for stop in (True, False):
                ref, fused, energy = _both(net, s0, drive, method, beta, target, clamp, box, dt=0.3,
                                           max_steps=40, atol=1e-5, rtol=1e-5, stop_at_steady_state=stop)
                _same(ref, fused)
                np.testing.assert_allclose(fused.residual, ref.residual, rtol=1e-10, atol=1e-13)
                np.testing.assert_allclose(energy, net.energy_from_drive(fused.y, drive), rtol=1e-12, atol=1e-12)


def test_fused_relaxation_reaches_the_steady_state_the_generic_driver_reaches(rng):
    net = HopfieldNetwork.layered([6, 10, 4], activation="hard_sigmoid", seed=0)
    x = rng.random((4, 6))
    drive = net.input_drive(x)
    ref, fused, _ = _both(net, np.zeros((4, net.n_free)), drive, "projected_euler", 0.0, None, False, (0.0, 1.0),
                          dt=0.5, max_steps=10_000, atol=1e-9, rtol=1e-9, stop_at_steady_state=True)
    assert ref.status_name == "converged" and 5 < ref.n_steps < 10_000
    _same(ref, fused)


@pytest.mark.parametrize("max_abs", [1e6, np.inf])
def test_fused_relaxation_reports_divergence_where_the_generic_driver_does(rng, max_abs):
    # Euler with dt = 3 multiplies the leak term by 1 - 3 = -2 each step: the state runs away.
    net = HopfieldNetwork.layered([5, 8, 3], activation="tanh", seed=1)
    x = rng.random((4, 5))
    drive = net.input_drive(x)
    s0 = rng.standard_normal((4, net.n_free))
    s0[2] *= 50.0  # one sample ahead of the others: the site must name it
    ref, fused, _ = _both(net, s0, drive, "euler", 0.0, None, False, None, dt=3.0, max_steps=5000, atol=1e-6,
                          rtol=1e-6, stop_at_steady_state=True, max_abs=max_abs)
    assert ref.status_name == "diverged" and ref.diverged_sample == 2
    _same(ref, fused)
    assert np.isfinite(fused.y).all()


def test_settle_takes_the_fused_path_for_layered_networks_and_gives_the_generic_result(rng, monkeypatch):
    net = HopfieldNetwork.layered([7, 9, 6, 3], activation="hard_sigmoid", seed=2)
    x = rng.random((6, 7))
    target = np.eye(3)[rng.integers(0, 3, 6)]
    s0 = rng.random((6, net.n_free)) * 0.5
    options = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=25, stop_at_steady_state=False)
    calls = []
    relax = layered_euler.relax
    monkeypatch.setattr(layered_euler, "relax", lambda *a, **k: calls.append(1) or relax(*a, **k))
    fused = settle(net, x, target=target, beta=0.5, s0=s0, options=options)
    assert calls == [1]
    monkeypatch.setattr(layered_euler, "applies", lambda *a: False)
    generic = settle(net, x, target=target, beta=0.5, s0=s0, options=options)
    assert calls == [1]
    np.testing.assert_allclose(fused.state, generic.state, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fused.energy, generic.energy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused.cost, generic.cost, rtol=1e-12, atol=1e-12)
    assert fused.integration.message == generic.integration.message
    assert fused.integration.nfev == generic.integration.nfev == 26


def test_the_fused_path_applies_only_where_it_reproduces_the_driver():
    layered = HopfieldNetwork.layered([4, 5, 3], activation="hard_sigmoid", seed=0)
    skip = HopfieldNetwork([4, 5, 3], [(0, 1), (1, 2), (0, 2)], activation="hard_sigmoid", seed=0)
    recurrent = HopfieldNetwork([4, 5, 3], [(0, 1), (1, 1), (1, 2)], activation="hard_sigmoid", seed=0)
    assert layered_euler.applies(layered, "projected_euler", np.inf, 0)
    assert layered_euler.applies(layered, "euler", np.inf, 0)
    assert not layered_euler.applies(skip, "euler", np.inf, 0)
    assert not layered_euler.applies(recurrent, "euler", np.inf, 0)
    assert not layered_euler.applies(layered, "rk4", np.inf, 0)
    assert not layered_euler.applies(layered, "euler", 10.0, 0)  # a time limit: the driver shortens the last step
    assert not layered_euler.applies(layered, "euler", np.inf, 2)  # trajectories are recorded by the driver


# ----------------------------------------------------------------------------- chunks on Numba's threads
def _force_chunks(monkeypatch):
    """Run fixed-step relaxations in chunks even on one thread (prange then runs the chunks in turn)."""
    monkeypatch.setattr(layered_euler, "chunks_pay", lambda stop: not stop)


@pytest.mark.parametrize("method, box", [("projected_euler", (0.0, 1.0)), ("euler", None)])
def test_a_fixed_step_relaxation_in_chunks_is_the_generic_one(rng, monkeypatch, method, box):
    # 70 samples: three chunks of 23-24 (CHUNK = 32), each relaxed on its own.
    _force_chunks(monkeypatch)
    net = HopfieldNetwork.layered([5, 8, 6, 3], activation="hard_sigmoid" if box else "tanh", seed=3)
    net.theta[:] *= 3.0
    x = rng.random((70, 5))
    target = rng.random((70, 3))
    drive = net.input_drive(x)
    for beta, clamp in [(0.0, False), (0.7, False), (0.0, True)]:
        s0 = _start(net, rng, 70, target, clamp)
        ref, fused, energy = _both(net, s0, drive, method, beta, target, clamp, box, dt=0.3, max_steps=30,
                                   stop_at_steady_state=False)
        _same(ref, fused)
        np.testing.assert_allclose(fused.residual, ref.residual, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(energy, net.energy_from_drive(fused.y, drive), rtol=1e-12, atol=1e-12)


def test_relaxation_chunks_depend_on_the_batch_alone_and_split_small_minibatches_in_two(monkeypatch):
    monkeypatch.setattr(layered_euler, "chunks_pay", lambda stop: False)  # one thread, or a steady-state stop
    assert layered_euler.relaxation_chunks(50, False).tolist() == [0, 50]
    _force_chunks(monkeypatch)
    assert layered_euler.relaxation_chunks(50, True).tolist() == [0, 50]
    chunks = {b: layered_euler.relaxation_chunks(b, False).tolist() for b in (8, 15, 16, 20, 32, 33, 50, 70)}
    assert chunks == {8: [0, 8], 15: [0, 15], 16: [0, 8, 16], 20: [0, 10, 20], 32: [0, 16, 32],
                      33: [0, 16, 33], 50: [0, 25, 50], 70: [0, 23, 46, 70]}


def test_a_divergence_in_one_chunk_is_reported_as_the_whole_batch_reports_it(rng, monkeypatch):
    net = HopfieldNetwork.layered([5, 8, 3], activation="tanh", seed=1)
    x = rng.random((70, 5))
    drive = net.input_drive(x)
    s0 = 0.1 * rng.standard_normal((70, net.n_free))
    s0[55] *= 1e4  # in the third chunk, far ahead of the others
    kw = dict(dt=3.0, max_steps=200, atol=1e-6, rtol=1e-6, stop_at_steady_state=False, max_abs=1e6)
    whole, _ = layered_euler.relax(net, s0, drive, "euler", **kw)
    _force_chunks(monkeypatch)
    ref, chunked, _ = _both(net, s0, drive, "euler", 0.0, None, False, None, **kw)
    assert ref.status_name == "diverged" and ref.diverged_sample == 55
    _same(ref, chunked)
    np.testing.assert_array_equal(chunked.y, whole.y)  # every sample's last finite state, at the batch's step


def test_chunks_on_several_threads_give_the_same_bits_every_time(rng):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    net = HopfieldNetwork.layered([784, 64, 10], activation="hard_sigmoid", seed=0)
    x = rng.random((50, 784))
    drive = net.input_drive(x)
    s0 = np.zeros((50, net.n_free))
    kw = dict(dt=1.0, max_steps=30, stop_at_steady_state=False, box=(0.0, 1.0))
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        first, _ = layered_euler.relax(net, s0, drive, "projected_euler", **kw)
        again, _ = layered_euler.relax(net, s0, drive, "projected_euler", **kw)
        numba.set_num_threads(1)  # one thread: the batch whole, equal to rounding
        single, _ = layered_euler.relax(net, s0, drive, "projected_euler", **kw)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(first.y, again.y)
    np.testing.assert_allclose(first.y, single.y, rtol=0, atol=1e-12)
