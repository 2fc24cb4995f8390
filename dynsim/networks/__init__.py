"""Network descriptions and their compiled kernels: the continuous Hopfield network, predictive coding networks,
activations."""
from dynsim.networks.layout import NetworkLayout
from dynsim.networks.hopfield import HopfieldNetwork, HOPFIELD_FIELD
from dynsim.networks.pc import PCNetwork, PC_FIELD
