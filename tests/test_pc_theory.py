"""Strict PC's distance to backprop against its first-order theory: e* = (I + G/sigma_L^2)^-1 e."""
import numpy as np
import pytest

from dynsim.learning.predictive_coding import pc_gradient
from dynsim.networks.pc import PCNetwork
from dynsim.references.pc_theory import output_jacobian_gram, predicted_output_bias_error
from dynsim.relax.phases import SettleOptions

OPTIONS = SettleOptions(integrator="dopri5", atol=1e-12, rtol=1e-12, max_steps=200000)


def problem(rng, var_out):
    net = PCNetwork([5, 8, 8, 8, 3], activation="tanh", variances=[1.0, 2.0, 0.5, var_out], seed=7)
    return net, rng.uniform(-1, 1, size=(6, 5)), rng.uniform(-1, 1, size=(6, 3))


def test_gram_against_finite_difference_jacobians(rng):
    net, x, _ = problem(rng, 100.0)
    gram = output_jacobian_gram(net, x[:1])[0]
    # K_l by central differences of the feedforward pass continued from a perturbed hidden layer l.
    from dynsim.networks.pc import activation_and_derivative
    L = 4
    xs = [x[:1]]
    for l in range(1, L + 1):
        xs.append(activation_and_derivative(xs[-1], "tanh")[0] @ net.weights(l) + net.biases(l))

    def output_from(l, h):
        for m in range(l + 1, L + 1):
            h = activation_and_derivative(h, "tanh")[0] @ net.weights(m) + net.biases(m)
        return h[0]

    expected = np.zeros((3, 3))
    for l in range(1, L):
        K = np.zeros((3, xs[l].shape[1]))
        for j in range(xs[l].shape[1]):
            d = np.zeros_like(xs[l])
            d[0, j] = 1e-6
            K[:, j] = (output_from(l, xs[l] + d) - output_from(l, xs[l] - d)) / 2e-6
        expected += net.variances[l - 1] * K @ K.T
    np.testing.assert_allclose(gram, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("var_out, rtol", [(1000.0, 0.01), (100.0, 0.1)])
def test_strict_pc_output_bias_error_follows_the_first_order_theory(rng, var_out, rtol):
    net, x, y = problem(rng, var_out)
    est = pc_gradient(net, x, y, "strict", options=OPTIONS)
    assert est.inference.converged
    bp = net.backprop_gradient(x, y)
    sl = net.parameter_blocks()["b_output"]
    measured = np.linalg.norm(est.gradient[sl] - bp[sl]) / np.linalg.norm(bp[sl])
    predicted = predicted_output_bias_error(net, x, y)
    assert measured == pytest.approx(predicted["relative_error"], rel=rtol)
    assert predicted["gain"] > 0


@pytest.mark.parametrize("seed", [7, 1, 2])
def test_strict_pc_is_within_3_percent_of_backprop_at_output_variance_100_when_the_theory_says_so(rng, seed):
    """The issue's bound, ||g_PC - g_BP|| / ||g_BP|| <= 0.03 at sigma_L^2 = 100, on 3-hidden-layer tanh networks.

    The first-order theory puts the distance at about lambda_max(G) / sigma_L^2
    (G the Gram matrix of the output Jacobians): with Glorot's initial weights
    lambda_max is 6-8 on this 5-8-8-8-3 network and the distance 0.05-0.10;
    with the weights at 0.6 times Glorot's scale lambda_max <= 2, and the bound
    must hold, over the whole gradient, for every seed.
    """
    net = PCNetwork([5, 8, 8, 8, 3], activation="tanh", variances=[1.0, 1.0, 1.0, 100.0], seed=seed)
    theta = net.theta.copy()
    for name, sl in net.parameter_blocks().items():
        if name.startswith("W"):
            theta[sl] *= 0.6
    net.theta = theta
    x, y = rng.uniform(-1, 1, size=(6, 5)), rng.uniform(-1, 1, size=(6, 3))
    largest = max(np.linalg.eigvalsh(g).max() for g in output_jacobian_gram(net, x))
    assert largest <= 2.5, largest
    est = pc_gradient(net, x, y, "strict", options=OPTIONS)
    assert est.inference.converged
    bp = net.backprop_gradient(x, y)
    error = np.linalg.norm(est.gradient - bp) / np.linalg.norm(bp)
    assert error <= 0.03, error
    # Not by luck: the same network at sigma_L^2 = 10 is ten times further off.
    net.variances = [1.0, 1.0, 1.0, 10.0]
    far = pc_gradient(net, x, y, "strict", options=OPTIONS)
    assert np.linalg.norm(far.gradient - bp) / np.linalg.norm(bp) > 3 * error
