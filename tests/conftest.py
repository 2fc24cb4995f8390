import os
from pathlib import Path

import numpy as np
import pytest

import integrators

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
