"""Learning rules that read updates off settled states (EP in its variants, CHL, predictive coding) and the rules
without weight transport (feedback alignment, target propagation, vector-field EP); one entry point by rule name."""
from dynsim.learning.estimate import Estimate
from dynsim.learning.contrastive import EP_VARIANTS, ep_gradient, chl_gradient, drive_held
from dynsim.learning.predictive_coding import PC_VARIANTS, PC_NETWORKS, pc_gradient, zil_gradient, feedforward_phase
from dynsim.learning.feedback_alignment import FEEDBACK_KINDS, feedback_alignment_gradient, feedback_matrices
from dynsim.learning.target_propagation import dtp_gradient, dtp_targets
from dynsim.learning.microcircuit_plasticity import microcircuit_gradient, microcircuit_updates
from dynsim.learning.rules import RULES, PC_RULES, gradient_estimate
from dynsim.learning.vector_field_ep import (VF_EP_VARIANTS, vf_ep_gradient, weight_mirror_gradient, vf_train_epoch,
                                            vf_evaluate)
