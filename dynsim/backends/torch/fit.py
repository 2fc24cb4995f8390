"""Train on a device with :func:`dynsim.training.loop.fit`'s epochs, metrics and checkpoints.

:func:`fit_on_device` takes what :func:`~dynsim.training.loop.fit` takes (a
host network, its data splits, a rule, a dynsim optimizer) and trains on
``device`` through :class:`~dynsim.backends.torch.training.TorchTrainer`:
the data go to the device once, each epoch runs there, and after each epoch
the host receives the parameters, the optimizer state and one row of
figures. The rows have ``fit``'s columns and the checkpoints are ``fit``'s
(same fingerprint, same optimizer state, same random generator), so a run
started on a GPU continues on the Numba path and back, and a run on either
draws the same minibatches in the same order.

What the device does not measure is NaN in the row: the phases' residuals
and not-converged counts (reading them back would make the host wait at
every phase). ``free_steps`` and ``nudged_steps`` are the phases' step
counts when they are fixed (``stop_at_steady_state=False``), NaN otherwise.

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021) (training on a GPU).
"""
from __future__ import annotations

import time

import numpy as np

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.optimizers import TorchAdam, TorchSGD
from dynsim.backends.torch.relax import RelaxationDivergedError
from dynsim.backends.torch.training import TorchTrainer
from dynsim.networks import ConvHopfieldNetwork, ConvPCNetwork, HopfieldNetwork
from dynsim.networks.pc import PCNetwork
from dynsim.relax.phases import SettleOptions
from dynsim.training.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from dynsim.training.loop import (TrainingDivergedError, _check_data, checkpoint_history, load_resumable,
                                  metric_columns, run_stamp)
from dynsim.training.optimizers import SGD, Adam, NonFiniteGradientError
from dynsim.validation import ValidationError, positive_int, real_scalar

torch = require_torch()

__all__ = ["fit_on_device", "device_network", "device_optimizer"]


def device_network(network, device):
    """The torch backend's view of a host network on ``device`` (parameters copied; ``to_host`` writes them back)."""
    from dynsim.backends.torch.conv_pc import TorchConvPCNetwork
    from dynsim.backends.torch.network import TorchHopfieldNetwork
    from dynsim.backends.torch.pc import TorchPCNetwork

    if isinstance(network, ConvPCNetwork):
        return TorchConvPCNetwork(network, device=device)
    if isinstance(network, PCNetwork) and type(network) is PCNetwork:  # not DTP's subclass: its rule is host-only
        return TorchPCNetwork(network, device=device)
    if isinstance(network, (HopfieldNetwork, ConvHopfieldNetwork)):
        return TorchHopfieldNetwork(network, device=device)
    raise ValidationError(f"network: the torch backend trains HopfieldNetwork, ConvHopfieldNetwork, PCNetwork and "
                          f"ConvPCNetwork, got {type(network).__name__}")


def device_optimizer(optimizer, tnet):
    """A torch optimizer on ``tnet``'s device with ``optimizer``'s rates, constants and state (a dynsim SGD or Adam)."""
    if isinstance(optimizer, Adam):
        out = TorchAdam(tnet, 1.0, beta1=optimizer.beta1, beta2=optimizer.beta2, eps=optimizer.eps)
    elif isinstance(optimizer, SGD):
        out = TorchSGD(tnet, 1.0, momentum=optimizer.momentum)
    else:
        raise ValidationError(f"optimizer must be a dynsim SGD or Adam, got {type(optimizer).__name__}")
    out.rates.copy_(torch.as_tensor(np.array(optimizer.rates, dtype=tnet.np_dtype)))  # per-parameter, as given
    out.load_state_dict(optimizer.state_dict())
    return out


def _fixed_steps(options):
    return float(options.max_steps) if not options.stop_at_steady_state else float("nan")


