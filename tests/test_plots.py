"""Figures of logged relaxations: PNG files with something drawn on them, never a window."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.image import imread

from dynsim.io.log import TrajectoryLog, read_log
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.plots.relaxation import plot_energy, plot_settling
from dynsim.plots.training import plot_decision_regions, plot_training_curves
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.training.loop import History

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    net = HopfieldNetwork.layered([6, 8, 3], seed=0)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(3, 6))
    y = np.eye(3)[[0, 1, 2]]
    path = tmp_path_factory.mktemp("plots") / "run.h5"
    with TrajectoryLog(path, {"integrator": "rk4", "beta": 0.5}, network=net) as log:
        for opt in (SettleOptions(integrator="rk4", record_every=1, record_samples=(0, 2)),
                    SettleOptions(integrator="rk4")):  # relaxation 1: no trajectory
            free = free_phase(net, x, target=y, options=opt)
            nudged = nudged_phase(net, x, y, 0.5, free.state, options=opt)
            log.record_relaxation([free, nudged], label="test", x=x, target=y)
    return path


def assert_png_with_content(path):
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    rgb = image[..., :3]
    # A blank figure is a single colour; axes and text spread the pixel values.
    assert rgb.std() > 0.05
    # Empty axes are black, grey and white only: coloured pixels are the plotted lines.
    saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
    assert (saturation > 0.3).mean() > 0.002


def test_plot_settling(log_path, tmp_path):
    out = plot_settling(log_path, tmp_path / "figs" / "settling.png")
    assert out == tmp_path / "figs" / "settling.png"
    assert_png_with_content(out)


def test_plot_settling_from_reader_with_sample_and_few_units(log_path, tmp_path):
    out = plot_settling(read_log(log_path), tmp_path / "s.png", sample=2, max_units=2)
    assert_png_with_content(out)


@pytest.mark.parametrize("sample", [None, 2])
def test_plot_energy(log_path, tmp_path, sample):
    out = plot_energy(log_path, tmp_path / "deep" / "er" / "energy.png", sample=sample)
    assert_png_with_content(out)


@pytest.mark.parametrize("plot", [plot_settling, plot_energy])
def test_no_trajectory_is_a_clear_error(log_path, tmp_path, plot):
    with pytest.raises(ValueError, match="relaxation 1 .* no recorded trajectory.*record_every"):
        plot(log_path, tmp_path / "x.png", relaxation=1)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("plot", [plot_settling, plot_energy])
def test_unrecorded_sample_is_a_clear_error(log_path, tmp_path, plot):
    with pytest.raises(ValueError, match=r"sample 1 was not recorded.*\[0, 2\]"):
        plot(log_path, tmp_path / "x.png", sample=1)


def test_plots_never_import_pyplot(log_path, tmp_path):
    """Plotting from a script must not open a window or switch the global backend."""
    script = textwrap.dedent(f"""
        import sys
        from dynsim.plots.relaxation import plot_energy, plot_settling
        plot_settling({str(log_path)!r}, {str(tmp_path / "a.png")!r})
        plot_energy({str(log_path)!r}, {str(tmp_path / "b.png")!r})
        assert "matplotlib.pyplot" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()


# --------------------------------------------------------------------------- training figures
def _history(n_epochs, rate):
    h = History()
    for e in range(n_epochs + 1):
        h.epoch.append(e)
        h.loss.append(0.5 * np.exp(-rate * e))
        h.accuracy.append(min(1.0, 0.5 + 0.1 * rate * e))
        h.free_steps.append(10.0)
        h.nudged_steps.append(5.0)
        h.seconds.append(0.01)
    return h


def test_plot_training_curves_from_histories_and_tables(tmp_path):
    flat = {"epoch": np.arange(31), "loss": np.full(31, 0.5), "accuracy": np.full(31, 0.5)}
    flat["loss"][-1] = 0.0  # an exact zero: the loss axis turns linear near 0 to show it
    out = plot_training_curves({"fast": _history(30, 0.5), "slow": _history(30, 0.1), "stuck": flat},
                               tmp_path / "c" / "curves.png", title="test")
    assert out == tmp_path / "c" / "curves.png"
    assert_png_with_content(out)


