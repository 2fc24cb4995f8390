"""Reference gradients that the local learning rules are measured against.

Both give the gradient of the batch-mean cost L = (1/B) sum_b C(s_b, y_b)
with respect to the flat parameter vector ``theta``:

- :func:`implicit_gradient`: recurrent backprop at the free fixed point
  (Almeida 1987; Pineda 1987). At s* the free dynamics rest, dE/ds(s*) = 0,
  so ds*/dtheta = -H^{-1} d^2E/(ds dtheta) with H = d^2E/ds^2 and
  dL/dtheta = -(d^2E/(dtheta ds)) lambda with H lambda = dC/ds. This is the
  quantity equilibrium propagation approaches as beta -> 0 (Scellier &
  Bengio 2017, Theorem 1).
- :func:`bptt_gradients`: backprop through time through T discrete
  (projected) Euler steps of the free phase, split into the contributions of
  its last K steps (Ernoult et al. 2019), which the per-step EP updates of
  the nudged phase match when beta -> 0 (their GDU property).

With the box projection of the hard sigmoid, units held at a bound by an
outward field do not move under a small change of theta: they leave the
linear system (active-set restriction) and the clipped Euler steps pass no
gradient through them.

References
----------
.. [1] L. B. Almeida, "A learning rule for asynchronous perceptrons with
       feedback in a combinatorial environment", IEEE ICNN (1987).
.. [2] F. J. Pineda, "Generalization of back-propagation to recurrent neural
       networks", Phys. Rev. Lett. 59, 2229 (1987).
.. [3] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [4] M. Ernoult, J. Grollier, D. Querlioz, Y. Bengio, B. Scellier, "Updates
       of Equilibrium Prop Match Gradients of Backprop Through Time in an RNN
       with Static Input", NeurIPS (2019).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse.linalg

import integrators
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import PhaseResult, SettleOptions, settle
from dynsim.validation import DivergenceError, NotConvergedWarning, ValidationError, positive_int, real_scalar

__all__ = ["ImplicitGradient", "BPTTGradients", "implicit_gradient", "bptt_gradients",
           "cost_gradient_state", "pinned_units"]


@dataclass
class ImplicitGradient:
    """Result of :func:`implicit_gradient`.

    Attributes
    ----------
    gradient : ndarray, shape (n_params,)
        dL/dtheta of the batch-mean cost at the free fixed point.
    adjoint : ndarray, shape (batch, n_free)
        lambda, the solution of H lambda = dC/ds (zero on pinned units).
    pinned : ndarray of bool, shape (batch, n_free)
        Units held at a bound of the box.
    residual : ndarray, shape (batch,)
        ||dE/ds|| (projected) at the state used.
    """

    gradient: np.ndarray
    adjoint: np.ndarray
    pinned: np.ndarray
    residual: np.ndarray


@dataclass
class BPTTGradients:
    """Result of :func:`bptt_gradients`.

    Attributes
    ----------
    per_step : ndarray, shape (K, n_params)
        ``per_step[k-1]`` is the contribution of the k-th last step.
    cumulative : ndarray, shape (K, n_params)
        Gradient truncated to the last k steps, k = 1..K.
    final_state : ndarray, shape (batch, n_free)
    """

    per_step: np.ndarray
    cumulative: np.ndarray
    final_state: np.ndarray


def cost_gradient_state(network, s, target):
    """dC/ds per sample, shape (batch, n_free): s_out - y on the output units, 0 elsewhere."""
    g = np.zeros_like(s)
    g[:, network.output_slice] = s[:, network.output_slice] - target
    return g


def _box(network, box):
    if box == "auto":
        return network.natural_box
    return box


def pinned_units(network, x, s, box="auto"):
    """Units held at a bound of the box by an outward field, shape (batch, n_free)."""
    box = _box(network, box)
    if box is None:
        return np.zeros(s.shape, dtype=bool)
    grad = network.energy_grad_state(x, s)
    lo, hi = box
    return ((s <= lo) & (grad > 0)) | ((s >= hi) & (grad < 0))


def _state_from(network, free, batch):
    if isinstance(free, PhaseResult):
        if not free.converged:
            worst = float(free.integration.residual.max())
            warnings.warn(f"the free phase did not converge ({free.integration.message}); the reference "
                          f"gradient is taken where the largest residual is {worst:.3e}",
                          NotConvergedWarning, stacklevel=3)
        return network.check_state(free.state, batch)
    if not isinstance(free, np.ndarray):
        raise ValidationError(f"free must be a PhaseResult or a state array (batch, n_free), got "
                              f"{type(free).__name__}")
    return network.check_state(free, batch, name="free")


def implicit_gradient(network, x, target, free, method="dense", box="auto", residual_tol=1e-6,
                      cg_rtol=1e-12):
    """Recurrent-backprop gradient of the batch-mean cost at the free fixed point.

    Parameters
    ----------
    network : HopfieldNetwork or ConvHopfieldNetwork
        (a convolutional one with ``method='cg'``: max pooling linearised at
        the free state's winners, :mod:`dynsim.networks.conv_linearization`)
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    free : PhaseResult or ndarray, shape (batch, n_free)
        The free equilibrium (a PhaseResult that did not converge, or a state
        whose residual exceeds ``residual_tol * (1 + ||s||)``, gives a
        :class:`NotConvergedWarning` naming the residual).
    method : {'dense', 'cg'}
        Dense per-sample solves, or conjugate gradients on Hessian-vector
        products (``scipy.sparse.linalg.cg``) for large networks.
    box : 'auto', (float, float) or None
        Projection box of the dynamics ('auto': the activation's natural box).

    Returns
    -------
    ImplicitGradient

    References
    ----------
    Almeida (1987); Pineda (1987); Scellier & Bengio (2017), Theorem 1.
    """
    if not isinstance(network, (HopfieldNetwork, ConvHopfieldNetwork)):
        raise ValidationError(f"network must be a HopfieldNetwork or a ConvHopfieldNetwork, got "
                              f"{type(network).__name__}")
    if method not in ("dense", "cg"):
        raise ValidationError(f"method must be 'dense' or 'cg', got {method!r}")
    if method == "dense" and isinstance(network, ConvHopfieldNetwork):
        raise ValidationError("method='dense' forms each sample's Hessian; a ConvHopfieldNetwork's has "
                              f"{network.n_free}^2 entries: use method='cg' (Hessian-vector products)")
    residual_tol = real_scalar("residual_tol", residual_tol, 0.0, np.inf, low_open=True, high_open=True)
    x = network.check_input(x)
    batch = x.shape[0]
    target = network.check_target(target, batch)
    s = _state_from(network, free, batch)
    drive = network.input_drive(x)  # constant here: computed once, not in every CG iteration
    pinned = pinned_units(network, x, s, box)
    grad_s = np.where(pinned, 0.0, network.energy_grad_state(x, s, drive))
    residual = np.linalg.norm(grad_s, axis=1)
    if not isinstance(free, PhaseResult) and np.any(residual > residual_tol * (1 + np.linalg.norm(s, axis=1))):
        warnings.warn(f"the state is not a fixed point: largest residual ||dE/ds|| = {residual.max():.3e}",
                      NotConvergedWarning, stacklevel=2)
    active = ~pinned
    rhs = np.where(active, cost_gradient_state(network, s, target), 0.0)
    adjoint = np.zeros_like(s)
    if method == "dense":
        H = network.energy_hessian(x, s)
        for b in range(batch):
            idx = np.flatnonzero(active[b])
            if idx.size:
                adjoint[b, idx] = np.linalg.solve(H[b][np.ix_(idx, idx)], rhs[b, idx])
    else:
        n = network.n_free
        mask = active.astype(float)

        def matvec(v):
            v = v.reshape(batch, n) * mask
            # Pinned units are fixed: their rows of the restricted system are the identity.
            return (mask * network.energy_hvp(x, s, v, drive) + (1 - mask) * v).ravel()

        op = scipy.sparse.linalg.LinearOperator((batch * n, batch * n), matvec=matvec, dtype=float)
        sol, info = scipy.sparse.linalg.cg(op, rhs.ravel(), rtol=cg_rtol, atol=0.0, maxiter=20 * batch * n)
        if info != 0:
            raise RuntimeError(f"conjugate gradients did not converge (info={info}); is H positive definite?")
        adjoint = sol.reshape(batch, n) * mask
    gradient = -network.energy_grad_params_directional(x, s, adjoint)
    return ImplicitGradient(gradient=gradient, adjoint=adjoint, pinned=pinned, residual=residual)


def bptt_gradients(network, x, target, n_steps, truncation, dt, s0=None, integrator="euler", box="auto"):
    """BPTT through ``n_steps`` Euler steps of the free phase, per step for the last ``truncation`` steps.

    The discrete free dynamics are s_{t+1} = P(s_t - dt dE/ds(s_t)) with P
    the projection onto the box (identity without one); the loss is the
    batch-mean cost of s_T.

    Parameters
    ----------
    network : HopfieldNetwork or ConvHopfieldNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    n_steps : int
        T, free-phase steps from ``s0`` (zeros by default).
    truncation : int
        K <= T, how many of the last steps to backpropagate through.
    dt : float
        Euler step (1 for ``'fixed_point'``).
    integrator : {'euler', 'projected_euler', 'fixed_point'}
        ``'fixed_point'``, the synchronous sweep s <- P(rho'(s) h) of
        :mod:`dynsim.relax.block_relaxation`, is the (projected) Euler step of
        dt = 1 of the free dynamics; it is how a ConvHopfieldNetwork relaxes.

    Returns
    -------
    BPTTGradients

    References
    ----------
    Ernoult et al. (2019), Sec. 3 (the discrete-time setting and truncated BPTT).
    """
    if integrator not in ("euler", "projected_euler", "fixed_point"):
        raise ValidationError(f"bptt_gradients integrates with 'euler', 'projected_euler' or 'fixed_point', got "
                              f"{integrator!r}")
    if integrator == "fixed_point" and dt != 1.0:
        raise ValidationError(f"dt: the 'fixed_point' sweep s <- P(rho'(s) h) is the Euler step of dt = 1; pass "
                              f"dt=1.0, got {dt!r}")
    if integrator != "fixed_point" and isinstance(network, ConvHopfieldNetwork):
        raise ValidationError(f"integrator: a ConvHopfieldNetwork relaxes by sweeps; use 'fixed_point' (Euler with "
                              f"dt = 1), got {integrator!r}")
    T = positive_int("n_steps", n_steps)
    K = positive_int("truncation", truncation)
    if K > T:
        raise ValidationError(f"truncation must be <= n_steps={T}, got {K}")
    dt = real_scalar("dt", dt, 0.0, np.inf, low_open=True, high_open=True)
    x = network.check_input(x)
    batch = x.shape[0]
    target = network.check_target(target, batch)
    s = np.zeros((batch, network.n_free)) if s0 is None else network.check_state(s0, batch)
    natural = isinstance(box, str) and box == "auto"
    box = _box(network, box)
    if integrator == "projected_euler" and box is None:
        raise ValidationError("projected_euler needs a box: the activation has none; pass box=(low, high)")

    # The natural box may be per unit (groups with different activations): the relaxation then takes it from the
    # network itself.
    options = SettleOptions(integrator=integrator, dt=None if integrator == "fixed_point" else dt,
                            stop_at_steady_state=False, max_abs=np.inf, bounds=None if natural else box,
                            project=box is not None)
    if T > K:
        s = settle(network, x, s0=s, options=replace(options, max_steps=T - K)).state
    last = settle(network, x, s0=s, options=replace(options, max_steps=K, record_every=1))
    states = last.integration.trajectory.y  # (K + 1, batch, n_free): s_{T-K} .. s_T
    if last.integration.status == integrators.DIVERGED:
        raise DivergenceError(f"the free phase diverged: {last.integration.message}")

    adjoint = cost_gradient_state(network, states[-1], target)
    drive = network.input_drive(x)  # constant over the K steps: computed once, not twice per step
    per_step = np.empty((K, network.n_params))
    for k in range(1, K + 1):
        s_t = states[K - k]
        if box is not None:
            pre_clip = s_t - dt * network.energy_grad_state(x, s_t, drive)
            adjoint = adjoint * ((pre_clip > box[0]) & (pre_clip < box[1]))
        per_step[k - 1] = -dt * network.energy_grad_params_directional(x, s_t, adjoint)
        adjoint = adjoint - dt * network.energy_hvp(x, s_t, adjoint, drive)
    return BPTTGradients(per_step=per_step, cumulative=np.cumsum(per_step, axis=0), final_state=states[-1])
