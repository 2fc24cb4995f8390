"""Why a random sign of beta lets hard-sigmoid outputs die (issue 15, sb-2h).

Scellier & Bengio's code draws the sign of beta per minibatch since March 2017; its first version
(2016) nudged with a positive beta only. With the authors' own code (ported to Python 3) from one
start, the random sign left two classes unpredicted through the last 250 minibatches of the first epoch of
784-500-500-10 while the positive sign predicted every class. The asymmetry is the clip at 0, checked here on a network
small enough to solve by hand.
"""
import numpy as np
import pytest

from dynsim.datasets.tasks import Task
from dynsim.learning.rules import gradient_estimate
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.training.loop import fit, predict
from dynsim.training.optimizers import SGD

STEPS = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=200, stop_at_steady_state=False)


def _network_with_fixed_output_fields(b_target, b_other):
    """3-4-2 hard-sigmoid network whose outputs are decoupled from the hidden layer: each output's field is
    its bias, so its free state is clip(bias, 0, 1) and, for beta > -1, its nudged state
    clip((bias + beta y) / (1 + beta)) (for beta <= -1 the nudged energy is concave along it: it goes to a bound)."""
    net = HopfieldNetwork.layered([3, 4, 2], seed=0)
    theta = net.theta.copy()
    blocks = net.parameter_blocks()
    theta[blocks["W_hidden_1_output"]] = 0.0
    theta[blocks["b_output"]] = [b_target, b_other]
    net.theta = theta
    return net, blocks["b_output"]


@pytest.mark.parametrize("beta", [0.75, 1.0, 2.0])  # 2: sb-2h's beta in dynsim's units
def test_only_a_positive_nudge_lifts_an_output_clipped_at_zero_on_its_own_class(beta):
    """Output 0 is the target, off (field -0.5 in (-beta, 0)); output 1 is not the target and on (0.6).

    Positive beta: output 0 rises to (beta - 0.5) / (1 + beta), so EP raises its bias by that over beta;
    output 1 falls to 0.6 / (1 + beta), so its bias is lowered. Negative beta: output 0 is pushed below 0
    and the clip holds it there, so its bias gets exactly no update; output 1 is pushed up (to
    0.6 / (1 - beta), clipped at 1) and its bias is lowered again. So with a random sign an off target
    unit is lifted on only half of its own class's images, and lowered on every other image where it is on.
    """
    net, b_out = _network_with_fixed_output_fields(-0.5, 0.6)
    x = np.array([[0.2, 0.7, 0.1]])
    y = np.array([[1.0, 0.0]])
    pos = gradient_estimate("ep-positive", net, x, y, beta, STEPS, STEPS)
    neg = gradient_estimate("ep-negative", net, x, y, beta, STEPS, STEPS)
    out = net.output_slice
    np.testing.assert_allclose(pos.free.state[0, out], [0.0, 0.6], atol=1e-12)
    lifted = (beta - 0.5) / (1 + beta)
    # The estimate is dL/db (the optimizer subtracts it): -(s_beta - s_free) / beta for a bias, and
    # (s_-beta - s_free) / beta for the negative nudge.
    np.testing.assert_allclose(pos.gradient[b_out], [-lifted / beta, (0.6 - 0.6 / (1 + beta)) / beta], atol=1e-9)
    pushed_up = min(0.6 / (1 - beta), 1.0) if beta < 1 else 1.0
    assert neg.gradient[b_out][0] == 0.0  # exactly: the clipped unit did not move in either phase
    np.testing.assert_allclose(neg.gradient[b_out][1], (pushed_up - 0.6) / beta, atol=1e-9)
    assert neg.gradient[b_out][1] > 0 and pos.gradient[b_out][1] > 0  # both signs lower the on non-target unit
    assert pos.gradient[b_out][0] < 0  # only the positive sign lifts the off target unit


def _sb2h_short_run(splits, rule):
    """sb-2h's network and protocol (784-500-500-10, Glorot, 100 free / 6 nudged projected Euler steps of 0.5,
    beta 2, rates 0.8 / 0.2 / 0.02, minibatch 20, persistent particles) on 2,000 images for 2 epochs, float32;
    the classes it never predicts on 500 validation images and its error there."""
    n = 2000
    train = Task("train", splits.train.x[:n].astype(np.float32), splits.train.labels[:n],
                 splits.train.targets[:n].astype(np.float32))
    held = Task("validation", splits.validation.x[:500].astype(np.float32), splits.validation.labels[:500],
                splits.validation.targets[:500].astype(np.float32))
    net = HopfieldNetwork.layered([784, 500, 500, 10], seed=1, dtype=np.float32)
    free = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=100, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=6, stop_at_steady_state=False)
    history = fit(net, {"train": train, "validation": held}, rule, SGD(net, [0.8, 0.2, 0.02]), 2, 20, beta=2.0,
                  options=free, nudged_options=nudged, persistent=True, seed=1, progress=False)
    predicted = predict(free_phase(net, held.x, options=free).state[:, net.output_slice])
    never = [c for c in range(10) if not np.any(predicted == c)]
    return never, history["validation_error"][-1]


def test_sb2h_with_a_random_sign_loses_its_classes_and_with_a_positive_beta_learns(mnist_splits):
    """The guard of issue 15's finding, on sb-2h's own network and protocol with either sign rule.

    The sign draws share the generator of the minibatch order, so the second epoch's order differs too.

    Measured (seed 1): the random sign predicted no class at all after 200 minibatches (validation error
    100 %, seeds 2 and 3: 8 and 9 classes never predicted), the positive sign 38 % with 2 classes not yet
    predicted (seeds 2 and 3: 54 % and 52 %). The whole-epoch runs behind the README go the same way.
    """
    never_random, error_random = _sb2h_short_run(mnist_splits, "ep-random")
    never_positive, error_positive = _sb2h_short_run(mnist_splits, "ep-positive")
    assert len(never_random) >= 6 and error_random > 0.8
    assert len(never_positive) <= 4 and error_positive < 0.6
