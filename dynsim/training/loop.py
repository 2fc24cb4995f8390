"""Minibatch training on a dataset with held-out splits, per-epoch metrics and checkpoints.

:func:`fit` is the loop the dataset scenarios use (MNIST, Fashion-MNIST).
Each epoch shuffles the training split, and for each minibatch settles the
free phase (from the example's persistent particle when asked), reads the
rule's gradient estimate and takes an optimizer step. The training error of
an epoch is the running error of the free phases met during that epoch
(before each step, as in Scellier & Bengio's code); the other splits are
evaluated after the epoch. A checkpoint after each epoch holds all a run
needs to continue, and a resumed run repeats the uninterrupted one exactly.

Training that produces a non-finite loss, state or gradient stops with a
:class:`TrainingDivergedError` naming the epoch and minibatch; the faulty
update is never applied and the last checkpoint on disk is the last good
epoch.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017) (minibatches, persistent particles, running
       training error).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from dynsim._threads import kernels_own_the_cores
from dynsim.datasets.tasks import Task
from dynsim.learning.predictive_coding import PC_NETWORKS
from dynsim.learning.rules import gradient_estimate
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.training.checkpoint import Checkpoint, CheckpointError, check_fingerprint, load_checkpoint, save_checkpoint
from dynsim.training.optimizers import NonFiniteGradientError
from dynsim.validation import (DivergenceError, DynsimError, ValidationError, boolean, check_memory, positive_int,
                               real_scalar, report_not_converged)

__all__ = ["fit", "train", "History", "evaluate", "evaluate_split", "predict", "describe_evaluation",
           "TrainingDivergedError", "metric_columns", "ParticleStore"]


class TrainingDivergedError(DynsimError):
    """A non-finite loss, state or gradient; the parameters keep their last good values.

    Attributes
    ----------
    epoch, batch : int
        Where it happened (epoch counted from 1, minibatch from 0).
    checkpoint : str or None
        The last good checkpoint on disk, if the run writes them.
    """

    def __init__(self, message, epoch, batch, checkpoint=None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.checkpoint = checkpoint


def metric_columns(eval_splits):
    """Names of the per-epoch metrics :func:`fit` records, in order.

    ``*_not_converged`` count the examples whose phase ended above its
    tolerance (``atol + rtol ||s||``): per training phase over the epoch's
    minibatches, and per held-out split in its evaluation. ``seconds`` is the
    epoch's training (its minibatches), ``eval_seconds`` the evaluation of
    the held-out splits after it, which ``seconds`` does not count.
    """
    cols = ["epoch", "train_loss", "train_error"]
    for name in eval_splits:
        cols += [f"{name}_loss", f"{name}_error"]
    return cols + ["free_steps", "nudged_steps", "free_residual", "nudged_residual", "seconds", "examples_per_s",
                   "free_not_converged", "nudged_not_converged"] + [f"{name}_not_converged" for name in eval_splits] + [
                   "eval_seconds"]


def _free_state(network, x, targets, options, s0=None):
    """The free equilibrium of a chunk: (state, steps, samples that did not settle to the tolerance)."""
    if isinstance(network, PC_NETWORKS):
        return network.feedforward(x), 0, 0
    free = free_phase(network, x, s0=s0, target=targets, options=options)
    return free.state, free.integration.n_steps, _unsettled(free)


def _unsettled(phase):
    """Samples of a phase whose final residual is above their tolerance (``atol + rtol ||s||``)."""
    it = phase.integration
    return int(np.count_nonzero(np.asarray(it.residual) > np.asarray(it.tolerance)))


def evaluate_split(network, task, options=None, chunk=128, particles=None, progress=False, desc="evaluating"):
    """Mean cost and error rate of the free equilibrium on a split; a dict.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    task : Task
        Inputs, labels and one-hot targets.
    options : SettleOptions, optional
        Free-phase settings (a PC network reads its feedforward pass).
    chunk : int
        Examples settled together. A chunk's state arrays should stay in
        the processor's cache: the relaxation of a layered network is
        dominated by elementwise passes over them (measured on 784-500-10:
        2,000 examples x 200 steps took 2.3 s in chunks of 100 and 8-20 s
        in chunks of 250-2,000).
    particles : ndarray, shape (n, n_free), optional
        Persistent evaluation particles: each example's relaxation starts
        from its row and the equilibrium is written back (Scellier & Bengio
        2017 measure their validation error so, the particles carried from
        epoch to epoch). Default: every relaxation starts from the network's
        initial state (zeros).

    Returns
    -------
    dict
        ``loss`` (mean cost), ``error`` (fraction misclassified; tied
        outputs count as errors), ``free_steps`` (mean over chunks),
        ``not_converged`` (examples whose free phase ended above its
        tolerance).

    Notes
    -----
    When ``options`` asks for the steady state and some examples did not
    reach it, ``options.not_converged`` says whether to warn (once per
    call, with the count), raise or go on.
    """
    chunk = positive_int("chunk", chunk)
    n = task.x.shape[0]
    if particles is not None and (not isinstance(particles, np.ndarray) or particles.shape != (n, network.n_free)):
        raise ValidationError(f"particles must be an array of shape ({n}, {network.n_free}), got "
                              f"{getattr(particles, 'shape', type(particles).__name__)}")
    if n == 0:
        return {"loss": float("nan"), "error": float("nan"), "free_steps": 0.0, "not_converged": 0}
    loss, wrong, steps, unsettled = 0.0, 0, [], 0
    bar = tqdm(total=n, desc=desc, unit="ex", leave=False, disable=None if progress is None else not progress)
    for lo in range(0, n, chunk):
        sl = slice(lo, lo + chunk)
        state, n_steps, n_unsettled = _free_state(network, task.x[sl], task.targets[sl], options,
                                                  None if particles is None else particles[sl])
        unsettled += n_unsettled
        if particles is not None:
            particles[sl] = state
        loss += float(network.cost(state, task.targets[sl]).sum())
        wrong += int(np.sum(predict(state[:, network.output_slice]) != task.labels[sl]))
        steps.append(n_steps)
        bar.update(min(chunk, n - lo))
    bar.close()
    if unsettled and options is not None and options.stop_at_steady_state:
        report_not_converged(f"evaluating {task.name!r}: {unsettled} of {n} examples did not reach the steady "
                             f"state within {options.max_steps} steps; their errors are read off unsettled states",
                             options.not_converged, stacklevel=3)
    return {"loss": loss / n, "error": wrong / n, "free_steps": float(np.mean(steps)), "not_converged": unsettled}


def describe_evaluation(options, persistent, train_at_start=False):
    """How :func:`fit` evaluates, in words for a log's configuration.

    Parameters
    ----------
    options : SettleOptions or None
        The evaluation's free-phase settings (None: a feedforward pass, as
        for a predictive coding network).
    persistent : bool
        Evaluation particles carried from epoch to epoch.
    train_at_start : bool
        The training split is evaluated before training.

    Returns
    -------
    str
    """
    if options is None:
        held = "the feedforward pass"
    else:
        stop = (f"to the steady state (atol {options.atol:g}, rtol {options.rtol:g}) in at most "
                f"{options.max_steps} steps" if options.stop_at_steady_state else f"{options.max_steps} steps")
        step = f" of {options.dt:g}" if options.dt is not None and options.integrator != "dopri5" else ""
        start = "from each image's state of the previous epoch" if persistent else "from zero"
        held = f"{options.integrator}, {stop}{step}, {start}"
    train = ("the running error of the free phases met during each epoch (before each update); "
             + ("epoch 0 evaluated like the held-out splits" if train_at_start else "none at epoch 0"))
    return f"held-out splits after each epoch: {held}; train: {train}"


def _check_data(network, data):
    if not isinstance(data, dict) or "train" not in data:
        raise ValidationError("data must be a dict of split name to Task with a 'train' split, "
                              f"got {type(data).__name__}")
    for name, task in data.items():
        if not isinstance(task, Task):
            raise ValidationError(f"data[{name!r}] must be a dynsim.datasets.tasks.Task, got {type(task).__name__}")
        if task.x.ndim != 2 or task.x.shape[1] != network.n_input:
            raise ValidationError(f"data[{name!r}].x must have shape (n, {network.n_input}), got {task.x.shape}")
        if task.targets.shape != (task.x.shape[0], network.n_output):
            raise ValidationError(f"data[{name!r}].targets must have shape ({task.x.shape[0]}, "
                                  f"{network.n_output}), got {task.targets.shape}")
    if data["train"].x.shape[0] == 0:
        raise ValidationError("data['train'] holds no examples")


def run_stamp(network, rule, batch_size, seed, persistent, n_train, epochs, lr_schedule=None, eval_persistent=False,
              fingerprint=None):
    """What a checkpoint of :func:`fit` stamps and a resume must match: sizes, rule, batch, seed, schedule, ...

    Shared by every trainer that writes :func:`fit`'s checkpoints (the torch
    backend's :func:`~dynsim.backends.torch.fit.fit_on_device`), so a run can
    continue on another backend.
    """
    stamp = {"sizes": [int(v) for v in network.group_sizes], "rule": rule, "batch_size": batch_size,
             "seed": int(seed), "persistent": bool(persistent), "n_train": int(n_train),
             "params": int(network.n_params)}
    if eval_persistent:
        stamp["eval_persistent"] = True
    if lr_schedule is not None and hasattr(lr_schedule, "describe") \
            and lr_schedule.describe() != {"schedule": "constant"}:
        # A constant schedule is the rates as given: not stamped, so checkpoints from before schedules still resume.
        stamp["lr_schedule"] = lr_schedule.describe()
    if lr_schedule is not None and getattr(lr_schedule, "spans_run", True):
        stamp["schedule_epochs"] = epochs
    stamp.update(fingerprint or {})
    return stamp


def load_resumable(checkpoint, stamp, epochs, lr_schedule, network):
    """The checkpoint at ``checkpoint`` when the run stamped ``stamp`` may continue from it; CheckpointError if not.

    ``stamp`` loses ``schedule_epochs`` when the checkpoint predates it.
    """
    ckpt = load_checkpoint(checkpoint)
    started = ckpt.fingerprint.get("schedule_epochs")
    if "schedule_epochs" in stamp and started is not None and started != epochs:
        name = (lr_schedule.describe().get("schedule") if hasattr(lr_schedule, "describe")
                else type(lr_schedule).__name__)
        raise CheckpointError(
            f"epochs (--epochs) {epochs} differs from the {started} the run in {checkpoint} was started with: "
            f"its learning-rate schedule ({name}) spans the whole run, so the epochs already trained followed "
            f"a {started}-epoch schedule and the result would not be that of an uninterrupted {epochs}-epoch "
            f"run; resume with --epochs {started}, or start a new run (a constant or exponential schedule "
            "can be extended)")
    if "schedule_epochs" not in ckpt.fingerprint:  # saved before schedules stamped their total
        stamp.pop("schedule_epochs", None)
    check_fingerprint(checkpoint, ckpt.fingerprint, stamp)
    if ckpt.theta.shape != network.theta.shape or not np.isfinite(ckpt.theta).all():
        raise CheckpointError(f"checkpoint {checkpoint} holds {ckpt.theta.size} parameters"
                              f"{'' if np.isfinite(ckpt.theta).all() else ', not all finite'}; the network "
                              f"has {network.theta.size}: it cannot be resumed")
    return ckpt


def checkpoint_history(ckpt, columns):
    """The metric columns of a checkpoint's epochs as lists; columns it predates are NaN for its epochs."""
    n = len(ckpt.history["epoch"])
    return {c: [float(v) for v in ckpt.history[c]] if c in ckpt.history else [float("nan")] * n for c in columns}


