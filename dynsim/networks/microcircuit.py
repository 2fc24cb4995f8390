"""The dendritic error microcircuit of Sacramento et al. (2018): pyramidal neurons with basal and apical dendrites,
and lateral interneurons that learn to predict the layer above.

Layers 0..N (0 the clamped input, N the output). Each hidden layer k has
pyramidal neurons (somatic potential u_k, rate r_k = phi(u_k)) and
interneurons, one per pyramidal neuron of layer k+1 (u^I_k, r^I_k =
phi_{k+1}(u^I_k)). In row-vector form (a batch of rows)::

    basal      v_B,k = r_{k-1} W_k                        (r_0 = phi_0(x), the input)
    apical     v_A,k = r_{k+1} B_k + r^I_k PI_k           (hidden layers only)
    interneuron dendrite  v_I,k = r_k IP_k

    du_k/dt   = -g_lk u_k + g_B (v_B,k - u_k) + g_A (v_A,k - u_k)          hidden pyramidal
    du_N/dt   = -g_lk u_N + g_B (v_B,N - u_N) + beta (y - u_N)             output, nudged by beta
    du^I_k/dt = -g_lk u^I_k + g_D (v_I,k - u^I_k) + g_som (u_{k+1} - u^I_k)  interneurons

The interneurons are always nudged towards the pyramidal somas of the layer
above; the output is nudged towards the target only during teaching
(``beta`` > 0, dynsim's nudged phase). The dynamics are not a gradient flow;
they are linear in the potentials once the rates are fixed, with all
conductances positive, and the relaxation follows them with any integrator.

Plasticity (Urbanczik & Senn 2014; dendritic prediction of somatic activity)::

    dW_k  ~ r_{k-1}^T (phi(u_k) - phi(v^_B,k)),   v^_B,k = g_B / (g_lk + g_B + g_A) v_B,k  (g_A -> 0 at the output)
    dIP_k ~ r_k^T (r^I_k - phi_{k+1}(v^_I,k)),   v^_I,k = g_D / (g_lk + g_D) v_I,k
    dPI_k ~ -(r^I_k)^T v_A,k                     (drives the apical potential to rest, 0)

B_k (top-down) stays fixed. In the self-predicting state,
``IP_k = (g_lk + g_D) / g_D * c_{k+1} W_{k+1}`` and ``PI_k = -B_k`` (c the
basal attenuation of layer k+1), the interneurons reproduce the layer above
and, without teaching, every apical potential vanishes; a teaching signal
at the output then leaves an apical mismatch in each hidden layer that
carries the output error down, and the updates approximate backprop's
(exactly in direction as beta -> 0 with ``B_k = W_{k+1}^T`` and a linear
output).

The network's prediction is its output potential u_N at the free steady
state; in the self-predicting state it is the feedforward
``u^_k = c_k r^_{k-1} W_k`` (:meth:`feedforward`), whose loss
1/2 ||u^_N - y||^2 defines :meth:`backprop_gradient`.

Parameter layout
----------------
``theta`` = W_1..W_N (each (n_{k-1}, n_k)), then B_1..B_{N-1} (each
(n_{k+1}, n_k)), IP_1..IP_{N-1} (each (n_k, n_{k+1})), PI_1..PI_{N-1} (each
(n_{k+1}, n_k): from the interneurons of layer k to its apical dendrites),
all C order, named ``W_k``, ``B_k``, ``IP_k``, ``PI_k``.

References
----------
.. [1] J. Sacramento, R. Ponte Costa, Y. Bengio, W. Senn, "Dendritic cortical
       microcircuits approximate the backpropagation algorithm", NeurIPS (2018).
.. [2] R. Urbanczik, W. Senn, "Learning by the Dendritic Prediction of Somatic
       Spiking", Neuron 81(3) (2014).
"""
from __future__ import annotations

import numpy as np

