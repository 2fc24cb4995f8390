"""Equilibrium propagation without weight transport: EP on the vector-field Hopfield network.

:class:`~dynsim.networks.vector_field_hopfield.VectorFieldHopfieldNetwork`
relaxes with forward weights W_k and separate feedback weights B_k. EP's
update stays the local, Hebbian contrast of two nudged states (Scellier et
al. 2018; Laborieux et al. 2021's VF models): for the forward weights and
biases, with the two nudging strengths beta_1 < beta_2 of the variant,

    dW_k = -(rho(s_k^{b2})^T rho(s_{k+1}^{b2}) - rho(s_k^{b1})^T rho(s_{k+1}^{b1})) / ((b2 - b1) batch),
    db_k = -(rho(s_k^{b2}) - rho(s_k^{b1})) summed over the batch / ((b2 - b1) batch),

that is ``(dE_W/dtheta(s^{b2}) - dE_W/dtheta(s^{b1})) / (b2 - b1)`` with E_W the
energy of the forward weights: dynsim's :func:`~dynsim.learning.contrastive.ep_gradient`
sign convention (a gradient to descend, ``theta -= lr * gradient``). As beta -> 0
it tends to ``d^2E_W/(dtheta ds) J^{-1} dC/ds`` (:func:`~dynsim.references.vector_field.vf_ep_limit`), J the
Jacobian of the vector field, whereas the true gradient of the loss at the
free fixed point is ``-(J^{-T} dC/ds)^T d(ds/dt)/dtheta``
(:func:`~dynsim.references.vector_field.vf_implicit_gradient`): the two agree when J is symmetric, i.e. when
B_k = W_k^T, and otherwise differ by how far the feedback is from the
forward weights' transpose (:func:`~dynsim.references.vector_field.vf_alignment` measures the angles).

The feedback blocks' entries of the returned gradient depend on the
network's ``feedback``:

- ``'tied'``: there are none (B_k = W_k^T; the update equals the symmetric
  network's EP update);
- ``'random'``: zero (the feedback stays as drawn: feedback alignment,
  Lillicrap et al. 2016);
- ``'kolen-pollack'``: the transpose of W_k's update, plus ``weight_decay *
  B_k``, while every forward block gets ``weight_decay * W_k`` (Akrout et al.
  2019, Kolen & Pollack 1994; k >= 1, the input block W_0 has no feedback
  partner and is not decayed). With plain or momentum SGD and B_k on the
  rate of W_k (the network's ``layer_of_block`` ensures it) the difference
  B_k - W_k^T then shrinks by (1 - lr weight_decay) per step whatever the
  data; with Adam the transposed updates stay equal only without decay;
- ``'weight-mirror'``: the mirror rule of Akrout et al. (2019): standard
  normal noise xi_k (m samples) is driven through W_k, ``y = xi_k W_k``, and
  B_k descends ``B_k - y^T xi_k / m``, whose expectation B_k - W_k^T pulls
  the feedback to the forward weights' transpose (their
  ``Delta B = eta y x^T - lambda B`` with eta = lambda, scaled to the noise
  variance). In the brain this runs in a separate "mirror" phase; here once
  per minibatch. Its learning rate trades lag against noise: at a rate far
  below the forward weights' B trails W^T (on MNIST 784-256-10 at 0.01
  that cost several points of error against tied feedback), and the
  estimate's noise, which grows with the rate, shrinks with the samples.

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. 15 (2021).
.. [3] M. Akrout, C. Wilson, P. C. Humphreys, T. Lillicrap, D. Tweed, "Deep
       Learning without Weight Transport", NeurIPS (2019).
.. [4] J. F. Kolen, J. B. Pollack, "Backpropagation without weight transport",
       IEEE ICNN (1994).
.. [5] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic
       feedback weights support error backpropagation for deep learning",
       Nat. Commun. 7:13276 (2016).
.. [6] L. B. Almeida (1987); F. J. Pineda (1987): recurrent backprop, the
       gradient at a fixed point by the implicit function theorem.
"""
from __future__ import annotations

import numpy as np

from dynsim.learning.estimate import Estimate
from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork
from dynsim.relax.phases import PhaseResult, SettleOptions
from dynsim.relax.vector_field import settle_vector_field
from dynsim.validation import (DivergenceError, ValidationError, positive_int, random_generator, real_scalar,
                               report_not_converged)

