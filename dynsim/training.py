"""Training a Hopfield network with a local rule (EP, CHL) or the recurrent-backprop baseline.

One minibatch step: settle the free phase (from zeros, or from each
example's stored free equilibrium with persistent particles), read the
gradient estimate of the chosen rule, take an optimizer step. Evaluation
settles the free phase and reads the prediction off the output units
(argmax).

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017) (training procedure, persistent particles).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from dynsim.backprop import implicit_gradient
from dynsim.learning import EP_VARIANTS, chl_gradient, ep_gradient
from dynsim.phases import PhaseResult, SettleOptions, free_phase
from dynsim.validation import ValidationError, positive_int
from integrators import CONVERGED, IntegrationResult

__all__ = ["RULES", "PC_RULES", "gradient_estimate", "predict", "evaluate", "ParticleStore", "History", "train"]

RULES = tuple(f"ep-{v}" for v in EP_VARIANTS) + ("chl", "rbp")
"""Rules :func:`train` accepts for Hopfield networks; 'rbp' is the recurrent-backprop baseline."""

PC_RULES = ("pc-strict", "pc-fixed-prediction", "pc-zil", "bp")
"""Rules for predictive coding networks; 'bp' is exact backprop on the feedforward pass."""


_FEEDFORWARD_OPTIONS = SettleOptions(integrator="euler")
"""The settings whose tolerances the feedforward free phase reports (validated once, not per minibatch)."""


def _feedforward_phase(network, drive, target):
    """The free phase of a PC network as a settled :class:`PhaseResult`, read off its feedforward pass.

    Every prediction error is zero there, so the vector field, the energy and
    the residual are exactly zero: the phase a relaxation from that start
    reports after 0 steps (its status, counts and tolerance
    ``atol + rtol ||s||`` with the default tolerances), without running one.
    """
    state = network.initial_state(drive)
    zeros = np.zeros(state.shape[0], dtype=state.dtype)  # the residuals; energies are summed in float64
    opts = _FEEDFORWARD_OPTIONS
    tolerance = opts.atol + opts.rtol * np.linalg.norm(state, axis=1)
    result = IntegrationResult(
        y=state, t=0.0, status=CONVERGED, message="steady state reached by every sample after 0 steps (t=0)",
        n_steps=0, n_accepted=0, n_rejected=0, nfev=1, residual=zeros, tolerance=tolerance, diverged_step=-1,
        diverged_sample=-1, trajectory=None, method="euler")
    return PhaseResult(phase="free", beta=0.0, state=state, energy=np.zeros(state.shape[0]),
                       cost=network.cost(state, target),
                       integration=result, dt=opts.step())


def _pc_gradient_estimate(rule, network, x, target, options):
    from dynsim.pc_learning import pc_gradient, zil_gradient

    if rule not in PC_RULES:
        raise ValidationError(f"rule for a predictive coding network must be one of {list(PC_RULES)}, got {rule!r}")
    # The feedforward pass is the free equilibrium and the start of the inference: computed once for both.
    x = network.check_input(x)
    drive = network.input_drive(x)
    free = _feedforward_phase(network, drive, network.check_target(target, x.shape[0]))
    if rule == "bp":
        return network.backprop_gradient(x, target), free, {}
    if rule == "pc-zil":
        est = zil_gradient(network, x, target)
    else:
        est = pc_gradient(network, x, target, rule[3:].replace("-", "_"), options=options, drive=drive)
    return est.gradient, free, {"inference": est.inference}


def gradient_estimate(rule, network, x, target, beta=0.5, options=None, nudged_options=None, s0=None, rng=None):
    """The gradient estimate of ``rule`` on one minibatch; returns ``(gradient, free PhaseResult, phases)``.

    For a :class:`dynsim.pc.PCNetwork` the rules are :data:`PC_RULES`; its
    free phase is the feedforward pass (it starts at its equilibrium) and
    the inference with the clamped output is returned under 'inference'.
    """
    from dynsim.pc import PCNetwork

    if isinstance(network, PCNetwork):
        return _pc_gradient_estimate(rule, network, x, target, options)
    if rule not in RULES:
        raise ValidationError(f"rule must be one of {list(RULES)}, got {rule!r}")
    if rule.startswith("ep-"):
        est = ep_gradient(network, x, target, beta, rule[3:], options=options, nudged_options=nudged_options,
                          s0=s0, rng=rng)
        return est.gradient, est.free, est.phases
    if rule == "chl":
        est = chl_gradient(network, x, target, options=options, clamped_options=nudged_options, s0=s0)
        return est.gradient, est.free, est.phases
    free = free_phase(network, x, s0=s0, target=target, options=options)
    return implicit_gradient(network, x, target, free).gradient, free, {}


def predict(output):
    """Class per sample from output states (batch, n_output): the argmax, or -1 when the largest value is tied.

    Ties are common with the hard sigmoid, whose outputs pin at 0 or 1: a
    network with every output at 0 has made no decision, and scoring it as
    class 0 would credit a dead network with chance accuracy.
    """
    output = np.asarray(output)
    top = output.max(axis=1, keepdims=True)
    tied = (output == top).sum(axis=1) > 1
    return np.where(tied, -1, output.argmax(axis=1))


def evaluate(network, x, labels, targets, options=None):
    """Mean cost at the free equilibrium and the accuracy of :func:`predict` (ties count as wrong); a dict.

    A predictive coding network's free equilibrium is its feedforward pass:
    it is read directly instead of integrating a field that is zero there.
    """
    from dynsim.pc import PCNetwork

    if isinstance(network, PCNetwork):
        state, steps, converged = network.feedforward(x), 0, True
    else:
        free = free_phase(network, x, target=targets, options=options)
        state, steps, converged = free.state, free.integration.n_steps, free.converged
    out = state[:, network.output_slice]
    return {"loss": float(network.cost(state, targets).mean()), "accuracy": float(np.mean(predict(out) == labels)),
            "free_steps": steps, "converged": bool(converged)}


class ParticleStore:
    """Persistent particles: each training example's last free equilibrium, reused as its next start."""

    def __init__(self, n_examples, n_free, dtype=np.float64):
        self.states = np.zeros((n_examples, n_free), dtype=dtype)

    def get(self, indices):
        return self.states[indices]

    def put(self, indices, states):
        self.states[indices] = states


