"""Speed benchmarks: measurements, not tests; each module runs with ``python -m dynsim.benchmarks.<name>``.

- :mod:`~dynsim.benchmarks.training_epochs`: whole training epochs through the
  scenarios (what a user waits for), beside PyTorch, pcx and Laborieux et
  al.'s code;
- :mod:`~dynsim.benchmarks.kernels`: the gradient estimate and optimizer
  step of EP and PC minibatches on random data, against the machine and
  PyTorch autograd;
- :mod:`~dynsim.benchmarks.settle`: settling a Hopfield network with
  dynsim's integrators against ``scipy.integrate.solve_ivp``, and the
  compile / cache-load times.

Helpers: :mod:`~dynsim.benchmarks.flops` (operation counts, matrix-product
rate), :mod:`~dynsim.benchmarks.torch_reference` (the PyTorch versions) and
:mod:`~dynsim.benchmarks.pcx_runner` (run in pcx's own environment).
"""
