"""Difference target propagation: targets, local updates and inverse learning against independent references.

The references are central differences of the losses DTP's updates descend
(each layer's local loss with its input and target held; each inverse's
reconstruction loss for a fixed corruption), the exact backprop gradient
for the output layer, and the defining property of the difference
correction.
"""
import numpy as np
import pytest

from dynsim.learning import dtp_gradient, dtp_targets, gradient_estimate
from dynsim.networks import DTPNetwork, PCNetwork
from dynsim.networks.pc import activation_and_derivative
from dynsim.validation import ValidationError


def net_and_data(rng, activation="tanh", sizes=(5, 7, 6, 3)):
    net = DTPNetwork(list(sizes), activation=activation, target_step=0.3, inverse_noise=0.2, seed=1, init="fan-in")
    x = rng.standard_normal((4, sizes[0]))
    y = rng.standard_normal((4, sizes[-1]))
    return net, x, y


def local_loss(net, l, theta, x_below, target):
    """1/2 mean_b ||f(x_{l-1}) W_l + b_l - x^_l||^2 with W_l, b_l read from ``theta``."""
    blocks = net.parameter_blocks()
    names = net.group_names
    W = theta[blocks[f"W_{names[l - 1]}_{names[l]}"]].reshape(net.group_sizes[l - 1], net.group_sizes[l])
    b = theta[blocks[f"b_{names[l]}"]]
    f = activation_and_derivative(x_below, net.activation)[0]
    return 0.5 * np.mean(np.sum((f @ W + b - target) ** 2, axis=1))


def reconstruction(net, l, theta, noisy):
    """1/2 mean_b ||G_l(F_l(x~)) - x~||^2 with V_l, c_l read from ``theta`` (the forward layer as it is)."""
    blocks = net.parameter_blocks()
    names = net.group_names
    V = theta[blocks[f"V_{names[l]}_{names[l - 1]}"]].reshape(net.group_sizes[l], net.group_sizes[l - 1])
    c = theta[blocks[f"c_{names[l - 1]}"]]
    up = activation_and_derivative(noisy, net.activation)[0] @ net.weights(l) + net.biases(l)
    back = activation_and_derivative(up, net.activation)[0] @ V + c
    return 0.5 * np.mean(np.sum((back - noisy) ** 2, axis=1))


def central_differences(fun, theta, block, h=1e-6):
    out = np.empty(block.stop - block.start)
    for k, i in enumerate(range(block.start, block.stop)):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        out[k] = (fun(tp) - fun(tm)) / (2 * h)
    return out


@pytest.mark.parametrize("activation", ["tanh", "logistic", "gelu"])
def test_forward_updates_are_the_local_losses_gradients_over_the_target_step(activation, rng):
    net, x, y = net_and_data(rng, activation)
    layers, targets = dtp_targets(net, x, y)
    grad = dtp_gradient(net, x, y).gradient
    blocks = net.parameter_blocks()
    names = net.group_names
    for l in range(1, len(net.group_sizes)):
        def loss(theta, l=l):
            return local_loss(net, l, theta, layers[l - 1], targets[l]) / net.target_step
        for name in (f"W_{names[l - 1]}_{names[l]}", f"b_{names[l]}"):
            np.testing.assert_allclose(grad[blocks[name]], central_differences(loss, net.theta, blocks[name]),
                                       atol=1e-8)


def test_the_output_layers_update_is_backprops(rng):
    net, x, y = net_and_data(rng)
    grad, bp = dtp_gradient(net, x, y).gradient, net.backprop_gradient(x, y)
    for name in ("W_layer_2_output", "b_output"):
        block = net.parameter_blocks()[name]
        np.testing.assert_allclose(grad[block], bp[block], rtol=1e-12, atol=1e-15)


def test_the_difference_correction_puts_a_layer_on_its_activity_when_the_layer_above_is_on_target(rng):
    """x^_{l-1} = x_{l-1} + G(x^_l) - G(x_l): a perfect output leaves every update zero, whatever the inverses."""
    net, x, _ = net_and_data(rng)
    out = net.feedforward(x)[:, net.output_slice]
    layers, targets = dtp_targets(net, x, out)
    for l in range(1, len(layers)):
        np.testing.assert_array_equal(targets[l], layers[l])
    grad = dtp_gradient(net, x, out).gradient
    forward = slice(0, net.n_forward)
    assert np.all(grad[forward] == 0.0)
    assert np.any(grad[net.n_forward:] != 0.0)  # the inverses still learn