@kernels_own_the_cores
def fit(network, data, rule, optimizer, epochs, batch_size, *, beta=1.0, options=None, nudged_options=None,
        eval_options=None, persistent=False, seed=0, checkpoint=None, resume=False, fingerprint=None,
        on_epoch=None, max_batches=None, progress=None, lr_schedule=None, eval_persistent=False,
        eval_train_at_start=False, checkpoint_every=None, checkpoint_minutes=None, step_callback=None,
        rule_options=None):
    """Train ``network`` in place with ``rule`` on ``data['train']``, evaluating the other splits each epoch.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    data : dict of str to Task
        ``'train'`` and any held-out splits (e.g. ``'validation'``, ``'test'``).
    rule : str
        One of :data:`dynsim.learning.rules.RULES` (Hopfield),
        :data:`dynsim.learning.rules.VF_RULES` (vector-field Hopfield) or
        :data:`dynsim.learning.rules.PC_RULES` (predictive coding).
    optimizer : SGD or Adam
    epochs : int
        Total epochs of the run (a resumed run continues up to this count).
    batch_size : int
    beta : float
        Nudging strength of the EP rules.
    options, nudged_options : SettleOptions
        Free- and nudged-phase settings during training.
    eval_options : SettleOptions, optional
        Free-phase settings for evaluating the held-out splits after each
        epoch. Default ``options``: the training's own free phase, as the
        papers evaluate (Scellier & Bengio 2017; Laborieux et al. 2021);
        a steady-state evaluation (from zero to a tolerance with a step
        cap) costs up to ten times more.
    persistent : bool
        Start each example's free phase from its last free equilibrium.
    seed : int
        Seeds the shuffling and the random sign of 'ep-random', and is the
        seed of the fixed feedback matrices of 'fa' and 'dfa'.
    checkpoint : str or Path, optional
        Written atomically after every epoch (epoch 0 included), and within
        epochs as ``checkpoint_every`` / ``checkpoint_minutes`` ask.
    resume : bool
        Continue from ``checkpoint``; the run must have the same fingerprint.
    fingerprint : dict, optional
        Extra configuration stored in the checkpoint and checked on resume
        (the network's sizes, rule, batch size, seed and persistence always are).
    on_epoch : callable, optional
        ``on_epoch(row)`` after every epoch with the dict of
        :func:`metric_columns`; epoch 0 is the evaluation before training.
        On resume it is called again for the rows already in the checkpoint
        (with ``row['replayed'] = True``) so a log can be completed.
    max_batches : int, optional
        Stop each epoch after this many minibatches (smoke runs).
    progress : bool or None
        Progress bar over minibatches with examples per second and running
        error (None: only on a terminal).
    lr_schedule : callable, optional
        ``lr_schedule(epoch, batch, n_batches, epochs)`` gives the factor set
        as ``optimizer.lr_scale`` before each step (:mod:`dynsim.training.schedules`);
        its ``describe()`` joins the checkpoint's fingerprint. Default: the
        rates as given. A schedule whose factors depend on the total number
        of epochs (``spans_run``, e.g. warm-up then cosine; a callable
        without that attribute counts as one) also stamps ``epochs``, and a
        resume with another ``epochs`` is refused: it would train the epochs
        already done and the rest on different schedules.
    eval_persistent : bool
        Evaluate the held-out splits from persistent particles, one per
        example, carried from epoch to epoch (with ``eval_options``, e.g.
        the training's iteration count), as Scellier & Bengio (2017)
        measure their validation error; they are part of the checkpoint.
        Default: every evaluation starts from zeros.
    checkpoint_every : int, optional
        Also checkpoint every this many minibatches within an epoch, with
        the epoch's position (its permutation, the next minibatch, the
        partial metrics): a killed run loses at most that many minibatches
        and, resumed, ends exactly as the uninterrupted run.
    checkpoint_minutes : float, optional
        Also checkpoint within an epoch once this many minutes have passed
        since the last checkpoint.
    eval_train_at_start : bool
        Also evaluate the training split before training (epoch 0). Off by
        default: on MNIST it costs as much as evaluating every held-out
        split; the epoch-0 row then has NaN training loss and error. The
        training error of later epochs is always the running error of the
        free phases met during the epoch.
    step_callback : callable, optional
        ``step_callback(indices, gradient)`` before each optimizer step, with
        the minibatch's example indices and its gradient estimate (the
        parameters are still those the estimate was taken at).
    rule_options : dict, optional
        Further options of the rule (:func:`dynsim.learning.rules.gradient_estimate`),
        e.g. ``{'weight_decay': 0.05}`` for Kolen-Pollack feedback of a
        vector-field network.

    Returns
    -------
    dict of str to ndarray
        The metric columns, one entry per epoch (epoch 0 first).

    Raises
    ------
    TrainingDivergedError
        On a non-finite loss, state or gradient (the step is not applied).
    """
    _check_data(network, data)
    missing = [m for m in ("step", "state_dict", "load_state_dict") if not callable(getattr(optimizer, m, None))]
    if missing:
        raise ValidationError(f"optimizer must be a dynsim optimizer (SGD, Adam) with step, state_dict and "
                              f"load_state_dict; {type(optimizer).__name__} lacks {', '.join(missing)}")
    epochs = positive_int("epochs", epochs, minimum=0)
    batch_size = positive_int("batch_size", batch_size)
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    if max_batches is not None:
        max_batches = positive_int("max_batches", max_batches)
    if resume and checkpoint is None:
        raise ValidationError("resume=True needs a checkpoint path")
    if step_callback is not None and not callable(step_callback):
        raise ValidationError(f"step_callback must be callable, got {step_callback!r}")
    if checkpoint_every is not None:
        checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    if checkpoint_minutes is not None:
        checkpoint_minutes = real_scalar("checkpoint_minutes", checkpoint_minutes, 0.0, np.inf, low_open=True,
                                         high_open=True)
    if checkpoint is None and (checkpoint_every is not None or checkpoint_minutes is not None):
        raise ValidationError("checkpoint_every and checkpoint_minutes need a checkpoint path")
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValidationError(f"lr_schedule must be a schedule from dynsim.training.schedules (a callable), got {lr_schedule!r}")
    options = SettleOptions() if options is None else options
    eval_options = options if eval_options is None else eval_options
    train = data["train"]
    held_out = {k: v for k, v in data.items() if k != "train"}
    n = train.x.shape[0]
    columns = metric_columns(held_out)
    eval_persistent = boolean("eval_persistent", eval_persistent)
    eval_train_at_start = boolean("eval_train_at_start", eval_train_at_start)
    show = None if progress is None else bool(progress)
    stamp = run_stamp(network, rule, batch_size, seed, persistent, n, epochs, lr_schedule, eval_persistent,
                      fingerprint)

    rng = np.random.default_rng(seed)
    dtype = getattr(network, "dtype", np.float64)  # states are kept in the network's precision
    itemsize = np.dtype(dtype).itemsize
    width = int(network.n_free) + int(network.n_input)
    # A minibatch's states: free and nudged phases, integrator stages, fields, the inputs (8 arrays, generously).
    check_memory("batch_size", 8 * min(batch_size, n) * width * itemsize,
                 f"minibatches of {min(batch_size, n)} examples of {width} units")
    if eval_persistent:
        n_held = sum(task.x.shape[0] for task in held_out.values())
        check_memory("eval_persistent", n_held * int(network.n_free) * itemsize,
                     f"evaluation particles of {n_held} held-out examples x {network.n_free} units")
    particles = ParticleStore(n, network.n_free, dtype) if persistent else None
    eval_particles = ({name: np.zeros((task.x.shape[0], network.n_free), dtype) for name, task in held_out.items()}
                      if eval_persistent else None)
    history = {c: [] for c in columns}

    def emit(row, replayed=False):
        if on_epoch is not None:
            on_epoch(dict(row, replayed=replayed))

    last_save = [time.monotonic()]

    def save(epoch, partial=None):
        if checkpoint is not None:
            save_checkpoint(checkpoint, Checkpoint(
                epoch=epoch, theta=network.theta.copy(), optimizer=optimizer.state_dict(),
                rng_state=rng.bit_generator.state, particles=None if particles is None else particles.states,
                history={c: np.asarray(v, dtype=float) for c, v in history.items()}, fingerprint=stamp,
                eval_particles=eval_particles or {}, partial=partial))
            last_save[0] = time.monotonic()

    def due(b):
        """Whether a mid-epoch checkpoint is due after minibatch ``b`` (never after the last one)."""
        if b + 1 >= n_batches:
            return False
        if checkpoint_every is not None and (b + 1) % checkpoint_every == 0:
            return True
        return checkpoint_minutes is not None and time.monotonic() - last_save[0] >= 60.0 * checkpoint_minutes

    def finish_epoch(epoch, train_loss, train_error, free_steps, nudged_steps, free_res, nudged_res, seconds,
                     n_seen, free_unsettled=0, nudged_unsettled=0):
        row = {"epoch": epoch, "train_loss": train_loss, "train_error": train_error,
               "free_not_converged": free_unsettled, "nudged_not_converged": nudged_unsettled}
        t_eval = time.perf_counter()
        for name, task in held_out.items():
            m = evaluate_split(network, task, eval_options,
                               particles=None if eval_particles is None else eval_particles[name],
                               progress=show, desc=f"epoch {epoch}: evaluating {name}")
            row[f"{name}_loss"], row[f"{name}_error"] = m["loss"], m["error"]
            row[f"{name}_not_converged"] = m["not_converged"]
        row["eval_seconds"] = time.perf_counter() - t_eval
        row.update(free_steps=free_steps, nudged_steps=nudged_steps, free_residual=free_res,
                   nudged_residual=nudged_res, seconds=seconds, examples_per_s=n_seen / max(seconds, 1e-12))
        for c in columns:
            history[c].append(float(row[c]))
        save(epoch)
        emit(row)
        return row

    partial = None
    if resume:
        ckpt = load_resumable(checkpoint, stamp, epochs, lr_schedule, network)
        network.theta = ckpt.theta
        partial = ckpt.partial
        optimizer.load_state_dict(ckpt.optimizer)
        rng.bit_generator.state = ckpt.rng_state
        if persistent:
            particles.states = np.array(ckpt.particles, dtype=dtype)
        if eval_persistent:
            for name in eval_particles:
                eval_particles[name] = np.array(ckpt.eval_particles[name], dtype=dtype)
        history = checkpoint_history(ckpt, columns)
        for i in range(len(history["epoch"])):
            emit({c: history[c][i] for c in columns}, replayed=True)
        start = ckpt.epoch + 1
    else:
        if eval_train_at_start:
            m = evaluate_split(network, train, eval_options, progress=show, desc="epoch 0: evaluating train")
        else:
            m = {"loss": float("nan"), "error": float("nan")}
        finish_epoch(0, m["loss"], m["error"], 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        start = 1

    n_batches = -(-n // batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    for epoch in range(start, epochs + 1):
        t0 = time.perf_counter()
        if partial is None:
            order = rng.permutation(n)
            first = 0
            loss_sum, wrong, seen, free_unsettled, nudged_unsettled = 0.0, 0, 0, 0, 0
            free_steps, nudged_steps, free_res, nudged_res = [], [], [], []
        else:
            # Resumed mid-epoch: the saved permutation and running sums; the generator is already past the
            # permutation and the minibatches done (its state was saved with them).
            order, first = np.asarray(partial["order"], dtype=np.int64), int(partial["batch"])
            loss_sum, wrong, seen = float(partial["loss_sum"]), int(partial["wrong"]), int(partial["seen"])
            free_unsettled = int(partial.get("free_not_converged", 0))
            nudged_unsettled = int(partial.get("nudged_not_converged", 0))
            free_steps, nudged_steps = list(partial["free_steps"]), list(partial["nudged_steps"])
            free_res, nudged_res = list(partial["free_residual"]), list(partial["nudged_residual"])
            t0 -= float(partial["seconds"])
            partial = None
        bar = tqdm(total=n_batches * batch_size, initial=min(first * batch_size, n), desc=f"epoch {epoch}/{epochs}",
                   unit="ex", leave=False, disable=None if progress is None else not progress)
        for b in range(first, n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            s0 = particles.get(idx) if persistent else None
            try:
                est = gradient_estimate(rule, network, train.x[idx], train.targets[idx], beta,
                                        options, nudged_options, s0=s0, rng=rng, feedback_seed=seed,
                                        rule_options=rule_options)
                grad, free, phases = est.gradient, est.free, est.phases
            except DivergenceError as exc:
                raise TrainingDivergedError(
                    f"training diverged at epoch {epoch}, minibatch {b}: {exc}; the parameters are those before "
                    f"this minibatch{_last_good(checkpoint, epoch)}", epoch, b, checkpoint and str(checkpoint)) from exc
            cost = network.cost(free.state, train.targets[idx])
            if not (np.isfinite(cost).all() and np.isfinite(free.state).all()):
                raise TrainingDivergedError(
                    f"training diverged at epoch {epoch}, minibatch {b}: the free phase gave a non-finite "
                    f"state or loss ({free.integration.message}); the parameters are those before this "
                    f"minibatch{_last_good(checkpoint, epoch)}", epoch, b, checkpoint and str(checkpoint))
            if lr_schedule is not None:
                optimizer.lr_scale = real_scalar("lr_schedule factor", lr_schedule(epoch, b, n_batches, epochs),
                                                 0.0, np.inf, low_open=True, high_open=True)
            if step_callback is not None:
                step_callback(idx, grad)
            try:
                optimizer.step(network.theta, grad)
            except NonFiniteGradientError as exc:
                raise TrainingDivergedError(
                    f"training diverged at epoch {epoch}, minibatch {b}: {exc}{_last_good(checkpoint, epoch)}",
                    epoch, b, checkpoint and str(checkpoint)) from exc
            if persistent:
                particles.put(idx, free.state)
            loss_sum += float(cost.sum())
            wrong += int(np.sum(predict(free.state[:, network.output_slice]) != train.labels[idx]))
            seen += idx.size
            free_steps.append(free.integration.n_steps)
            free_res.append(float(np.mean(free.integration.residual)))
            free_unsettled += _unsettled(free)
            for p in phases.values():
                nudged_steps.append(p.integration.n_steps)
                nudged_res.append(float(np.mean(p.integration.residual)))
                nudged_unsettled += _unsettled(p)
            bar.update(idx.size)
            if b % 50 == 0:
                bar.set_postfix(error=f"{wrong / seen:.4f}")
            if checkpoint is not None and due(b):
                save(epoch - 1, partial={
                    "order": order, "batch": b + 1, "seconds": time.perf_counter() - t0, "loss_sum": loss_sum,
                    "wrong": wrong, "seen": seen, "free_not_converged": free_unsettled,
                    "nudged_not_converged": nudged_unsettled, "free_steps": np.asarray(free_steps, dtype=float),
                    "nudged_steps": np.asarray(nudged_steps, dtype=float),
                    "free_residual": np.asarray(free_res, dtype=float),
                    "nudged_residual": np.asarray(nudged_res, dtype=float)})
        bar.close()
        seconds = time.perf_counter() - t0
        mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
        finish_epoch(epoch, loss_sum / seen, wrong / seen, mean(free_steps), mean(nudged_steps), mean(free_res),
                     mean(nudged_res), seconds, seen, free_unsettled, nudged_unsettled)
    return {c: np.asarray(v) for c, v in history.items()}


def _last_good(checkpoint, epoch):
    if checkpoint is None:
        return ""
    return f"; the last good checkpoint is {checkpoint} (epoch {epoch - 1})"


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

    :func:`evaluate_split` on one array of examples settled together
    (a predictive coding network's free equilibrium is its feedforward
    pass, read directly). Returns ``loss``, ``accuracy``, ``free_steps`` and
    ``converged`` (every example reached its tolerance).
    """
    x = np.asarray(x)
    m = evaluate_split(network, Task("evaluation", x, np.asarray(labels), np.asarray(targets)), options,
                       chunk=max(x.shape[0], 1) if x.ndim else 1)
    return {"loss": m["loss"], "accuracy": 1.0 - m["error"], "free_steps": m["free_steps"],
            "converged": m["not_converged"] == 0}


class ParticleStore:
    """Persistent particles: each training example's last free equilibrium, reused as its next start."""

    def __init__(self, n_examples, n_free, dtype=np.float64):
        n_examples = positive_int("n_examples", n_examples, minimum=0)
        n_free = positive_int("n_free", n_free)
        check_memory("n_examples", n_examples * n_free * np.dtype(dtype).itemsize,
                     f"persistent particles of {n_examples} examples x {n_free} units")
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
    """Train ``network`` in place on a small ``task``, evaluating the whole task after every epoch.

    :func:`fit` with ``task`` as its training split and, under the name
    'task', as its one held-out split: the loss and accuracy of each epoch
    are those of the free equilibrium of every example after the epoch's
    updates (not the running figures of the minibatches).

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
    task : Task
    rule : str
        One of :data:`dynsim.learning.RULES` (Hopfield) or
        :data:`dynsim.learning.PC_RULES` (predictive coding).
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
        ``step_callback(indices, gradient)`` before each optimizer step (see :func:`fit`).
    progress : bool or None
        Progress bars (``None``: only when stderr is a terminal; ``False``: never).

    Returns
    -------
    History
        Loss and accuracy on the task after each epoch (epoch 0: before training).
    """
    if not isinstance(task, Task):
        raise ValidationError(f"task must be a dynsim.datasets.Task, got {type(task).__name__}")
    if callback is not None and not callable(callback):
        raise ValidationError(f"callback must be callable, got {callback!r}")
    history = History()

    def on_epoch(row):
        entries = {"epoch": int(row["epoch"]), "loss": row["task_loss"], "accuracy": 1.0 - row["task_error"],
                   "free_steps": row["free_steps"], "nudged_steps": row["nudged_steps"], "seconds": row["seconds"]}
        for name, value in entries.items():
            getattr(history, name).append(value)
        if callback is not None:
            callback(entries["epoch"], entries)

    fit(network, {"train": task, "task": task}, rule, optimizer, epochs, batch_size, beta=beta, options=options,
        nudged_options=nudged_options, persistent=persistent, seed=seed, on_epoch=on_epoch, progress=progress,
        step_callback=step_callback)
    return history
