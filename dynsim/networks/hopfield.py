"""The continuous Hopfield network of Scellier & Bengio (2017): model description and energy.

A :class:`HopfieldNetwork` is a validated description (groups of units, which
groups are coupled, activation) plus one flat parameter vector ``theta``
holding every weight block and bias. Learning rules and optimisers work on
that flat vector; :meth:`HopfieldNetwork.weights` and
:meth:`HopfieldNetwork.biases` give views into it.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [2] X. Glorot, Y. Bengio, "Understanding the difficulty of training deep
       feedforward neural networks", AISTATS (2010) (initialisation).
"""
from __future__ import annotations

import numpy as np

import integrators
from dynsim.networks import hopfield_kernels as K
from dynsim.networks.activations import ACTIVATIONS, NATURAL_BOUNDS, activation_code
from dynsim.networks.layout import NetworkLayout
from dynsim.validation import ValidationError, float_array, float_dtype, random_generator, real_scalar

__all__ = ["HopfieldNetwork", "HOPFIELD_FIELD"]

HOPFIELD_FIELD = integrators.VectorField(
    "dynsim.networks.hopfield_kernels", "hopfield_vector_field", dependencies=("dynsim.networks.activations",))
"""The compiled vector field of :class:`HopfieldNetwork`."""


class HopfieldNetwork(NetworkLayout):
    """Continuous Hopfield network over groups of units with symmetric couplings.

    Parameters
    ----------
    group_sizes : sequence of int, length G >= 2
        Units per group. Group 0 is the clamped input, groups 1..G-1 are
        free and the last one is the output.
    connections : sequence of (int, int)
        Coupled group pairs ``(a, b)`` with ``a <= b``; ``(a, a)`` is a
        symmetric coupling within group ``a`` (zero diagonal). The input
        group cannot couple to itself (a constant energy term).
    activation : str or sequence of str
        ``'hard_sigmoid'``, ``'logistic'``, ``'tanh'`` or ``'linear'``: one
        name for every group, or one per group, input first (e.g.
        ``['hard_sigmoid', 'hard_sigmoid', 'linear']`` for the linear output of
        Scellier 2024's deep Hopfield networks). A linear group's energy
        terms, 1/2 ||s||^2 minus its couplings and bias, are a convex
        quadratic and bounded below only while it is coupled to groups whose
        rho is bounded or clamped: a free linear group may therefore not be
        coupled to itself or to another free linear group.
    theta : ndarray, shape (n_params,), optional
        Parameters; by default Glorot-uniform weights and zero biases.
    seed : int or numpy.random.Generator, optional
        Random source of the default initialisation.
    init_gain : float, optional
        Draw the weights of a block coupling group a to group b uniformly
        in ``+-init_gain / sqrt(n_a)`` (fan-in scaling, as Scellier 2024's
        networks, gain 0.7) instead of Glorot's ``+-sqrt(6 / (n_a + n_b))``
        (Scellier & Bengio 2017). Biases start at zero either way.
    group_names : sequence of str, optional
        Names of the groups (default ``input``, ``hidden_1``, ..., ``output``).
    dtype : {numpy.float64, numpy.float32}, optional
        Floating-point type of the parameters and of every state, drive,
        energy and gradient computed with the network (default float64, the
        precision of the gradient checks). With float32 the relaxation and
        the learning rules run in single precision, about twice the
        throughput of the matrix products and half the memory traffic.
        Arrays handed to the public methods (``x``, ``s``, ``target``,
        ``theta``, ...) are converted to this type once, at the call, so a
        float32 network given float64 data computes in float32; convert a
        data set once beforehand to save that copy per call.

    Notes
    -----
    Use :meth:`layered` for the layered networks of Scellier & Bengio
    (784-500-10, ...) and :meth:`from_dense` for any symmetric weight matrix.
    """

    vector_field = HOPFIELD_FIELD

    def __init__(self, group_sizes, connections, activation="hard_sigmoid", theta=None, seed=None,
                 group_names=None, init_gain=None, dtype=np.float64):
        self.dtype = float_dtype(dtype)
        sizes = list(group_sizes)
        if len(sizes) < 2:
            raise ValidationError(f"group_sizes needs an input and at least one free group, got {sizes}")
        for g, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValidationError(f"group_sizes[{g}] must be an integer >= 1, got {n!r}")
        G = len(sizes)
        conns = []
        for pair in connections:
            try:
                a, b = (int(v) for v in pair)
            except (TypeError, ValueError):
                raise ValidationError(f"connections must be pairs of group indices, got {pair!r}") from None
            if a > b:
                a, b = b, a
            if not (0 <= a < G and 0 <= b < G):
                raise ValidationError(f"connection {pair!r} names a group outside [0, {G - 1}]")
            if a == b == 0:
                raise ValidationError("connections: the clamped input group cannot couple to itself")
            if (a, b) in conns:
                raise ValidationError(f"connection {(a, b)} is listed twice")
            conns.append((a, b))
        if not conns:
            raise ValidationError("connections must not be empty")
        self.activations = _group_activations(activation, G)
        self.activation = self.activations[0] if len(set(self.activations)) == 1 else self.activations
        self._acts = np.array([activation_code(a) for a in self.activations], dtype=np.int64)
        for a, b in conns:
            if a >= 1 and self.activations[a] == "linear" and self.activations[b] == "linear":
                what = "to itself" if a == b else f"to group {b}, also linear"
                raise ValidationError(
                    f"activation: free group {a} is linear and coupled {what}; the energy 1/2 ||s||^2 - "
                    "rho(s_a) W rho(s_b) is then unbounded below for large enough W; give one of the two a "
                    "bounded activation")
        self.group_sizes = tuple(int(n) for n in sizes)
        self.connections = tuple(conns)
        if group_names is None:
            group_names = ["input"] + [f"hidden_{k}" for k in range(1, G - 1)] + ["output"]
        group_names = [str(n) for n in group_names]
        if len(group_names) != G or len(set(group_names)) != G:
            raise ValidationError(f"group_names must be {G} distinct names, got {group_names}")
        self.group_names = tuple(group_names)

        self._sizes = np.array(self.group_sizes, dtype=np.int64)
        free_off = np.zeros(G, dtype=np.int64)
        free_off[1:] = np.concatenate(([0], np.cumsum(self._sizes[1:-1])))
        self._free_off = free_off
        self._pre = np.array([a for a, _ in conns], dtype=np.int64)
        self._post = np.array([b for _, b in conns], dtype=np.int64)
        block = self._sizes[self._pre] * self._sizes[self._post]
        self._w_off = np.concatenate(([0], np.cumsum(block)[:-1])).astype(np.int64)
        self._b_off = int(block.sum())
        self.n_params = self._b_off + self.n_free

        if init_gain is not None:
            init_gain = real_scalar("init_gain", init_gain, 0.0, np.inf, low_open=True, high_open=True)
        if theta is None:
            theta = self._initial_theta(random_generator("seed", seed), init_gain)
        self.theta = theta

    # ----------------------------------------------------------------- construction
    @classmethod
    def layered(cls, sizes, activation="hard_sigmoid", seed=None, theta=None, init_gain=None, dtype=np.float64,
                output_activation=None):
        """Layered network: ``sizes = [n_input, n_hidden_1, ..., n_output]``, layer k coupled to k+1.

        ``activation`` and ``dtype`` (float64 or float32) as in
        :class:`HopfieldNetwork`; ``output_activation`` (e.g. ``'linear'``)
        replaces the output layer's activation.

        >>> net = HopfieldNetwork.layered([784, 500, 10], seed=0)
        >>> fast = HopfieldNetwork.layered([784, 500, 10], seed=0, dtype=np.float32)
        """
        if not isinstance(sizes, (list, tuple, np.ndarray)):
            raise ValidationError(f"sizes must be a sequence of layer sizes, input first, got {sizes!r}")
        sizes = list(sizes)
        if output_activation is not None:
            activation = list(_group_activations(activation, len(sizes)))
            activation[-1] = output_activation
        return cls(sizes, [(k, k + 1) for k in range(len(sizes) - 1)], activation, theta=theta, seed=seed,
                   init_gain=init_gain, dtype=dtype)

    @classmethod
    def from_dense(cls, W, b, n_input, n_output, activation="hard_sigmoid", dtype=np.float64):
        """Network from one symmetric weight matrix over all units (inputs first, outputs last).

        Parameters
        ----------
        W : ndarray, shape (n, n)
            Symmetric with zero diagonal. Couplings among input units are a
            constant of the clamped dynamics and are ignored.
        b : ndarray, shape (n - n_input,)
            Biases of the free units.
        n_input, n_output : int
            Leading input units and trailing output units; those between are hidden.
        dtype : {numpy.float64, numpy.float32}
            As in :class:`HopfieldNetwork` (``W`` and ``b`` are converted to it).
        """
        W = float_array("W", W, ndim=2)
        n = W.shape[0]
        if W.shape != (n, n):
            raise ValidationError(f"W must be square, got shape {W.shape}")
        if not np.allclose(W, W.T, rtol=0.0, atol=1e-12 * max(1.0, np.abs(W).max())):
            i, j = np.unravel_index(np.argmax(np.abs(W - W.T)), W.shape)
            raise ValidationError(f"W must be symmetric: W[{i},{j}]={W[i, j]} but W[{j},{i}]={W[j, i]}")
        if np.any(np.diag(W) != 0):
            raise ValidationError("W must have a zero diagonal (no self-coupling)")
        for name, v in (("n_input", n_input), ("n_output", n_output)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValidationError(f"{name} must be an integer >= 1, got {v!r}")
        n_hidden = n - n_input - n_output
        if n_hidden < 0:
            raise ValidationError(f"n_input + n_output = {n_input + n_output} exceeds the {n} units of W")
        sizes = [n_input] + ([n_hidden] if n_hidden else []) + [n_output]
        G = len(sizes)
        conns = [(a, bb) for a in range(G) for bb in range(a, G) if not a == bb == 0]
        net = cls(sizes, conns, activation, theta=np.zeros(sum(
            sizes[a] * sizes[bb] for a, bb in conns) + n - n_input), dtype=dtype)
        edges = np.concatenate(([0], np.cumsum(sizes)))
        theta = net.theta.copy()
        for c, (a, bb) in enumerate(conns):
            start = net._w_off[c]
            blockW = W[edges[a]:edges[a + 1], edges[bb]:edges[bb + 1]]
            theta[start:start + blockW.size] = blockW.ravel()
        theta[net._b_off:] = float_array("b", b, shape=(n - n_input,))
        net.theta = theta
        return net

    def _initial_theta(self, rng, init_gain=None):
        """Uniform weights, Glorot's limit or ``init_gain / sqrt(fan-in)``; zero biases."""
        theta = np.zeros(self.n_params)
        for c, (a, b) in enumerate(self.connections):
            na, nb = self.group_sizes[a], self.group_sizes[b]
            limit = np.sqrt(6.0 / (na + nb)) if init_gain is None else init_gain / np.sqrt(na)
            W = rng.uniform(-limit, limit, size=(na, nb))
            if a == b:
                W = np.triu(W, 1)
                W = W + W.T
            theta[self._w_off[c]:self._w_off[c] + W.size] = W.ravel()
        return theta

    # ----------------------------------------------------------------- parameters
    @property
    def theta(self):
        """Flat parameter vector, shape (n_params,): weight blocks in connection order, then biases."""
        return self._theta

    @theta.setter
    def theta(self, value):
        theta = float_array("theta", value, shape=(self.n_params,), dtype=self.dtype)
        for c, (a, b) in enumerate(self.connections):
            if a == b:
                W = theta[self._w_off[c]:self._w_off[c] + self.group_sizes[a] ** 2].reshape(
                    self.group_sizes[a], -1)
                if not np.allclose(W, W.T, rtol=0.0, atol=1e-12 * max(1.0, np.abs(W).max())):
                    raise ValidationError(f"theta: the block within group {a} must be symmetric")
                if np.any(np.diag(W) != 0):
                    raise ValidationError(f"theta: the block within group {a} must have a zero diagonal")
        self._theta = theta

    def weights(self, c):
        """View of weight block ``c``, shape (n_pre, n_post), into :attr:`theta`."""
        a, b = self.connections[c]
        start = self._w_off[c]
        return self._theta[start:start + self.group_sizes[a] * self.group_sizes[b]].reshape(
            self.group_sizes[a], self.group_sizes[b])

    def biases(self, g):
        """View of the biases of free group ``g`` (1..G-1), shape (n_g,), into :attr:`theta`."""
        if not 1 <= g < len(self.group_sizes):
            raise ValidationError(f"g must be a free group in [1, {len(self.group_sizes) - 1}], got {g}")
        start = self._b_off + self._free_off[g]
        return self._theta[start:start + self.group_sizes[g]]

    def parameter_blocks(self):
        """Named slices of :attr:`theta`: ``{'W_<pre>_<post>': slice, ..., 'b_<group>': slice}``.

        The unit of per-layer metrics and learning rates.
        """
        blocks = {}
        for c, (a, b) in enumerate(self.connections):
            start = int(self._w_off[c])
            blocks[f"W_{self.group_names[a]}_{self.group_names[b]}"] = slice(
                start, start + self.group_sizes[a] * self.group_sizes[b])
        for g in range(1, len(self.group_sizes)):
            start = self._b_off + int(self._free_off[g])
            blocks[f"b_{self.group_names[g]}"] = slice(start, start + self.group_sizes[g])
        return blocks

    def layer_of_block(self):
        """The free group each parameter block feeds: ``{block name: group index}``.

        A weight block belongs to its post-synaptic group (Scellier & Bengio's
        per-layer learning rates: W_k and b_{k+1} share the rate of layer k+1),
        a bias to its own group.
        """
        layers = {}
        for c, (a, b) in enumerate(self.connections):
            layers[f"W_{self.group_names[a]}_{self.group_names[b]}"] = b
        for g in range(1, len(self.group_sizes)):
            layers[f"b_{self.group_names[g]}"] = g
        return layers

    def dense_weights(self):
        """The full symmetric weight matrix over all units, shape (n, n) (inputs first)."""
        n = sum(self.group_sizes)
        edges = np.concatenate(([0], np.cumsum(self.group_sizes)))
        W = np.zeros((n, n), dtype=self.dtype)
        for c, (a, b) in enumerate(self.connections):
            W[edges[a]:edges[a + 1], edges[b]:edges[b + 1]] = self.weights(c)
            W[edges[b]:edges[b + 1], edges[a]:edges[a + 1]] = self.weights(c).T
        return W

    # ----------------------------------------------------------------- description
    def describe(self):
        """Plain dict describing the architecture (for logs)."""
        return {"group_sizes": list(self.group_sizes), "group_names": list(self.group_names),
                "connections": [list(c) for c in self.connections],
                "activation": self.activation if isinstance(self.activation, str) else list(self.activation),
                "n_params": self.n_params, "dtype": self.dtype.name}

    # ----------------------------------------------------------------- energy
    @property
    def natural_box(self):
        """Box the states live in: ([0, 1] for the hard sigmoid), or None.

        With one activation, a pair of floats (or None); with several, a pair
        of per-unit bounds, shape (n_free,) each, -inf/inf for the units of
        groups without a box (None if no group has one).
        """
        boxes = [NATURAL_BOUNDS.get(a) for a in self.activations[1:]]
        if len(set(boxes)) == 1:
            return boxes[0]
        lower = np.full(self.n_free, -np.inf)
        upper = np.full(self.n_free, np.inf)
        for g, box in enumerate(boxes, start=1):
            if box is not None:
                cols = slice(self._free_off[g], self._free_off[g] + self.group_sizes[g])
                lower[cols], upper[cols] = box
        return lower, upper

    def initial_state(self, drive):
        """Relaxations start from zero (Scellier & Bengio 2017)."""
        return np.zeros_like(drive)

    def input_drive(self, x):
        """Biases plus the clamped input's projection, shape (batch, n_free); constant in a relaxation."""
        x = self.check_input(x)
        return K.input_drive(x, self._theta, self._sizes, self._free_off, self._pre, self._post,
                             self._w_off, self._b_off, self._acts)

    def kernel_args(self, drive, beta=0.0, target=None, clamp_output=False):
        """The ``args`` tuple of :func:`dynsim.networks.hopfield_kernels.hopfield_vector_field`."""
        if target is None:
            target = np.zeros((drive.shape[0], self.n_output), dtype=self.dtype)
        return (self._theta, self._sizes, self._free_off, self._pre, self._post, self._w_off,
                self._acts, drive, float(beta), target, bool(clamp_output))

    def energy(self, x, s):
        """Energy E(s; x) per sample, shape (batch,)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return self.energy_from_drive(s, self.input_drive(x))

    def energy_from_drive(self, s, drive):
        """Energy per sample from an input drive already computed (:meth:`input_drive`), shape (batch,).

        For callers that evaluate many states of one relaxation: the drive is
        constant there, and recomputing it would cost a matrix product with
        the input weights each time.
        """
        s = self.check_state(s)
        drive = float_array("drive", drive, shape=s.shape, dtype=self.dtype)
        return K.energy(s, self._theta, self._sizes, self._free_off, self._pre, self._post,
                        self._w_off, self._acts, drive)

    def energy_grad_state(self, x, s, drive=None):
        """dE/ds, shape (batch, n_free).

        ``drive`` (from :meth:`input_drive`) saves recomputing the input
        projection when many states of one input are evaluated (BPTT).
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        drive = self.input_drive(x) if drive is None else float_array("drive", drive, shape=s.shape,
                                                                      dtype=self.dtype)
        return K.energy_grad_state(s, self._theta, self._sizes, self._free_off, self._pre, self._post,
                                   self._w_off, self._acts, drive)

    def energy_grad_params(self, x, s):
        """Gradient of the batch-mean energy with respect to :attr:`theta`, shape (n_params,).

        Each entry of a weight block counts as a free parameter (so a
        symmetric block gets -1/2 rho rho^T); this is the quantity that
        equilibrium propagation contrasts between two settled states.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return K.energy_grad_params(x, s, self._theta, self._sizes, self._free_off, self._pre,
                                    self._post, self._w_off, self._b_off, self._acts)

    def energy_grad_params_difference(self, x, s_a, s_b, scale=1.0):
        """``scale * (dE/dtheta(s_b) - dE/dtheta(s_a))`` for two states of the same input, shape (n_params,).

        Equals ``scale * (energy_grad_params(x, s_b) - energy_grad_params(x, s_a))``
        to rounding, at about half the cost: the input blocks need one
        matrix product with rho(s_b) - rho(s_a) instead of two, and no
        parameter-sized temporaries are made (what equilibrium propagation
        and contrastive Hebbian learning read off their two states).

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s_a, s_b : ndarray, shape (batch, n_free)
        scale : float
            E.g. 1 / (beta_2 - beta_1).
        """
        x = self.check_input(x)
        s_a = self.check_state(s_a, x.shape[0])
        s_b = self.check_state(s_b, x.shape[0])
        return K.energy_grad_params_difference(x, s_a, s_b, float(scale), self._theta, self._sizes,
                                               self._free_off, self._pre, self._post, self._w_off, self._b_off,
                                               self._acts)

    def energy_hvp(self, x, s, v, drive=None):
        """Hessian-vector products d^2E/ds^2 v per sample, shape (batch, n_free); ``drive`` as above."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        v = float_array("v", v, shape=s.shape, dtype=self.dtype)
        drive = self.input_drive(x) if drive is None else float_array("drive", drive, shape=s.shape,
                                                                      dtype=self.dtype)
        return K.energy_hvp(s, v, self._theta, self._sizes, self._free_off, self._pre, self._post,
                            self._w_off, self._acts, drive)

    def energy_hessian(self, x, s):
        """Dense Hessians d^2E/ds^2 per sample, shape (batch, n_free, n_free).

        H_b = I - diag(rho''(s_b) h_b) - diag(rho'(s_b)) W_ff diag(rho'(s_b)),
        with W_ff the symmetric couplings among free units.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        n = self.n_free
        W = self.dense_weights()[self.n_input:, self.n_input:]
        drive = self.input_drive(x)
        r, rp = K.group_rho_and_prime(s, self._acts, self._sizes, self._free_off)
        h = K.local_field(r, self._theta, self._sizes, self._free_off, self._pre, self._post, self._w_off, drive)
        H = -rp[:, :, None] * W[None] * rp[:, None, :]
        H[:, np.arange(n), np.arange(n)] += 1.0 - K.group_rho_second(s, self._acts, self._sizes, self._free_off) * h
        return H

    def energy_grad_params_directional(self, x, s, v):
        """d/de of the batch-mean dE/dtheta at s + e v, shape (n_params,)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        v = float_array("v", v, shape=s.shape, dtype=self.dtype)
        return K.energy_grad_params_directional(x, s, v, self._theta, self._sizes, self._free_off,
                                                self._pre, self._post, self._w_off, self._b_off, self._acts)


def _group_activations(activation, n_groups):
    """One activation name per group from a name or a sequence of ``n_groups`` names; ValidationError otherwise."""
    if isinstance(activation, str):
        activation_code(activation)  # the one-name message
        names = [activation] * n_groups
    else:
        try:
            names = list(activation)
        except TypeError:
            raise ValidationError(f"activation must be a name or a sequence of {n_groups} names (one per group, "
                                  f"input first), got {activation!r}") from None
        if len(names) != n_groups:
            raise ValidationError(f"activation must name one activation per group: {n_groups} names, input first, "
                                  f"got {len(names)}")
    for g, name in enumerate(names):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ValidationError(f"activation of group {g} must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return tuple(names)
