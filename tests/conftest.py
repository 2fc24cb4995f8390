import os
import sys
from pathlib import Path

# The suite runs in two processes (pytest-xdist) on CI's two cores: a BLAS pool of more threads per process spins
# against the other process. Measured here: one relaxation of the MNIST conv net took 160 s with two BLAS threads
# per process on busy cores, 4 s with one. Set before numpy loads BLAS; subprocesses (the scenarios) inherit it.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
if "numpy" in sys.modules:  # a plugin loaded it first: its BLAS pool is already sized
    import warnings

    warnings.warn("numpy was imported before tests/conftest.py could limit the BLAS threads to one per process; "
                  "set OPENBLAS_NUM_THREADS=1 yourself if the suite runs slowly")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import integrators  # noqa: E402

LINEAR = integrators.VectorField("fields_for_tests", "linear_field")
VAN_DER_POL = integrators.VectorField("fields_for_tests", "forced_van_der_pol")


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same random numbers."""
    return np.random.default_rng(12345)


def real_data_root(name="mnist"):
    """The folder whose ``name`` subfolder holds a data set's files, or None.

    Looked for as the scenarios do: ``$DYNSIM_DATA``, the checkout's ``data/``,
    then ``shared/data`` beside the checkout (as in CI).
    """
    from dynsim.datasets.idx import FILES

    checkout = Path(__file__).resolve().parents[1]
    for root in (os.environ.get("DYNSIM_DATA"), checkout / "data", checkout.parent / "shared" / "data"):
        if root and all((Path(root) / name / f).exists() for f in FILES):
            return Path(root)
    return None


@pytest.fixture(scope="session")
def mnist_splits():
    """Real MNIST (50,000 / 10,000 / 10,000, float64), loaded once per session; skips when the files are absent."""
    from dynsim.datasets.idx import load

    root = real_data_root("mnist")
    if root is None:
        pytest.skip("the MNIST IDX files are not present (DYNSIM_DATA, data/ or shared/data)")
    return load("mnist", data_dir=root, download=False)


@pytest.fixture
def cli_plot():
    """``cli_plot(log, kind, out, *args)``: ``dynsim plot`` in a subprocess; asserts that it wrote a PNG to ``out``."""
    import subprocess

    def plot(log, kind, out, *args):
        proc = subprocess.run([sys.executable, "-m", "dynsim.cli.main", "plot", str(log), "--kind", kind, "--out",
                               str(out), *map(str, args)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(out) and Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return out

    return plot
