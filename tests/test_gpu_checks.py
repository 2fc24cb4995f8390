"""The GPU script's agreement helper, run on the CPU: what it reports is what it claims to measure.

``dynsim.benchmarks.gpu_checks`` runs only where a GPU is lent; its PC agreement rows (inference state,
update, three Adam steps on the device against the Numba path) are checked here on the CPU device against
the same quantities computed independently in the test. Skipped when torch is absent.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_conv_pc import small_arch  # noqa: E402

from dynsim.backends.torch import TorchConvPCNetwork, TorchPCNetwork  # noqa: E402
from dynsim.benchmarks.gpu_checks import _pc_agreement  # noqa: E402
from dynsim.learning.rules import gradient_estimate  # noqa: E402
from dynsim.networks import ConvPCNetwork, PCNetwork  # noqa: E402
from dynsim.relax.phases import SettleOptions  # noqa: E402
from dynsim.training.optimizers import Adam  # noqa: E402

torch.set_num_threads(1)
OPTIONS = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
NETWORKS = {
    "dense": lambda dtype: PCNetwork([12, 9, 7, 4], activation="gelu", init="fan-in", seed=0, dtype=dtype),
    "conv": lambda dtype: ConvPCNetwork(small_arch(), seed=0, dtype=dtype),
}
DEVICE_CLASSES = {"dense": TorchPCNetwork, "conv": TorchConvPCNetwork}


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_pc_agreement_rows_are_small_in_float64_and_the_host_network_took_the_same_three_steps(kind):
    net = NETWORKS[kind](np.float64)
    start = net.theta.copy()
    row = _pc_agreement(net, DEVICE_CLASSES[kind], "cpu", 6, OPTIONS, np.random.default_rng(3), kind)
    assert row["dtype"] == "float64"
    assert row["inference state"] < 1e-12 and row["update"] < 1e-12 * max(row["update scale"], 1.0)
    assert row["3 Adam steps, eager"] < 1e-10
    assert "3 Adam steps, graph" not in row  # CUDA graphs only on a CUDA device
    # The helper leaves the host network where three Adam steps of the Numba path take it: replay them here
    # with the same random draws.
    rng = np.random.default_rng(3)
    n_in, n_out = net.group_sizes[0], net.group_sizes[-1]
    rng.random((6, n_in)), rng.integers(0, n_out, 6)
    ref = NETWORKS[kind](np.float64)
    assert np.array_equal(ref.theta, start)
    opt = Adam(ref, 1e-3)
    for _ in range(3):
        xb, lb = rng.random((6, n_in)), rng.integers(0, n_out, 6)
        opt.step(ref.theta, gradient_estimate("pc-strict", ref, xb, np.eye(n_out)[lb], options=OPTIONS).gradient)
    np.testing.assert_allclose(net.theta, ref.theta, rtol=0, atol=1e-14)
    assert np.abs(net.theta - start).max() > 1e-4  # the steps moved the parameters


def test_pc_agreement_sees_a_device_network_that_disagrees():
    net = NETWORKS["dense"](np.float64)

    class Perturbed(TorchPCNetwork):
        def __init__(self, network, device="cpu", dtype=None):
            super().__init__(network, device, dtype)
            self.theta += 1e-3  # a device copy that is not the host's parameters

    row = _pc_agreement(net, Perturbed, "cpu", 6, OPTIONS, np.random.default_rng(3), "dense")
    assert row["update"] > 1e-6 and row["3 Adam steps, eager"] > 1e-6