def test_plot_training_curves_rejects_what_is_not_a_history(tmp_path):
    with pytest.raises(ValueError, match="'epoch', 'loss' and 'accuracy'"):
        plot_training_curves({"bad": {"loss": [1.0]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_training_curves({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _two_class_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(60, 2))
    return x, (x[:, 0] > x[:, 1]).astype(int)


def test_plot_decision_regions_two_and_three_classes(tmp_path):
    x, labels = _two_class_data()
    sizes = []

    def diagonal(points):
        sizes.append(len(points))
        return np.c_[points[:, 1], points[:, 0]]  # output 1 wins below the diagonal: all right

    def three(points):
        return np.c_[points[:, 0], points[:, 1], 0.5 * np.ones(len(points))]

    out = plot_decision_regions({"diagonal": diagonal, "three classes": three}, x, labels,
                                tmp_path / "decision.png", resolution=40, chunk=500, title="test")
    assert_png_with_content(out)
    # The grid reached the predictor in chunks of at most `chunk` points, then the data once.
    assert sum(sizes[:-1]) == 40 * 40 and max(sizes[:-1]) <= 500 and sizes[-1] == len(x)


@pytest.mark.parametrize("x,labels,match", [
    (np.zeros((5, 3)), np.zeros(5, int), r"shape \(n, 2\)"),
    (np.zeros((5, 2)), np.zeros(4, int), r"labels must have shape \(5,\)"),
])
def test_plot_decision_regions_rejects_bad_data(tmp_path, x, labels, match):
    with pytest.raises(ValueError, match=match):
        plot_decision_regions({"f": lambda p: np.c_[p[:, 0], p[:, 1]]}, x, labels, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_training_figures_never_import_pyplot(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from dynsim.plots.training import plot_decision_regions, plot_training_curves
        h = {{"epoch": [0, 1, 2], "loss": [0.5, 0.2, 0.1], "accuracy": [0.5, 0.75, 1.0]}}
        plot_training_curves({{"rule": h}}, {str(tmp_path / "a.png")!r})
        x = np.random.default_rng(0).uniform(size=(10, 2))
        plot_decision_regions({{"f": lambda p: p}}, x, (x[:, 0] > 0.5).astype(int), {str(tmp_path / "b.png")!r},
                              resolution=10)
        assert "matplotlib.pyplot" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()


# --------------------------------------------------------------------------- rules beside backprop, several runs
def _capture(monkeypatch, module):
    """Keep the figures that ``module`` saves, so that the test can read back the lines drawn on them."""
    from dynsim.plots import _figure

    figures = []

    def save(fig, out):
        figures.append(fig)
        return _figure.save_figure(fig, out)

    monkeypatch.setattr(module, "save_figure", save)
    return figures


def _lines(ax):
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_error_curves_of_several_runs_draw_every_split_of_every_run(tmp_path, monkeypatch):
    from dynsim.plots import training

    figures = _capture(monkeypatch, training)
    runs = {rule: {"epoch": np.arange(4), "train_error": np.array([0.9, 0.3, 0.1, 0.0]) * scale,
                   "test_error": np.array([0.9, 0.35, 0.2, 0.15]) * scale, "seconds": np.ones(4)}
            for rule, scale in (("pc-strict", 1.0), ("bp", 0.5))}
    out = training.plot_error_curves(runs, tmp_path / "errors.png", title="two rules")
    assert_png_with_content(out)
    lines = _lines(figures[0].axes[0])
    assert sorted(lines) == ["bp test", "bp train", "pc-strict test", "pc-strict train"]
    for rule, table in runs.items():
        for split in ("train", "test"):
            x, y = lines[f"{rule} {split}"]
            np.testing.assert_array_equal(x, table["epoch"])
            np.testing.assert_allclose(y, 100 * table[f"{split}_error"])
    with pytest.raises(ValueError, match="the table of 'bad' must hold 'epoch' and '<split>_error' columns"):
        training.plot_error_curves({"bad": {"epoch": [0, 1], "loss": [1.0, 0.5]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="columns is empty"):
        training.plot_error_curves({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_alignment_draws_each_rules_angles_per_weight_matrix_in_epoch_order(tmp_path, monkeypatch):
    from dynsim.plots import rules

    figures = _capture(monkeypatch, rules)
    # Rows out of epoch order (a resumed run appends), and a matrix that one rule does not report.
    tables = {"fa": {"epoch": np.array([1, 0, 2]), "W_input_hidden": np.array([70.0, 89.0, 60.0]),
                     "W_hidden_output": np.array([0.0, 0.0, 0.0])},
              "dtp": {"epoch": np.array([0, 1, 2]), "W_input_hidden": np.array([88.0, 80.0, 75.0])}}
    out = rules.plot_alignment(tables, tmp_path / "alignment.png", title="t")
    assert_png_with_content(out)
    first, second = figures[0].axes
    assert (first.get_title(), second.get_title()) == ("W_input_hidden", "W_hidden_output")
    fa_x, fa_y = _lines(first)["fa"]
    np.testing.assert_array_equal(fa_x, [0, 1, 2])
    np.testing.assert_array_equal(fa_y, [89.0, 70.0, 60.0])
    np.testing.assert_array_equal(_lines(first)["dtp"][1], [88.0, 80.0, 75.0])
    assert sorted(_lines(second)) == ["fa"]
    with pytest.raises(ValueError, match="no angle column"):
        rules.plot_alignment({"fa": {"epoch": [0], "loss": [1.0]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="tables is empty"):
        rules.plot_alignment({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_rule_comparison_draws_cosines_and_the_last_epochs_test_error(tmp_path, monkeypatch):
    from dynsim.plots import rules

    figures = _capture(monkeypatch, rules)
    nan = float("nan")
    table = {"rule": np.array(["ep", "ep", "ep", "ep", "fa", "fa"]),
             "kind": np.array(["iterations", "iterations", "epoch", "epoch", "epoch", "epoch"]),
             "x": np.array([5.0, 50.0, 0.0, 1.0, 0.0, 1.0]),
             "cosine": np.array([0.4, 0.9, 0.8, 0.7, 0.1, 0.2]),
             "relative_error": np.ones(6),
             "test_error": np.array([nan, nan, 0.9, 0.25, 0.9, 0.125])}
    out = rules.plot_rule_comparison(table, tmp_path / "rules.png", title="t")
    assert_png_with_content(out)
    by_iterations, by_epoch, accuracy = figures[0].axes
    assert sorted(_lines(by_iterations)) == ["ep"]  # FA has no phases to iterate
    np.testing.assert_array_equal(_lines(by_iterations)["ep"][1], [0.4, 0.9])
    np.testing.assert_array_equal(_lines(by_epoch)["fa"][1], [0.1, 0.2])
    # One bar per trained rule: its test error after the last epoch, in percent.
    np.testing.assert_allclose([bar.get_width() for bar in accuracy.patches], [25.0, 12.5])
    with pytest.raises(ValueError, match=r"lacks the columns \['cosine'\]"):
        rules.plot_rule_comparison({k: v for k, v in table.items() if k != "cosine"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_prediction_budget_draws_agreement_and_errors_in_order_of_steps(tmp_path, monkeypatch):
    from dynsim.plots import gradients

    figures = _capture(monkeypatch, gradients)
    table = {"free_steps": np.array([30, 5, 15]), "agreement": np.array([1.0, 0.9, 0.97]),
             "error": np.array([0.011, 0.05, 0.02]), "long_steps": 300, "long_error": 0.0115}
    out = gradients.plot_prediction_budget(table, tmp_path / "predictions.png")
    assert_png_with_content(out)
    agree, err = figures[0].axes[:2]
    x, y = _lines(agree)["same class"]
    np.testing.assert_array_equal(x, [5, 15, 30])
    np.testing.assert_allclose(y, [90.0, 97.0, 100.0])
    lines = _lines(err)
    np.testing.assert_allclose(lines["free phase of this length"][1], [5.0, 2.0, 1.1])
    np.testing.assert_allclose(lines["after 300 steps"][1], [1.15, 1.15])
    with pytest.raises(ValueError, match="table has no 'long_error' column"):
        gradients.plot_prediction_budget({k: v for k, v in table.items() if k != "long_error"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
