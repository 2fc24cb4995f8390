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


# ----------------------------------------------------------------------------- Lee et al.'s options
def rate_local_loss(net, l, theta, x_below, rate_target):
    """1/2 mean_b ||f(f(x_{l-1}) W_l + b_l) - h^_l||^2 with W_l, b_l read from ``theta``."""
    blocks = net.parameter_blocks()
    names = net.group_names
    W = theta[blocks[f"W_{names[l - 1]}_{names[l]}"]].reshape(net.group_sizes[l - 1], net.group_sizes[l])
    b = theta[blocks[f"b_{names[l]}"]]
    f = activation_and_derivative(x_below, net.activation)[0]
    return 0.5 * np.mean(np.sum((activation_and_derivative(f @ W + b, net.activation)[0] - rate_target) ** 2, axis=1))


def rate_reconstruction(net, l, theta, noisy_rates):
    """1/2 mean_b ||g_l(f(F_l(h~))) - h~||^2, g_l(h) = f(h V_l + c_l), with V_l, c_l read from ``theta``."""
    blocks = net.parameter_blocks()
    names = net.group_names
    V = theta[blocks[f"V_{names[l]}_{names[l - 1]}"]].reshape(net.group_sizes[l], net.group_sizes[l - 1])
    c = theta[blocks[f"c_{names[l - 1]}"]]
    up = activation_and_derivative(noisy_rates @ net.weights(l) + net.biases(l), net.activation)[0]
    back = activation_and_derivative(up @ V + c, net.activation)[0]
    return 0.5 * np.mean(np.sum((back - noisy_rates) ** 2, axis=1))


def lee_net(rng, top_target="output", target_space="rate", sizes=(5, 7, 6, 4, 3)):
    net = DTPNetwork(list(sizes), activation="tanh", target_step=0.3, inverse_noise=0.2, seed=1, init="fan-in",
                     top_target=top_target, target_space=target_space)
    return net, rng.standard_normal((4, sizes[0])), rng.standard_normal((4, sizes[-1]))


@pytest.mark.parametrize("top_target", ["output", "gradient"])
def test_rate_space_forward_updates_are_the_rate_losses_gradients_over_the_target_step(rng, top_target):
    net, x, y = lee_net(rng, top_target)
    layers, targets = dtp_targets(net, x, y)
    grad = dtp_gradient(net, x, y).gradient
    blocks = net.parameter_blocks()
    names = net.group_names
    L = len(net.group_sizes) - 1
    for l in range(1, L + 1):
        def loss(theta, l=l):
            if l == L:  # the linear output keeps the squared error of its state
                return local_loss(net, l, theta, layers[l - 1], targets[l]) / net.target_step
            return rate_local_loss(net, l, theta, layers[l - 1], targets[l]) / net.target_step
        for name in (f"W_{names[l - 1]}_{names[l]}", f"b_{names[l]}"):
            np.testing.assert_allclose(grad[blocks[name]], central_differences(loss, net.theta, blocks[name]),
                                       atol=1e-8)


