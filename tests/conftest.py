import numpy as np
import pytest

import integrators

LINEAR = integrators.VectorField("fields_for_tests", "linear_field")
VAN_DER_POL = integrators.VectorField("fields_for_tests", "forced_van_der_pol")


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same random numbers."""
    return np.random.default_rng(12345)