def fit_on_device(network, data, rule, optimizer, epochs, batch_size, *, device, beta=1.0, options=None,
                  nudged_options=None, eval_options=None, seed=0, checkpoint=None, resume=False, fingerprint=None,
                  on_epoch=None, max_batches=None, lr_schedule=None, check_every=10, cuda_graph=False,
                  autocast=None):
    """Train ``network`` on ``device`` as :func:`dynsim.training.loop.fit` trains it on the host.

    Parameters
    ----------
    network : HopfieldNetwork, ConvHopfieldNetwork, PCNetwork or ConvPCNetwork
        Trained in place: its parameters are written back after every epoch.
    data : dict of str to Task
        ``'train'`` and the held-out splits, with one-hot targets.
    rule : str
        A rule of the torch backend (:data:`~dynsim.backends.torch.learning.TORCH_RULES`
        for Hopfield networks, :data:`~dynsim.backends.torch.pc.PC_TORCH_RULES`
        for PC networks).
    optimizer : SGD or Adam
        The host optimizer: its rates, constants and state start the
        device's, and receive the device's state after every epoch.
    epochs, batch_size, beta, options, nudged_options, eval_options, seed, checkpoint, resume, fingerprint, \
on_epoch, max_batches, lr_schedule
        As in :func:`~dynsim.training.loop.fit` (``eval_options``: the
        held-out splits' free phase, from zero; default ``options``).
    device : str or torch.device
        ``'cpu'``, ``'cuda'`` or ``'cuda:<index>'``.
    check_every : int
        Steps between the phases' steady-state tests, and minibatches between
        reads of the device's flags (see :class:`TorchTrainer`).
    cuda_graph : bool
        Replay each training step as a CUDA graph (fixed step counts).
    autocast : {None, 'bfloat16'}
        Products and convolutions in bfloat16, in training and evaluation
        (float32 networks; see :class:`TorchTrainer`).

    Returns
    -------
    dict of str to ndarray
        ``fit``'s metric columns, one entry per epoch (epoch 0 first).

    Raises
    ------
    TrainingDivergedError
        A relaxation left the finite range or the optimizer refused a step;
        the parameters and the checkpoint are those of the last good epoch.
    CheckpointError
        ``resume`` from a checkpoint of another configuration, or saved in
        the middle of an epoch (continue that one where it was started).
    """
    _check_data(network, data)
    epochs = positive_int("epochs", epochs, minimum=0)
    batch_size = positive_int("batch_size", batch_size)
    beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
    if max_batches is not None:
        max_batches = positive_int("max_batches", max_batches)
    if resume and checkpoint is None:
        raise ValidationError("resume=True needs a checkpoint path")
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValidationError(f"lr_schedule must be a schedule from dynsim.training.schedules (a callable), got "
                              f"{lr_schedule!r}")
    for name, task in data.items():
        if not np.array_equal(task.targets, np.eye(network.n_output, dtype=task.targets.dtype)[task.labels]):
            raise ValidationError(f"data[{name!r}].targets must be the one-hot codes of its labels: the device "
                                  "path trains and evaluates against one-hot targets")
    options = SettleOptions() if options is None else options
    nudged_options = options if nudged_options is None else nudged_options
    eval_options = options if eval_options is None else eval_options

    tnet = device_network(network, device)
    topt = device_optimizer(optimizer, tnet)
    trainer = TorchTrainer(tnet, rule, topt, beta=beta, options=options, nudged_options=nudged_options,
                           check_every=check_every, cuda_graph=cuda_graph, seed=seed, autocast=autocast)
    train = data["train"]
    held_out = {k: v for k, v in data.items() if k != "train"}
    n = train.x.shape[0]
    columns = metric_columns(held_out)
    stamp = run_stamp(network, rule, batch_size, seed, False, n, epochs, lr_schedule, False, fingerprint)
    on_device = {name: (tnet.tensor(task.x), torch.as_tensor(np.asarray(task.labels, dtype=np.int64),
                                                             device=tnet.device))
                 for name, task in data.items()}  # once: nothing per minibatch crosses over
    history = {c: [] for c in columns}
    predicts_feedforward = isinstance(network, (PCNetwork, ConvPCNetwork))

    def emit(row, replayed=False):
        if on_epoch is not None:
            on_epoch(dict(row, replayed=replayed))

    def finish_epoch(epoch, figures):
        trained = epoch > 0
        unmeasured = float("nan") if trained else 0.0  # before training no phase ran: nothing failed to settle
        row = {"epoch": epoch, "train_loss": figures["train_loss"], "train_error": figures["train_error"],
               "free_not_converged": unmeasured, "nudged_not_converged": unmeasured}
        t_eval = time.perf_counter()
        for name in held_out:
            m = trainer.assess(*on_device[name], options=eval_options)
            row[f"{name}_loss"], row[f"{name}_error"] = m["loss"], m["error"]
            # A PC network predicts with its feedforward pass: no relaxation that could fail to settle.
            row[f"{name}_not_converged"] = 0.0 if predicts_feedforward else float("nan")
        row["eval_seconds"] = time.perf_counter() - t_eval
        # A PC network's free phase is its feedforward pass (no steps); its inference runs ``options``.
        free_steps, nudged_steps = ((0.0, _fixed_steps(options)) if predicts_feedforward else
                                    (_fixed_steps(options), _fixed_steps(nudged_options)))
        row.update(free_steps=free_steps if trained else 0.0, nudged_steps=nudged_steps if trained else 0.0,
                   free_residual=float("nan") if trained else 0.0, nudged_residual=float("nan") if trained else 0.0,
                   seconds=figures["seconds"], examples_per_s=figures["n_seen"] / max(figures["seconds"], 1e-12))
        for c in columns:
            history[c].append(float(row[c]))
        tnet.to_host()  # the host network holds the epoch's parameters: checkpoints, logs, on_epoch read them
        optimizer.load_state_dict(topt.state_dict())
        if checkpoint is not None:
            save_checkpoint(checkpoint, Checkpoint(
                epoch=epoch, theta=network.theta.copy(), optimizer=optimizer.state_dict(),
                rng_state=trainer.rng.bit_generator.state,
                history={c: np.asarray(v, dtype=float) for c, v in history.items()}, fingerprint=stamp))
        emit(row)

    if resume:
        ckpt = load_resumable(checkpoint, stamp, epochs, lr_schedule, network)
        if ckpt.partial is not None:
            raise CheckpointError(f"checkpoint {checkpoint} was saved in the middle of epoch {ckpt.epoch + 1}; the "
                                  "device path continues from the end of an epoch: finish that epoch where it was "
                                  "started (dynsim.training.loop.fit)")
        network.theta = ckpt.theta
        tnet.load_theta(ckpt.theta)
        optimizer.load_state_dict(ckpt.optimizer)
        topt.load_state_dict(ckpt.optimizer)
        trainer.rng.bit_generator.state = ckpt.rng_state
        history = checkpoint_history(ckpt, columns)
        for i in range(len(history["epoch"])):
            emit({c: history[c][i] for c in columns}, replayed=True)
        start = ckpt.epoch + 1
    else:
        finish_epoch(0, {"train_loss": float("nan"), "train_error": float("nan"), "seconds": 0.0, "n_seen": 0})
        start = 1

    x, labels = on_device["train"]
    for epoch in range(start, epochs + 1):
        try:
            figures = trainer.train_epoch(x, labels, batch_size, schedule=lr_schedule, epoch=epoch, epochs=epochs,
                                          max_batches=max_batches)
        except (RelaxationDivergedError, NonFiniteGradientError) as exc:
            last = f"; the last good parameters are in {checkpoint} (epoch {epoch - 1})" if checkpoint else ""
            raise TrainingDivergedError(f"training diverged on {tnet.device} in epoch {epoch}: {exc}{last}", epoch,
                                        None, checkpoint and str(checkpoint)) from exc
        finish_epoch(epoch, figures)
    return {c: np.asarray(v) for c, v in history.items()}
