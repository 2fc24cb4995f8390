"""Training on the device: minibatches, a rule's estimate, the optimizer, evaluation; optionally as CUDA graphs.

:class:`TorchTrainer` runs the training step of :func:`dynsim.training.loop.fit`
(free phase from zero, the rule's nudged or clamped phases, the gradient
estimate, one optimizer step) with everything on the network's device: the
data set, the states, the parameters and the optimizer state. The host reads
back only what it reports: the training error, counted on the device, once per
epoch; the optimizer's finite-step flag and the phases' steady-state tests
every ``check_every`` steps.

When the phases run fixed step counts (``stop_at_steady_state=False``, the EP
papers' protocol) and the device is a CUDA GPU, ``cuda_graph=True`` captures
a whole step (all phases, the estimate and the optimizer update) once per
minibatch size and replays it: one launch per minibatch instead of one per
operation, which is what dominates small networks (Laborieux et al.'s 784-512-10
network spends most of its GPU time launching kernels).

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
.. [2] PyTorch documentation, "CUDA Graphs" (torch.cuda.graphs).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.learning import TORCH_RULES, estimate
from dynsim.backends.torch.relax import RelaxationDivergedError, check_options, relax
from dynsim.validation import ValidationError, positive_int, real_scalar

torch = require_torch()

__all__ = ["TorchTrainer", "one_hot", "count_wrong", "AUTOCAST_TYPES", "autocast_context"]

AUTOCAST_TYPES = {None: None, "bfloat16": torch.bfloat16}
"""``TorchTrainer``'s ``autocast`` values and the operand type each gives the products."""


def autocast_context(device, autocast):
    """The context products run in for ``autocast`` (a key of :data:`AUTOCAST_TYPES`) on ``device``.

    ``torch.autocast`` on the device's type with that operand type, or a
    context that does nothing for None (full precision).
    """
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_TYPES[autocast])


def count_wrong(out, labels):
    """Misclassified samples of outputs (batch, n_output), a 0-d tensor on their device.

    As :func:`dynsim.training.loop.predict`: a tied largest output (hard
    sigmoid outputs pinned at 0 or 1) is no decision and counts as wrong.
    """
    top = out.amax(dim=1, keepdim=True)
    tied = (out == top).sum(dim=1) > 1
    predicted = torch.where(tied, torch.full_like(labels, -1), out.argmax(dim=1))
    return (predicted != labels).sum()


def one_hot(labels, n_classes, dtype):
    """Targets (batch, n_classes) of integer labels on their device."""
    out = torch.zeros((labels.shape[0], n_classes), dtype=dtype, device=labels.device)
    out.scatter_(1, labels.view(-1, 1), 1.0)
    return out


