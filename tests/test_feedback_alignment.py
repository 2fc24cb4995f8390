"""Feedback alignment and direct feedback alignment against backprop and a plain numpy version written here."""
import numpy as np
import pytest

from dynsim.datasets.tasks import Task
from dynsim.learning import gradient_estimate
from dynsim.learning.feedback_alignment import feedback_alignment_gradient, feedback_matrices
from dynsim.networks import HopfieldNetwork, PCNetwork
from dynsim.references import alignment_angles
from dynsim.training import SGD, fit
from dynsim.validation import ValidationError

SIZES = [5, 7, 6, 4, 3]


def _problem(activation="tanh", dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    net = PCNetwork(SIZES, activation=activation, seed=seed, dtype=dtype)
    x = rng.uniform(size=(9, SIZES[0]))
    target = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], 9)]
    return net, x, target


def _numpy_rule(net, x, target, feedback, direct):
    """FA / DFA written out layer by layer: forward pass, then the error sent down through the feedback."""
    f = {"tanh": np.tanh, "logistic": lambda a: 1 / (1 + np.exp(-a))}[net.activation]
    df = {"tanh": lambda a: 1 - np.tanh(a) ** 2,
          "logistic": lambda a: f(a) * (1 - f(a))}[net.activation]
    n_layers = len(SIZES) - 1
    xs = [x]
    for l in range(1, n_layers + 1):
        xs.append(f(xs[-1]) @ net.weights(l) + net.biases(l))
    deltas = {n_layers: (xs[-1] - target) / x.shape[0]}
    for l in range(n_layers - 1, 0, -1):
        source = deltas[n_layers] if direct else deltas[l + 1]
        deltas[l] = (source @ feedback[l - 1]) * df(xs[l])
    weights = [f(xs[l - 1]).T @ deltas[l] for l in range(1, n_layers + 1)]
    biases = [deltas[l].sum(0) for l in range(1, n_layers + 1)]
    return np.concatenate([w.ravel() for w in weights] + biases)


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_feedback_through_the_transposed_forward_weights_is_backprop(activation):
    net, x, target = _problem(activation)
    feedback = feedback_matrices(net, "fa", seed=3)
    feedback[:] = [net.weights(l + 1).T.copy() for l in range(1, len(SIZES) - 1)]  # weight transport restored
    est = feedback_alignment_gradient(net, x, target, "fa", seed=3)
    np.testing.assert_allclose(est.gradient, net.backprop_gradient(x, target), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["fa", "dfa"])
def test_the_rules_match_a_plain_numpy_version(kind):
    net, x, target = _problem()
    est = gradient_estimate(kind, net, x, target, feedback_seed=5)
    expected = _numpy_rule(net, x, target, feedback_matrices(net, kind, 5), direct=kind == "dfa")
    np.testing.assert_allclose(est.gradient, expected, rtol=1e-12, atol=1e-15)
    assert est.rule == kind
    np.testing.assert_allclose(est.free.state, net.feedforward(x), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["fa", "dfa"])
def test_only_the_hidden_layers_updates_differ_from_backprop(kind):
    net, x, target = _problem()
    angles = alignment_angles(net, gradient_estimate(kind, net, x, target).gradient, net.backprop_gradient(x, target))
    output_blocks = [name for name in angles if name.endswith("_output")]
    assert output_blocks and all(angles[name] < 1e-5 for name in output_blocks)
    assert all(angles[name] > 1.0 for name in angles if name != "all" and name not in output_blocks)


def test_feedback_shapes_scale_and_seed():
    net, _, _ = _problem()
    fa, dfa = feedback_matrices(net, "fa", 0), feedback_matrices(net, "dfa", 0)
    assert [b.shape for b in fa] == [(6, 7), (4, 6), (3, 4)]
    assert [d.shape for d in dfa] == [(3, 7), (3, 6), (3, 4)]
    for b in fa + dfa:
        bound = np.sqrt(6.0 / sum(b.shape))
        assert np.abs(b).max() <= bound and np.abs(b).max() > 0.5 * bound
    assert feedback_matrices(net, "fa", 0) is fa  # drawn once per network, kind and seed
    other = PCNetwork(SIZES, activation="tanh", seed=1)
    np.testing.assert_array_equal(feedback_matrices(other, "fa", 0)[0], fa[0])  # the seed alone decides
    assert not np.allclose(feedback_matrices(net, "fa", 1)[0], fa[0])


def test_float32_networks_get_float32_updates_close_to_float64():
    net64, x, target = _problem()
    net32 = PCNetwork(SIZES, activation="tanh", theta=net64.theta, dtype=np.float32)
    g64 = gradient_estimate("fa", net64, x, target).gradient
    g32 = gradient_estimate("fa", net32, x.astype(np.float32), target.astype(np.float32)).gradient
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["fa", "dfa"])
def test_on_mnist_the_hidden_updates_come_into_alignment_with_backprop_as_the_network_learns(kind, mnist_splits):
    # Lillicrap et al. 2016, Fig. 2: at the start the random feedback gives hidden-layer updates at about 90 degrees
    # to backprop's; learning brings the forward weights into line with the feedback, and the updates within 90.
    train = Task("train", mnist_splits.train.x[:3000], mnist_splits.train.labels[:3000],
                 mnist_splits.train.targets[:3000])
    validation = Task("validation", mnist_splits.validation.x[:1000], mnist_splits.validation.labels[:1000],
                      mnist_splits.validation.targets[:1000])
    probe_x, probe_t = validation.x[:500], validation.targets[:500]
    net = PCNetwork([784, 64, 64, 10], activation="tanh", seed=0, init="fan-in")

    def hidden_angles():
        angles = alignment_angles(net, gradient_estimate(kind, net, probe_x, probe_t).gradient,
                                  net.backprop_gradient(probe_x, probe_t))
        return np.array([angles["W_input_layer_1"], angles["W_layer_1_layer_2"]])

    before = hidden_angles()
    history = fit(net, {"train": train, "validation": validation}, kind, SGD(net, lr=0.01, momentum=0.9), 3, 32,
                  progress=False)
    after = hidden_angles()
    assert np.all(np.abs(before - 90.0) < 15.0), before
    assert np.all(after < 80.0) and np.mean(before - after) > 10.0, (before, after)
    assert history["validation_error"][0] > 0.8 and history["validation_error"][-1] < 0.2


@pytest.mark.parametrize("call, match", [
    (lambda net, x, t: feedback_alignment_gradient(net, x, t, "kp"), r"kind must be one of \['fa', 'dfa'\]"),
    (lambda net, x, t: feedback_alignment_gradient(net, x, t, "fa", seed=-1), r"seed must be an integer >= 0"),
    (lambda net, x, t: feedback_alignment_gradient(net, x, t, "fa", seed=1.5), r"seed must be an integer >= 0"),
    (lambda net, x, t: feedback_alignment_gradient(net, x, t[:, :2]), r"target must have shape"),
    (lambda net, x, t: feedback_alignment_gradient(HopfieldNetwork.layered(SIZES, seed=0), x, t),
     r"network must be a PCNetwork"),
    (lambda net, x, t: gradient_estimate("fa", net, x, t, feedback_seed=-2), r"seed must be an integer >= 0"),
])
def test_bad_arguments_are_refused_with_their_name(call, match):
    net, x, target = _problem()
    with pytest.raises(ValidationError, match=match):
        call(net, x, target)
