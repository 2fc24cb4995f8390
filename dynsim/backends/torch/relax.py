"""The free, nudged and clamped relaxations of a :class:`TorchHopfieldNetwork`, with the Numba path's semantics.

Three schemes, as in :mod:`dynsim.relax.block_relaxation` and the integrators:

``fixed_point``
    every free group at once, ``s_g <- P(rho'(s_g) h_g)`` (the nudged output
    ``P((rho'(s) h + beta y) / (1 + beta))``);
``block``
    the groups of odd depth, then those of even depth, each half reading
    the other's newest state (:func:`dynsim.relax.block_relaxation.update_halves`);
``euler`` / ``projected_euler``
    ``s <- P(s + dt (rho'(s) h - s - beta (s_out - y)))``.

A relaxation stops when every sample satisfies the integrators' steady-state
test, ``||f|| <= atol + rtol ||s||`` on the projected residual of
``f = -dF/ds`` (components pinned at a bound by an outward field do not
count), or at ``max_steps``. The test needs the host to read a number back
from the device, so it runs every ``check_every`` steps (and at the step
limit); between checks the device runs without waiting for the host. With
``check_every=1`` the step counts are the Numba path's; with k > 1 a
relaxation may run up to k - 1 sweeps past the first steady step. A phase
run for a fixed number of steps (``stop_at_steady_state=False``, the EP
papers' protocol) reads nothing back until its end.

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021) (fixed-point dynamics).
.. [2] B. Scellier et al., "Energy-based learning algorithms for analog computing: a comparative study",
       NeurIPS (2023) (block updates).
"""
from __future__ import annotations

from dataclasses import dataclass

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.device_network import RelaxationDivergedError, check_range
from dynsim.relax.block_relaxation import update_halves
from dynsim.relax.phases import SettleOptions
from dynsim.validation import ValidationError, positive_int

torch = require_torch()

__all__ = ["TORCH_SCHEMES", "TorchPhase", "RelaxationDivergedError", "relax"]

TORCH_SCHEMES = ("fixed_point", "block", "euler", "projected_euler")
"""The relaxations the torch backend runs (``SettleOptions.integrator``)."""


@dataclass
class TorchPhase:
    """The end of a relaxation on the torch backend.

    Attributes
    ----------
    state : list of torch.Tensor
        Group tensors ``[None, s_1, ..., s_out]`` on the device.
    steps : int
        Sweeps (or Euler steps) taken.
    status : str or None
        ``'converged'``, ``'step_limit'``, or None for a relaxation run
        without reading back (``sync=False``).
    residual : torch.Tensor, shape (batch,)
        ``||f||`` per sample at ``state`` (projected), on the device.
    """

    state: list
    steps: int
    status: str | None
    residual: object

    @property
    def converged(self):
        return self.status == "converged"


def _halves(net, scheme, clamp_output):
    G = len(net.group_sizes)
    if scheme in ("fixed_point", "block"):
        first, second = update_halves(net, scheme, clamp_output)
        return [g for g in range(1, G) if first[g]], [g for g in range(1, G) if second[g]]
    groups = list(range(1, G - 1 if clamp_output else G))
    return groups, []


def _new_value(net, g, ap, h, nudge, beta, target, box):
    v = ap[g] * h
    if nudge and g == len(net.group_sizes) - 1:
        v = (v + beta * target) * (1.0 / (1.0 + beta))
    if box is not None:
        v = v.clamp(box[0], box[1])
    return v


def _vector_field(net, g, s, ap, h, nudge, beta, target):
    f = ap[g] * h - s[g]
    if nudge and g == len(net.group_sizes) - 1:
        f = f - beta * (s[g] - target)
    return f


def _residual(net, s, ap, h, groups, nudge, beta, target, boxes):
    """Per sample: the norm of the projected ``f = -dF/ds`` (zero on groups held fixed), the norm of ``s``, and
    the largest magnitude of an entry of ``s`` or ``f`` (the divergence test)."""
    n = s[1].shape[0]
    res2 = torch.zeros(n, dtype=s[1].dtype, device=s[1].device)
    y2 = torch.zeros_like(res2)
    largest = torch.zeros_like(res2)
    for g in range(1, len(net.group_sizes)):
        y2 = y2 + (s[g] * s[g]).reshape(n, -1).sum(1)
        largest = torch.maximum(largest, s[g].abs().reshape(n, -1).amax(1))
        if g not in groups:
            continue
        f = _vector_field(net, g, s, ap, h[g], nudge, beta, target)
        largest = torch.maximum(largest, f.abs().reshape(n, -1).amax(1))
        box = boxes[g]
        if box is not None:
            pinned = ((s[g] <= box[0]) & (f < 0)) | ((s[g] >= box[1]) & (f > 0))
            f = torch.where(pinned, torch.zeros_like(f), f)
        res2 = res2 + (f * f).reshape(n, -1).sum(1)
    return res2.sqrt(), y2.sqrt(), largest


