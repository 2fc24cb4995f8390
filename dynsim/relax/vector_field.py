"""Relaxation of vector-field (asymmetric) Hopfield networks: the integrators, or the network's own sweeps.

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
"""
from __future__ import annotations

from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork
from dynsim.relax.phases import settle
from dynsim.validation import ValidationError

__all__ = ["settle_vector_field"]


def settle_vector_field(network, x, s0=None, target=None, beta=0.0, clamp_output=False, options=None, phase="free",
                        drive=None):
    """Relax a :class:`VectorFieldHopfieldNetwork`: :func:`dynsim.relax.phases.settle` for any integrator.

    The ODE integrators of :data:`dynsim.relax.phases.SETTLE_METHODS` go
    through :func:`dynsim.relax.phases.settle` with the compiled
    :data:`VF_FIELD`; the relaxation schemes ``'fixed_point'`` and ``'block'``
    through :meth:`VectorFieldHopfieldNetwork.relax_sweeps`. Arguments and
    result are ``settle``'s. ``PhaseResult.energy`` holds the pseudo-energy
    of :meth:`VectorFieldHopfieldNetwork.energy`; the residual
    (``.integration.residual``) is the figure that says whether the state
    has settled.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (batch, n_input)
    s0 : ndarray, shape (batch, n_free), optional
    target : ndarray, shape (batch, n_output), optional
    beta : float
    clamp_output : bool
    options : SettleOptions, optional
    phase : str
    drive : ndarray, shape (batch, n_free), optional

    Returns
    -------
    PhaseResult
    """
    if not isinstance(network, VectorFieldHopfieldNetwork):
        raise ValidationError(f"network must be a VectorFieldHopfieldNetwork, got {type(network).__name__}")
    # settle sends the sweep schemes to the network's own relaxation and the ODE integrators to its field.
    return settle(network, x, s0=s0, target=target, beta=beta, clamp_output=clamp_output, options=options,
                  phase=phase, drive=drive)
