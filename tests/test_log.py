"""The HDF5 trajectory log: written from real relaxations, read back exactly."""
import datetime
import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import dynsim
from dynsim.io.log import FORMAT, FORMAT_VERSION, LogFormatError, TrajectoryLog, read_log
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.validation import DynsimError, ValidationError

SIZES = [6, 8, 3]
BETA = 0.5


@pytest.fixture(scope="module")
def network():
    return HopfieldNetwork.layered(SIZES, seed=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(4, SIZES[0]))
    y = np.eye(SIZES[-1])[[0, 1, 2, 0]]
    return x, y


@pytest.fixture(scope="module")
def options():
    return SettleOptions(integrator="rk4", record_every=1)


@pytest.fixture(scope="module")
def phases(network, data, options):
    x, y = data
    free = free_phase(network, x, target=y, options=options)
    nudged = nudged_phase(network, x, y, BETA, free.state, options=options)
    return free, nudged


def config_of(options, **extra):
    return {**options.describe(), "beta": BETA, "seed": 0, **extra}


@pytest.fixture
def log_path(tmp_path, network, data, phases, options):
    path = tmp_path / "run.h5"
    x, y = data
    with TrajectoryLog(path, config_of(options), network=network) as log:
        assert log.record_relaxation(phases, label="epoch 0", x=x, target=y) == 0
    return path


def test_round_trip_is_exact(log_path, network, data, phases):
    x, y = data
    with read_log(log_path) as reader:
        assert len(reader) == reader.n_relaxations == 1
        rel = reader.relaxation(0)
    assert rel.label == "epoch 0"
    assert list(rel.phases) == ["free", "nudged"]
    np.testing.assert_array_equal(rel.samples, np.arange(4))
    np.testing.assert_array_equal(rel.x, x)
    np.testing.assert_array_equal(rel.target, y)
    free_groups = network.group_names[1:]
    for result in phases:
        rec = rel[result.phase]
        traj = result.integration.trajectory
        np.testing.assert_array_equal(rec.t, traj.t)
        assert list(rec.states) == list(free_groups)
        for name, part in network.split_state(traj.y).items():
            np.testing.assert_array_equal(rec.states[name], part)
        np.testing.assert_array_equal(rec.state, traj.y)
        np.testing.assert_array_equal(rec.energy, result.trajectory_energy)
        np.testing.assert_array_equal(rec.cost, result.trajectory_cost)
        np.testing.assert_array_equal(rec.residual, traj.residual)
        np.testing.assert_array_equal(rec.final_state, result.state)
        np.testing.assert_array_equal(rec.final_energy, result.energy)
        np.testing.assert_array_equal(rec.final_cost, result.cost)
        np.testing.assert_array_equal(rec.final_residual, result.integration.residual)
        np.testing.assert_array_equal(rec.final_tolerance, result.integration.tolerance)
        integ = result.integration
        for key in ("status", "status_name", "message", "n_steps", "n_accepted", "n_rejected", "nfev"):
            assert rec.attrs[key] == getattr(integ, key), key
        assert rec.attrs["integrator"] == "rk4"
        assert rec.attrs["beta"] == result.beta
        assert rec.attrs["t_final"] == integ.t
        for arr in (rec.t, rec.energy, rec.final_state):
            assert isinstance(arr, np.ndarray)
    assert rel["nudged"].beta == BETA


