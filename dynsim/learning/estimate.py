"""What every learning rule returns: the gradient estimate and the settled phases it was read from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynsim.relax.phases import PhaseResult

__all__ = ["Estimate"]


@dataclass
class Estimate:
    """A rule's estimate of dL/dtheta on one minibatch and the phases it was read from.

    Every rule, whatever its family, returns one (:func:`dynsim.learning.gradient_estimate`
    and each rule's own function): a learning step is ``theta -= lr * gradient``.

    Attributes
    ----------
    gradient : ndarray, shape (n_params,)
        Estimate of dL/dtheta (batch mean), in the network's dtype.
    free : PhaseResult
        The free phase: the settled state the prediction is read off (for a
        predictive coding network, its feedforward pass, which is its free
        equilibrium).
    phases : dict of str to PhaseResult
        The other phases, keyed 'nudged+', 'nudged-' (EP), 'clamped' (CHL)
        or 'inference' (predictive coding); empty for the backprop references.
    rule : str
        The rule's name, as :data:`dynsim.learning.RULES` or
        :data:`dynsim.learning.PC_RULES` spell it.
    betas : tuple of float
        The two nudging strengths an EP estimate contrasts (CHL: (0, nan));
        empty for the other rules.
    """

    gradient: np.ndarray
    free: PhaseResult
    phases: dict = field(default_factory=dict)
    rule: str = ""
    betas: tuple = ()

    @property
    def inference(self):
        """The predictive coding inference (output clamped to the target); None for the other rules."""
        return self.phases.get("inference")