def check_options(options, check_every):
    """``options`` validated for the torch backend: a :class:`SettleOptions` of a scheme it runs."""
    if not isinstance(options, SettleOptions):
        raise ValidationError(f"options must be a SettleOptions, got {type(options).__name__}")
    if options.integrator not in TORCH_SCHEMES:
        raise ValidationError(f"options.integrator must be one of {list(TORCH_SCHEMES)} on the torch backend, got "
                              f"{options.integrator!r}")
    if options.record_every:
        raise ValidationError("options.record_every: the torch backend records no trajectories; relax the states "
                              "to record on the Numba path (record_every=0 here)")
    return positive_int("check_every", check_every)


def relax(net, s0, drive, options, beta=0.0, target=None, clamp_output=False, check_every=10, sync=True,
          phase="free"):
    """Relax ``s0`` under ``F = E + beta C`` (or with the output clamped) on the network's device.

    Parameters
    ----------
    net : TorchHopfieldNetwork
    s0 : list of torch.Tensor
        Start, group tensors (not modified).
    drive : list of torch.Tensor
        :meth:`TorchHopfieldNetwork.input_drive` of the minibatch.
    options : SettleOptions
        ``integrator`` one of :data:`TORCH_SCHEMES`; ``max_steps``, ``atol``,
        ``rtol``, ``stop_at_steady_state``, ``bounds``, ``project``,
        ``max_abs`` and ``dt`` as on the Numba path.
    beta : float
        Nudging strength (> -1 for the sweep schemes).
    target : torch.Tensor, shape (batch, n_output), optional
        Needed when ``beta != 0`` or ``clamp_output``.
    clamp_output : bool
        Hold the output group where ``s0`` has it (CHL's clamped phase).
    check_every : int
        Steps between the steady-state and divergence tests (each a read back to the host).
    sync : bool
        False runs exactly ``max_steps`` steps and reads nothing back (for
        capture in a CUDA graph); the returned status is then None.
    phase : str
        Name used in error messages.

    Returns
    -------
    TorchPhase

    Raises
    ------
    RelaxationDivergedError
        At a test that finds a non-finite state or one above ``options.max_abs``.
    """
    check_every = check_options(options, check_every)
    scheme = options.integrator
    beta = float(beta)
    if scheme in ("fixed_point", "block") and not clamp_output and not beta > -1.0:
        raise ValidationError(f"beta must be > -1 for the scheme {scheme!r} (F has no minimiser along the outputs "
                              f"otherwise), got {beta}")
    nudge = beta != 0.0 and not clamp_output
    G = len(net.group_sizes)
    if (nudge or clamp_output) and target is None:
        raise ValidationError("target is required for a nudged or clamped phase")
    if target is not None:
        target = net.tensor(target).reshape((target.shape[0],) + net.group_shapes[-1])
    boxes = net.boxes(options.bounds, options.project)
    if scheme == "projected_euler" and all(b is None for b in boxes[1:]):
        raise ValidationError("integrator 'projected_euler' needs a box: no group has one (only the hard sigmoid's "
                              "is natural) or project=False; pass bounds=(low, high)")
    first, second = _halves(net, scheme, clamp_output)
    updated = first + second
    s = [None] + [net.tensor(t).clone() for t in s0[1:]]
    if clamp_output:
        s[G - 1] = target.clone()
    # As the Numba path: the start (a clamped output too) is projected onto the box first.
    for g in range(1, G):
        if boxes[g] is not None:
            s[g] = s[g].clamp(boxes[g][0], boxes[g][1])
    a, ap = net.activate(s)
    memo = net.forwards(a)
    dt = options.step() if scheme in ("euler", "projected_euler") else None
    max_steps = options.max_steps
    stop = options.stop_at_steady_state and sync
    steps = 0
    status = None
    h = [None] * G
    while True:
        at_end = steps >= max_steps
        test = sync and (at_end or (stop and steps % check_every == 0))
        fresh = first if not test else updated
        for g in fresh:
            h[g] = net.field(g, a, drive, memo)
        if test or (at_end and not sync):
            residual, norm, largest = _residual(net, s, ap, h, updated, nudge, beta, target, boxes)
        if test:
            check_range(phase, steps, residual, norm, largest, options.max_abs, f" of {scheme!r}")
            if stop and bool((residual <= options.atol + options.rtol * norm).all()):
                status = "converged"
                break
        if at_end:
            status = "step_limit" if sync else None
            break
        if dt is not None:
            for g in first:
                v = s[g] + dt * _vector_field(net, g, s, ap, h[g], nudge, beta, target)
                s[g] = v if boxes[g] is None else v.clamp(boxes[g][0], boxes[g][1])
            a, ap = net.activate(s)
            memo = net.forwards(a)
        else:
            for g in first:
                s[g] = _new_value(net, g, ap, h[g], nudge, beta, target, boxes[g])
            _refresh(net, s, a, ap, memo, first)
            if second:
                for g in second:
                    h[g] = net.field(g, a, drive, memo)
                for g in second:
                    s[g] = _new_value(net, g, ap, h[g], nudge, beta, target, boxes[g])
                _refresh(net, s, a, ap, memo, second)
        steps += 1
    return TorchPhase(state=s, steps=steps, status=status, residual=residual)


def _refresh(net, s, a, ap, memo, groups):
    """Activities of the moved groups, and the forwards of the couplings they feed."""
    for g in groups:
        a2, ap2 = net.activate(s, [g])
        a[g], ap[g] = a2[g], ap2[g]
    memo.update(net.forwards(a, set(groups)))
