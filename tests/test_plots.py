"""Figures of logged relaxations: PNG files with something drawn on them, never a window."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.image import imread

from dynsim.hopfield import HopfieldNetwork
from dynsim.log import TrajectoryLog, read_log
from dynsim.phases import SettleOptions, free_phase, nudged_phase
from dynsim.plots import plot_energy, plot_settling

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
        from dynsim.plots import plot_energy, plot_settling
        plot_settling({str(log_path)!r}, {str(tmp_path / "a.png")!r})
        plot_energy({str(log_path)!r}, {str(tmp_path / "b.png")!r})
        assert "matplotlib.pyplot" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()