__all__ = ["VF_EP_VARIANTS", "vf_ep_gradient", "weight_mirror_gradient", "vf_train_epoch", "vf_evaluate"]

VF_EP_VARIANTS = ("positive", "negative", "centered")
"""Nudging strengths contrasted: (0, beta), (-beta, 0), (-beta, +beta)."""


def _check_network(network):
    if not isinstance(network, VectorFieldHopfieldNetwork):
        raise ValidationError(f"network must be a VectorFieldHopfieldNetwork, got {type(network).__name__}")


def _options(name, options):
    options = SettleOptions() if options is None else options
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"{name} must be a SettleOptions, got {type(options).__name__}")
    return options


def _check_phase(phase, options, tied):
    """Stop on divergence; a phase that was to reach a steady state and did not: as ``options.not_converged`` says."""
    it = phase.integration
    if it.status_name == "diverged":
        hint = "" if tied else (". Without tied feedback no energy bounds the trajectories: try a smaller step, "
                                "smaller weights or a projection box")
        raise DivergenceError(f"the {phase.phase} phase diverged: {phase.message}{hint}")
    if options.stop_at_steady_state and not phase.converged:
        report_not_converged(f"the {phase.phase} phase did not reach the steady state ({it.message}); with untied "
                             "feedback the relaxation is no gradient flow and need not converge; the estimate reads "
                             f"a state whose largest residual ||ds/dt|| is {it.residual.max():.3e}",
                             options.not_converged, stacklevel=4)


def weight_mirror_gradient(network, rng=None, n_samples=256):
    """The weight-mirror update of the feedback blocks (Akrout et al. 2019), shape (n_params,).

    For each B_k: xi ~ N(0, 1), shape (n_samples, n_k), drives layer k+1
    through the forward weights, ``y = xi W_k``; the returned gradient of
    B_k is ``B_k - y^T xi / n_samples`` (expectation B_k - W_k^T), zero on
    every other parameter. Descending it moves B_k towards W_k^T with the
    noise's sampling error; the learning rate averages it out.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    rng : int, numpy.random.Generator or None
        Source of the mirror noise.
    n_samples : int
        Noise samples per call. The estimate's entries scatter by about
        |W| sqrt(n_k / n_samples), which sets how close to W_k^T the feedback
        stays under a given learning rate (on 784-256-10: 25 degrees with
        64 samples, 13 with 256, at rate 0.1).

    References
    ----------
    Akrout et al. (2019), Sec. 4 (weight mirrors).
    """
    _check_network(network)
    rng = random_generator("rng", rng)
    m = positive_int("n_samples", n_samples)
    grad = np.zeros(network.n_params, dtype=network.dtype)
    blocks = network.parameter_blocks()
    for k, name in network.feedback_block_names().items():
        W = np.asarray(network.weights(k), dtype=np.float64)
        xi = rng.standard_normal((m, W.shape[0]))
        y = xi @ W
        B = np.asarray(network.feedback_weights(k), dtype=np.float64)
        grad[blocks[name]] = (B - y.T @ xi / m).ravel()
    return grad


