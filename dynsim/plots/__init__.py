"""Figures saved as PNG: relaxations, training curves, gradient comparisons."""
from dynsim.plots.relaxation import plot_settling, plot_energy, plot_recall, pattern_shape, plot_feature_maps
from dynsim.plots.training import plot_training_curves, plot_decision_regions, plot_error_curves
from dynsim.plots.gradients import plot_sweep, plot_gdu, plot_gdu_table, plot_error_settling
from dynsim.plots.rules import plot_alignment, plot_rule_comparison