def test_root_attributes_config_and_network(log_path, network, options):
    with read_log(log_path) as reader:
        attrs, config, net = reader.attrs, reader.config, reader.network
    assert attrs["format"] == FORMAT
    assert attrs["format_version"] == FORMAT_VERSION == 2
    assert attrs["dynsim_version"] == dynsim.__version__
    created = datetime.datetime.fromisoformat(attrs["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert config == json.loads(json.dumps(config_of(options)))
    assert config["t_max"] is None  # no time limit; strict JSON has no Infinity
    # Scalar entries are attributes of their own; lists and None are only in the JSON.
    for key in ("integrator", "atol", "rtol", "beta", "seed", "record_every", "stop_at_steady_state"):
        assert attrs[key] == config[key], key
    assert "bounds" not in attrs
    assert net["group_sizes"] == list(network.group_sizes)
    assert net["group_names"] == list(network.group_names)
    assert net["activation"] == network.activation
    assert net["connections"] == [list(c) for c in network.connections]


def test_config_cannot_overwrite_format_attributes(tmp_path):
    with TrajectoryLog(tmp_path / "r.h5", {"format": "mine", "created": "yesterday", "n": np.int64(3)}):
        pass
    reader = read_log(tmp_path / "r.h5")
    assert reader.attrs["format"] == FORMAT
    assert reader.attrs["created"] != "yesterday"
    assert reader.config == {"format": "mine", "created": "yesterday", "n": 3}
    assert reader.attrs["n"] == 3


def test_config_must_be_json(tmp_path):
    with pytest.raises(ValidationError, match="config"):
        TrajectoryLog(tmp_path / "r.h5", {"bad": object()})
    assert not (tmp_path / "r.h5").exists()


def test_relaxations_are_numbered_in_order(tmp_path, network, phases, options):
    path = tmp_path / "sub" / "run.h5"
    with TrajectoryLog(path, config_of(options), network=network) as log:
        for k in range(3):
            assert log.record_relaxation(phases, label=f"batch {k}") == k
        assert log.n_relaxations == 3
    with h5py.File(path, "r") as f:
        assert sorted(f["relaxations"]) == ["000000", "000001", "000002"]
    reader = read_log(path)
    assert [rel.label for rel in reader] == ["batch 0", "batch 1", "batch 2"]
    assert reader[-1].index == 2
    assert reader.relaxation(1).x is None
    with pytest.raises(IndexError, match="3 relaxations"):
        reader.relaxation(3)


def test_without_network_one_state_array(tmp_path, phases, options):
    path = tmp_path / "run.h5"
    with TrajectoryLog(path, config_of(options)) as log:
        log.record_relaxation(phases)
    reader = read_log(path)
    assert reader.network is None
    rec = reader.relaxation(0)["free"]
    assert list(rec.states) == ["state"]
    np.testing.assert_array_equal(rec.states["state"], phases[0].integration.trajectory.y)


def test_refuses_to_overwrite(log_path, options):
    before = log_path.read_bytes()
    with pytest.raises(FileExistsError) as err:
        TrajectoryLog(log_path, config_of(options))
    assert str(log_path) in str(err.value)
    assert "overwrite=True" in str(err.value)
    assert log_path.read_bytes() == before


def test_overwrite_replaces(log_path, options):
    with TrajectoryLog(log_path, config_of(options, seed=99), overwrite=True):
        pass
    reader = read_log(log_path)
    assert len(reader) == 0
    assert reader.config["seed"] == 99


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.h5"
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        read_log(path)


def test_text_file_is_not_a_log(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5\n")
    with pytest.raises(LogFormatError, match="notes.h5") as err:
        read_log(path)
    assert isinstance(err.value, DynsimError)
    assert "not an HDF5 file" in str(err.value)


def test_hdf5_without_format_is_not_a_log(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(LogFormatError, match="other.h5.*no 'format' attribute"):
        read_log(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(LogFormatError, match="something-else"):
        read_log(path)


def test_newer_format_version_is_refused(log_path):
    with h5py.File(log_path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(LogFormatError, match="format_version 99"):
        read_log(log_path)


@pytest.mark.parametrize("every", [1, 3, 7])
def test_every_keeps_last_point(tmp_path, network, phases, options, every):
    path = tmp_path / "run.h5"
    with TrajectoryLog(path, config_of(options), network=network) as log:
        log.record_relaxation(phases, every=every)
    rel = read_log(path).relaxation(0)
    for result in phases:
        traj = result.integration.trajectory
        m = len(traj.t)
        keep = sorted(set(range(0, m, every)) | {m - 1})
        rec = rel[result.phase]
        assert rec.attrs["every"] == every
        np.testing.assert_array_equal(rec.t, traj.t[keep])
        assert rec.t[-1] == result.integration.t
        np.testing.assert_array_equal(rec.state, traj.y[keep])
        np.testing.assert_array_equal(rec.state[-1], result.state)
        np.testing.assert_array_equal(rec.energy, result.trajectory_energy[keep])
        np.testing.assert_array_equal(rec.residual, traj.residual[keep])


def test_every_must_be_positive(tmp_path, phases, options):
    with TrajectoryLog(tmp_path / "r.h5", config_of(options)) as log:
        with pytest.raises(ValidationError, match="every"):
            log.record_relaxation(phases, every=0)


def test_datasets_are_chunked_and_compressed(log_path):
    seen = []

    def check(name, obj):
        if isinstance(obj, h5py.Dataset):
            seen.append(name)
            assert obj.chunks is not None, name
            assert obj.compression == "gzip", name
            assert obj.shuffle, name

    with h5py.File(log_path, "r") as f:
        f.visititems(check)
    assert "relaxations/000000/free/states/hidden_1" in seen
    assert "relaxations/000000/nudged/final_state" in seen


def test_phase_without_trajectory_keeps_finals(tmp_path, network, data):
    x, _ = data
    free = free_phase(network, x, options=SettleOptions(integrator="rk4"))  # no target: no cost
    path = tmp_path / "run.h5"
    with TrajectoryLog(path, {}, network=network) as log:
        log.record_relaxation([free])
    with h5py.File(path, "r") as f:
        assert set(f["relaxations/000000/free"]) == {"final_state", "final_energy", "final_residual",
                                                     "final_tolerance"}
    rel = read_log(path).relaxation(0)
    assert not rel.has_trajectory
    assert rel.samples.size == 0
    rec = rel["free"]
    assert rec.t is None and rec.energy is None and rec.cost is None and rec.states == {}
    assert rec.final_cost is None
    np.testing.assert_array_equal(rec.final_state, free.state)


def test_phase_names_must_be_distinct(tmp_path, phases):
    with TrajectoryLog(tmp_path / "r.h5", {}) as log:
        with pytest.raises(ValidationError, match="distinct"):
            log.record_relaxation([phases[0], phases[0]])
        assert log.n_relaxations == 0


def test_phases_must_record_the_same_samples(tmp_path, network, data, phases):
    x, y = data
    other = nudged_phase(network, x, y, BETA, phases[0].state,
                         options=SettleOptions(integrator="rk4", record_every=1, record_samples=(1, 2)))
    with TrajectoryLog(tmp_path / "r.h5", {}) as log:
        with pytest.raises(ValidationError, match="same record_samples"):
            log.record_relaxation([phases[0], other])


def test_recorded_subset_of_samples(tmp_path, network, data):
    x, y = data
    opt = SettleOptions(integrator="rk4", record_every=2, record_samples=(3, 1))
    free = free_phase(network, x, target=y, options=opt)
    path = tmp_path / "run.h5"
    with TrajectoryLog(path, {}, network=network) as log:
        log.record_relaxation([free])
    rel = read_log(path).relaxation(0)
    np.testing.assert_array_equal(rel.samples, [3, 1])
    assert rel.column(1) == 1
    with pytest.raises(ValueError, match="sample 0 was not recorded"):
        rel.column(0)
    np.testing.assert_array_equal(rel["free"].state[-1], free.state[[3, 1]])


def test_closed_log_refuses_to_record(tmp_path, phases):
    log = TrajectoryLog(tmp_path / "r.h5", {})
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record_relaxation(phases)


def test_completed_relaxations_survive_a_crash(tmp_path):
    """The writer flushes after each relaxation: a process that dies mid-run leaves them readable."""
    path = tmp_path / "crash.h5"
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from dynsim.networks.hopfield import HopfieldNetwork
        from dynsim.io.log import TrajectoryLog
        from dynsim.relax.phases import SettleOptions, free_phase
        net = HopfieldNetwork.layered({SIZES!r}, seed=0)
        x = np.random.default_rng(0).uniform(size=(2, {SIZES[0]}))
        free = free_phase(net, x, options=SettleOptions(integrator="rk4", record_every=5))
        log = TrajectoryLog({str(path)!r}, {{"seed": 0}}, network=net)
        log.record_relaxation([free], label="done")
        np.save({str(tmp_path / "state.npy")!r}, free.state)
        os._exit(3)  # no close, no atexit: as if killed
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    reader = read_log(path)
    assert len(reader) == 1
    rel = reader.relaxation(0)
    assert rel.label == "done"
    np.testing.assert_array_equal(rel["free"].final_state, np.load(tmp_path / "state.npy"))


def test_tables_whole_and_row_by_row(tmp_path):
    from dynsim.io.log import TrajectoryLog, read_log
    from dynsim.validation import ValidationError

    path = tmp_path / "tables.h5"
    with TrajectoryLog(path, {"run": "tables"}) as log:
        log.record_table("sweep", {"beta": [0.1, 0.05], "variant": ["positive", "centered"],
                                   "cosine": np.array([[0.9, 0.8], [0.99, 0.98]])}, attrs={"swept": "beta"})
        for epoch in range(3):
            log.append_row("history", {"epoch": epoch, "loss": 1.0 / (epoch + 1)})
        with pytest.raises(ValidationError, match="already exists"):
            log.record_table("sweep", {"beta": [1.0]})
        with pytest.raises(ValidationError, match="equal lengths"):
            log.record_table("bad", {"a": [1, 2], "b": [1]})
        with pytest.raises(ValidationError, match="has columns"):
            log.append_row("history", {"epoch": 3})
    reader = read_log(path)
    assert reader.tables == ["history", "sweep"]
    sweep = reader.table("sweep")
    np.testing.assert_array_equal(sweep["beta"], [0.1, 0.05])
    assert list(sweep["variant"]) == ["positive", "centered"]
    assert sweep["cosine"].shape == (2, 2) and sweep["__attrs__"]["swept"] == "beta"
    history = reader.table("history")
    np.testing.assert_array_equal(history["epoch"], [0, 1, 2])
    np.testing.assert_allclose(history["loss"], [1.0, 0.5, 1.0 / 3])
    with pytest.raises(KeyError, match="no table 'nope'"):
        reader.table("nope")
