"""The PyTorch backend: dynsim's Hopfield and predictive coding networks, relaxations, EP/CHL/PC and optimizers on the CPU or a CUDA GPU.

An optional extra (``pip install -e ".[torch]"``); the Numba path stays the
default and the reference, and the tests hold this backend to it (states
after each phase, EP and CHL updates, training steps). ::

    from dynsim.backends.torch import TorchHopfieldNetwork, TorchAdam, TorchTrainer
    tnet = TorchHopfieldNetwork(network, device="cuda")        # a HopfieldNetwork or ConvHopfieldNetwork
    trainer = TorchTrainer(tnet, "ep-centered", TorchAdam(tnet, 5e-4), beta=0.4, options=free_options,
                           nudged_options=nudged_options, cuda_graph=True)
    figures = trainer.train_epoch(x, labels, batch_size=128)   # x, labels already on the device
    tnet.to_host()                                             # the parameters back into `network`

Predictive coding: ``TorchPCNetwork(pc_network)`` (dense) and
``TorchConvPCNetwork(conv_pc_network)`` (feature maps, conv and pooled
couplings) with the rules ``pc-strict`` and ``pc-fixed-prediction``.

Modules: :mod:`~dynsim.backends.torch.network` (energy, fields, parameter
gradients), :mod:`~dynsim.backends.torch.couplings` (dense and conv-pool
operators), :mod:`~dynsim.backends.torch.relax` (fixed point, block, Euler),
:mod:`~dynsim.backends.torch.learning` (the rules),
:mod:`~dynsim.backends.torch.optimizers`, :mod:`~dynsim.backends.torch.training` and
:mod:`~dynsim.backends.torch.fit` (``fit_on_device``: :func:`dynsim.training.loop.fit`'s epochs, rows and
checkpoints on a device, so a run moves between the device and the Numba path).
"""
from dynsim.backends.torch._torch import require_torch

require_torch()

from dynsim.backends.torch.learning import TORCH_RULES, TorchEstimate, estimate  # noqa: E402
from dynsim.backends.torch.network import TorchHopfieldNetwork  # noqa: E402
from dynsim.backends.torch.optimizers import TorchAdam, TorchSGD, make_optimizer  # noqa: E402
from dynsim.backends.torch.pc import PC_TORCH_RULES, TorchPCNetwork, pc_estimate, pc_relax  # noqa: E402
from dynsim.backends.torch.conv_pc import TorchConvPCNetwork  # noqa: E402
from dynsim.backends.torch.relax import TORCH_SCHEMES, RelaxationDivergedError, TorchPhase, relax  # noqa: E402
from dynsim.backends.torch.training import TorchTrainer, one_hot  # noqa: E402
from dynsim.backends.torch.fit import fit_on_device  # noqa: E402

__all__ = ["TorchHopfieldNetwork", "TorchSGD", "TorchAdam", "make_optimizer", "TorchTrainer", "one_hot", "relax",
           "TorchPhase", "RelaxationDivergedError", "TORCH_SCHEMES", "TORCH_RULES", "TorchEstimate", "estimate",
           "TorchPCNetwork", "TorchConvPCNetwork", "pc_relax", "pc_estimate", "PC_TORCH_RULES", "fit_on_device"]