import integrators
from dynsim.networks import microcircuit_kernels as MK
from dynsim.networks.activations import activation_code
from dynsim.networks.architecture import GROUP_ACTIVATIONS
from dynsim.networks.layout import NetworkLayout
from dynsim.networks.pc import activation_and_derivative
from dynsim.validation import ValidationError, float_array, float_dtype, random_generator, real_scalar

__all__ = ["DendriticMicrocircuit", "MICROCIRCUIT_FIELD", "DEFAULT_CONDUCTANCES"]

MICROCIRCUIT_FIELD = integrators.VectorField("dynsim.networks.microcircuit_kernels", "microcircuit_vector_field",
                                             dependencies=("dynsim.networks.activations",))
"""The compiled vector field of :class:`DendriticMicrocircuit`."""

DEFAULT_CONDUCTANCES = {"g_lk": 0.1, "g_B": 1.0, "g_A": 0.8, "g_D": 1.0, "g_som": 0.8}
"""Leak, basal, apical, interneuron-dendritic and interneuron-nudging conductances (Sacramento et al. 2018)."""


def _phi(v, activation):
    return activation_and_derivative(v, activation)[0] if activation != "linear" else v


class DendriticMicrocircuit(NetworkLayout):
    """Pyramidal neurons and interneurons in layers, relaxed by the integrators, with local plasticity.

    Parameters
    ----------
    sizes : sequence of int
        Pyramidal neurons per layer, input first (at least one hidden layer).
    activation : {'logistic', 'tanh', 'relu', 'gelu', 'hard_sigmoid', 'linear'}
        phi of the hidden layers (and of the interneurons that mirror a
        hidden layer).
    output_activation : str
        phi of the output layer (and of the interneurons mirroring it);
        'linear' makes the output error exactly u_N - u^_N.
    conductances : dict, optional
        Any of :data:`DEFAULT_CONDUCTANCES`, each > 0.
    top_down : {'random', 'transpose'}
        B_k drawn at random (fixed; the forward weights then align to it, as
        in feedback alignment) or set to W_{k+1}^T at the start.
    theta : ndarray, shape (n_params,), optional
    seed : int or numpy.random.Generator, optional
    dtype : {numpy.float64, numpy.float32}
    input_activation : str
        phi of the clamped input: 'linear' (default) takes the data as the
        input neurons' rates (pixel intensities, as Sacramento et al. do).
    """

    vector_field = MICROCIRCUIT_FIELD
    natural_box = None

    def __init__(self, sizes, activation="logistic", output_activation="linear", conductances=None,
                 top_down="random", theta=None, seed=None, dtype=np.float64, input_activation="linear"):
        self.dtype = float_dtype(dtype)
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 3 or any(
                isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in sizes):
            raise ValidationError(f"sizes must list >= 3 layer sizes (input, hidden..., output), each an integer "
                                  f">= 1, got {sizes!r}")
        self.layer_sizes = tuple(int(n) for n in sizes)
        N = len(sizes) - 1
        for name, value in (("activation", activation), ("output_activation", output_activation),
                            ("input_activation", input_activation)):
            activation_code(value, GROUP_ACTIVATIONS)  # a ValidationError naming the valid names
        self.activation, self.output_activation = activation, output_activation
        self.input_activation = input_activation
        cond = dict(DEFAULT_CONDUCTANCES)
        for key, value in (conductances or {}).items():
            if key not in cond:
                raise ValidationError(f"conductances: unknown key {key!r}; the conductances are {sorted(cond)}")
            cond[key] = real_scalar(f"conductances[{key!r}]", value, 0.0, np.inf, low_open=True, high_open=True)
        self.conductances = cond
        if top_down not in ("random", "transpose"):
            raise ValidationError(f"top_down must be 'random' or 'transpose', got {top_down!r}")
        self.top_down = top_down
        # Groups: input, then pyr_k, int_k for the hidden layers, then the output.
        names, gsizes, kinds, acts = ["input"], [sizes[0]], [0], [input_activation]
        self._pyr = {0: 0}  # layer k -> group index
        self._int = {}
        for k in range(1, N):
            self._pyr[k] = len(names)
            names.append(f"pyr_{k}"), gsizes.append(sizes[k]), kinds.append(0), acts.append(activation)
            self._int[k] = len(names)
            mirrored = output_activation if k + 1 == N else activation
            names.append(f"int_{k}"), gsizes.append(sizes[k + 1]), kinds.append(1), acts.append(mirrored)
        self._pyr[N] = len(names)
        names.append("output"), gsizes.append(sizes[N]), kinds.append(0), acts.append(output_activation)
        self.group_names, self.group_sizes = tuple(names), tuple(gsizes)
        self.activations = tuple(acts)
        G = len(names)
        self._free_off = np.zeros(G, dtype=np.int64)
        self._free_off[1:] = np.concatenate(([0], np.cumsum(gsizes[1:-1])))
        self._sizes = np.array(gsizes, dtype=np.int64)
        self._kind = np.array(kinds, dtype=np.int64)
        self._acts = np.array([activation_code(a, GROUP_ACTIVATIONS) for a in acts], dtype=np.int64)
        # Parameter blocks, in layout order.
        blocks, start = {}, 0

        def add(name, shape):
            nonlocal start
            blocks[name] = (start, shape)
            start += shape[0] * shape[1]

        for k in range(1, N + 1):
            add(f"W_{k}", (sizes[k - 1], sizes[k]))
        for k in range(1, N):
            add(f"B_{k}", (sizes[k + 1], sizes[k]))
        for k in range(1, N):
            add(f"IP_{k}", (sizes[k], sizes[k + 1]))
        for k in range(1, N):
            add(f"PI_{k}", (sizes[k + 1], sizes[k]))
        self._blocks = blocks
        self.n_params = start
        above = np.full(G, -1, dtype=np.int64)
        below = np.full(G, -1, dtype=np.int64)
        inter = np.full(G, -1, dtype=np.int64)
        offs = np.full((G, 3), -1, dtype=np.int64)
        for k in range(1, N + 1):
            g = self._pyr[k]
            below[g] = self._pyr[k - 1]
            offs[g, 0] = blocks[f"W_{k}"][0]
            if k < N:
                above[g], inter[g] = self._pyr[k + 1], self._int[k]
                offs[g, 1], offs[g, 2] = blocks[f"B_{k}"][0], blocks[f"PI_{k}"][0]
                q = self._int[k]
                above[q], below[q] = self._pyr[k + 1], g
                offs[q, 0] = blocks[f"IP_{k}"][0]
        self._above, self._below, self._inter, self._offs = above, below, inter, offs
        self._cond = np.array([cond[k] for k in ("g_lk", "g_B", "g_A", "g_D", "g_som")], dtype=self.dtype)
        if theta is None:
            rng = random_generator("seed", seed)
            theta = np.zeros(self.n_params)
            for name, (s0, shape) in blocks.items():
                if name.startswith(("W_", "B_", "IP_", "PI_")):
                    limit = 1.0 / np.sqrt(shape[0])
                    theta[s0:s0 + shape[0] * shape[1]] = rng.uniform(-limit, limit, shape[0] * shape[1])
            self.theta = theta
            if top_down == "transpose":
                for k in range(1, N):
                    self.block(f"B_{k}")[...] = self.block(f"W_{k + 1}").T
        else:
            self.theta = theta

    # ----------------------------------------------------------------- parameters
    @property
    def theta(self):
        """Flat parameters, shape (n_params,): W_1..W_N, B_1..B_{N-1}, IP_1..IP_{N-1}, PI_1..PI_{N-1}."""
        return self._theta

    @theta.setter
    def theta(self, value):
        self._theta = float_array("theta", value, shape=(self.n_params,), dtype=self.dtype)

    def block(self, name):
        """View of a parameter block into theta (``W_k``, ``B_k``, ``IP_k``, ``PI_k``)."""
        if name not in self._blocks:
            raise ValidationError(f"unknown block {name!r}; the blocks are {list(self._blocks)}")
        s0, shape = self._blocks[name]
        return self._theta[s0:s0 + shape[0] * shape[1]].reshape(shape)

    def parameter_blocks(self):
        """Named slices of theta, in layout order."""
        return {name: slice(s0, s0 + shape[0] * shape[1]) for name, (s0, shape) in self._blocks.items()}

    def layer_of_block(self):
        """W_k, B_k, IP_k and PI_k belong to layer k."""
        return {name: int(name.split("_")[1]) for name in self._blocks}

    @property
    def n_layers(self):
        """N: the output layer's index."""
        return len(self.layer_sizes) - 1

    def connections(self):
        """[pre, post] group indices of every projection: basal W, apical B, interneuron IP, apical PI."""
        pairs = []
        for k in range(1, self.n_layers + 1):
            pairs.append([self._pyr[k - 1], self._pyr[k]])
            if k < self.n_layers:
                pairs += [[self._pyr[k + 1], self._pyr[k]], [self._pyr[k], self._int[k]],
                          [self._int[k], self._pyr[k]]]
        return pairs

    def describe(self):
        return {"model": "dendritic_microcircuit", "layer_sizes": list(self.layer_sizes),
                "connections": self.connections(),
                "group_sizes": list(self.group_sizes), "group_names": list(self.group_names),
                "activation": self.activation, "output_activation": self.output_activation,
                "input_activation": self.input_activation,
                "conductances": dict(self.conductances), "top_down": self.top_down, "n_params": self.n_params,
                "dtype": self.dtype.name}

    def attenuation(self, k):
        """c_k: the basal dendrite's share of the soma at rest, g_B / (g_lk + g_B + g_A) (no g_A at the output)."""
        c = self.conductances
        return c["g_B"] / (c["g_lk"] + c["g_B"] + (c["g_A"] if k < self.n_layers else 0.0))

    def self_predicting(self):
        """Set IP_k and PI_k to the self-predicting state of the current W and B (in place); returns self."""
        c = self.conductances
        for k in range(1, self.n_layers):
            self.block(f"IP_{k}")[...] = (c["g_lk"] + c["g_D"]) / c["g_D"] * self.attenuation(k + 1) \
                * self.block(f"W_{k + 1}")
            self.block(f"PI_{k}")[...] = -self.block(f"B_{k}")
        return self

    # ----------------------------------------------------------------- relaxation interface
    def input_drive(self, x):
        """The input's basal projection phi(x) W_1 in pyr_1's columns (zeros elsewhere), shape (batch, n_free)."""
        x = self.check_input(x)
        drive = np.zeros((x.shape[0], self.n_free), dtype=self.dtype)
        g = self._pyr[1]
        o = int(self._free_off[g])
        drive[:, o:o + self.group_sizes[g]] = _phi(x, self.input_activation).astype(self.dtype) @ self.block("W_1")
        return drive

    def initial_state(self, drive):
        """Relaxations start at rest (zero potentials)."""
        return np.zeros_like(drive)

    def kernel_args(self, drive, beta=0.0, target=None, clamp_output=False):
        """The ``args`` tuple of :func:`dynsim.networks.microcircuit_kernels.microcircuit_vector_field`."""
        if target is None:
            target = np.zeros((drive.shape[0], self.n_output), dtype=self.dtype)
        return (self._theta, self._sizes, self._free_off, self._kind, self._above, self._below, self._inter,
                self._offs, self._acts, self._cond, drive, float(beta), target, bool(clamp_output))

    def dsdt(self, x, s, beta=0.0, target=None, clamp_output=False):
        """du/dt of every group at ``s``, shape (batch, n_free); the output nudged by ``beta`` or held.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        beta : float
            Teaching conductance of the output (needs ``target`` when not 0).
        target : ndarray, shape (batch, n_output), optional
        clamp_output : bool
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        beta = real_scalar("beta", beta, 0.0)
        if target is not None:
            target = self.check_target(target, x.shape[0])
        elif beta != 0.0 or clamp_output:
            raise ValidationError("target is required when beta != 0 or clamp_output")
        out = np.empty_like(s)
        MK.microcircuit_vector_field(0.0, s, out, self.kernel_args(self.input_drive(x), beta, target,
                                                                  bool(clamp_output)))
        return out

    def dendrites(self, x, s, drive=None):
        """``(basal, apical)`` potentials, each (batch, n_free) laid out like ``s`` (apical zero but on pyr_k)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        drive = self.input_drive(x) if drive is None else float_array("drive", drive, shape=s.shape,
                                                                      dtype=self.dtype)
        return MK.dendrites(s, self._theta, self._sizes, self._free_off, self._kind, self._above, self._below,
                            self._inter, self._offs, self._acts, drive)

    def energy_from_drive(self, s, drive):
        """The apical mismatch 1/2 sum_k ||v_A,k||^2 per sample, shape (batch,): not an energy the dynamics descend.

        The microcircuit has no energy function; this is the quantity the
        interneurons' plasticity drives to zero (the self-predicting state),
        logged in its place.
        """
        s = self.check_state(s)
        drive = float_array("drive", drive, shape=s.shape, dtype=self.dtype)
        _, apical = MK.dendrites(s, self._theta, self._sizes, self._free_off, self._kind, self._above, self._below,
                                 self._inter, self._offs, self._acts, drive)
        return (0.5 * np.einsum("ij,ij->i", apical, apical, dtype=np.float64)).astype(self.dtype)

    # ----------------------------------------------------------------- the feedforward reference
    def feedforward(self, x):
        """u^_k = c_k phi(u^_{k-1}) W_k layer by layer: the free steady state of the self-predicting network.

        Returns a (batch, n_free) state with the interneurons at the layer
        above (u^I_k = u^_{k+1}), as the self-predicting state has them.
        """
        x = self.check_input(x)
        s = np.zeros((x.shape[0], self.n_free), dtype=self.dtype)
        below = _phi(x, self.input_activation)
        for k in range(1, self.n_layers + 1):
            u = self.attenuation(k) * (below @ self.block(f"W_{k}"))
            g = self._pyr[k]
            s[:, self._free_off[g]:self._free_off[g] + self.group_sizes[g]] = u
            if k > 1:
                q = self._int[k - 1]
                s[:, self._free_off[q]:self._free_off[q] + self.group_sizes[q]] = u
            below = _phi(u, self.activation if k < self.n_layers else self.output_activation)
        return s

    def output(self, s):
        """The output potentials u_N of a state, shape (batch, n_output)."""
        return self.check_state(s)[:, self.output_slice]

    def backprop_gradient(self, x, target):
        """Backprop's gradient of mean_b 1/2 ||u^_N - y||^2 through :meth:`feedforward`, shape (n_params,).

        Written in plain numpy; zero on B, IP and PI (no loss depends on them there).
        """
        x = self.check_input(x)
        target = self.check_target(target, x.shape[0])
        N = self.n_layers
        us, acts = [None], [_phi(x, self.input_activation)]
        for k in range(1, N + 1):
            us.append(self.attenuation(k) * (acts[-1] @ self.block(f"W_{k}")))
            acts.append(_phi(us[-1], self.activation if k < N else self.output_activation))
        grad = np.zeros(self.n_params)
        blocks = self.parameter_blocks()
        delta = (us[N] - target) / x.shape[0]  # dL/du_N
        for k in range(N, 0, -1):
            grad[blocks[f"W_{k}"]] = (self.attenuation(k) * acts[k - 1].T @ delta).ravel()
            if k > 1:
                act = self.activation
                _, fp = activation_and_derivative(us[k - 1], act) if act != "linear" else (None, 1.0)
                delta = self.attenuation(k) * (delta @ self.block(f"W_{k}").T) * fp
        return grad
