"""bfloat16 products on the torch backend (issue 16's stretch): TorchTrainer(autocast='bfloat16').

The products and convolutions take bfloat16 operands; states, parameters and the optimizer stay float32.
These tests run on the CPU, whose autocast casts the same operations down as CUDA's does for matrix products
and convolutions; the GPU script repeats the cosine check on the CIFAR network (section ``precision``).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dynsim.backends.torch import TorchHopfieldNetwork, TorchSGD, TorchTrainer  # noqa: E402
from dynsim.learning.rules import gradient_estimate  # noqa: E402
from dynsim.networks import Architecture, ConvHopfieldNetwork, HopfieldNetwork  # noqa: E402
from dynsim.relax.phases import SettleOptions  # noqa: E402
from dynsim.validation import ValidationError  # noqa: E402

torch.set_num_threads(1)
FREE = SettleOptions(integrator="block", max_steps=20, stop_at_steady_state=False)
NUDGED = SettleOptions(integrator="block", max_steps=8, stop_at_steady_state=False)


def _network(kind):
    if kind == "dense":  # the lab-mlp preset's shape, narrower
        return HopfieldNetwork.layered([784, 128, 10], seed=0, init_gain=1.0)
    arch = Architecture.conv_stack((1, 28, 28), [8, 16], [5, 5], "mm", fc=[10])  # the lab-conv structure, narrower
    return ConvHopfieldNetwork(arch, seed=0)


def _one_update(net64, x, labels, autocast):
    """The parameter change of one float32 training step with SGD at rate 1: minus the rule's estimate."""
    tn = TorchHopfieldNetwork(net64, device="cpu", dtype=np.float32)
    before = tn.theta.clone()
    trainer = TorchTrainer(tn, "ep-centered", TorchSGD(tn, 1.0), beta=0.4, options=FREE, nudged_options=NUDGED,
                           seed=0, autocast=autocast)
    trainer.step(tn.tensor(x), torch.as_tensor(labels))
    return (before - tn.theta).double().numpy(), tn


@pytest.mark.parametrize("kind, block_cosine, whole_cosine", [("dense", 0.99, 0.99), ("conv", 0.8, 0.9)])
def test_bfloat16_products_keep_the_update_near_the_float64_estimate(kind, block_cosine, whole_cosine):
    """One float32 step with bfloat16 products against the Numba path's float64 estimate.

    Measured: the 784-128-10 network's update keeps cosine 0.99+ in every block; the 1-8-16 conv net's has
    0.96 overall and falls with the distance from the output: 0.98 (output), 0.95, 0.85 (the input's
    kernels). float32 gives 1.0000 on both. So bfloat16 passes the gradient check on the MLP and only
    loosely on conv nets, as TF32 did on the GPU's CIFAR network.
    """
    net = _network(kind)
    rng = np.random.default_rng(1)
    x = rng.random((16, net.n_input))
    labels = rng.integers(0, 10, 16)
    ref = gradient_estimate("ep-centered", net, x, np.eye(10)[labels], 0.4, FREE, NUDGED).gradient
    g32, _ = _one_update(net, x, labels, None)
    g16, tn = _one_update(net, x, labels, "bfloat16")
    assert tn.theta.dtype == torch.float32  # the parameters stay float32
    rel32 = np.linalg.norm(g32 - ref) / np.linalg.norm(ref)
    rel16 = np.linalg.norm(g16 - ref) / np.linalg.norm(ref)
    assert rel32 < 1e-4
    assert rel16 > 10 * rel32  # the products did run in bfloat16
    assert g16 @ ref / (np.linalg.norm(g16) * np.linalg.norm(ref)) > whole_cosine
    for name, sl in net.parameter_blocks().items():
        cos = g16[sl] @ ref[sl] / (np.linalg.norm(g16[sl]) * np.linalg.norm(ref[sl]))
        assert cos > block_cosine, (name, cos)


def test_autocast_is_refused_for_a_float64_network_and_unknown_types():
    net = HopfieldNetwork.layered([6, 5, 3], seed=0)
    tn64 = TorchHopfieldNetwork(net, device="cpu")
    with pytest.raises(ValidationError, match="autocast='bfloat16' needs a float32 network .* got float64"):
        TorchTrainer(tn64, "ep-centered", TorchSGD(tn64, 0.1), options=FREE, autocast="bfloat16")
    tn32 = TorchHopfieldNetwork(net, device="cpu", dtype=np.float32)
    with pytest.raises(ValidationError, match=r"autocast must be one of \[None, 'bfloat16'\], got 'float16'"):
        TorchTrainer(tn32, "ep-centered", TorchSGD(tn32, 0.1), options=FREE, autocast="float16")
