"""Experiments built on the library: sweeps of how gradient estimates depend on how phases are run, associative memory."""
from dynsim.experiments.estimator_sweep import GRID_KEYS, DEFAULT_POINT, sweep_ep_estimates, reference_gradient
from dynsim.experiments.pc_sweep import PC_GRID_KEYS, PC_DEFAULT_POINT, sweep_pc_updates, error_norms
from dynsim.experiments.memory import (
    GROUP_NAMES, random_patterns, flipped_bits, corrupt, nearest_pattern, recall_scores, memory_network, recall,
    train_memory, recall_table,
)
