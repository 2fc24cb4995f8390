"""The PyTorch version that dynsim's conv PC training is timed against computes the same update."""
import numpy as np
import pytest

from dynsim.benchmarks.conv_pc_epochs import DT, STEPS, torch_pc_gradients
from dynsim.learning.predictive_coding import pc_gradient
from dynsim.networks import Architecture, ConvPCNetwork
from dynsim.relax.phases import SettleOptions


def test_the_pytorch_version_gives_dynsims_strict_pc_update(rng):
    torch = pytest.importorskip("torch")
    arch = Architecture.conv_stack((1, 28, 28), [32, 64], [5, 5], "mm", fc=[10], activation="tanh")
    net = ConvPCNetwork(arch, seed=0, dtype=np.float64, init="fan-in")
    x = rng.uniform(0, 1, (6, 784))
    y = np.eye(10)[rng.integers(0, 10, 6)]
    options = SettleOptions(integrator="euler", dt=DT, max_steps=STEPS, stop_at_steady_state=False)
    ours = pc_gradient(net, x, y, "strict", options=options).gradient
    torch.set_default_dtype(torch.float64)
    try:
        conv1, conv2 = torch.nn.Conv2d(1, 32, 5), torch.nn.Conv2d(32, 64, 5)
        dense = torch.nn.Linear(1024, 10)
    finally:
        torch.set_default_dtype(torch.float32)
    b = net.parameter_blocks()
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor(net.theta[b["W_input_conv_1"]].reshape(32, 1, 5, 5)))
        conv2.weight.copy_(torch.tensor(net.theta[b["W_conv_1_conv_2"]].reshape(64, 32, 5, 5)))
        dense.weight.copy_(torch.tensor(net.theta[b["W_conv_2_output"]].reshape(1024, 10).T))
        conv1.bias.copy_(torch.tensor(net.theta[b["b_conv_1"]]))
        conv2.bias.copy_(torch.tensor(net.theta[b["b_conv_2"]]))
        dense.bias.copy_(torch.tensor(net.theta[b["b_output"]]))
    torch_pc_gradients(conv1, conv2, dense, torch.tensor(x).reshape(6, 1, 28, 28), torch.tensor(y))
    theirs = {"W_input_conv_1": conv1.weight.grad.numpy().ravel(), "W_conv_1_conv_2": conv2.weight.grad.numpy().ravel(),
              "W_conv_2_output": dense.weight.grad.numpy().T.ravel(), "b_conv_1": conv1.bias.grad.numpy(),
              "b_conv_2": conv2.bias.grad.numpy(), "b_output": dense.bias.grad.numpy()}
    for name, grad in theirs.items():
        np.testing.assert_allclose(ours[b[name]], grad, rtol=1e-9, atol=1e-12 * np.abs(grad).max())
