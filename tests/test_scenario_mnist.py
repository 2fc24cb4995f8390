"""The MNIST scenarios end to end on the real data (skipped when shared/data is absent): smoke runs.

A short run of each configuration in a subprocess: the log's epoch table,
the checkpoint, the figures, and an interrupted-then-resumed run that ends
with exactly the weights of an uninterrupted one.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.io.log import read_log
from dynsim.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMOKE = ("--train-size", "120", "--eval-size", "60", "--record-every", "1", "--quiet")

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared/data/mnist is not present")


def run(script, *args):
    env = dict(os.environ, DYNSIM_DATA=str(SHARED_DATA))
    return subprocess.run([sys.executable, str(ROOT / "scenarios" / script), *args, "--no-download"],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("preset", ["sb-1h", "sb-2h", "sb-3h", "centered-1h", "lab-conv", "dhn-2h"])
def test_each_ep_preset_runs(tmp_path, preset):
    # The deep presets' iteration counts are cut so that the smoke run stays short; the structure is the preset's.
    cut = ("--free-steps", "20", "--nudged-steps", "4") if preset in ("sb-2h", "sb-3h", "dhn-2h") else ()
    cut = ("--free-steps", "4", "--nudged-steps", "2") if preset == "lab-conv" else cut
    out = tmp_path / preset
    proc = run("mnist_ep.py", "--preset", preset, "--epochs", "1", "--out", str(out), *cut, *SMOKE)
    assert proc.returncode == 0, proc.stderr
    assert "paper:" in proc.stdout and "final (epoch 1)" in proc.stdout
    with read_log(out / "log.h5") as log:
        table = log.table("epochs")
        assert table["epoch"].tolist() == [0, 1]
        assert np.all((table["test_error"] >= 0) & (table["test_error"] <= 1))
        assert log.n_relaxations == 2  # the recorded test images at epochs 0 and 1
        # Evaluated as the training's free phase, and the log says so; no training-split evaluation at epoch 0.
        assert log.config["evaluation"] == "training"
        assert f"{log.config['free_steps']} steps" in log.config["evaluation_method"]
        assert np.isnan(table["train_error"][0]) and np.isfinite(table["train_error"][1])
        # The deep sb presets nudge with +beta (the random sign lets their outputs die: tests/test_sign_of_beta.py).
        assert log.config["rule"] == {"sb-1h": "ep-random", "sb-2h": "ep-positive", "sb-3h": "ep-positive"}.get(
            preset, "ep-centered")
        if preset.startswith("dhn"):
            # Scellier 2024's linear output group, end to end: in the log's network and its recorded states.
            assert log.network["activation"] == ["hard_sigmoid", "hard_sigmoid", "hard_sigmoid", "linear"]
            assert log.config["output_activation"] == "linear"
    for png in ("errors.png", "settling_first.png", "settling_last.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC


def test_laborieux_mlp_preset_learns_from_its_first_minibatches(tmp_path):
    # At Laborieux et al.'s initial scale (+-1/sqrt(fan-in)) centered EP learns at once: 16 % test error after 2,000
    # images (measured); at Glorot's scale, twice as large, the same run ends at 89-94 % (seeds 0, 1), near chance.
    out = tmp_path / "lab-mlp"
    proc = run("mnist_ep.py", "--preset", "lab-mlp", "--epochs", "1", "--train-size", "2000", "--eval-size", "500",
               "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "no published error" in proc.stdout
    with read_log(out / "log.h5") as log:
        table = log.table("epochs")
        assert log.config["init_gain"] == 1.0 and log.config["free_steps"] == 30
    assert table["test_error"][0] > 0.8 and table["test_error"][1] < 0.3
    assert (out / "errors.png").read_bytes()[:8] == PNG_MAGIC


def test_the_conv_preset_starts_where_ep_gets_a_signal(mnist_splits):
    # At the default initial scale the conv net's outputs start saturated at 1, every one tied, and EP's nudged
    # states equal the free ones: no update, ever. The preset's half scale leaves the outputs inside their range.
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_ep_for_test", ROOT / "scenarios" / "mnist_ep.py")
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    from dynsim.relax import SettleOptions, free_phase

    x = mnist_splits.train.x[:100].astype(np.float32)
    tied = {}
    for gain in (None, 0.5):
        args = scenario.build_parser().parse_args(["--preset", "lab-conv", "--dtype", "float32"])
        scenario.resolve(args)
        args.init_gain = gain
        net = scenario.build_network(args)
        out = free_phase(net, x, options=SettleOptions(integrator="block", max_steps=30,
                                                       stop_at_steady_state=False)).state[:, net.output_slice]
        tied[gain] = float(np.mean((out == out.max(axis=1, keepdims=True)).sum(axis=1) > 1))
    assert args.init_gain == 0.5 == scenario.PRESETS["lab-conv"]["init_gain"]
    assert tied[None] > 0.9 and tied[0.5] < 0.1, tied


def test_steady_state_evaluation_is_an_option(tmp_path):
    out = tmp_path / "steady"
    proc = run("mnist_ep.py", "--epochs", "1", "--evaluation", "steady-state", "--eval-steps", "60",
               "--eval-train-at-start", "--out", str(out), *SMOKE)
    assert proc.returncode == 0, proc.stderr
    with read_log(out / "log.h5") as log:
        assert "to the steady state (atol 1e-05, rtol 1e-05) in at most 60 steps of 0.5, from zero" in \
            log.config["evaluation_method"]
        assert np.isfinite(log.table("epochs")["train_error"]).all()
    refused = run("mnist_ep.py", "--evaluation", "steady-state", "--eval-persistent", "--out", str(tmp_path / "x"),
                  *SMOKE)
    assert refused.returncode != 0 and "--eval-persistent goes with --evaluation training" in refused.stderr


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run("mnist_ep.py", "--epochs", "2", "--out", str(whole), *SMOKE).returncode == 0
    assert run("mnist_ep.py", "--epochs", "1", "--out", str(split), *SMOKE).returncode == 0
    refused = run("mnist_ep.py", "--epochs", "2", "--out", str(split), *SMOKE)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = run("mnist_ep.py", "--epochs", "2", "--out", str(split), "--resume", *SMOKE)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(whole / "checkpoint.h5"), load_checkpoint(split / "checkpoint.h5")
    assert a.epoch == b.epoch == 2
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.particles, b.particles)
    with read_log(split / "log.h5") as log, read_log(whole / "log.h5") as ref:
        assert log.table("epochs")["epoch"].tolist() == [0, 1, 2]
        for column in ("train_error", "test_error", "train_loss"):
            assert np.array_equal(log.table("epochs")[column], ref.table("epochs")[column], equal_nan=True)


def test_pc_run_resumes_rule_by_rule_and_refuses_to_discard_a_run(tmp_path):
    # A constant rate: a whole-run schedule (the default) depends on --epochs, which the resumed run extends.
    # 'dtp' draws its inverses' corruption from the training's generator: the checkpoint must carry it.
    pc_smoke = ("--rules", "fa,dtp,bp", "--train-size", "200", "--eval-size", "50", "--schedule", "constant", "--quiet")
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run("mnist_pc.py", "--epochs", "2", "--out", str(whole), *pc_smoke).returncode == 0
    assert run("mnist_pc.py", "--epochs", "1", "--out", str(split), *pc_smoke).returncode == 0
    stale = split / ".checkpoint_bp.h5.999999999.abc.tmp"  # left by a writer that no longer runs
    stale.write_bytes(b"partial")
    refused = run("mnist_pc.py", "--epochs", "2", "--out", str(split), *pc_smoke)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "checkpoint_fa.h5" in refused.stderr
    assert not stale.exists() and "removed .checkpoint_bp.h5" in refused.stdout  # garbage whatever happens next
    resumed = run("mnist_pc.py", "--epochs", "2", "--out", str(split), "--resume", *pc_smoke)
    assert resumed.returncode == 0, resumed.stderr
    for rule in ("fa", "dtp", "bp"):
        a, b = load_checkpoint(whole / f"checkpoint_{rule}.h5"), load_checkpoint(split / f"checkpoint_{rule}.h5")
        assert a.epoch == b.epoch == 2 and np.array_equal(a.theta, b.theta)
        with read_log(split / "log.h5") as log, read_log(whole / "log.h5") as ref:
            assert log.table(f"epochs_{rule}")["epoch"].tolist() == [0, 1, 2]
            assert np.array_equal(log.table(f"epochs_{rule}")["test_error"], ref.table(f"epochs_{rule}")["test_error"])


def test_missing_data_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scenarios" / "mnist_ep.py"), "--data-dir", str(tmp_path),
                           "--no-download", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "train-images-idx3-ubyte.gz" in proc.stderr and str(tmp_path) in proc.stderr
    assert not (tmp_path / "out" / "log.h5").exists()


def test_pc_scenario_trains_pc_and_backprop_from_the_same_start(tmp_path):
    out = tmp_path / "pc"
    proc = run("mnist_pc.py", "--rules", "pc-strict,pc-fixed-prediction,bp", "--epochs", "1", "--train-size", "256",
               "--eval-size", "100", "--inference-steps", "5", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "paper (pcx)" in proc.stdout
    with read_log(out / "log.h5") as log:
        tables = {rule: log.table(f"epochs_{rule}") for rule in ("pc-strict", "pc-fixed-prediction", "bp")}
        assert log.n_relaxations == 2  # one inference relaxation per PC rule
    # Same start: identical epoch-0 evaluation for every rule, then each its own path.
    for rule in ("pc-strict", "pc-fixed-prediction"):
        assert tables[rule]["test_loss"][0] == tables["bp"]["test_loss"][0]
        assert tables[rule]["train_loss"][1] != tables["bp"]["train_loss"][1]
    assert (out / "errors.png").read_bytes()[:8] == PNG_MAGIC


def test_pc_scenario_logs_how_far_feedback_alignment_lies_from_backprop(tmp_path, cli_plot):
    out = tmp_path / "fa"
    proc = run("mnist_pc.py", "--rules", "fa,dfa,dtp,bp", "--epochs", "2", "--train-size", "256", "--eval-size",
               "100", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    with read_log(out / "log.h5") as log:
        assert "alignment_bp" not in log.tables and log.n_relaxations == 0  # no rule here relaxes
        # Target propagation logs the same angles; its learned inverses are parameters of its own (in its
        # checkpoint), never compared with backprop.
        dtp = log.table("alignment_dtp")
        assert sorted(k for k in dtp if k.startswith(("W_", "V_"))) == [
            "W_input_layer_1", "W_layer_1_layer_2", "W_layer_2_layer_3", "W_layer_3_output"]
        assert np.all(dtp["W_layer_3_output"] < 1e-3)
        assert log.config["dtp_step"] == 0.1 and log.config["dtp_noise"] == 0.1
        for rule in ("fa", "dfa"):
            table = log.table(f"alignment_{rule}")
            assert list(table["epoch"]) == [0, 1, 2]
            hidden = [table[name] for name in ("W_input_layer_1", "W_layer_1_layer_2", "W_layer_2_layer_3")]
            # Random feedback: the hidden layers' updates start far from backprop's; the output layer's is backprop's.
            assert all(np.all((angle > 45.0) & (angle < 135.0)) for angle in hidden)
            assert np.all(table["W_layer_3_output"] < 1e-3)
            assert log.table(f"epochs_{rule}")["test_loss"][0] == log.table("epochs_bp")["test_loss"][0]
    assert (out / "alignment.png").read_bytes()[:8] == PNG_MAGIC
    # The command line draws the same log: every rule's error curves, and the angles (Lillicrap et al.'s figure).
    cli_plot(out / "log.h5", "training", tmp_path / "training.png")
    cli_plot(out / "log.h5", "gradients", tmp_path / "angles.png")


def test_pc_scenario_runs_lees_target_propagation_whose_top_two_layers_learn_as_backprop(tmp_path):
    out = tmp_path / "lee"
    proc = run("mnist_pc.py", "--rules", "dtp", "--dtp-top", "gradient", "--dtp-space", "rate", "--epochs", "1",
               "--train-size", "256", "--eval-size", "100", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    with read_log(out / "log.h5") as log:
        assert (log.config["dtp_top"], log.config["dtp_space"]) == ("gradient", "rate")
        table = log.table("alignment_dtp")
        # The gradient step on the last hidden layer gives it and the output backprop's updates; the layers
        # below learn from targets carried down by the (untrained at epoch 0) inverses.
        assert np.all(table["W_layer_3_output"] < 1e-3) and np.all(table["W_layer_2_layer_3"] < 1e-3)
        assert table["W_input_layer_1"][0] > 10.0
    bad = run("mnist_pc.py", "--rules", "dtp", "--dtp-space", "post", "--out", str(tmp_path / "bad"), "--quiet")
    assert bad.returncode == 2 and "--dtp-space" in bad.stderr and "state" in bad.stderr


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="shared/data/fashion-mnist is not present")
def test_pc_scenario_trains_a_conv_network_whose_exact_rules_follow_backprop(tmp_path):
    # Z-IL's update is backprop's, so its run is bp's to rounding; strict PC takes its own path from the same start.
    out = tmp_path / "conv"
    proc = run("mnist_pc.py", "--dataset", "fashion-mnist", "--conv", "4,8", "--rules", "pc-strict,pc-zil,bp",
               "--epochs", "1", "--train-size", "256", "--eval-size", "100", "--dtype", "float64", "--out", str(out),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "1x28x28-4x12x12-8x4x4-10" in proc.stdout
    with read_log(out / "log.h5") as log:
        assert log.config["architecture"] == "1x28x28-4x12x12-8x4x4-10"
        assert log.network["group_names"] == ["input", "conv_1", "conv_2", "output"]
        tables = {rule: log.table(f"epochs_{rule}") for rule in ("pc-strict", "pc-zil", "bp")}
        np.testing.assert_allclose(tables["pc-zil"]["train_loss"], tables["bp"]["train_loss"], rtol=1e-9)
        assert tables["pc-strict"]["test_loss"][0] == tables["bp"]["test_loss"][0]
        assert tables["pc-strict"]["train_loss"][1] != tables["bp"]["train_loss"][1]
        assert np.all(log.table("alignment_pc-zil")["W_input_conv_1"] < 1e-3)  # degrees from backprop's update
        assert log.n_relaxations == 2  # strict's and Z-IL's recorded inferences
        # The recorded inference keeps its feature maps with their shapes.
        inference = log.relaxation(0)["inference"]
        assert inference.map_shapes == {"conv_1": (4, 12, 12), "conv_2": (8, 4, 4)}
        assert inference.maps("conv_1").shape[1:] == (4, 4, 12, 12)  # (steps, 4 recorded images, C, H, W)
    refused = run("mnist_pc.py", "--conv", "4,8", "--rules", "fa,bp", "--out", str(tmp_path / "fa"))
    assert refused.returncode == 2 and "implemented for dense layers; drop them or --conv" in refused.stderr
    assert not (tmp_path / "fa").exists()


def test_compare_rules_writes_every_rules_distance_and_accuracy_to_one_table(tmp_path, cli_plot):
    out = tmp_path / "rules"
    proc = run("compare_rules.py", "--train-size", "128", "--eval-size", "60", "--epochs", "1", "--iterations",
               "5,20", "--hidden", "16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with read_log(out / "log.h5") as log:
        table = log.table("rules")
    rules = set(table["rule"].tolist())
    assert rules == {"ep-positive", "ep-negative", "ep-centered", "chl", "pc-strict", "pc-fixed-prediction",
                     "pc-zil", "fa", "dfa", "dtp", "vf-ep", "microcircuit"}
    rows = list(zip(table["rule"].tolist(), table["kind"].tolist(), table["x"], table["cosine"], table["test_error"]))
    cos = {(r, k, x): c for r, k, x, c, _ in rows}
    # Z-IL is backprop; fixed prediction comes to it as its inference settles; the rules without phases
    # (FA, DFA, DTP) have no iteration rows, only epoch rows.
    assert cos[("pc-zil", "iterations", 1.0)] > 1 - 1e-9
    assert cos[("pc-fixed-prediction", "iterations", 20.0)] > max(0.99, cos[("pc-fixed-prediction", "iterations",
                                                                              5.0)])
    for rule in ("fa", "dfa", "dtp"):
        assert not any(r == rule and k == "iterations" for r, k, *_ in rows)
    for rule in rules:
        epochs = [(x, e) for r, k, x, _, e in rows if r == rule and k == "epoch"]
        assert [x for x, _ in epochs] == [0.0, 1.0] and all(0.0 <= e <= 1.0 for _, e in epochs)
    assert (out / "rules.png").read_bytes()[:8] == PNG_MAGIC
    cli_plot(out / "log.h5", "gradients", tmp_path / "from_the_log.png")  # the same figure, from the log alone


def test_microcircuit_scenario_learns_mnist_beside_backprop(tmp_path):
    out = tmp_path / "mc"
    proc = run("microcircuit_regression.py", "--data", "mnist", "--sizes", "784-32-10", "--train-size", "300",
               "--test-size", "100", "--epochs", "2", "--pretrain-steps", "50", "--optimizer", "adam", "--lr", "1e-3",
               "--lr-interneurons", "0.01", "--subtract-free", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Sacramento et al. 2018: about 2 % on MNIST" in proc.stdout
    with read_log(out / "log.h5") as log:
        table = log.table("epochs")
        assert log.config["data"] == "mnist" and log.config["sizes"] == [784, 32, 10]
    for rule in ("microcircuit", "backprop"):
        errors = table[f"{rule}_test_error"]
        assert np.all((errors >= 0) & (errors <= 1)) and errors[-1] < errors[0]
    refused = run("microcircuit_regression.py", "--data", "mnist", "--sizes", "30-20-10", "--out", str(tmp_path / "x"))
    assert refused.returncode == 2 and "--sizes must start with 784 and end with 10" in refused.stderr


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="shared/data/fashion-mnist is not present")
def test_pc_scenario_on_a_torch_device_trains_as_the_numba_path_and_continues_on_it(tmp_path):
    pytest.importorskip("torch")
    # float64 and a constant rate (a whole-run schedule refuses a resume with more epochs).
    conv = ("--dataset", "fashion-mnist", "--conv", "4,8", "--rules", "pc-strict", "--train-size", "256",
            "--eval-size", "100", "--dtype", "float64", "--schedule", "constant", "--quiet")
    numba, device, moved = tmp_path / "numba", tmp_path / "device", tmp_path / "moved"
    assert run("mnist_pc.py", *conv, "--epochs", "2", "--out", str(numba)).returncode == 0
    proc = run("mnist_pc.py", *conv, "--epochs", "2", "--device", "cpu", "--out", str(device))
    assert proc.returncode == 0, proc.stderr
    ref = load_checkpoint(numba / "checkpoint_pc-strict.h5")
    got = load_checkpoint(device / "checkpoint_pc-strict.h5")
    assert ref.epoch == got.epoch == 2
    np.testing.assert_allclose(got.theta, ref.theta, rtol=0, atol=1e-9)
    with read_log(numba / "log.h5") as ref_log, read_log(device / "log.h5") as log:
        assert log.config["device"] == "cpu" and ref_log.config["device"] == "numba"
        for column in ("train_error", "test_error"):
            assert np.array_equal(log.table("epochs_pc-strict")[column], ref_log.table("epochs_pc-strict")[column],
                                  equal_nan=True)
        np.testing.assert_allclose(log.table("alignment_pc-strict")["W_input_conv_1"],
                                   ref_log.table("alignment_pc-strict")["W_input_conv_1"], rtol=1e-6)
        assert log.n_relaxations == 1  # the trained network's inference, recorded on the host
    assert (device / "errors.png").read_bytes()[:8] == PNG_MAGIC
    # A run started on the device continues on the Numba path and ends where the Numba run ended.
    assert run("mnist_pc.py", *conv, "--epochs", "1", "--device", "cpu", "--out", str(moved)).returncode == 0
    proc = run("mnist_pc.py", *conv, "--epochs", "2", "--out", str(moved), "--resume")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(load_checkpoint(moved / "checkpoint_pc-strict.h5").theta, ref.theta, rtol=0,
                               atol=1e-9)
    refused = run("mnist_pc.py", *conv[:4], "--rules", "pc-zil", "--device", "cpu", "--out", str(tmp_path / "z"))
    assert refused.returncode == 2 and "--rules pc-zil: on --device the torch backend trains" in refused.stderr
    assert not (tmp_path / "z").exists()


def test_ep_scenario_on_a_torch_device_trains_as_the_numba_path(tmp_path):
    pytest.importorskip("torch")
    lab = ("--preset", "lab-mlp", "--dtype", "float64", "--epochs", "2", *SMOKE)
    numba, device = tmp_path / "numba", tmp_path / "device"
    assert run("mnist_ep.py", *lab, "--out", str(numba)).returncode == 0
    proc = run("mnist_ep.py", *lab, "--device", "cpu", "--out", str(device))
    assert proc.returncode == 0, proc.stderr
    ref, got = load_checkpoint(numba / "checkpoint.h5"), load_checkpoint(device / "checkpoint.h5")
    assert ref.epoch == got.epoch == 2 and ref.fingerprint == got.fingerprint
    np.testing.assert_allclose(got.theta, ref.theta, rtol=0, atol=1e-9)
    with read_log(numba / "log.h5") as ref_log, read_log(device / "log.h5") as log:
        for column in ("train_error", "validation_error", "test_error"):
            assert np.array_equal(log.table("epochs")[column], ref_log.table("epochs")[column], equal_nan=True)
        assert log.n_relaxations == 3  # epochs 0, 1, 2: relaxed on the host from the device's parameters
    assert (device / "settling_last.png").read_bytes()[:8] == PNG_MAGIC
    refused = run("mnist_ep.py", "--preset", "sb-1h", "--device", "cpu", "--out", str(tmp_path / "sb"))
    assert refused.returncode == 2 and "carries persistent particles" in refused.stderr
    assert not (tmp_path / "sb").exists()


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="shared/data/fashion-mnist is not present")
def test_pc_scenario_trains_with_bfloat16_products_on_the_torch_backend(tmp_path):
    """Conv PC with ``--autocast bfloat16`` beside the same float32 run on the torch backend."""
    pytest.importorskip("torch")
    conv = ("--dataset", "fashion-mnist", "--conv", "4,8", "--rules", "pc-strict", "--train-size", "256",
            "--eval-size", "100", "--epochs", "1", "--quiet", "--device", "cpu")
    theta = {}
    for cast in (None, "bfloat16"):
        out = tmp_path / str(cast)
        proc = run("mnist_pc.py", *conv, "--out", str(out), *(() if cast is None else ("--autocast", cast)))
        assert proc.returncode == 0, proc.stderr
        with read_log(out / "log.h5") as log:
            assert log.config.get("autocast") == cast
            assert np.all(np.isfinite(log.table("epochs_pc-strict")["test_error"]))
        theta[cast] = load_checkpoint(next(out.glob("checkpoint*.h5"))).theta
    rel = np.linalg.norm(theta["bfloat16"] - theta[None]) / np.linalg.norm(theta[None])
    assert 1e-6 < rel < 0.05


def test_ep_scenario_trains_with_bfloat16_products_on_the_torch_backend(tmp_path):
    """``--autocast bfloat16`` against the same float32 run on the torch backend: near it, not equal to it."""
    pytest.importorskip("torch")
    runs = {}
    for cast in (None, "bfloat16"):
        out = tmp_path / str(cast)
        proc = run("mnist_ep.py", "--preset", "lab-mlp", "--epochs", "2", *SMOKE, "--device", "cpu", "--out", str(out),
                   *(() if cast is None else ("--autocast", cast)))
        assert proc.returncode == 0, proc.stderr
        with read_log(out / "log.h5") as log:
            assert log.config.get("autocast") == cast
            runs[cast] = (load_checkpoint(out / "checkpoint.h5").theta, log.table("epochs")["test_error"])
    (theta32, errors32), (theta16, errors16) = runs[None], runs["bfloat16"]
    # Measured: the parameters 0.3 % apart (relative) after the 24 steps, and the same test errors on 60 images.
    rel = np.linalg.norm(theta16 - theta32) / np.linalg.norm(theta32)
    assert 1e-5 < rel < 0.03
    assert np.max(np.abs(errors16 - errors32)) <= 0.1 and errors16[-1] < errors16[0]


def test_sweep_budget_compares_a_runs_rule_with_itself_settled_and_scores_as_the_training_did(tmp_path):
    # A short run with block sweeps (which settle monotonically), in float64 so that its logged test error can be
    # matched to the image.
    trained = tmp_path / "run"
    proc = run("mnist_ep.py", "--preset", "lab-mlp", "--hidden", "40", "--integrator", "block", "--dtype",
               "float64", "--epochs", "1", "--out", str(trained), *SMOKE)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "budget"
    proc = run("sweep_budget.py", "--run", str(trained), "--split", "test", "--images", "60", "--batch", "20",
               "--free-steps", "1,30,119", "--nudged-steps", "1,59", "--long-free", "120", "--long-nudged", "60",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "after epoch 1" in proc.stdout
    with read_log(out / "budget.h5") as log, read_log(trained / "log.h5") as run_log:
        updates, pred = log.table("updates"), log.table("predictions")
        logged_test_error = run_log.table("epochs")["test_error"][-1]
        assert log.config["run_config"]["free_steps"] == 30
    cos = {(f, n): c for f, n, c in zip(updates["free_steps"], updates["nudged_steps"], updates["cosine"])}
    assert len(cos) == 6
    # The reference is the run's own rule with long phases: one iteration short of them, every block agrees with it;
    # one iteration each, the update is still far from it.
    assert np.all(cos[119, 59] > 0.9999), cos[119, 59]
    assert cos[1, 1][-1] < 0.99, cos[1, 1]
    # The training evaluated the first 60 test images with its own 30 free sweeps from zero: the same error here.
    row = dict(zip(pred["free_steps"], range(len(pred["free_steps"]))))
    assert pred["error"][row[30]] == pytest.approx(logged_test_error, abs=1e-12)
    assert pred["agreement"][row[119]] == 1.0
    # Agreement bounds how far an error can lie from the long phase's.
    long_error = float(pred["__attrs__"]["long_error"])
    assert np.all(np.abs(pred["error"] - long_error) <= 1 - pred["agreement"] + 1e-12)
    for png in ("update_cosine.png", "predictions.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
