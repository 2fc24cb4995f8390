"""Recurrent backprop on convolutional Hopfield networks: Hessian-vector products, mixed derivatives, EP's limit.

References: central finite differences of the first derivatives (which are
themselves checked against finite differences of the energy elsewhere), and
Scellier & Bengio's theorem that centered EP approaches the recurrent-backprop
gradient as beta -> 0.
"""
import numpy as np
import pytest

from dynsim.learning.contrastive import ep_gradient
from dynsim.networks import Architecture, Conv, ConvHopfieldNetwork, Dense, Group
from dynsim.references.gradients import implicit_gradient
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import ValidationError


def _stack():
    return ConvHopfieldNetwork(Architecture.conv_stack((1, 12, 12), [4, 6], [3, 3], "mm", fc=[5]), seed=2,
                               dtype=np.float64)


def _mixed():
    # Strided convolution with average pooling, then a padded one with overlapping max pooling, tanh and
    # linear groups: every branch of the linearisation.
    groups = [Group("in", (2, 11, 11)), Group("c1", (3, 2, 2)), Group("c2", (4, 2, 2), activation="tanh"),
              Group("out", 5, activation="linear")]
    couplings = [Conv("in", "c1", kernel_size=3, stride=2, pool="avg", pool_size=2),
                 Conv("c1", "c2", kernel_size=2, padding=1, pool="max", pool_size=2, pool_stride=1),
                 Dense("c2", "out")]
    return ConvHopfieldNetwork(Architecture(groups, couplings), seed=3, dtype=np.float64)


@pytest.mark.parametrize("make", [_stack, _mixed])
def test_hvp_and_mixed_derivative_match_finite_differences(make):
    net = make()
    rng = np.random.default_rng(0)
    x = rng.random((3, net.n_input))
    s = 0.05 + 0.9 * rng.random((3, net.n_free))  # inside the hard sigmoid's linear range, off its kinks
    v = rng.normal(size=s.shape)
    eps = 1e-6
    fd = (net.energy_grad_state(x, s + eps * v) - net.energy_grad_state(x, s - eps * v)) / (2 * eps)
    np.testing.assert_allclose(net.energy_hvp(x, s, v), fd, rtol=0, atol=1e-7 * np.abs(fd).max())
    fd = (net.energy_grad_params(x, s + eps * v) - net.energy_grad_params(x, s - eps * v)) / (2 * eps)
    np.testing.assert_allclose(net.energy_grad_params_directional(x, s, v), fd, rtol=0,
                               atol=1e-7 * np.abs(fd).max())
    w = rng.normal(size=s.shape)
    # The Hessian is symmetric: conjugate gradients need it.
    assert abs(np.sum(w * net.energy_hvp(x, s, v)) - np.sum(v * net.energy_hvp(x, s, w))) < 1e-10


def test_centered_ep_approaches_recurrent_backprop_in_every_block():
    net = _stack()
    rng = np.random.default_rng(1)
    x = rng.random((3, net.n_input))
    y = np.eye(5)[rng.integers(0, 5, 3)]
    options = SettleOptions(integrator="block", max_steps=3000, atol=1e-11, rtol=1e-11)
    free = settle(net, x, None, None, 0.0, False, options)
    assert free.converged
    ref = implicit_gradient(net, x, y, free, method="cg")
    errors = {}
    for variant in ("centered", "positive"):
        est = ep_gradient(net, x, y, 0.01, variant, options, free=free).gradient
        errors[variant] = np.linalg.norm(est - ref.gradient) / np.linalg.norm(ref.gradient)
        if variant == "centered":
            for name, sl in net.parameter_blocks().items():
                a, b = est[sl], ref.gradient[sl]
                assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.999, name
    # Centered EP's bias is O(beta^2), one-sided EP's O(beta).
    assert errors["centered"] < 0.1 * errors["positive"]


def test_dense_hessian_is_refused_for_a_conv_net():
    net = _stack()
    x = np.zeros((1, net.n_input))
    with pytest.raises(ValidationError, match="method='cg'"):
        implicit_gradient(net, x, np.zeros((1, 5)), np.zeros((1, net.n_free)), method="dense")


def test_estimator_sweep_measures_ep_against_rbp_on_a_conv_net():
    """The sweep of scenarios/gradient_vs_iterations on a conv net: settled phases approach recurrent backprop,
    centered EP's error shrinking as beta^2 and one-sided EP's as beta."""
    from dynsim.experiments.estimator_sweep import sweep_estimates

    net = _stack()
    rng = np.random.default_rng(2)
    x = rng.random((2, net.n_input))
    y = np.eye(5)[rng.integers(0, 5, 2)]
    table = sweep_estimates(net, x, y, {"integrator": ["block"], "free_steps": [300], "nudged_steps": [2, 300],
                                        "beta": [1e-3, 1e-4], "variant": ["centered", "positive"]})
    err = {(int(n), float(b), str(v)): e for n, b, v, e in zip(table["nudged_steps"], table["beta"],
                                                              table["variant"], table["relative_error"][:, -1])}
    # Centered EP reads only the two nudged equilibria: unsettled nudged phases are far off, settled ones close.
    assert err[(300, 1e-3, "centered")] < 1e-4 and err[(2, 1e-3, "centered")] > 100 * err[(300, 1e-3, "centered")]
    assert err[(300, 1e-3, "centered")] / err[(300, 1e-4, "centered")] > 30  # O(beta^2)
    assert 5 < err[(300, 1e-3, "positive")] / err[(300, 1e-4, "positive")] < 20  # O(beta)
    with pytest.raises(ValidationError, match="fixed_point"):
        sweep_estimates(net, x, y, {"integrator": ["euler"], "free_steps": [5]})


def test_gdu_holds_for_fixed_point_sweeps_of_a_conv_net():
    """Ernoult et al.'s GDU property on a conv net stepped by fixed-point sweeps (Euler with dt = 1): EP's per-step
    updates in the nudged phase match BPTT's per-step gradients, their gap shrinking linearly with beta."""
    from dynsim.references.compare import gdu_check
    from dynsim.references.gradients import bptt_gradients

    net = _stack()
    rng = np.random.default_rng(1)
    x = rng.random((3, net.n_input))
    y = np.eye(5)[rng.integers(0, 5, 3)]
    rmse = {}
    for beta in (1e-2, 1e-3):
        gdu = gdu_check(net, x, y, beta, 200, 15, 1.0, integrator="fixed_point")
        rmse[beta] = gdu.rmse["all"]
        assert gdu.sign_agreement["all"] == 1.0
    assert rmse[1e-3] < 0.005 and 7 < rmse[1e-2] / rmse[1e-3] < 13
    with pytest.raises(ValidationError, match="dt = 1"):
        bptt_gradients(net, x, y, 10, 5, 0.5, integrator="fixed_point")
    with pytest.raises(ValidationError, match="relaxes by sweeps"):
        bptt_gradients(net, x, y, 10, 5, 0.5, integrator="euler")
