"""What every network built from an :class:`~dynsim.networks.architecture.Architecture` shares.

Both families over groups of units and feature maps (the convolutional
Hopfield network and the convolutional predictive coding network) keep the
architecture's groups, parameter layout and coupling operations, one flat
``theta``, named parameter blocks and per-batch-size buffers. This base class
holds that bookkeeping; a subclass adds an energy and its relaxation.
"""
from __future__ import annotations

import numpy as np

from dynsim.networks import conv_kernels as ck
from dynsim.networks.architecture import Architecture
from dynsim.networks.coupling_ops import GroupBuffers, coupling_ops
from dynsim.networks.layout import NetworkLayout
from dynsim.validation import ValidationError, boolean, float_array, float_dtype, positive_int, real_scalar

__all__ = ["ArchitectureNetwork"]

_CACHED_BATCH_SIZES = 4
"""Batch sizes whose buffers a network keeps (training, last partial minibatch, evaluation)."""


class ArchitectureNetwork(NetworkLayout):
    """Groups, parameter layout, coupling operations and buffers of a network described by an :class:`Architecture`.

    Parameters
    ----------
    architecture : Architecture
    dtype : {numpy.float32, numpy.float64}

    Attributes
    ----------
    architecture : Architecture
    group_names : tuple of str
    group_shapes : tuple of tuple
        (n,) or (C, H, W) per group.
    group_sizes : tuple of int
        Units per group (C H W for maps); the free state holds groups 1..G-1
        side by side, each in (C, H, W) order.
    activations : tuple of str
        Activation of each group.
    n_params : int
    """

    _buffer_roles = GroupBuffers.ROLES
    """The roles (one flat array each) of the subclass's per-batch buffers."""

    def __init__(self, architecture, dtype):
        if not isinstance(architecture, Architecture):
            raise ValidationError(f"architecture must be an Architecture, got {type(architecture).__name__}")
        self.dtype = float_dtype(dtype)
        self.architecture = architecture
        groups = architecture.groups
        self.group_names = tuple(g.name for g in groups)
        self.group_shapes = tuple(g.shape for g in groups)
        self.group_sizes = tuple(g.size for g in groups)
        self.activations = tuple(g.activation for g in groups)
        free_off = np.zeros(len(groups), dtype=np.int64)
        free_off[1:] = np.concatenate(([0], np.cumsum(self.group_sizes[1:-1])))
        self._free_off = free_off
        self._layout = architecture.parameter_layout()
        self.n_params = architecture.n_params
        weight_blocks = {b.index: b for b in self._layout if b.kind == "weight"}
        self._bias_blocks = {b.index: b for b in self._layout if b.kind == "bias"}
        self._links = coupling_ops(architecture, weight_blocks, self.dtype)
        self._input_links = tuple(link for link in self._links if link.pre == 0)
        self._free_links = tuple(link for link in self._links if link.pre != 0)
        self._buffer_cache = {}

    # ------------------------------------------------------------------ parameters
    @property
    def theta(self):
        """Flat parameter vector, shape (n_params,): weight blocks in coupling order, then biases in group order."""
        return self._theta

    @theta.setter
    def theta(self, value):
        self._theta = float_array("theta", value, shape=(self.n_params,), dtype=self.dtype)

    def parameter_blocks(self):
        """Named slices of :attr:`theta`: ``{'W_<pre>_<post>': slice, ..., 'b_<group>': slice}``, in layout order.

        The unit of per-layer metrics and learning rates.
        """
        return {b.name: b.slice for b in self._layout}

    def layer_of_block(self):
        """The free group each parameter block feeds: ``{block name: group index}``.

        A weight block belongs to the deeper of its two groups (its post
        group in a feedforward stack: Scellier & Bengio's per-layer rates,
        as :meth:`HopfieldNetwork.layer_of_block`), a bias to its own group.
        """
        layers = {}
        for b in self._layout:
            if b.kind == "weight":
                link = self._links[b.index]
                layers[b.name] = max(link.pre, link.post)
            else:
                layers[b.name] = b.index
        return layers

    def _block(self, name):
        for b in self._layout:
            if b.name == name:
                return self._theta[b.start:b.stop].reshape(b.shape)
        raise ValidationError(f"unknown parameter block {name!r}; the blocks are {[b.name for b in self._layout]}")

    def weights(self, c):
        """View of the weights of coupling ``c`` (index or name) into :attr:`theta`.

        Shape (n_pre, n_post) for a dense coupling, (C_post, C_pre, kh, kw)
        for a convolution.
        """
        names = [link.coupling.name for link in self._links]
        if isinstance(c, str):
            if c not in names:
                raise ValidationError(f"unknown coupling {c!r}; the couplings are {names}")
            c = names.index(c)
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c < len(names):
            raise ValidationError(f"c must be a coupling name or an index in [0, {len(names) - 1}], got {c!r}")
        link = self._links[int(c)]
        return self._theta[link.start:link.stop].reshape(link.shape)

    def biases(self, g):
        """View of the biases of free group ``g`` (index or name) into :attr:`theta`: (C,) for maps, (n,) for units."""
        if isinstance(g, str):
            self.architecture.group(g)  # a ValidationError naming the groups when unknown
            g = self.architecture.group_index[g]
        G = len(self.group_sizes)
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)) or not 1 <= g < G:
            raise ValidationError(f"g must be a free group name or an index in [1, {len(self.group_sizes) - 1}], "
                                  f"got {g!r}")
        if int(g) not in self._bias_blocks:
            raise ValidationError(f"group {self.group_names[g]} has no bias (Group(..., bias=False))")
        b = self._bias_blocks[int(g)]
        return self._theta[b.start:b.stop]

    # ------------------------------------------------------------------ states
    def group_states(self, s):
        """The free state as ``{group name: view of shape (batch, *shape)}`` (feature maps as (batch, C, H, W)).

        Parameters
        ----------
        s : ndarray, shape (batch, n_free)
        """
        s = np.asarray(s)
        if s.ndim != 2 or s.shape[1] != self.n_free:
            raise ValidationError(f"s must have shape (batch, {self.n_free}), got {s.shape}")
        return {name: v.reshape((s.shape[0],) + self.group_shapes[g])
                for g, (name, v) in enumerate(self.split_state(s).items(), start=1)}

    # ------------------------------------------------------------------ buffers
    def _buffers(self, n_batch):
        """The :class:`GroupBuffers` of a batch size, made on first use; the last few sizes are kept."""
        buf = self._buffer_cache.get(n_batch)
        if buf is None:
            if len(self._buffer_cache) >= _CACHED_BATCH_SIZES:
                self._buffer_cache.pop(next(iter(self._buffer_cache)))
            buf = self._buffer_cache[n_batch] = GroupBuffers(self, n_batch, self._buffer_roles)
        return buf

    def _flat(self, views):
        """Gather per-group (batch, n_g) views into one (batch, n_free) array."""
        n_batch = views[1].shape[0]
        out = np.empty((n_batch, self.n_free), dtype=self.dtype)
        for g in range(1, len(self.group_sizes)):
            o = int(self._free_off[g])
            out[:, o:o + self.group_sizes[g]] = views[g]
        return out

    def _bias_grad_into(self, g, act2, act4, out):
        """``out`` = ``act`` summed over the batch (and the positions of a map), in float64 first."""
        if len(self.group_shapes[g]) == 3:
            ck.channel_sum_into(act4, out)
        else:
            out[:] = act2.sum(axis=0, dtype=np.float64)

    # ------------------------------------------------------------------ relaxation arguments
    def _checked_drive(self, drive, s):
        return float_array("drive", drive, shape=s.shape, dtype=self.dtype)

    def _check_relaxation(self, s0, drive, beta, target, clamp_output, max_steps, atol, rtol, stop_at_steady_state,
                          max_abs, record_every, record_samples):
        """The arguments every ``relax_with_energy`` shares, checked once: a dict of their checked values.

        ``target`` stays None when not given (and is refused missing when
        ``beta != 0`` or ``clamp_output``); ``samples`` holds the recorded
        batch indices (all by default) as int64.
        """
        s0 = self.check_state(s0, name="s0")
        n_batch = s0.shape[0]
        beta = real_scalar("beta", beta)
        clamp_output = boolean("clamp_output", clamp_output)
        if target is None:
            if beta != 0.0 or clamp_output:
                raise ValidationError("target is required for a nudged or clamped relaxation (beta != 0 or "
                                      "clamp_output)")
        else:
            target = self.check_target(target, n_batch)
        if isinstance(max_abs, (bool, np.bool_, str)) or np.ndim(max_abs) != 0 or not float(max_abs) > 0:
            raise ValidationError(f"max_abs must be a real number > 0 (inf: only non-finite values count), "
                                  f"got {max_abs!r}")
        samples = np.arange(n_batch) if record_samples is None else np.asarray(record_samples)
        if samples.ndim != 1 or samples.size == 0 or not np.issubdtype(samples.dtype, np.integer) \
                or samples.min() < 0 or samples.max() >= n_batch:
            raise ValidationError(f"record_samples must be batch indices in [0, {n_batch - 1}], got {record_samples!r}")
        return {"s0": s0, "drive": self._checked_drive(drive, s0), "beta": beta, "target": target,
                "clamp_output": clamp_output, "max_steps": positive_int("max_steps", max_steps, 0),
                "atol": real_scalar("atol", atol, 0.0), "rtol": real_scalar("rtol", rtol, 0.0),
                "stop_at_steady_state": boolean("stop_at_steady_state", stop_at_steady_state),
                "max_abs": float(max_abs), "record_every": positive_int("record_every", record_every, 0),
                "samples": samples.astype(np.int64)}
