"""Convolutional relaxations in the HDF5 log keep their feature-map shapes, and draw as image grids."""
import numpy as np
import pytest

from dynsim.io.log import TrajectoryLog, read_log
from dynsim.networks import Architecture, ConvHopfieldNetwork
from dynsim.plots.relaxation import plot_feature_maps
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A 1-4-6 conv net on 8x8 inputs, free and nudged phases of 3 samples recorded at every sweep."""
    arch = Architecture.conv_stack((1, 8, 8), [4, 6], [3, 3], "ii", fc=[3])
    net = ConvHopfieldNetwork(arch, seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 64))
    y = np.eye(3)[[0, 1, 2]]
    opts = SettleOptions(integrator="block", max_steps=8, stop_at_steady_state=False, record_every=1)
    free = free_phase(net, x, target=y, options=opts)
    nudged = nudged_phase(net, x, y, 0.5, free.state, options=opts)
    path = tmp_path_factory.mktemp("conv_log") / "log.h5"
    with TrajectoryLog(path, {"test": "conv"}, network=net) as log:
        log.record_relaxation([free, nudged], label="conv", x=x, target=y)
    return net, free, path


def test_feature_maps_come_back_with_their_shape(logged):
    net, free, path = logged
    with read_log(path) as reader:
        record = reader.relaxation(0)["free"]
        assert set(record.map_shapes) == {g for g, shape in zip(net.group_names[1:], net.group_shapes[1:])
                                          if len(shape) == 3}
        traj = free.integration.trajectory.y  # (m, r, n_free)
        expected = net.group_states(traj.reshape(-1, net.n_free))
        for group, shape in record.map_shapes.items():
            maps = record.maps(group)
            assert maps.shape == traj.shape[:2] + shape
            np.testing.assert_array_equal(maps, expected[group].reshape(maps.shape))
        dense = net.group_names[-1]
        with pytest.raises(ValueError, match="not recorded as feature maps"):
            record.maps(dense)


def test_feature_maps_draw_as_an_image_grid(logged, tmp_path):
    net, _, path = logged
    group = net.group_names[1]
    out = plot_feature_maps(path, tmp_path / "maps.png", group, phase="nudged", channels=[0, 3], times=[0, 4, 8])
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=r"channels must be indices in \[0, 3\]"):
        plot_feature_maps(path, tmp_path / "bad.png", group, channels=[4])
    with pytest.raises(ValueError, match=r"times must be indices in \[0, 8\]"):
        plot_feature_maps(path, tmp_path / "bad.png", group, times=[9])
    assert not (tmp_path / "bad.png").exists()


def test_the_cli_draws_the_maps_and_names_the_groups_it_has(logged, tmp_path):
    import subprocess
    import sys

    net, _, path = logged
    run = [sys.executable, "-m", "dynsim.cli.main", "plot", str(path), "--kind", "maps"]
    proc = subprocess.run(run + ["--group", net.group_names[2], "--phase", "nudged", "--out", str(tmp_path / "m.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_MAGIC
    proc = subprocess.run(run + ["--group", "nope", "--out", str(tmp_path / "n.png")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--group must be one of the recorded feature maps" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "n.png").exists()
