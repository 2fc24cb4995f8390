"""Experiments built on the library: how gradient estimates depend on how the phases are run, associative memory."""
from dynsim.experiments.estimator_sweep import (
    GRID_KEYS, DEFAULT_POINT, PC_GRID_KEYS, PC_DEFAULT_POINT, sweep_estimates, sweep_ep_estimates, sweep_pc_updates,
    reference_gradient, error_norms,
)
from dynsim.experiments.memory import (
    GROUP_NAMES, random_patterns, flipped_bits, corrupt, nearest_pattern, recall_scores, memory_network, recall,
    train_memory, recall_table,
)
