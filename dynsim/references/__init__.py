"""What the local rules are measured against: recurrent backprop, BPTT, and the metrics that compare updates with them."""
from dynsim.references.gradients import (
    ImplicitGradient, BPTTGradients, implicit_gradient, bptt_gradients, cost_gradient_state, pinned_units,
)
from dynsim.references.compare import gradient_metrics, alignment_angles, normalized_rmse, GDUResult, gdu_check, ep_step_updates
from dynsim.references.pc_theory import output_jacobian_gram, predicted_output_bias_error
from dynsim.references.vector_field import VFImplicitGradient, VFAlignment, vf_implicit_gradient, vf_ep_limit, vf_alignment
