"""The dendritic error microcircuit: dynamics, the self-predicting state, and updates against backprop.

References: the leaky compartment equations written out in numpy here, the
closed-form steady state of the self-predicting network (the feedforward
pass), and backprop through that pass.
"""
import numpy as np
import pytest

from dynsim.learning.microcircuit_plasticity import microcircuit_gradient, microcircuit_updates
from dynsim.networks.microcircuit import DendriticMicrocircuit
from dynsim.networks.pc import activation_and_derivative
from dynsim.references import gradient_metrics
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import ValidationError

TIGHT = SettleOptions(atol=1e-12, rtol=1e-12)


def phi(v, activation):
    return v if activation == "linear" else activation_and_derivative(v, activation)[0]


def numpy_field(net, x, s, beta=0.0, target=None):
    """du/dt of every group from the compartment equations, written out layer by layer."""
    c = net.conductances
    N = net.n_layers
    groups = net.split_state(s)
    pyr = {k: groups["output" if k == N else f"pyr_{k}"] for k in range(1, N + 1)}
    inter = {k: groups[f"int_{k}"] for k in range(1, N)}
    act = {k: net.activation if k < N else net.output_activation for k in range(0, N + 1)}
    r = {0: phi(x, net.input_activation), **{k: phi(pyr[k], act[k]) for k in pyr}}
    rI = {k: phi(inter[k], act[k + 1]) for k in inter}
    out = {}
    for k in range(1, N + 1):
        vb = r[k - 1] @ net.block(f"W_{k}")
        u = pyr[k]
        if k < N:
            va = r[k + 1] @ net.block(f"B_{k}") + rI[k] @ net.block(f"PI_{k}")
            out[f"pyr_{k}"] = -c["g_lk"] * u + c["g_B"] * (vb - u) + c["g_A"] * (va - u)
            vi = r[k] @ net.block(f"IP_{k}")
            out[f"int_{k}"] = -c["g_lk"] * inter[k] + c["g_D"] * (vi - inter[k]) + c["g_som"] * (pyr[k + 1] - inter[k])
        else:
            out["output"] = -c["g_lk"] * u + c["g_B"] * (vb - u) + (0.0 if target is None else beta * (target - u))
    return np.concatenate([out[name] for name in net.group_names[1:]], axis=1)


def data(net, rng, batch=6):
    return rng.uniform(0, 1, (batch, net.n_input)), rng.uniform(-1, 1, (batch, net.n_output))


@pytest.mark.parametrize("activation, output", [("logistic", "linear"), ("tanh", "logistic"), ("gelu", "linear")])
def test_vector_field_is_the_compartment_equations(activation, output, rng):
    net = DendriticMicrocircuit([4, 6, 5, 3], activation=activation, output_activation=output, seed=1,
                                conductances={"g_A": 0.6, "g_som": 0.3}, input_activation=activation)
    x, y = data(net, rng)
    s = rng.standard_normal((x.shape[0], net.n_free))
    np.testing.assert_allclose(net.dsdt(x, s, 0.7, y), numpy_field(net, x, s, 0.7, y), atol=1e-13)
    held = net.dsdt(x, s, 0.7, y, clamp_output=True)
    np.testing.assert_array_equal(held[:, net.output_slice], 0.0)


def test_the_self_predicting_state_settles_to_the_feedforward_pass_with_silent_apical_dendrites(rng):
    net = DendriticMicrocircuit([5, 7, 6, 3], seed=2).self_predicting()
    x, y = data(net, rng)
    free = settle(net, x, target=y, options=TIGHT)
    assert free.integration.status_name == "converged"
    np.testing.assert_allclose(free.state, net.feedforward(x), atol=1e-10)
    assert free.energy.max() < 1e-20  # 1/2 sum ||v_A||^2
    assert np.abs(microcircuit_updates(net, x, free.state)).max() < 1e-10  # nothing to learn without teaching


def test_learning_the_interneurons_first_silences_the_apical_dendrites(rng):
    """From random IP and PI, the interneuron plasticity alone (no teaching) cancels the apical potentials.

    Tolerance: the mean apical mismatch 1/2 ||v_A||^2 of held-out inputs falls below 1e-4 of its start.
    """
    net = DendriticMicrocircuit([4, 6, 5, 3], seed=0)
    options = SettleOptions(integrator="euler", dt=0.2, max_steps=2000, atol=1e-8, rtol=1e-8)
    blocks = net.parameter_blocks()
    interneurons = [blocks[name] for name in blocks if name.startswith(("IP_", "PI_"))]
    held_out = rng.uniform(0, 1, (64, 4))
    before = settle(net, held_out, options=options).energy.mean()
    for _ in range(400):
        x = rng.uniform(0, 1, (16, 4))
        update = microcircuit_updates(net, x, settle(net, x, options=options).state)
        for block in interneurons:
            net.theta[block] += 0.5 * update[block]
    after = settle(net, held_out, options=options)
    assert after.energy.mean() < 1e-4 * before