def vf_ep_gradient(network, x, target, beta, variant="centered", options=None, nudged_options=None, free=None,
                   s0=None, weight_decay=0.0, mirror_samples=256, rng=None):
    """Equilibrium-propagation update of a vector-field Hopfield network, and its feedback's update.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    beta : float
        Nudging strength, > 0 (the variant sets the signs used).
    variant : {'centered', 'positive', 'negative'}
        Contrast (-beta, +beta), (0, +beta) or (-beta, 0); centered's bias
        is O(beta^2) (Laborieux et al. 2021).
    options : SettleOptions, optional
        Free-phase settings (default ``SettleOptions()``): an ODE integrator,
        or the sweeps ``'fixed_point'`` / ``'block'``.
    nudged_options : SettleOptions, optional
        Nudged-phase settings (default: ``options``).
    free : PhaseResult, optional
        A free phase already run on this batch (reused).
    s0 : ndarray, shape (batch, n_free), optional
        Start of the free phase (persistent particles).
    weight_decay : float, >= 0
        Added as ``weight_decay * W_k`` to the gradient of each forward
        block between free layers (k >= 1: those with a feedback partner
        B_k) and, for Kolen-Pollack feedback, ``weight_decay * B_k`` to the
        feedback's (module docstring). The input block W_0 and the biases
        are not decayed: the decay is what makes B_k and W_k^T forget their
        initial difference, not a regulariser.
    mirror_samples : int
        Noise samples of the weight-mirror update.
    rng : int, numpy.random.Generator or None
        Source of the weight-mirror noise.

    Returns
    -------
    Estimate
        ``gradient`` (n_params,): forward blocks and biases as dynsim's
        :func:`~dynsim.learning.contrastive.ep_gradient` would read them
        (with tied feedback exactly that), then the feedback blocks' update.
        ``phases`` holds 'nudged+' and/or 'nudged-', whose
        ``integration.residual`` says how well each settled. ``rule`` is
        ``'vf-ep-<variant>'``.

    Raises
    ------
    DivergenceError
        A phase diverged.

    Notes
    -----
    A phase that was to reach the steady state and stopped short of it
    warns, raises or is let go as ``options.not_converged`` says (without
    tied feedback the relaxation need not converge at all).

    References
    ----------
    Scellier et al. (2018); Laborieux et al. (2021); Akrout et al. (2019).
    """
    _check_network(network)
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    if variant not in VF_EP_VARIANTS:
        raise ValidationError(f"variant must be one of {list(VF_EP_VARIANTS)}, got {variant!r}")
    weight_decay = real_scalar("weight_decay", weight_decay, 0.0, np.inf, high_open=True)
    if target is None:
        raise ValidationError("target is required: EP nudges the output towards it")
    options = _options("options", options)
    nudged_options = options if nudged_options is None else _options("nudged_options", nudged_options)
    x = network.check_input(x)
    target = network.check_target(target, x.shape[0])
    drive = network.input_drive(x)  # once for every phase of this minibatch
    if free is None:
        free = settle_vector_field(network, x, s0=s0, target=target, options=options, phase="free", drive=drive)
    elif not isinstance(free, PhaseResult):
        raise ValidationError(f"free must be a PhaseResult from a free phase, got {type(free).__name__}")
    else:
        network.check_state(free.state, x.shape[0], name="free.state")
    _check_phase(free, options, network.tied)
    betas = {"positive": (0.0, beta), "negative": (-beta, 0.0), "centered": (-beta, beta)}[variant]
    states, phases = {}, {}
    for b in betas:
        if b == 0.0:
            states[b] = free.state
            continue
        name = "nudged+" if b > 0 else "nudged-"
        phase = settle_vector_field(network, x, s0=free.state, target=target, beta=b, options=nudged_options,
                                    phase=name, drive=drive)
        _check_phase(phase, nudged_options, network.tied)
        phases[name] = phase
        states[b] = phase.state
    lo, hi = betas
    forward = network.forward_energy_grad_params_difference(x, states[lo], states[hi], 1.0 / (hi - lo))
    gradient = np.zeros(network.n_params, dtype=network.dtype)
    gradient[:network.n_forward] = forward
    blocks = network.parameter_blocks()
    w_names = [f"W_{network.group_names[k]}_{network.group_names[k + 1]}" for k in range(len(network.group_sizes) - 1)]
    if network.feedback == "kolen-pollack":
        for k, name in network.feedback_block_names().items():
            ep_block = forward[blocks[w_names[k]]].reshape(network.weights(k).shape)
            gradient[blocks[name]] = (ep_block.T + weight_decay * network.feedback_weights(k)).ravel()
    elif network.feedback == "weight-mirror":
        gradient += weight_mirror_gradient(network, rng, mirror_samples)
    if weight_decay:
        for k in range(1, len(network.group_sizes) - 1):
            gradient[blocks[w_names[k]]] += weight_decay * network.weights(k).ravel()
    return Estimate(gradient=gradient, free=free, phases=phases, rule=f"vf-ep-{variant}", betas=(lo, hi))


