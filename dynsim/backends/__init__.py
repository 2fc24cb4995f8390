"""Backends that run dynsim's network descriptions somewhere other than Numba on the CPU.

The Numba kernels of :mod:`dynsim.networks` stay the default and the reference;
a backend takes the same description (groups, couplings, activations, the flat
parameter vector ``theta``) and evaluates the same energy, fields, relaxation
schemes and learning rules with another array library.

- :mod:`dynsim.backends.torch`: PyTorch on the CPU or a CUDA GPU (the optional
  extra ``pip install -e ".[torch]"``).
"""
