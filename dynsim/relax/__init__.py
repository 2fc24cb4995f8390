"""Relaxation to equilibrium: free, nudged and clamped phases with an integrator or a relaxation scheme (fixed point,
block sweeps)."""
from dynsim.relax.phases import (
    SETTLE_METHODS, NOT_CONVERGED_ACTIONS, SettleOptions, PhaseResult, DivergenceSite, StepRetry, locate_divergence,
    free_phase, nudged_phase, settle, settle_checked, HOPFIELD_FIELD,
)
from dynsim.relax.vector_field import settle_vector_field
