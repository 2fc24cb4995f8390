"""A network described as groups of units and the couplings between them, with its parameter layout.

An :class:`Architecture` is a validated, backend-free description: named
:class:`Group` objects (units ``(n,)`` or feature maps ``(C, H, W)``, each
with its activation and optional bias) and the couplings between them,
:class:`Dense` (every unit of one group with every unit of the other; a map
is flattened in (C, H, W) order) and :class:`Conv` (a 2-D convolution,
optionally followed by pooling: Laborieux et al.'s primitive
``<s_post, pool(conv(s_pre))>``). The first group is the clamped input, the
last one the output. The description fixes one flat parameter vector
``theta`` (:meth:`Architecture.parameter_layout`); a network class such as
:class:`dynsim.networks.conv_hopfield.ConvHopfieldNetwork` gives it an energy
and kernels.

Parameter layout
----------------
``theta`` holds, in this order:

1. one weight block per coupling, in the order the couplings were given,
   named ``W_<pre>_<post>``: shape ``(n_pre, n_post)`` for :class:`Dense`
   (the layout of :class:`dynsim.networks.hopfield.HopfieldNetwork`, so
   ``rho(s_pre) @ W`` drives the post group), shape
   ``(C_post, C_pre, kh, kw)`` for :class:`Conv` (PyTorch's ``conv2d``
   layout);
2. one bias block per free group that has a bias, in the order of the
   groups, named ``b_<group>``: one bias per unit for units, one per channel
   for feature maps (shared by every position of the channel).

Every block is C-ordered. The clamped input has no bias (its bias term is
a constant of the energy).

References
----------
.. [1] A. Laborieux, M. Ernoult, B. Scellier, Y. Bengio, J. Grollier,
       D. Querlioz, "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing Its Gradient Estimator Bias", Front. Neurosci.
       15:633674 (2021) (convolutional Hopfield networks, conv then pool).
.. [2] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017) (groups, couplings, Glorot initialisation).
.. [3] X. Glorot, Y. Bengio, "Understanding the difficulty of training deep
       feedforward neural networks", AISTATS (2010).
.. [4] K. He, X. Zhang, S. Ren, J. Sun, "Delving Deep into Rectifiers:
       Surpassing Human-Level Performance on ImageNet Classification", ICCV
       (2015) (fan-in scaling).
.. [5] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep
       learning", arXiv:1603.07285 (2016) (output sizes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from dynsim.networks.activations import ACTIVATIONS, PC_ACTIVATIONS
from dynsim.validation import ValidationError, float_dtype, positive_int, random_generator

__all__ = ["Group", "Dense", "Conv", "Architecture", "ParameterBlock", "POOLINGS", "GROUP_ACTIVATIONS"]

GROUP_ACTIVATIONS = {**ACTIVATIONS, **PC_ACTIVATIONS}
"""Activations a :class:`Group` accepts: the Hopfield networks' and the predictive coding networks'.