def test_rate_space_targets_are_the_difference_correction_on_rates_through_f_of_the_inverse(rng):
    net, x, y = lee_net(rng)
    layers, targets = dtp_targets(net, x, y)
    f = lambda v: activation_and_derivative(v, "tanh")[0]  # noqa: E731
    L = len(net.group_sizes) - 1
    for l in range(L, 1, -1):
        above, now = (f(targets[l]) if l == L else targets[l]), f(layers[l])
        g = lambda h, l=l: f(h @ net.inverse_weights(l) + net.inverse_biases(l))  # noqa: E731
        np.testing.assert_allclose(targets[l - 1], f(layers[l - 1]) + g(above) - g(now), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("target_space", ["state", "rate"])
def test_a_gradient_top_target_gives_the_top_two_layers_backprops_update_and_leaves_g_top_untrained(
        rng, target_space):
    net, x, y = lee_net(rng, "gradient", target_space)
    est = dtp_gradient(net, x, y, rng=np.random.default_rng(5)).gradient
    bp = net.backprop_gradient(x, y)
    blocks = net.parameter_blocks()
    names = net.group_names
    L = len(net.group_sizes) - 1
    for l in (L, L - 1):
        for name in (f"W_{names[l - 1]}_{names[l]}", f"b_{names[l]}"):
            np.testing.assert_allclose(est[blocks[name]], bp[blocks[name]], rtol=1e-10, atol=1e-13)
    below = blocks[f"W_{names[L - 3]}_{names[L - 2]}"]
    cos = est[below] @ bp[below] / np.linalg.norm(est[below]) / np.linalg.norm(bp[below])
    assert cos < 0.999  # below the top two layers the targets come through the learned inverses
    assert np.all(est[blocks[f"V_{names[L]}_{names[L - 1]}"]] == 0.0)
    assert np.all(est[blocks[f"c_{names[L - 1]}"]] == 0.0)
    # The other inverses learn from the same corruption draws as with the output's target.
    other = DTPNetwork(list(net.group_sizes), activation="tanh", target_step=0.3, inverse_noise=0.2,
                       theta=net.theta, target_space=target_space)
    ref = dtp_gradient(other, x, y, rng=np.random.default_rng(5)).gradient
    for l in range(2, L):
        for name in (f"V_{names[l]}_{names[l - 1]}", f"c_{names[l - 1]}"):
            np.testing.assert_array_equal(est[blocks[name]], ref[blocks[name]])


@pytest.mark.parametrize("top_target", ["output", "gradient"])
def test_rate_space_perfect_output_leaves_every_forward_update_zero(rng, top_target):
    net, x, _ = lee_net(rng, top_target)
    out = net.feedforward(x)[:, net.output_slice]
    grad = dtp_gradient(net, x, out).gradient
    np.testing.assert_allclose(grad[:net.n_forward], 0.0, atol=1e-15)


def test_rate_space_inverse_updates_are_the_rate_reconstruction_gradients_for_the_drawn_corruption(rng):
    net, x, y = lee_net(rng)
    grad = dtp_gradient(net, x, y, rng=np.random.default_rng(7)).gradient
    layers, _ = dtp_targets(net, x, y)
    draws = np.random.default_rng(7)
    blocks = net.parameter_blocks()
    names = net.group_names
    for l in range(2, len(net.group_sizes)):
        noisy = activation_and_derivative(layers[l - 1], "tanh")[0] \
            + net.inverse_noise * draws.standard_normal(layers[l - 1].shape)
        for name in (f"V_{names[l]}_{names[l - 1]}", f"c_{names[l - 1]}"):
            np.testing.assert_allclose(
                grad[blocks[name]],
                central_differences(lambda theta, l=l, noisy=noisy: rate_reconstruction(net, l, theta, noisy),
                                    net.theta, blocks[name]), atol=1e-8)


def test_lee_options_are_validated_and_described():
    with pytest.raises(ValidationError, match="top_target"):
        DTPNetwork([5, 7, 3], top_target="penultimate")
    with pytest.raises(ValidationError, match="target_space"):
        DTPNetwork([5, 7, 3], target_space="post")
    d = DTPNetwork([5, 7, 3], top_target="gradient", target_space="rate").describe()
    assert (d["top_target"], d["target_space"]) == ("gradient", "rate")


@pytest.mark.parametrize("top_target", ["output", "gradient"])
def test_rate_space_dtp_in_float32_stays_float32_and_agrees_with_float64(rng, top_target):
    net64, x, y = lee_net(rng, top_target)
    net32 = DTPNetwork(list(net64.group_sizes), activation="tanh", target_step=0.3, inverse_noise=0.2,
                       theta=net64.theta, dtype=np.float32, top_target=top_target, target_space="rate")
    g64 = dtp_gradient(net64, x, y, rng=np.random.default_rng(2)).gradient
    g32 = dtp_gradient(net32, x.astype(np.float32), y.astype(np.float32), rng=np.random.default_rng(2)).gradient
    assert g32.dtype == np.float32
    _, targets = dtp_targets(net32, x.astype(np.float32), y.astype(np.float32))
    assert all(t.dtype == np.float32 for t in targets[1:])
    np.testing.assert_allclose(g32, g64, rtol=0, atol=2e-5 * np.abs(g64).max())