def test_updates_approach_backprop_as_the_output_nudging_weakens(rng):
    """Self-predicting state, top-down weights W^T, linear output: cosine -> 1 in every layer, output error O(beta)."""
    net = DendriticMicrocircuit([5, 7, 6, 3], top_down="transpose", seed=3).self_predicting()
    x, y = data(net, rng)
    reference = net.backprop_gradient(x, y)
    cosines, errors = [], []
    for beta in (0.5, 0.05, 0.005):
        metrics = gradient_metrics(net, microcircuit_gradient(net, x, y, beta=beta, options=TIGHT).gradient,
                                   reference)
        cosines.append([metrics[f"W_{k}"]["cosine"] for k in (1, 2, 3)])
        errors.append(metrics["W_3"]["relative_error"])
    cosines = np.array(cosines)
    assert np.all(np.diff(cosines, axis=0) > 0)  # closer in every layer as beta weakens
    assert np.all(cosines[-1] > 1 - 1e-6)
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20  # linear in beta


def test_random_top_down_weights_give_feedback_alignment_like_updates(rng):
    """With fixed random B the hidden updates are not backprop's (the forward weights must align to B first)."""
    net = DendriticMicrocircuit([5, 7, 6, 3], top_down="random", seed=4).self_predicting()
    x, y = data(net, rng)
    metrics = gradient_metrics(net, microcircuit_gradient(net, x, y, beta=0.01, options=TIGHT).gradient,
                               net.backprop_gradient(x, y))
    assert metrics["W_3"]["cosine"] > 1 - 1e-3  # the output layer needs no feedback
    assert metrics["W_2"]["cosine"] < 0.9


def test_subtracting_the_free_state_removes_the_mismatch_of_lagging_interneurons(rng):
    """Interneurons that no longer predict the layer above (W_3 moved, IP_2 did not) leave apical potentials at the
    free state; the paper's rule carries them into the hidden updates, the nudged-minus-free contrast does not."""
    net = DendriticMicrocircuit([5, 7, 6, 3], top_down="transpose", seed=3).self_predicting()
    net.block("W_3")[...] += 0.1 * rng.standard_normal(net.block("W_3").shape)
    net.block("B_2")[...] = net.block("W_3").T
    net.block("PI_2")[...] = -net.block("B_2")
    x, y = data(net, rng)
    reference = net.backprop_gradient(x, y)
    paper = gradient_metrics(net, microcircuit_gradient(net, x, y, beta=0.01, options=TIGHT).gradient, reference)
    contrast = gradient_metrics(net, microcircuit_gradient(net, x, y, beta=0.01, options=TIGHT,
                                                           subtract_free=True).gradient, reference)
    assert max(paper["W_1"]["cosine"], paper["W_2"]["cosine"]) < 0.5
    assert min(contrast[f"W_{k}"]["cosine"] for k in (1, 2, 3)) > 0.999
    assert paper["W_3"]["cosine"] > 0.999  # the output layer has no apical dendrite to carry the mismatch


def test_bad_arguments_are_refused_with_the_argument_named(rng):
    with pytest.raises(ValidationError, match="sizes must list >= 3 layer sizes"):
        DendriticMicrocircuit([4, 3])
    with pytest.raises(ValidationError, match=r"conductances: unknown key 'g_X'"):
        DendriticMicrocircuit([4, 5, 3], conductances={"g_X": 1.0})
    with pytest.raises(ValidationError, match=r"conductances\['g_A'\] must be"):
        DendriticMicrocircuit([4, 5, 3], conductances={"g_A": 0.0})
    with pytest.raises(ValidationError, match="top_down must be 'random' or 'transpose'"):
        DendriticMicrocircuit([4, 5, 3], top_down="learned")
    with pytest.raises(ValidationError, match="activation must be one of"):
        DendriticMicrocircuit([4, 5, 3], activation="softsign")
    net = DendriticMicrocircuit([4, 5, 3], seed=0)
    x, y = data(net, rng)
    with pytest.raises(ValidationError, match="beta must be"):
        microcircuit_gradient(net, x, y, beta=0.0)
    with pytest.raises(ValidationError, match="network must be a DendriticMicrocircuit"):
        microcircuit_updates(object(), x, np.zeros((6, net.n_free)))
    with pytest.raises(ValidationError, match="unknown block"):
        net.block("W_9")