Each network family refuses, naming the group, those it has no energy for
(a Hopfield network's ``relu`` or ``gelu``)."""

POOLINGS = (None, "max", "avg")
"""Poolings a :class:`Conv` coupling accepts after its convolution."""


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _name(kind, value):
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise ValidationError(f"{kind} name must be a non-empty string without spaces, got {value!r}")
    return value


@dataclass(frozen=True)
class Group:
    """A named group of units, or of feature maps, with its activation and bias.

    Parameters
    ----------
    name : str
        Unique within an architecture; used in block names (``b_<name>``,
        ``W_<pre>_<post>``) and in messages.
    shape : tuple of int
        ``(n,)`` for ``n`` units, ``(C, H, W)`` for ``C`` feature maps of
        ``H x W`` positions. A plain int ``n`` is read as ``(n,)``.
    activation : {'hard_sigmoid', 'logistic', 'tanh', 'linear', 'relu', 'gelu'}
        The group's rho (:mod:`dynsim.networks.activations`); 'relu' and
        'gelu' serve predictive coding networks only. For the clamped input it
        is applied to the data, as the dense networks do (the hard sigmoid
        leaves data in [0, 1] unchanged).
    bias : bool
        Whether the group has a bias: one per unit for units, one per channel
        for feature maps. Ignored for the clamped input (a constant term).
    """

    name: str
    shape: tuple
    activation: str = "hard_sigmoid"
    bias: bool = True

    def __post_init__(self):
        _name("group", self.name)
        shape = (self.shape,) if _is_int(self.shape) else self.shape
        try:
            shape = tuple(shape)
        except TypeError:
            raise ValidationError(f"group {self.name}: shape must be (n,) or (C, H, W), got {self.shape!r}") from None
        if len(shape) not in (1, 3) or not all(_is_int(v) and v >= 1 for v in shape):
            raise ValidationError(f"group {self.name}: shape must be (n,) units or (C, H, W) feature maps of "
                                  f"positive integers, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(v) for v in shape))
        if self.activation not in GROUP_ACTIVATIONS:
            raise ValidationError(f"group {self.name}: activation must be one of {sorted(GROUP_ACTIVATIONS)}, "
                                  f"got {self.activation!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValidationError(f"group {self.name}: bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))

    @property
    def size(self):
        """Number of units: n, or C * H * W."""
        return int(np.prod(self.shape))

    @property
    def is_map(self):
        """True for feature maps (C, H, W)."""
        return len(self.shape) == 3

    @property
    def bias_shape(self):
        """``(C,)`` for feature maps (one bias per channel), ``(n,)`` for units."""
        return (self.shape[0],)

    def describe(self):
        return {"name": self.name, "shape": list(self.shape), "activation": self.activation, "bias": self.bias}


@dataclass(frozen=True)
class Dense:
    """All-to-all coupling between two groups: the energy term ``-rho(s_pre) W rho(s_post)``.

    A feature-map group is flattened in (C, H, W) order ("flatten into a
    dense group"). The weight block has shape ``(n_pre, n_post)``.

    Parameters
    ----------
    pre, post : str
        Group names; ``post`` must be a free group.
    name : str, optional
        Name used in messages (default ``dense<k>``, k counting the dense
        couplings from 1).
    """

    pre: str
    post: str
    name: str | None = None
    kind = "dense"

    def describe(self):
        return {"kind": "dense", "name": self.name, "pre": self.pre, "post": self.post}


@dataclass(frozen=True)
class Conv:
    """Convolution then optional pooling: the energy term ``-<rho(s_post), pool(conv(rho(s_pre)))>``.

    Laborieux et al. (2021)'s convolutional primitive. The convolution is a
    cross-correlation as PyTorch's ``conv2d`` (stride, zero padding on every
    side, no bias: the post group's own bias plays that part); the pooling
    has no padding. The weight block has shape ``(C_post, C_pre, kh, kw)``.

    Parameters
    ----------
    pre, post : str
        Group names, both feature maps; ``post`` must be a free group.
    kernel_size : int or (int, int)
    stride, padding : int
        Of the convolution.
    pool : {None, 'max', 'avg'}
    pool_size : int
        Side of the square pooling window.
    pool_stride : int, optional
        ``pool_size`` unless given.
    name : str, optional
        Name used in messages (default ``conv<k>``, k counting the
        convolutional couplings from 1).
    """

    pre: str
    post: str
    kernel_size: int | tuple = 3
    stride: int = 1
    padding: int = 0
    pool: str | None = None
    pool_size: int = 2
    pool_stride: int | None = None
    name: str | None = None
    kind = "conv"

    @property
    def kernel(self):
        """(kh, kw)."""
        k = self.kernel_size
        return (k, k) if _is_int(k) else tuple(k)

    @property
    def pool_step(self):
        """The pooling stride in use."""
        return self.pool_size if self.pool_stride is None else self.pool_stride

    def operation(self):
        """``"conv 5x5 stride 1 padding 0 then max pool 2"``: the words messages use."""
        kh, kw = self.kernel
        words = f"conv {kh}x{kw} stride {self.stride} padding {self.padding}"
        if self.pool is not None:
            words += f" then {self.pool} pool {self.pool_size}"
            if self.pool_step != self.pool_size:
                words += f" stride {self.pool_step}"
        return words

    def describe(self):
        return {"kind": "conv", "name": self.name, "pre": self.pre, "post": self.post,
                "kernel_size": list(self.kernel), "stride": self.stride, "padding": self.padding,
                "pool": self.pool, "pool_size": self.pool_size, "pool_stride": self.pool_step}


class ParameterBlock(NamedTuple):
    """One named block of ``theta``."""

    name: str
    """``W_<pre>_<post>`` or ``b_<group>``."""
    kind: str
    """``'weight'`` or ``'bias'``."""
    index: int
    """The coupling's index (weights) or the group's index (biases)."""
    shape: tuple
    """Shape of the block as an array."""
    start: int
    stop: int

    @property
    def slice(self):
        return slice(self.start, self.stop)


class Architecture:
    """Groups and couplings of a network, validated, with the layout of its parameter vector.

    Parameters
    ----------
    groups : sequence of Group, length G >= 2
        The first is the clamped input, the last the output (units).
    couplings : sequence of Dense or Conv
        At least one; every group takes part in one or more.

    Raises
    ------
    ValidationError
        With a message naming the group or coupling at fault (and, for a
        shape mismatch, the shapes): duplicate names, unknown group names, a
        coupling into the input or from a group to itself, two couplings
        between one pair of groups, a convolution on units, a kernel or
        pooling window larger than its (padded) maps, an output shape that
        does not match the post group, a group with no coupling, an output
        that is not units.

    Examples
    --------
    Laborieux et al.'s MNIST network (channels 1-32-64, kernels 5, max pools, fc 10):

    >>> arch = Architecture(
    ...     [Group("input", (1, 28, 28)), Group("h1", (32, 12, 12)), Group("h2", (64, 4, 4)),
    ...      Group("output", (10,))],
    ...     [Conv("input", "h1", 5, pool="max"), Conv("h1", "h2", 5, pool="max"), Dense("h2", "output")])
    >>> [b.name for b in arch.parameter_layout()]
    ['W_input_h1', 'W_h1_h2', 'W_h2_output', 'b_h1', 'b_h2', 'b_output']
    """

    def __init__(self, groups, couplings):
        groups = self._check_groups(groups)
        self.groups = groups
        self.group_index = {g.name: i for i, g in enumerate(groups)}
        self.couplings = self._check_couplings(couplings)
        for g, group in enumerate(groups):
            if not any(g in (self.group_index[c.pre], self.group_index[c.post]) for c in self.couplings):
                raise ValidationError(f"group {group.name} {group.shape} has no coupling: every group must be "
                                      "coupled to another (add a Dense or Conv coupling, or remove the group)")
        self._layout = self._make_layout()
        self.n_params = self._layout[-1].stop if self._layout else 0

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_groups(groups):
        try:
            groups = tuple(groups)
        except TypeError:
            raise ValidationError(f"groups must be a sequence of Group, got {groups!r}") from None
        for k, g in enumerate(groups):
            if not isinstance(g, Group):
                raise ValidationError(f"groups[{k}] must be a Group, got {g!r}")
        if len(groups) < 2:
            raise ValidationError(f"an architecture needs a clamped input group and at least one free group, "
                                  f"got {len(groups)} group(s)")
        seen = set()
        for g in groups:
            if g.name in seen:
                raise ValidationError(f"group names must be unique: {g.name!r} appears twice")
            seen.add(g.name)
        out = groups[-1]
        if out.is_map:
            raise ValidationError(f"the last group is the output and must be units (n,), but group {out.name} has "
                                  f"shape {out.shape}; add a Dense coupling into a units group")
        return groups

    def _check_couplings(self, couplings):
        try:
            couplings = tuple(couplings)
        except TypeError:
            raise ValidationError(f"couplings must be a sequence of Dense or Conv, got {couplings!r}") from None
        if not couplings:
            raise ValidationError("couplings must not be empty")
        counts = {"dense": 0, "conv": 0}
        resolved, names, pairs = [], set(), {}
        known = [g.name for g in self.groups]
        for k, c in enumerate(couplings):
            if not isinstance(c, (Dense, Conv)):
                raise ValidationError(f"couplings[{k}] must be a Dense or Conv coupling, got {c!r}")
            counts[c.kind] += 1
            name = f"{c.kind}{counts[c.kind]}" if c.name is None else _name("coupling", c.name)
            if name in names:
                raise ValidationError(f"coupling names must be unique: {name!r} appears twice")
            names.add(name)
            c = dataclasses.replace(c, name=name)
            where = f"coupling {name} ({c.pre} -> {c.post})"
            for end in ("pre", "post"):
                value = getattr(c, end)
                if not isinstance(value, str) or value not in self.group_index:
                    raise ValidationError(f"{where}: unknown group {value!r} as {end}; the groups are {known}")
            a, b = self.group_index[c.pre], self.group_index[c.post]
            if a == b:
                raise ValidationError(f"{where}: a group cannot be coupled to itself")
            if b == 0:
                hint = f" (write Dense({c.pre!r}, {c.post!r}) the other way round)" if c.kind == "dense" else ""
                raise ValidationError(f"{where}: the post group must be free, but {c.post} is the clamped input; "
                                      f"couplings go out of the input{hint}")
            pair = (min(a, b), max(a, b))
            if pair in pairs:
                raise ValidationError(f"{where}: groups {c.pre} and {c.post} are already coupled by "
                                      f"{pairs[pair]}; one coupling per pair of groups")
            pairs[pair] = name
            if a >= 1 and self.groups[a].activation == "linear" and self.groups[b].activation == "linear":
                raise ValidationError(f"{where}: both groups are free and linear; the energy 1/2 ||s||^2 - "
                                      "s_pre W s_post is then unbounded below for large enough W: give one of "
                                      "them a bounded activation")
            if c.kind == "conv":
                self._check_conv(c, where)
            resolved.append(c)
        return tuple(resolved)

    def _check_conv(self, c, where):
        pre, post = self.groups[self.group_index[c.pre]], self.groups[self.group_index[c.post]]
        for g in (pre, post):
            if not g.is_map:
                raise ValidationError(f"{where}: a convolution needs feature maps (C, H, W) on both sides, but "
                                      f"group {g.name} has shape {g.shape}; use Dense to couple units")
        k = c.kernel_size
        if not (_is_int(k) and k >= 1 or isinstance(k, (tuple, list)) and len(k) == 2
                and all(_is_int(v) and v >= 1 for v in k)):
            raise ValidationError(f"{where}: kernel_size must be an integer >= 1 or a pair (kh, kw) of them, "
                                  f"got {k!r}")
        positive_int(f"{where}: stride", c.stride, 1)
        positive_int(f"{where}: padding", c.padding, 0)
        if c.pool not in POOLINGS:
            raise ValidationError(f"{where}: pool must be one of {list(POOLINGS)}, got {c.pool!r}")
        positive_int(f"{where}: pool_size", c.pool_size, 1)
        if c.pool_stride is not None:
            positive_int(f"{where}: pool_stride", c.pool_stride, 1)
        kh, kw = c.kernel
        _, H, W = pre.shape
        p = c.padding
        if H + 2 * p < kh or W + 2 * p < kw:
            raise ValidationError(f"{where}: a {kh}x{kw} kernel does not fit the {H}x{W} maps of group {pre.name} "
                                  f"padded by {p}")
        Hc, Wc = (H + 2 * p - kh) // c.stride + 1, (W + 2 * p - kw) // c.stride + 1
        if c.pool is not None and (Hc < c.pool_size or Wc < c.pool_size):
            raise ValidationError(f"{where}: a {c.pool_size}x{c.pool_size} {c.pool} pool does not fit the "
                                  f"{Hc}x{Wc} maps the {c.operation().split(' then')[0]} gives from {pre.shape}")
        got = self.conv_output_shape(c)
        if got != post.shape:
            raise ValidationError(f"{where}: {c.operation()} gives {got} from {pre.shape}, but group {post.name} "
                                  f"has shape {post.shape}")

    # ------------------------------------------------------------------ geometry
    def group(self, name):
        """The :class:`Group` called ``name``."""
        if name not in self.group_index:
            raise ValidationError(f"unknown group {name!r}; the groups are {[g.name for g in self.groups]}")
        return self.groups[self.group_index[name]]

    def conv_output_shape(self, c):
        """(C_post, H', W') that the :class:`Conv` ``c`` gives from its pre group's maps."""
        pre, post = self.groups[self.group_index[c.pre]], self.groups[self.group_index[c.post]]
        kh, kw = c.kernel
        _, H, W = pre.shape
        Hc = (H + 2 * c.padding - kh) // c.stride + 1
        Wc = (W + 2 * c.padding - kw) // c.stride + 1
        if c.pool is not None:
            Hc = (Hc - c.pool_size) // c.pool_step + 1
            Wc = (Wc - c.pool_size) // c.pool_step + 1
        return (post.shape[0], Hc, Wc)

    def weight_shape(self, c):
        """Shape of the weight block of coupling ``c``: (n_pre, n_post) or (C_post, C_pre, kh, kw)."""
        pre, post = self.groups[self.group_index[c.pre]], self.groups[self.group_index[c.post]]
        if c.kind == "dense":
            return (pre.size, post.size)
        return (post.shape[0], pre.shape[0]) + c.kernel

    @property
    def input(self):
        """The clamped input group."""
        return self.groups[0]

    @property
    def output(self):
        """The output group (units)."""
        return self.groups[-1]

    # ------------------------------------------------------------------ parameters
    def _make_layout(self):
        blocks, start = [], 0
        for k, c in enumerate(self.couplings):
            shape = self.weight_shape(c)
            size = int(np.prod(shape))
            blocks.append(ParameterBlock(f"W_{c.pre}_{c.post}", "weight", k, shape, start, start + size))
            start += size
        for g, group in enumerate(self.groups):
            if g == 0 or not group.bias:
                continue
            size = group.bias_shape[0]
            blocks.append(ParameterBlock(f"b_{group.name}", "bias", g, group.bias_shape, start, start + size))
            start += size
        return tuple(blocks)

    def parameter_layout(self):
        """The blocks of ``theta`` in order: weights in coupling order, then biases in group order.

        Returns
        -------
        tuple of ParameterBlock
        """
        return self._layout

    def fan_in_out(self, c):
        """(fan_in, fan_out) of coupling ``c``: sizes for Dense, C k_h k_w on each side for Conv."""
        shape = self.weight_shape(c)
        if c.kind == "dense":
            return shape
        return shape[1] * shape[2] * shape[3], shape[0] * shape[2] * shape[3]

    def initial_theta(self, seed=None, dtype=np.float64, init="default"):
        """Initial parameters: uniform weights, zero biases (``init='default'``), or PyTorch's layers' start.

        Dense blocks are drawn uniformly in ``+-sqrt(6 / (fan_in + fan_out))``
        (Glorot & Bengio 2010), as :class:`dynsim.networks.hopfield.HopfieldNetwork`
        does after Scellier & Bengio (2017): an architecture of dense
        couplings starts like the dense network. Convolutional blocks are
        drawn in ``+-1 / sqrt(C_pre kh kw)`` (a fan-in, He-like scaling): the
        default initialisation of PyTorch's ``Conv2d``, from which Laborieux et
        al. (2021)'s convolutional networks start; with Glorot's rule a
        kernel's fan-out ``C_post kh kw`` would shrink the weights of wide
        layers, and a unit's input would grow weaker with the number of
        output channels, which has no bearing on it. Biases start at zero.
        Blocks are drawn in layout order, so a seed gives the same ``theta``
        on every machine.

        With ``init='fan-in'`` every weight block and every bias is drawn in
        ``+-1 / sqrt(fan_in)`` of its coupling (for a bias, of the first
        coupling into its group): the default start of PyTorch's ``Linear``
        and ``Conv2d`` layers, and so of the predictive coding benchmarks
        (pcx's), as :class:`~dynsim.networks.pc.PCNetwork` with
        ``init='fan-in'``.

        Parameters
        ----------
        seed : int or numpy.random.Generator, optional
        dtype : numpy.float64 or numpy.float32
        init : {'default', 'fan-in'}

        Returns
        -------
        ndarray, shape (n_params,)
        """
        if init not in ("default", "fan-in"):
            raise ValidationError(f"init must be 'default' or 'fan-in', got {init!r}")
        rng = random_generator("seed", seed)
        dtype = float_dtype(dtype)
        theta = np.zeros(self.n_params, dtype=np.float64)
        for block in self._layout:
            if block.kind == "weight":
                c = self.couplings[block.index]
                fan_in, fan_out = self.fan_in_out(c)
                if init == "fan-in" or c.kind == "conv":
                    limit = 1.0 / np.sqrt(fan_in)
                else:
                    limit = np.sqrt(6.0 / (fan_in + fan_out))
            elif init == "fan-in":
                first = next(c for c in self.couplings if c.post == self.groups[block.index].name)
                limit = 1.0 / np.sqrt(self.fan_in_out(first)[0])
            else:
                continue
            theta[block.start:block.stop] = rng.uniform(-limit, limit, size=block.stop - block.start)
        return theta.astype(dtype)

    # ------------------------------------------------------------------ description
    def describe(self):
        """Plain dict of groups and couplings (for logs and checkpoints)."""
        return {"groups": [g.describe() for g in self.groups], "couplings": [c.describe() for c in self.couplings],
                "n_params": self.n_params}

    def __repr__(self):
        groups = ", ".join(f"{g.name}{g.shape}" for g in self.groups)
        couplings = ", ".join(f"{c.name}: {c.pre}->{c.post}" for c in self.couplings)
        return f"Architecture(groups=[{groups}], couplings=[{couplings}])"

    @classmethod
    def conv_stack(cls, input_shape, channels, kernels, pools="m", paddings=0, strides=1, fc=(10,),
                   activation="hard_sigmoid", pool_size=2):
        """A layered convolutional network as Laborieux et al. (2021)'s ``P_CNN``: conv + pool stages, then dense.

        Each stage k is a group of ``channels[k]`` maps fed by a ``kernels[k]``
        convolution (stride ``strides[k]``, padding ``paddings[k]``) of the
        previous group, followed by max (``'m'``), average (``'a'``) or no
        (``'i'``) pooling of side ``pool_size``; then dense groups of sizes
        ``fc`` (the last is the output). Groups are named ``input``,
        ``conv_1``, ..., ``fc_1``, ..., ``output``.

        Parameters
        ----------
        input_shape : (C, H, W)
        channels, kernels : sequence of int
            One entry per convolutional stage.
        pools : str
            One letter per stage (a single letter applies to every stage).
        paddings, strides : int or sequence of int
        fc : sequence of int
            Sizes of the dense groups after the last stage; the last is the output.
        activation : str
            Of every group.

        Returns
        -------
        Architecture

        Examples
        --------
        >>> Architecture.conv_stack((1, 28, 28), [32, 64], [5, 5], "mm", fc=[10]).groups[1].shape
        (32, 12, 12)
        """
        channels, kernels = list(channels), list(kernels)
        n = len(channels)
        if n < 1 or len(kernels) != n:
            raise ValidationError(f"channels and kernels need one entry per stage (at least one), got {channels} "
                                  f"and {kernels}")

        def per_stage(name, value):
            values = [value] * n if np.ndim(value) == 0 else list(value)
            if len(values) != n:
                raise ValidationError(f"{name} needs one entry per stage ({n}), got {value!r}")
            return values

        pools = pools * n if isinstance(pools, str) and len(pools) == 1 else pools
        letters = {"m": "max", "a": "avg", "i": None}
        if not isinstance(pools, str) or len(pools) != n or any(p not in letters for p in pools):
            raise ValidationError(f"pools must be {n} letters among 'm' (max), 'a' (avg), 'i' (none), got {pools!r}")
        paddings, strides = per_stage("paddings", paddings), per_stage("strides", strides)
        fc = list(fc)
        if not fc:
            raise ValidationError("fc must hold at least the output size")
        groups = [Group("input", tuple(input_shape), activation)]
        couplings = []
        shape = groups[0].shape
        for k in range(n):
            c = Conv(groups[-1].name, f"conv_{k + 1}", kernels[k], strides[k], paddings[k], letters[pools[k]],
                     pool_size)
            probe = Architecture._probe_shape(shape, channels[k], c)
            groups.append(Group(f"conv_{k + 1}", probe, activation))
            couplings.append(c)
            shape = probe
        for k, size in enumerate(fc):
            name = "output" if k == len(fc) - 1 else f"fc_{k + 1}"
            couplings.append(Dense(groups[-1].name, name))
            groups.append(Group(name, (size,), activation))
        return cls(groups, couplings)

    @staticmethod
    def _probe_shape(shape, channels, c):
        """The post shape of ``c`` on maps of ``shape``; ValidationError when the kernel or the window does not fit."""
        if len(shape) != 3:
            raise ValidationError(f"conv_stack: input_shape must be (C, H, W), got {shape}")
        kh, kw = c.kernel
        _, H, W = shape
        Hc = (H + 2 * c.padding - kh) // c.stride + 1
        Wc = (W + 2 * c.padding - kw) // c.stride + 1
        if c.pool is not None:
            Hc = (Hc - c.pool_size) // c.pool_step + 1
            Wc = (Wc - c.pool_size) // c.pool_step + 1
        if Hc < 1 or Wc < 1:
            raise ValidationError(f"conv_stack: stage {c.post} ({c.operation()}) leaves no position of the "
                                  f"{H}x{W} maps it receives")
        return (channels, Hc, Wc)
