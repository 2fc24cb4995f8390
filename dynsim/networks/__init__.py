"""Network descriptions and their compiled kernels: the continuous Hopfield network and the predictive coding
network, each dense or described as groups and couplings with convolutions and pooling; activations."""
from dynsim.networks.layout import NetworkLayout
from dynsim.networks.hopfield import HopfieldNetwork, HOPFIELD_FIELD
from dynsim.networks.pc import PCNetwork, PC_FIELD
from dynsim.networks.architecture import Architecture, Conv, Dense, Group
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.conv_pc import ConvPCNetwork
from dynsim.networks.dtp import DTPNetwork
from dynsim.networks.microcircuit import DendriticMicrocircuit, MICROCIRCUIT_FIELD
from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork, VF_FIELD, FEEDBACK_MODES