class TorchTrainer:
    """Train a Hopfield network with an EP rule or CHL, or a PC network with PC, on its device.

    Parameters
    ----------
    net : TorchHopfieldNetwork, TorchPCNetwork or TorchConvPCNetwork
    rule : str
        One of :data:`dynsim.backends.torch.learning.TORCH_RULES` (Hopfield) or
        :data:`dynsim.backends.torch.pc.PC_TORCH_RULES` (PC).
    optimizer : TorchSGD or TorchAdam
        Built on ``net``.
    beta : float
        Nudging strength (EP rules).
    options, nudged_options : SettleOptions
        Free phase; nudged or clamped phases (default ``options``).
    check_every : int
        Steps between steady-state tests within a phase, and minibatches
        between reads of the device's flags (the optimizer's finite step; every
        phase's states within ``options.max_abs``, the only divergence test of
        a replayed CUDA graph, whose phases read nothing back).
    cuda_graph : bool
        Capture each minibatch size's step in a CUDA graph and replay it
        (CUDA devices, fixed step counts, not ``ep-random``).
    seed : int, optional
        Draws the minibatch order and ``ep-random``'s signs.
    autocast : {None, 'bfloat16'}
        ``'bfloat16'`` runs the phases and the estimate under
        ``torch.autocast``: matrix products and convolutions take bfloat16
        operands and their results are rounded to bfloat16 (the fields and the
        dense weight-gradient blocks among them); the states, parameters and
        optimizer are float32, and the held-out evaluation runs under the same
        autocast. A float32 network only. Recorded relaxations (logs) are
        computed on the host in float32. Whether the updates still follow the gradient is for
        the user to check on their network (the GPU script measures the
        cosine to float64: ``dynsim.benchmarks.gpu_checks``, section
        ``precision``); default None, full float32.

    References
    ----------
    .. [1] D. Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", arXiv:1905.12322 (2019).
    """

    def __init__(self, net, rule, optimizer, beta=0.5, options=None, nudged_options=None, check_every=10,
                 cuda_graph=False, seed=None, autocast=None):
        from dynsim.backends.torch.conv_pc import TORCH_PC_NETWORKS
        from dynsim.backends.torch.pc import PC_TORCH_RULES

        rules = PC_TORCH_RULES if isinstance(net, TORCH_PC_NETWORKS) else TORCH_RULES
        if rule not in rules:
            raise ValidationError(f"rule must be one of {list(rules)} for this network on the torch backend, got "
                                  f"{rule!r}")
        if options is None:
            raise ValidationError("options is required: the SettleOptions of the free phase")
        self.net, self.rule, self.optimizer = net, rule, optimizer
        self.beta = real_scalar("beta", beta, 0.0, np.inf, low_open=True, high_open=True)
        self.options = options
        self.nudged_options = options if nudged_options is None else nudged_options
        self.check_every = check_options(options, check_every)
        check_options(self.nudged_options, check_every)
        if cuda_graph:
            if net.device.type != "cuda":
                raise ValidationError(f"cuda_graph=True needs a CUDA device; this network is on {net.device}")
            if options.stop_at_steady_state or self.nudged_options.stop_at_steady_state:
                raise ValidationError("cuda_graph=True replays fixed step counts: set stop_at_steady_state=False in "
                                      "options and nudged_options")
            if rule == "ep-random":
                raise ValidationError("cuda_graph=True cannot draw ep-random's sign per minibatch inside a graph; "
                                      "use ep-centered, ep-positive or ep-negative")
        self.cuda_graph = bool(cuda_graph)
        if autocast not in AUTOCAST_TYPES:
            raise ValidationError(f"autocast must be one of {list(AUTOCAST_TYPES)}, got {autocast!r}")
        if autocast is not None and net.dtype != torch.float32:
            raise ValidationError(f"autocast={autocast!r} needs a float32 network (its operands are cast down from "
                                  f"float32), got {str(net.dtype).replace('torch.', '')}")
        self.autocast = autocast
        self.rng = np.random.default_rng(seed)
        self._graphs = {}
        self._ok = torch.ones((), dtype=torch.bool, device=net.device)
        self._within = torch.ones((), dtype=torch.bool, device=net.device)
        self._errors = torch.zeros((), dtype=torch.int64, device=net.device)
        self._loss = torch.zeros((), dtype=torch.float64, device=net.device)

    # ------------------------------------------------------------------ one step
    def _reduced(self):
        """The context the phases and the estimate run in: ``torch.autocast`` or nothing."""
        return autocast_context(self.net.device, self.autocast)

    def _update(self, x, target, labels, sync):
        with self._reduced():
            est = estimate(self.net, self.rule, x, target, self.beta, self.options, self.nudged_options,
                           check_every=self.check_every, rng=self.rng, sync=sync)
        # The optimizer works in the parameters' float32; the estimate's blocks were rounded to bfloat16 under autocast.
        ok = self.optimizer.step(self.net.theta, est.gradient.to(self.net.theta.dtype))
        out = est.free.state[-1].reshape(x.shape[0], -1)
        wrong = count_wrong(out, labels)
        loss = 0.5 * ((out - target) ** 2).sum(dtype=torch.float64)  # the cost fit sums: 1/2 ||s_out - y||^2
        # The phases' own divergence test reads back to the host, so a replayed graph skips it: this flag, kept on
        # the device and read with the optimizer's, catches a state that left the range instead.
        states = [t for ph in (est.free, *est.phases.values()) for t in ph.state[1:]]
        within = torch.stack([(torch.isfinite(t).all() & (t.abs().amax() <= self.options.max_abs))
                              for t in states]).all()
        return ok, wrong, loss, est, within

    def step(self, x, labels):
        """One minibatch: estimate, update. Returns nothing; errors, cost and the flags accumulate on the device.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, n_input), on the device
        labels : torch.Tensor of int64, shape (batch,), on the device
        """
        target = one_hot(labels, self.net.n_output, self.net.dtype)
        if self.cuda_graph:
            ok, wrong, loss, within = self._replay(x, target, labels)
        else:
            ok, wrong, loss, _, within = self._update(x, target, labels, sync=True)
        self._ok &= ok
        self._within &= within
        self._errors += wrong
        self._loss += loss

    def _replay(self, x, target, labels):
        key = x.shape[0]
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x, target, labels)
            self._graphs[key] = entry
        graph, static, outputs = entry
        static[0].copy_(x)
        static[1].copy_(target)
        static[2].copy_(labels)
        graph.replay()
        return outputs

    def _capture(self, x, target, labels):
        """Capture one step for this minibatch size; the warm-up's updates are undone."""
        static = (x.clone(), target.clone(), labels.clone())
        saved = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # allocations and cuBLAS/cuDNN plans settle before capture
                self._update(*static, sync=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            ok, wrong, loss, _, within = self._update(*static, sync=False)
        self._restore(saved)
        return graph, static, (ok, wrong, loss, within)

    def _snapshot(self):
        opt = self.optimizer
        state = [t.clone() for t in (self.net.theta, *self._optimizer_tensors())]
        return state, opt

    def _optimizer_tensors(self):
        opt = self.optimizer
        return [getattr(opt, name) for name in ("velocity", "m", "v", "t") if hasattr(opt, name)]

    def _restore(self, saved):
        state, _ = saved
        for dst, src in zip((self.net.theta, *self._optimizer_tensors()), state):
            dst.copy_(src)

    def check(self, epoch=0, batch=0):
        """Read the device's flags back: raise when a step was refused or a relaxation left the finite range.

        Raises
        ------
        RelaxationDivergedError
            A state of some minibatch since the last check had an entry above
            ``options.max_abs`` or not finite (the replayed graph's test).
        NonFiniteGradientError
            The optimizer refused a step (see its ``check``).
        """
        if not bool(self._within):
            raise RelaxationDivergedError(
                f"a relaxation left the finite range (an entry above max_abs = {self.options.max_abs:g} or not "
                f"finite) in epoch {epoch}, at or before minibatch {batch}; lower the learning rate or beta")
        if not bool(self._ok):
            self.optimizer.check(self._ok)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, x, labels, batch_size, schedule=None, epoch=0, epochs=1, max_batches=None):
        """One pass over ``x`` in shuffled minibatches (the first ``max_batches`` of them); the epoch's figures.

        Parameters
        ----------
        x : torch.Tensor, shape (n, n_input), on the device
        labels : torch.Tensor of int64, shape (n,), on the device
        batch_size : int
        schedule : callable, optional
            ``schedule(epoch, batch, n_batches, epochs)`` -> rate factor
            (:mod:`dynsim.training.schedules`).
        max_batches : int, optional
            Stop after this many minibatches (smoke runs).

        Returns
        -------
        dict
            ``train_error`` and ``train_loss`` (mean cost 1/2 ||s_out - y||^2)
            of the free phases met during training, ``seconds``,
            ``ms_per_batch``, ``n_batches``, ``n_seen`` (examples trained on).
        """
        batch_size = positive_int("batch_size", batch_size)
        n = x.shape[0]
        # The order fit draws from the same generator: a run here and one on the Numba path see the same minibatches.
        order = torch.as_tensor(self.rng.permutation(n), device=x.device)
        n_batches = -(-n // batch_size)
        if max_batches is not None:
            n_batches = min(n_batches, positive_int("max_batches", max_batches))
        n_seen = min(n, n_batches * batch_size)
        self._errors.zero_()
        self._loss.zero_()
        self._ok.fill_(True)
        self._within.fill_(True)
        sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for b in range(n_batches):
            if schedule is not None:
                self.optimizer.lr_scale = schedule(epoch, b, n_batches, epochs)
            idx = order[b * batch_size:(b + 1) * batch_size]
            self.step(x[idx], labels[idx])
            if (b + 1) % self.check_every == 0 or b == n_batches - 1:
                self.check(epoch, b)
        sync()
        seconds = time.perf_counter() - start
        return {"train_error": int(self._errors) / n_seen, "train_loss": float(self._loss) / n_seen,
                "seconds": seconds, "ms_per_batch": 1e3 * seconds / n_batches, "n_batches": n_batches,
                "n_seen": n_seen}

    def evaluate(self, x, labels, options=None, chunk=1000):
        """Error rate of the free phase's output over ``x`` (ties count as wrong); ``options``: the training's."""
        return self.assess(x, labels, options, chunk)["error"]

    def assess(self, x, labels, options=None, chunk=1000):
        """Mean cost 1/2 ||s_out - y||^2 and error rate of the free phase over ``x``: ``{'loss', 'error'}``.

        As :func:`dynsim.training.loop.evaluate_split`: a PC network predicts
        with its feedforward pass, a Hopfield network with a free phase from
        zero under ``options`` (default the training's), under the trainer's
        ``autocast``. One read back.
        """
        from dynsim.backends.torch.conv_pc import TORCH_PC_NETWORKS

        options = self.options if options is None else options
        check_options(options, self.check_every)
        wrong = torch.zeros((), dtype=torch.int64, device=x.device)
        loss = torch.zeros((), dtype=torch.float64, device=x.device)
        with torch.no_grad(), self._reduced():  # evaluated in the precision the network trains in
            for a in range(0, x.shape[0], chunk):
                xb = x[a:a + chunk]
                if isinstance(self.net, TORCH_PC_NETWORKS):
                    out = self.net.feedforward(xb)[1][-1]  # a PC network predicts with its feedforward pass
                else:
                    free = relax(self.net, self.net.zeros(xb.shape[0]), self.net.input_drive(xb), options,
                                 check_every=self.check_every, phase="evaluation")
                    out = free.state[-1]
                out = out.reshape(xb.shape[0], -1)
                lb = labels[a:a + chunk]
                wrong += count_wrong(out, lb)
                loss += 0.5 * ((out - one_hot(lb, self.net.n_output, out.dtype)) ** 2).sum(dtype=torch.float64)
        counts = torch.stack([wrong.to(torch.float64), loss]).cpu().numpy()
        return {"error": float(counts[0]) / x.shape[0], "loss": float(counts[1]) / x.shape[0]}