def vf_evaluate(network, x, labels, targets, options=None, chunk=128):
    """Mean cost, error rate and residuals of the free phase on a set of examples; a dict.

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    x : ndarray, shape (n, n_input)
    labels : ndarray of int, shape (n,)
    targets : ndarray, shape (n, n_output)
    options : SettleOptions, optional
    chunk : int
        Examples relaxed together.

    Returns
    -------
    dict
        ``loss``, ``error`` (ties count as errors), ``residual`` (largest
        final ||ds/dt||), ``not_converged`` (examples above their tolerance).
    """
    from dynsim.training.loop import predict  # here: the training loop imports the rules, this among them

    _check_network(network)
    options = _options("options", options)
    chunk = positive_int("chunk", chunk)
    x = network.check_input(x)
    targets = network.check_target(targets, x.shape[0])
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValidationError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    loss, wrong, worst, unsettled = 0.0, 0, 0.0, 0
    for lo in range(0, x.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        free = settle_vector_field(network, x[sl], target=targets[sl], options=options)
        it = free.integration
        if it.status_name == "diverged":
            raise DivergenceError(f"evaluating: {free.message}")
        loss += float(free.cost.sum())
        wrong += int(np.sum(predict(free.state[:, network.output_slice]) != labels[sl]))
        worst = max(worst, float(it.residual.max()))
        unsettled += int(np.count_nonzero(it.residual > it.tolerance))
    n = max(x.shape[0], 1)
    return {"loss": loss / n, "error": wrong / n, "residual": worst, "not_converged": unsettled}


def vf_train_epoch(network, optimizer, x, targets, labels, batch_size, beta, variant="centered", options=None,
                   nudged_options=None, weight_decay=0.0, mirror_samples=256, rng=None):
    """One epoch of minibatch training with :func:`vf_ep_gradient` and a dynsim optimizer; running figures.

    The examples are shuffled, and each minibatch's estimate is one
    optimizer step on ``network.theta`` (forward and feedback parameters
    together; see :func:`dynsim.training.optimizers.SGD`).

    Parameters
    ----------
    network : VectorFieldHopfieldNetwork
    optimizer : SGD or Adam
        Built on ``network`` (its per-block rates cover the feedback blocks).
    x : ndarray, shape (n, n_input)
    targets : ndarray, shape (n, n_output)
    labels : ndarray of int, shape (n,)
    batch_size : int
    beta, variant, options, nudged_options, weight_decay, mirror_samples
        As in :func:`vf_ep_gradient`.
    rng : numpy.random.Generator or int, optional
        Shuffles the examples and draws the mirror noise.

    Returns
    -------
    dict
        ``train_loss`` and ``train_error`` of the free phases met (before
        each step), ``free_residual`` and ``nudged_residual`` (largest),
        ``free_steps`` and ``nudged_steps`` (mean per minibatch).
    """
    from dynsim.training.loop import predict  # here: the training loop imports the rules, this among them

    _check_network(network)
    if not hasattr(optimizer, "step"):
        raise ValidationError(f"optimizer must be a dynsim optimizer (SGD, Adam), got {type(optimizer).__name__}")
    rng = random_generator("rng", rng)
    batch_size = positive_int("batch_size", batch_size)
    x = network.check_input(x)
    targets = network.check_target(targets, x.shape[0])
    labels = np.asarray(labels)
    n = x.shape[0]
    order = rng.permutation(n)
    loss, wrong = 0.0, 0
    free_res, nudged_res, free_steps, nudged_steps, batches = 0.0, 0.0, 0, 0, 0
    for lo in range(0, n, batch_size):
        idx = order[lo:lo + batch_size]
        est = vf_ep_gradient(network, x[idx], targets[idx], beta, variant, options=options,
                             nudged_options=nudged_options, weight_decay=weight_decay, mirror_samples=mirror_samples,
                             rng=rng)
        loss += float(est.free.cost.sum())
        wrong += int(np.sum(predict(est.free.state[:, network.output_slice]) != labels[idx]))
        free_res = max(free_res, float(est.free.integration.residual.max()))
        free_steps += est.free.integration.n_steps
        for phase in est.phases.values():
            nudged_res = max(nudged_res, float(phase.integration.residual.max()))
            nudged_steps += phase.integration.n_steps / len(est.phases)
        batches += 1
        optimizer.step(network.theta, est.gradient)
    return {"train_loss": loss / n, "train_error": wrong / n, "free_residual": free_res,
            "nudged_residual": nudged_res, "free_steps": free_steps / batches, "nudged_steps": nudged_steps / batches}