def test_inverse_updates_are_the_reconstruction_losses_gradients_for_the_drawn_corruption(rng):
    net, x, y = net_and_data(rng)
    grad = dtp_gradient(net, x, y, rng=np.random.default_rng(7)).gradient
    layers, _ = dtp_targets(net, x, y)
    draws = np.random.default_rng(7)  # the same stream: one corruption per inverse, lowest first
    blocks = net.parameter_blocks()
    names = net.group_names
    for l in range(2, len(net.group_sizes)):
        noisy = layers[l - 1] + net.inverse_noise * draws.standard_normal(layers[l - 1].shape)
        for name in (f"V_{names[l]}_{names[l - 1]}", f"c_{names[l - 1]}"):
            np.testing.assert_allclose(
                grad[blocks[name]],
                central_differences(lambda theta, l=l, noisy=noisy: reconstruction(net, l, theta, noisy), net.theta,
                                    blocks[name]), atol=1e-8)


def test_learning_the_inverses_brings_the_hidden_updates_near_backprop_for_small_steps(rng):
    """With G_l trained to invert a near-linear layer, DTP's hidden updates come within 20 degrees of backprop's.

    Small weights keep tanh near its linear range, where an inverse of the same form can be exact up to the
    curvature; the updates' direction then tends to the Gauss-Newton one (Meulemans et al. 2020), which for
    these square, well-conditioned layers lies close to backprop's.
    """
    sizes = [6, 6, 6, 6]
    net = DTPNetwork(sizes, target_step=1e-3, inverse_noise=0.3, seed=3)
    theta = net.theta.copy()
    for l in range(1, 4):
        block = net.parameter_blocks()[f"W_{net.group_names[l - 1]}_{net.group_names[l]}"]
        q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
        theta[block] = (0.3 * q).ravel()  # orthogonal, small: well conditioned and near-linear
    net.theta = theta
    x, y = 0.3 * rng.standard_normal((64, 6)), 0.3 * rng.standard_normal((64, 6))
    before = [net.reconstruction_loss(l, net.feedforward(x)[:, :6] if l == 2 else
                                      net.split_state(net.feedforward(x))[net.group_names[l - 1]]) for l in (2, 3)]
    inverse = slice(net.n_forward, net.n_params)
    draws = np.random.default_rng(0)
    for _ in range(3000):  # plain gradient descent on the inverses alone
        g = dtp_gradient(net, x, y, rng=draws).gradient
        net.theta[inverse] -= 0.5 * g[inverse]
    hidden = net.split_state(net.feedforward(x))
    after = [net.reconstruction_loss(l, hidden[net.group_names[l - 1]]) for l in (2, 3)]
    assert all(a < b / 20 for a, b in zip(after, before))
    grad, bp = dtp_gradient(net, x, y).gradient, net.backprop_gradient(x, y)
    blocks = net.parameter_blocks()
    for name in ("W_input_layer_1", "W_layer_1_layer_2"):
        g, r = grad[blocks[name]], bp[blocks[name]]
        angle = np.degrees(np.arccos(g @ r / np.linalg.norm(g) / np.linalg.norm(r)))
        assert angle < 20.0, (name, angle)


def test_forward_parameters_start_where_the_pc_network_of_the_same_seed_starts():
    for init in ("glorot", "fan-in"):
        dtp = DTPNetwork([5, 4, 3], seed=11, init=init)
        pc = PCNetwork([5, 4, 3], seed=11, init=init)
        np.testing.assert_array_equal(dtp.theta[:dtp.n_forward], pc.theta)
        assert dtp.n_params == pc.n_params + 3 * 4 + 4
        assert list(dtp.parameter_blocks())[-2:] == ["V_output_layer_1", "c_layer_1"]


def test_rules_and_networks_that_do_not_fit_are_refused(rng):
    net, x, y = net_and_data(rng)
    for rule in ("pc-strict", "fa", "pc-zil"):
        with pytest.raises(ValidationError, match=f"rule '{rule}' does not train a DTPNetwork"):
            gradient_estimate(rule, net, x, y)
    np.testing.assert_array_equal(gradient_estimate("bp", net, x, y).gradient[net.n_forward:], 0.0)
    with pytest.raises(ValidationError, match="rule 'dtp' needs a DTPNetwork"):
        gradient_estimate("dtp", PCNetwork([5, 7, 6, 3], seed=0), x, y)
    with pytest.raises(ValidationError, match="network must be a DTPNetwork"):
        dtp_gradient(PCNetwork([5, 7, 6, 3], seed=0), x, y)
    with pytest.raises(ValidationError, match="target_step must be"):
        DTPNetwork([5, 7, 3], target_step=0.0)
    with pytest.raises(ValidationError, match="inverse_noise must be"):
        DTPNetwork([5, 7, 3], inverse_noise=-1.0)
    with pytest.raises(ValidationError, match="at least one hidden layer"):
        DTPNetwork([5, 3])
    with pytest.raises(ValidationError, match=r"l must be a layer with an inverse, an integer in \[2, 3\]"):
        net.inverse(1, np.zeros((2, 7)))
    with pytest.raises(ValidationError, match="rng must be a numpy.random.Generator"):
        dtp_gradient(net, x, y, rng=3)
