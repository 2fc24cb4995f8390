"""dynsim: simulator of energy-based neural networks."""
from dynsim._version import __version__