@dataclass
class History:
    """Per-epoch training record (lists, one entry per epoch)."""

    epoch: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    free_steps: list = field(default_factory=list)
    nudged_steps: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_arrays(self):
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


def train(network, task, rule, optimizer, epochs, batch_size, beta=0.5, options=None, nudged_options=None,
          persistent=False, seed=0, callback=None, step_callback=None, progress=None):
    """Train ``network`` in place on ``task`` (a :class:`dynsim.tasks.Task`) with a local rule.

    Parameters
    ----------
    network : HopfieldNetwork
    task : Task
    rule : str
        One of :data:`RULES`.
    optimizer : SGD or Adam
    epochs, batch_size : int
    beta : float
        Nudging strength of the EP rules.
    options, nudged_options : SettleOptions
    persistent : bool
        Start each example's free phase from its previous free equilibrium.
    seed : int
        Shuffling and the random sign of 'ep-random'.
    callback : callable, optional
        ``callback(epoch, row)`` after each epoch (epoch 0 is the evaluation
        before training); ``row`` holds the epoch's entries of every
        :class:`History` field (epoch, loss, accuracy, mean free and nudged
        steps, seconds), e.g. to append it to a log as soon as it exists.
    step_callback : callable, optional
        ``step_callback(indices, gradient)`` before each optimizer step, with
        the minibatch's example indices and its gradient estimate (the
        parameters are still those the estimate was taken at).
    progress : bool or None
        A progress bar over the epochs with loss, accuracy and examples per
        second (``None``: only when stderr is a terminal; ``False``: never).

    Returns
    -------
    History
        Loss and accuracy on the task after each epoch (epoch 0: before training).
    """
    epochs = positive_int("epochs", epochs, minimum=0)
    batch_size = positive_int("batch_size", batch_size)
    options = SettleOptions() if options is None else options
    rng = np.random.default_rng(seed)
    n = task.x.shape[0]
    particles = ParticleStore(n, network.n_free) if persistent else None
    history = History()

    def record(epoch, free_steps, nudged_steps, seconds):
        metrics = evaluate(network, task.x, task.labels, task.targets, options)
        history.epoch.append(epoch)
        history.loss.append(metrics["loss"])
        history.accuracy.append(metrics["accuracy"])
        history.free_steps.append(free_steps)
        history.nudged_steps.append(nudged_steps)
        history.seconds.append(seconds)
        if callback is not None:
            callback(epoch, {name: values[-1] for name, values in vars(history).items()})

    record(0, 0.0, 0.0, 0.0)
    bar = tqdm(total=epochs, desc=rule, unit="epoch", disable=None if progress is None else not progress,
               leave=False)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        free_steps, nudged_steps = [], []
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            s0 = particles.get(idx) if persistent else None
            grad, free, phases = gradient_estimate(rule, network, task.x[idx], task.targets[idx], beta, options,
                                                   nudged_options, s0=s0, rng=rng)
            if step_callback is not None:
                step_callback(idx, grad)
            optimizer.step(network.theta, grad)
            if persistent:
                particles.put(idx, free.state)
            free_steps.append(free.integration.n_steps)
            nudged_steps.extend(p.integration.n_steps for p in phases.values())
        seconds = time.perf_counter() - start
        record(epoch, float(np.mean(free_steps)), float(np.mean(nudged_steps)) if nudged_steps else 0.0, seconds)
        bar.set_postfix(loss=f"{history.loss[-1]:.3g}", acc=f"{history.accuracy[-1]:.3f}",
                        ex_per_s=f"{n / max(seconds, 1e-9):.0f}")
        bar.update()
    bar.close()
    return history
