"""The associative-memory scenario end to end in a subprocess, and the pattern helpers it is built on."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dynsim.experiments.memory import corrupt, flipped_bits, nearest_pattern, random_patterns, recall_scores
from dynsim.io.log import read_log

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "associative_memory.py"
# Small enough for a few seconds once the Numba cache is warm.
SMALL = ["--patterns", "3", "--units", "16", "--hidden", "16", "--epochs", "60", "--trials", "30", "--seed", "0"]


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory")
    proc = run("--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_summary_is_printed(small_run):
    _, proc = small_run
    assert "bit accuracy" in proc.stdout and "exact recall" in proc.stdout
    for who in ("network", "cue", "nearest"):
        assert who in proc.stdout
    assert "3 ( 20%)" in proc.stdout


def test_recall_beats_the_cue(small_run):
    out, _ = small_run
    with read_log(out / "memory.h5") as log:
        assert log.config["rule"] == "ep-positive" and log.config["seed"] == 0
        assert {"recall", "training", "parameters"} <= set(log.tables)
        table = log.table("recall")
    np.testing.assert_allclose(table["corruption"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(table["flipped_bits"], [0, 2, 3, 5])
    np.testing.assert_array_equal(table["cues"], 3 * 30)
    # The cue baseline is exact: every cue has exactly that many bits flipped.
    np.testing.assert_allclose(table["cue_bit_accuracy"], 1 - table["flipped_bits"] / 16)
    np.testing.assert_array_equal(table["cue_exact_recall"], [1, 0, 0, 0])
    assert table["network_exact_recall"][0] == 1.0
    moderate = 2  # 3 of 16 bits flipped
    assert table["network_bit_accuracy"][moderate] > table["cue_bit_accuracy"][moderate] + 0.1
    assert table["network_exact_recall"][moderate] > 0.8
    assert np.all(table["unsettled"] == 0)


def test_training_history(small_run):
    out, _ = small_run
    with read_log(out / "memory.h5") as log:
        history = log.table("training")
    np.testing.assert_array_equal(history["epoch"], np.arange(61))
    assert history["bit_accuracy"][-1] > history["bit_accuracy"][0] + 0.2
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_learned_blocks_within_groups_stay_symmetric(small_run):
    out, _ = small_run
    with read_log(out / "memory.h5") as log:
        assert log.network["group_names"] == ["cue", "hidden", "memory"]
        assert log.network["connections"] == [[0, 1], [0, 2], [1, 1], [1, 2], [2, 2]]
        params = log.table("parameters")
    for name, n in (("W_hidden_hidden", 16), ("W_memory_memory", 16)):
        W = params[name][0]
        assert W.shape == (n, n)
        np.testing.assert_array_equal(W, W.T)
        np.testing.assert_array_equal(np.diag(W), 0.0)
        assert np.abs(W).max() > 0


def test_logged_recall_relaxation(small_run):
    out, _ = small_run
    with read_log(out / "memory.h5") as log:
        patterns = log.table("parameters")["patterns"][0]
        rel = log.relaxation(0)
    assert list(rel.phases) == ["free"]
    np.testing.assert_array_equal(rel.target, patterns)
    # The figure's cues flip exactly --corruption (default 0.25) of the 16 bits.
    np.testing.assert_array_equal((rel.x != patterns).sum(1), 4)
    free = rel["free"]
    assert free.attrs["status_name"] == "converged"
    assert free.states["memory"].shape[1:] == (3, 16)
    np.testing.assert_array_equal(free.states["memory"][-1], free.final_state[:, -16:])


def test_recall_figure(small_run):
    out, _ = small_run
    data = (out / "recall.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    image = imread(out / "recall.png")
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.1


@pytest.mark.parametrize("args,match", [
    (["--corruption", "0.7"], "--corruption must lie in [0, 0.5]"),
    (["--beta", "8"], "the nudged phase is unstable"),
    (["--levels", "0,x"], "levels must look like"),
    (["--rule", "hebb"], "invalid choice"),
])
def test_bad_options_write_nothing(tmp_path, args, match):
    proc = run("--out", str(tmp_path / "run"), *SMALL, *args)
    assert proc.returncode != 0
    assert match in proc.stderr
    assert not (tmp_path / "run").exists()


def test_never_overwrites_a_log_unless_asked(tmp_path):
    (tmp_path / "memory.h5").write_bytes(b"keep me")
    proc = run("--out", str(tmp_path), *SMALL)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr
    assert (tmp_path / "memory.h5").read_bytes() == b"keep me"
    assert not (tmp_path / "recall.png").exists()


# ----------------------------------------------------------------------------- helpers
def test_corrupt_flips_exactly_the_asked_bits(rng):
    patterns = random_patterns(4, 20, rng)
    flips = np.array([0, 1, 5, 20])
    cues = corrupt(patterns, flips, rng)
    np.testing.assert_array_equal((cues != patterns).sum(1), flips)
    assert set(np.unique(cues)) <= {0.0, 1.0}
    assert flipped_bits(0.25, 16) == 4 and flipped_bits(0.3, 16) == 5


def test_random_patterns_keep_their_distance(rng):
    patterns = random_patterns(6, 24, rng, min_distance=8)
    d = (patterns[:, None] != patterns[None]).sum(-1)
    assert d[~np.eye(6, dtype=bool)].min() >= 8


def test_nearest_pattern_and_scores(rng):
    patterns = random_patterns(3, 16, rng, min_distance=6)
    cues = corrupt(patterns, 2, rng)  # fewer than half the distance: nearest is the original
    np.testing.assert_array_equal(nearest_pattern(cues, patterns), patterns)
    scores = recall_scores(cues, patterns)
    assert scores == {"bit_accuracy": pytest.approx(1 - 2 / 16), "exact_recall": 0.0}
    assert recall_scores(patterns * 0.4 + 0.3, patterns)["exact_recall"] == 1.0


def test_plot_recall_without_trajectory(tmp_path, rng):
    from dynsim.experiments.memory import memory_network, recall
    from dynsim.io.log import TrajectoryLog
    from dynsim.plots.relaxation import pattern_shape, plot_recall
    from dynsim.relax.phases import SettleOptions

    net = memory_network(7, 4, seed=0)
    patterns = random_patterns(2, 7, rng, min_distance=2)
    cues = corrupt(patterns, 1, rng)
    _, free = recall(net, cues, SettleOptions(integrator="projected_euler"))
    with TrajectoryLog(tmp_path / "m.h5", {}, network=net) as log:
        log.record_relaxation([free], x=cues, target=patterns)
        log.record_relaxation([free])
    out = plot_recall(tmp_path / "m.h5", tmp_path / "r.png")  # 7 bits: a 3 x 3 grid, two cells empty
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pattern_shape(7) == (3, 3) and pattern_shape(20) == (4, 5) and pattern_shape(16) == (4, 4)
    with pytest.raises(ValueError, match="no logged input and target"):
        plot_recall(tmp_path / "m.h5", tmp_path / "r.png", relaxation=1)
    with pytest.raises(ValueError, match="does not hold"):
        plot_recall(tmp_path / "m.h5", tmp_path / "r.png", image_shape=(2, 3))
