"""The fused fixed-point and block sweeps of layered Hopfield networks against the generic sweep loop.

The reference is :func:`dynsim.relax.block_relaxation.relax` with ``fused=False``
(:func:`dynsim.relax.block_relaxation.relax_batch`, itself checked against the
energy's minimisers in test_block_relaxation): same states to rounding,
same sweeps, status, divergence site and message, and the energy of the
final state.
"""
import warnings

import numpy as np
import pytest

from dynsim.learning.contrastive import chl_gradient, ep_gradient
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax import block_relaxation
from dynsim.relax.phases import SettleOptions, settle


def _both(net, s0, drive, scheme, beta, target, clamp, box, **kw):
    ref = block_relaxation.relax(net, s0, drive, scheme, beta, target, clamp, box=box, fused=False, **kw)
    fused, energy = block_relaxation.relax_with_energy(net, s0, drive, scheme, beta, target, clamp, box=box, **kw)
    return ref, fused, energy


def _same(ref, fused):
    assert (fused.status, fused.n_steps, fused.nfev, fused.diverged_step, fused.diverged_sample) == \
        (ref.status, ref.n_steps, ref.nfev, ref.diverged_step, ref.diverged_sample), (ref.message, fused.message)
    assert fused.message == ref.message
    np.testing.assert_allclose(fused.y, ref.y, rtol=1e-12, atol=1e-12)
    assert fused.t == ref.t


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
@pytest.mark.parametrize("sizes", [[4, 3], [5, 7, 3], [6, 8, 9, 4], [5, 6, 7, 6, 3]])
@pytest.mark.parametrize("activation", ["hard_sigmoid", "logistic", "tanh"])
def test_fused_sweeps_are_the_generic_sweeps_step_for_step(rng, scheme, sizes, activation):
    net = HopfieldNetwork.layered(sizes, activation=activation, seed=3)
    net.theta[:] *= 3.0  # strong couplings: the hidden layers matter, fixed_point may cycle
    batch = 5
    x = rng.random((batch, sizes[0]))
    target = rng.random((batch, sizes[-1]))
    drive = net.input_drive(x)
    for beta, clamp in [(0.0, False), (0.8, False), (-0.3, False), (0.0, True)]:
        s0 = rng.random((batch, net.n_free))
        if clamp:
            s0[:, net.output_slice] = target
        for box in [None, (0.0, 1.0), (-0.5, 2.0)]:
            for stop in (True, False):
                ref, fused, energy = _both(net, s0, drive, scheme, beta, target, clamp, box, max_steps=40,
                                           atol=1e-5, rtol=1e-5, stop_at_steady_state=stop)
                _same(ref, fused)
                np.testing.assert_allclose(fused.residual, ref.residual, rtol=1e-10, atol=1e-13)
                np.testing.assert_allclose(energy, net.energy_from_drive(fused.y, drive), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
def test_fused_sweeps_reach_the_steady_state_the_generic_loop_reaches(rng, scheme):
    net = HopfieldNetwork.layered([6, 10, 8, 4], activation="hard_sigmoid", seed=0)
    x = rng.random((4, 6))
    drive = net.input_drive(x)
    ref, fused, _ = _both(net, np.zeros((4, net.n_free)), drive, scheme, 0.0, None, False, (0.0, 1.0),
                          max_steps=10_000, atol=1e-9, rtol=1e-9, stop_at_steady_state=True)
    assert ref.status_name == "converged" and 2 < ref.n_steps < 10_000
    _same(ref, fused)


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
@pytest.mark.parametrize("max_abs", [1e3, np.inf])
def test_fused_sweeps_report_divergence_where_the_generic_loop_does(rng, scheme, max_abs):
    # Unprojected sweeps of a linear-ish network with huge couplings: the state grows without bound.
    net = HopfieldNetwork.layered([5, 8, 6, 3], activation="tanh", seed=1)
    net.theta[:] *= 1e3
    x = rng.random((4, 5))
    drive = net.input_drive(x)
    s0 = rng.standard_normal((4, net.n_free))
    ref, fused, _ = _both(net, s0, drive, scheme, 0.0, None, False, None, max_steps=50, atol=1e-6, rtol=1e-6,
                          stop_at_steady_state=True, max_abs=max_abs)
    if max_abs == np.inf:
        # tanh bounds every state: nothing diverges without a threshold; both loops agree on the limit reached.
        assert ref.status_name in ("step_limit", "converged")
    else:
        assert ref.status_name == "diverged"
    _same(ref, fused)
    assert np.isfinite(fused.y).all()


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
def test_settle_takes_the_fused_sweeps_for_layered_networks_and_gives_the_generic_result(rng, monkeypatch, scheme):
    net = HopfieldNetwork.layered([7, 9, 6, 3], activation="hard_sigmoid", seed=2)
    x = rng.random((6, 7))
    target = np.eye(3)[rng.integers(0, 3, 6)]
    s0 = rng.random((6, net.n_free)) * 0.5
    options = SettleOptions(integrator=scheme, max_steps=25, stop_at_steady_state=False)
    calls = []
    sweep = block_relaxation.sweep_layered
    monkeypatch.setattr(block_relaxation, "sweep_layered", lambda *a: calls.append(1) or sweep(*a))
    fused = settle(net, x, target=target, beta=0.5, s0=s0, options=options)
    assert calls == [1]
    monkeypatch.setattr(block_relaxation, "fused_applies", lambda *a: False)
    generic = settle(net, x, target=target, beta=0.5, s0=s0, options=options)
    assert calls == [1]
    np.testing.assert_allclose(fused.state, generic.state, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fused.energy, generic.energy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused.cost, generic.cost, rtol=1e-12, atol=1e-12)
    assert fused.integration.message == generic.integration.message
    assert fused.integration.nfev == generic.integration.nfev == 26


@pytest.mark.parametrize("integrator", ["projected_euler", "fixed_point", "block"])
def test_every_phase_of_ep_and_chl_takes_the_fused_loop(rng, monkeypatch, integrator):
    net = HopfieldNetwork.layered([7, 9, 3], activation="hard_sigmoid", seed=4)
    x = rng.random((5, 7))
    target = np.eye(3)[rng.integers(0, 3, 5)]
    options = SettleOptions(integrator=integrator, max_steps=15, stop_at_steady_state=False)
    calls = []
    from dynsim.relax import layered_euler
    for module, name in ((layered_euler, "euler_layered"), (block_relaxation, "sweep_layered")):
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, (lambda k: lambda *a: calls.append(1) or k(*a))(kernel))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ep = ep_gradient(net, x, target, 0.5, "centered", options=options)
        assert len(calls) == 3  # free, nudged+, nudged-
        chl = chl_gradient(net, x, target, options=options)
        assert len(calls) == 5  # free, clamped
    monkeypatch.setattr(block_relaxation, "fused_applies", lambda *a: False)
    monkeypatch.setattr(layered_euler, "applies", lambda *a: False)
    ep_generic = ep_gradient(net, x, target, 0.5, "centered", options=options)
    chl_generic = chl_gradient(net, x, target, options=options)
    assert len(calls) == 5
    np.testing.assert_allclose(ep.gradient, ep_generic.gradient, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(chl.gradient, chl_generic.gradient, rtol=1e-10, atol=1e-12)


def test_the_fused_sweeps_apply_only_to_layered_networks_without_recording():
    layered = HopfieldNetwork.layered([4, 5, 3], activation="hard_sigmoid", seed=0)
    skip = HopfieldNetwork([4, 5, 3], [(0, 1), (1, 2), (0, 2)], activation="hard_sigmoid", seed=0)
    assert block_relaxation.fused_applies(layered, 0)
    assert not block_relaxation.fused_applies(layered, 1)
    assert not block_relaxation.fused_applies(skip, 0)


# ----------------------------------------------------------------------------- chunks on Numba's threads
def _force_chunks(monkeypatch):
    """Run fixed-sweep relaxations in chunks even on one thread (prange then runs the chunks in turn)."""
    from dynsim.relax import layered_euler

    monkeypatch.setattr(layered_euler, "chunks_pay", lambda stop: not stop)


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
@pytest.mark.parametrize("batch", [16, 70])  # two chunks of 8 (a small minibatch), three of 23-24
def test_fixed_sweeps_in_chunks_are_the_generic_sweeps(rng, monkeypatch, scheme, batch):
    _force_chunks(monkeypatch)
    calls = []
    chunked = block_relaxation.sweep_layered_chunks
    monkeypatch.setattr(block_relaxation, "sweep_layered_chunks", lambda *a: calls.append(1) or chunked(*a))
    net = HopfieldNetwork.layered([5, 8, 6, 3], activation="hard_sigmoid", seed=3)
    net.theta[:] *= 3.0
    x = rng.random((batch, 5))
    target = rng.random((batch, 3))
    drive = net.input_drive(x)
    for beta, clamp in [(0.0, False), (0.7, False), (-0.3, False), (0.0, True)]:
        s0 = rng.random((batch, net.n_free))
        if clamp:
            s0[:, net.output_slice] = target
        for box in [None, (0.0, 1.0)]:
            ref, fused, energy = _both(net, s0, drive, scheme, beta, target, clamp, box, max_steps=30,
                                       stop_at_steady_state=False)
            _same(ref, fused)
            np.testing.assert_allclose(fused.residual, ref.residual, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(energy, net.energy_from_drive(fused.y, drive), rtol=1e-12, atol=1e-12)
    assert len(calls) == 8


def test_a_divergence_in_one_chunk_of_sweeps_is_reported_as_the_whole_batch_reports_it(rng, monkeypatch):
    net = HopfieldNetwork.layered([5, 8, 6, 3], activation="tanh", seed=1)
    x = rng.random((40, 5))
    drive = net.input_drive(x)
    s0 = 0.1 * rng.standard_normal((40, net.n_free))
    s0[33] *= 1e6  # in the second chunk, beyond max_abs from the start
    kw = dict(max_steps=50, atol=1e-6, rtol=1e-6, stop_at_steady_state=False, max_abs=1e3)
    from dynsim.relax import layered_euler

    monkeypatch.setattr(layered_euler, "chunks_pay", lambda stop: False)
    whole, _ = block_relaxation.relax_with_energy(net, s0, drive, "block", **kw)
    _force_chunks(monkeypatch)
    reports = []
    chunked_kernel = block_relaxation.sweep_layered_chunks

    def spy(*a):
        chunked_kernel(*a)
        reports.append(a[-1].copy())  # the chunks' (status, steps, nfev, bad_step, bad_sample) rows

    monkeypatch.setattr(block_relaxation, "sweep_layered_chunks", spy)
    ref, chunked, _ = _both(net, s0, drive, "block", 0.0, None, False, None, **kw)
    assert ref.status_name == "diverged" and ref.diverged_step == 0 and ref.diverged_sample == 33
    _same(ref, chunked)
    np.testing.assert_array_equal(chunked.y, whole.y)
    # The chunks ran: the first finished its 50 sweeps, the second stopped at sample 33 of the minibatch.
    (rows,) = reports
    assert rows[0, 0] != rows[1, 0] and rows[0, 1] == 50 and tuple(rows[1, [1, 3, 4]]) == (0, 0, 33)


def test_chunks_of_sweeps_give_the_same_bits_on_two_threads_as_in_turn_on_one(rng, monkeypatch):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    net = HopfieldNetwork.layered([784, 64, 10], activation="hard_sigmoid", seed=0)
    x = rng.random((16, 784))
    drive = net.input_drive(x)
    s0 = np.zeros((16, net.n_free))
    kw = dict(max_steps=15, stop_at_steady_state=False, box=(0.0, 1.0))
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        first = block_relaxation.relax(net, s0, drive, "block", **kw)
        numba.set_num_threads(1)  # one thread: the batch whole, equal to rounding
        single = block_relaxation.relax(net, s0, drive, "block", **kw)
        _force_chunks(monkeypatch)  # one thread, the same two chunks in turn: the same bits
        in_turn = block_relaxation.relax(net, s0, drive, "block", **kw)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(first.y, in_turn.y)
    np.testing.assert_allclose(first.y, single.y, rtol=0, atol=1e-12)