def test_teacher_student_scenario_runs_end_to_end(tmp_path, cli_plot):
    """The scenario in a subprocess: interneurons first, then learning beside backprop; log, tables, figure."""
    import subprocess
    import sys
    from pathlib import Path

    from dynsim.io.log import read_log

    script = Path(__file__).resolve().parents[1] / "scenarios" / "microcircuit_regression.py"
    out = tmp_path / "mc"
    args = [sys.executable, str(script), "--sizes", "6-8-3", "--pretrain-steps", "300", "--epochs", "3",
            "--train-size", "100", "--test-size", "40", "--out", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with read_log(out / "log.h5") as log:
        pre, epochs = log.table("pretraining"), log.table("epochs")
        assert pre["apical"][-1] < 1e-2 * pre["apical"][0]  # the interneurons silenced the apical dendrites
        assert list(epochs["epoch"]) == [0, 1, 2, 3]
        # Both learn the teacher from the same start: nearly the same loss before training (the learned
        # interneurons leave a small apical potential, which moves the output off the feedforward pass), far
        # lower after.
        assert epochs["microcircuit_test_loss"][0] == pytest.approx(epochs["backprop_test_loss"][0], rel=1e-2)
        assert epochs["microcircuit_test_loss"][-1] < 0.1 * epochs["microcircuit_test_loss"][0]
        assert epochs["backprop_test_loss"][-1] < 0.1 * epochs["backprop_test_loss"][0]
        # In the learned self-predicting state the output layer's update is backprop's direction. (Later the
        # interneurons lag the forward weights, the apical dendrites are no longer silent, and the microcircuit's
        # function drifts from the feedforward pass that backprop's gradient is taken through.)
        assert epochs["angle_W_2"][0] < 5.0
        assert log.n_relaxations == 1
    assert (out / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for kind in ("settling", "training", "gradients"):  # the command line reads the log: trajectories, curves, angles
        cli_plot(out / "log.h5", kind, tmp_path / f"{kind}.png")
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_fit_trains_the_microcircuit_by_rule_name_and_resumes_it_bit_for_bit(tmp_path, rng):
    """'microcircuit' and 'microcircuit-contrast' through gradient_estimate, so fit, checkpoints and resume serve it."""
    from dynsim.datasets.tasks import Task
    from dynsim.learning import gradient_estimate
    from dynsim.training.loop import fit
    from dynsim.training.optimizers import Adam

    teacher = np.random.default_rng(0).standard_normal((6, 3))
    x = np.random.default_rng(1).uniform(-1, 1, (96, 6))  # three classes of 34, 26 and 36 inputs
    labels = np.argmax(x @ teacher, axis=1)
    task = Task("teacher", x, labels, np.eye(3)[labels])
    data = {"train": task, "test": task}
    options = SettleOptions(integrator="euler", dt=0.2, max_steps=60, stop_at_steady_state=False)

    def train(epochs, checkpoint, resume=False):
        net = DendriticMicrocircuit([6, 12, 3], top_down="transpose", seed=5).self_predicting()
        history = fit(net, data, "microcircuit-contrast", Adam(net, 1e-2), epochs, 16, beta=0.1, options=options,
                      nudged_options=options, seed=2, checkpoint=checkpoint, resume=resume, progress=False)
        return net, history

    whole, history = train(6, tmp_path / "whole.h5")
    assert history["test_loss"][-1] < 0.8 * history["test_loss"][0]
    assert history["test_error"][-1] < history["test_error"][0] - 0.2
    train(2, tmp_path / "split.h5")
    split, _ = train(6, tmp_path / "split.h5", resume=True)
    np.testing.assert_array_equal(split.theta, whole.theta)
    net = DendriticMicrocircuit([6, 12, 3], seed=0)
    paper = gradient_estimate("microcircuit", net, x[:8], np.eye(3)[labels[:8]], beta=0.1, options=options)
    assert paper.rule == "microcircuit" and "nudged" in paper.phases
    with pytest.raises(ValidationError, match="rule for a dendritic microcircuit must be one of"):
        gradient_estimate("ep-centered", net, x[:8], np.eye(3)[labels[:8]])
