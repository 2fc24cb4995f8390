"""References for EP on vector-field (asymmetric) Hopfield networks: the true gradient and the angles to it.

The relaxation of a :class:`~dynsim.networks.vector_field_hopfield.VectorFieldHopfieldNetwork`
is not a gradient flow, so recurrent backprop solves with the transposed,
non-symmetric Jacobian J of the vector field: the gradient of the loss at the
free fixed point is ``-(J^{-T} dC/ds)^T d(ds/dt)/dtheta``
(:func:`vf_implicit_gradient`), while VF-EP tends, as beta -> 0, to
``d^2E_W/(dtheta ds) J^{-1} dC/ds`` (:func:`vf_ep_limit`). The two agree when
the feedback is the forward weights' transpose; :func:`vf_alignment` gives
the angles between them per layer.

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
.. [2] L. B. Almeida (1987); F. J. Pineda (1987): recurrent backprop, the
       gradient at a fixed point by the implicit function theorem.
.. [3] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic
       feedback weights support error backpropagation for deep learning",
       Nat. Commun. 7:13276 (2016).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dynsim.learning.contrastive import ep_gradient
from dynsim.learning.estimate import Estimate
from dynsim.learning.vector_field_ep import _check_network, _options, vf_ep_gradient
from dynsim.networks.vector_field_hopfield import angle_between
from dynsim.references.gradients import cost_gradient_state
from dynsim.relax.phases import PhaseResult, SettleOptions
from dynsim.relax.vector_field import settle_vector_field
from dynsim.validation import NotConvergedWarning, ValidationError, real_scalar

__all__ = ["VFImplicitGradient", "vf_implicit_gradient", "vf_ep_limit", "VFAlignment", "vf_alignment",
           "REFERENCE_OPTIONS"]

REFERENCE_OPTIONS = SettleOptions(integrator="dopri5", atol=1e-9, rtol=1e-9)
"""Free-phase settings of :func:`vf_alignment` by default: the reference gradient needs a settled state."""


@dataclass
class VFImplicitGradient:
    """Result of :func:`vf_implicit_gradient`.

    Attributes
    ----------
    gradient : ndarray, shape (n_params,)
        dL/dtheta of the batch-mean cost at the free fixed point, float64
        (the feedback blocks' entries included).
    adjoint : ndarray, shape (batch, n_free)
        lambda, the solution of J^T lambda = dC/ds (zero on pinned units).
    pinned : ndarray of bool, shape (batch, n_free)
        Units held at a bound of the box by an outward field.
    residual : ndarray, shape (batch,)
        ||ds/dt|| (projected) at the state used.
    """

    gradient: np.ndarray
    adjoint: np.ndarray
    pinned: np.ndarray
    residual: np.ndarray


def _linearisation(network, x, target, free, box, residual_tol, stacklevel):
    """State, pinned units, residual, restricted Jacobians M and cost gradient c at the free fixed point.

    Pinned units do not move under a small change of theta: their rows of M
    are the identity and their columns in the other rows zero, so that
    ``M v = r`` leaves them at 0 and solves J_AA v_A = r_A on the active set.
    """
    _check_network(network)
    x = network.check_input(x)
    batch = x.shape[0]
    target = network.check_target(target, batch)
    residual_tol = real_scalar("residual_tol", residual_tol, 0.0, np.inf, low_open=True, high_open=True)
    if isinstance(free, PhaseResult):
        if not free.converged:
            warnings.warn(f"the free phase did not converge ({free.integration.message}); the reference gradient "
                          f"is taken where the largest residual is {free.integration.residual.max():.3e}",
                          NotConvergedWarning, stacklevel=stacklevel)
        s = network.check_state(free.state, batch, name="free.state")
    elif isinstance(free, np.ndarray):
        s = network.check_state(free, batch, name="free")
    else:
        raise ValidationError(f"free must be a PhaseResult or a state array (batch, n_free), got "
                              f"{type(free).__name__}")
    if isinstance(box, str) and box == "auto":
        box = network.natural_box
    f = network.dsdt(x, s).astype(np.float64)
    s64 = s.astype(np.float64)
    if box is None:
        pinned = np.zeros(s.shape, dtype=bool)
    else:
        lo, hi = box
        pinned = ((s64 <= lo) & (f < 0)) | ((s64 >= hi) & (f > 0))
    residual = np.linalg.norm(np.where(pinned, 0.0, f), axis=1)
    if not isinstance(free, PhaseResult) and np.any(residual > residual_tol * (1 + np.linalg.norm(s64, axis=1))):
        warnings.warn(f"the state is not a fixed point: largest residual ||ds/dt|| = {residual.max():.3e}",
                      NotConvergedWarning, stacklevel=stacklevel)
    M = network.field_jacobian(x, s)
    active = ~pinned
    M *= active[:, :, None] & active[:, None, :]
    idx = np.nonzero(pinned)
    M[idx[0], idx[1], idx[1]] = 1.0
    c = np.where(active, cost_gradient_state(network, s64, target.astype(np.float64)), 0.0)
    return x, s, pinned, residual, M, c


def vf_implicit_gradient(network, x, target, free, box="auto", residual_tol=1e-6):
    """The true gradient of the batch-mean cost at the free fixed point (recurrent backprop), dense.

    At a fixed point f(s*, theta) = 0 of the vector field f = ds/dt, the
    implicit function theorem gives ds*/dtheta = -J^{-1} df/dtheta with
    J = df/ds, hence

        dL/dtheta = -lambda^T df/dtheta,    J^T lambda = dC/ds,

    batch-averaged. J is not symmetric unless the feedback is tied (then this
    is :func:`dynsim.references.gradients.implicit_gradient`). Units held at a
    bound of the box by an outward field stay there under a small change of
    theta and leave the linear system. Dense per-sample solves: for networks
    of up to a few thousand free units.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    free : PhaseResult or ndarray, shape (batch, n_free)
        The free fixed point (a phase that did not converge, or a state whose
        residual exceeds ``residual_tol * (1 + ||s||)``, warns with
        :class:`~dynsim.validation.NotConvergedWarning`).
    box : 'auto', (float, float) or None
        Projection box of the dynamics ('auto': the activation's natural box).
    residual_tol : float

    Returns
    -------
    VFImplicitGradient

    References
    ----------
    Almeida (1987); Pineda (1987); Scellier et al. (2018), Sec. 2.
    """
    x, s, pinned, residual, M, c = _linearisation(network, x, target, free, box, residual_tol, stacklevel=4)
    adjoint = np.linalg.solve(np.swapaxes(M, 1, 2), c[:, :, None])[:, :, 0]
    gradient = -network.field_vjp_params(x, s, adjoint)
    return VFImplicitGradient(gradient=gradient, adjoint=adjoint, pinned=pinned, residual=residual)


def vf_ep_limit(network, x, target, free, box="auto", residual_tol=1e-6):
    """What the forward part of :func:`vf_ep_gradient` tends to as beta -> 0, shape (n_forward,), float64.

    The nudged fixed point moves by ds/dbeta = J^{-1} dC/ds, so EP's
    contrast of dE_W/dtheta tends to ``d^2E_W/(dtheta ds) J^{-1} dC/ds``.
    With tied feedback J is symmetric and this is the true gradient
    (:func:`vf_implicit_gradient`); otherwise the error signal travels
    through B instead of W^T (J^{-1} instead of J^{-T}), which is what the
    feedback's alignment controls. Arguments as in :func:`vf_implicit_gradient`.

    References
    ----------
    Scellier et al. (2018), Sec. 4.
    """
    x, s, pinned, residual, M, c = _linearisation(network, x, target, free, box, residual_tol, stacklevel=4)
    direction = np.linalg.solve(M, c[:, :, None])[:, :, 0]
    sym = (network if network.dtype == np.float64 else network.astype(np.float64)).symmetric_network()
    return sym.energy_grad_params_directional(x.astype(np.float64), s.astype(np.float64), direction)


@dataclass
class VFAlignment:
    """Result of :func:`vf_alignment`: angles in degrees, per forward parameter block and 'all'.

    Attributes
    ----------
    to_true_gradient : dict of str to float
        Between the VF-EP update and the true gradient (recurrent backprop
        of the vector-field network, :func:`vf_implicit_gradient`).
    to_symmetric_ep : dict of str to float
        Between the VF-EP update and the EP update of the symmetric network
        with the same forward weights (B_k = W_k^T, its own free phase).
    feedback : dict of str to float
        Between each B_k and W_k^T (:meth:`VectorFieldHopfieldNetwork.feedback_angles`).
    estimate : Estimate
        The VF-EP estimate (no weight decay).
    reference : VFImplicitGradient
    symmetric_estimate : Estimate
    """

    to_true_gradient: dict
    to_symmetric_ep: dict
    feedback: dict
    estimate: Estimate
    reference: VFImplicitGradient
    symmetric_estimate: Estimate


def _forward_blocks(network):
    blocks = {name: sl for name, sl in network.parameter_blocks().items() if not name.startswith("B_")}
    blocks["all"] = slice(0, network.n_forward)
    return blocks


def vf_alignment(network, x, target, beta=0.1, variant="centered", options=None, nudged_options=None):
    """Per-layer angles of the VF-EP update to the true gradient and to the symmetric network's EP.

    Lillicrap et al. (2016, Fig. 2) and Akrout et al. (2019) follow such
    angles during training: 90 degrees is an update unrelated to the
    gradient, 0 its direction; an update within 90 degrees still descends
    the loss.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (batch, n_input)
        A held-out batch.
    target : ndarray, shape (batch, n_output)
    beta : float
        Nudging strength of both EP estimates.
    variant : {'centered', 'positive', 'negative'}
    options : SettleOptions, optional
        Free-phase settings of both networks; by default
        :data:`REFERENCE_OPTIONS` (dopri5 to 1e-9), since the true gradient
        is the fixed point's.
    nudged_options : SettleOptions, optional
        Nudged-phase settings (default: ``options``).

    Returns
    -------
    VFAlignment

    Notes
    -----
    Everything is computed in float64 (a float32 network is copied). The
    angle to the true gradient includes EP's own bias (O(beta^2) for the
    centered variant with smooth activations; with the hard sigmoid, units
    that a finite nudge moves off a bound, so tied feedback does not give 0
    there either); the angle to the symmetric network's EP isolates what
    the feedback changes (0 when tied).
    """
    _check_network(network)
    options = REFERENCE_OPTIONS if options is None else _options("options", options)
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    if network.dtype != np.float64:
        # The angles are a measurement: a float32 state cannot settle to the tolerance the reference needs.
        network = network.astype(np.float64)
        x, target = x.astype(np.float64), target.astype(np.float64)
    free = settle_vector_field(network, x, target=target, options=options)
    estimate = vf_ep_gradient(network, x, target, beta, variant, options=options, nudged_options=nudged_options,
                              free=free)
    reference = vf_implicit_gradient(network, x, target, free)
    sym = network.symmetric_network()
    sym_est = ep_gradient(sym, x, target, beta, variant, options=options, nudged_options=nudged_options)
    to_true, to_sym = {}, {}
    for name, sl in _forward_blocks(network).items():
        to_true[name] = angle_between(estimate.gradient[sl], reference.gradient[sl])
        to_sym[name] = angle_between(estimate.gradient[sl], sym_est.gradient[sl])
    return VFAlignment(to_true_gradient=to_true, to_symmetric_ep=to_sym, feedback=network.feedback_angles(),
                       estimate=estimate, reference=reference, symmetric_estimate=sym_est)
