"""Predictive coding networks: model description, energy and the backprop reference.

A :class:`PCNetwork` has the interface the phases, learning rules,
optimizers and comparison tools use for Hopfield networks (a flat ``theta``,
named parameter blocks, a compiled vector field, an input drive constant in
a relaxation), so every integrator and the steady-state stop serve it
unchanged.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs",
       Neural Computation 34(6) (2022).
"""
from __future__ import annotations

import numpy as np

import integrators
from dynsim.networks import pc_kernels as K
from dynsim.networks.activations import PC_ACTIVATIONS, activation_code
from dynsim.networks.layout import NetworkLayout
from dynsim.validation import ValidationError, boolean, float_array, float_dtype, positive_array, random_generator

__all__ = ["PCNetwork", "PC_FIELD", "activation_and_derivative"]

PC_FIELD = integrators.VectorField("dynsim.networks.pc_kernels", "pc_vector_field", dependencies=("dynsim.networks.activations",))
"""The compiled vector field of :class:`PCNetwork`."""


def activation_and_derivative(x, activation):
    """f(x) and f'(x) in plain numpy, elementwise; a pair of arrays of ``x``'s shape.

    Written independently of the compiled kernels: the reference of
    :meth:`PCNetwork.backprop_gradient`, and the feedforward rules' (e.g.
    feedback alignment) way to the derivatives of a whole layer at once.
    """
    if activation == "tanh":
        t = np.tanh(x)
        return t, 1 - t ** 2
    if activation == "logistic":
        e = 1 / (1 + np.exp(-x))
        return e, e * (1 - e)
    if activation == "relu":
        return np.maximum(x, 0), (x > 0).astype(float)
    if activation == "gelu":
        # Derivative by the product rule on x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
        c = np.sqrt(2 / np.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * c * (1 + 3 * 0.044715 * x ** 2)
    return np.clip(x, 0, 1), ((x >= 0) & (x <= 1)).astype(float)


class PCNetwork(NetworkLayout):
    """Layered predictive coding network x_0 -> x_1 -> ... -> x_L.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first.
    activation : {'tanh', 'logistic', 'relu', 'hard_sigmoid'}
        f in mu_l = f(x_{l-1}) W_l + b_l.
    variances : sequence of float, optional
        sigma_l^2 of layers 1..L (default all 1); precisions are 1 / sigma_l^2.
    fixed_prediction : bool
        Hold predictions and f'(x) at their feedforward values during
        inference (Millidge et al. 2020).
    theta : ndarray, shape (n_params,), optional
    seed : int or numpy.random.Generator, optional
        Random source of the initial parameters.
    init : {'glorot', 'fan-in'}
        'glorot': weights uniform in +-sqrt(6 / (n_{l-1} + n_l)), zero
        biases (Glorot & Bengio 2010); 'fan-in': weights and biases uniform
        in +-1 / sqrt(n_{l-1}), the default of PyTorch's and Equinox's
        linear layers (and so of pcx's benchmarks).
    dtype : {numpy.float64, numpy.float32} or their names
        What the network computes in: its parameters, states, drives, errors
        and gradients (the per-sample energies are summed in float64). The
        initial parameters are drawn in float64 and rounded once.

    Notes
    -----
    A float32 network converts the arrays it is given (``x``, ``target``,
    ``s``, ``theta``, ...) to float32 at its public methods, once per call,
    so float64 data works unchanged; to skip that copy, hold the data in
    float32 (``dynsim.datasets.idx.load(..., dtype=numpy.float32)``). The
    compiled kernels only ever see arrays of the network's dtype, so no
    call recompiles them for a new dtype mid-training.
    """

    vector_field = PC_FIELD
    natural_box = None  # states are unbounded; f acts on predictions, not on the state

    def __init__(self, sizes, activation="tanh", variances=None, fixed_prediction=False, theta=None, seed=None,
                 init="glorot", dtype=np.float64):
        self.dtype = float_dtype(dtype)
        if not isinstance(sizes, (list, tuple, np.ndarray)):
            raise ValidationError(f"sizes must be a sequence of layer sizes, input first, got {sizes!r}")
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValidationError(f"sizes needs an input and at least one more layer, got {sizes}")
        for l, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValidationError(f"sizes[{l}] must be an integer >= 1, got {n!r}")
        self.activation = activation
        self._act = activation_code(activation, PC_ACTIVATIONS)
        self.group_sizes = tuple(int(n) for n in sizes)
        L = len(sizes) - 1
        self.group_names = ("input",) + tuple(f"layer_{l}" for l in range(1, L)) + ("output",)
        self._sizes = np.array(self.group_sizes, dtype=np.int64)
        self._free_off = np.zeros(L + 1, dtype=np.int64)
        self._free_off[1:] = np.concatenate(([0], np.cumsum(self._sizes[1:-1])))
        self._w_off = np.zeros(L + 1, dtype=np.int64)
        blocks = self._sizes[:-1] * self._sizes[1:]
        self._w_off[1:] = np.concatenate(([0], np.cumsum(blocks)[:-1]))
        self._b_off = int(blocks.sum())
        self.n_params = self._b_off + self.n_free
        self.variances = variances
        self.fixed_prediction = boolean("fixed_prediction", fixed_prediction)
        if init not in ("glorot", "fan-in"):
            raise ValidationError(f"init must be 'glorot' or 'fan-in', got {init!r}")
        if theta is None:
            rng = random_generator("seed", seed)
            theta = np.zeros(self.n_params)
            for l in range(1, L + 1):
                if init == "glorot":
                    limit = np.sqrt(6.0 / (sizes[l - 1] + sizes[l]))
                else:
                    limit = 1.0 / np.sqrt(sizes[l - 1])
                    b = self._b_off + self._free_off[l]
                    theta[b:b + sizes[l]] = rng.uniform(-limit, limit, sizes[l])
                theta[self._w_off[l]:self._w_off[l] + blocks[l - 1]] = rng.uniform(-limit, limit, blocks[l - 1])
        self.theta = theta

    # ----------------------------------------------------------------- parameters
    @property
    def theta(self):
        """Flat parameters, shape (n_params,): W_1..W_L (each (n_{l-1}, n_l), C order), then b_1..b_L."""
        return self._theta

    @theta.setter
    def theta(self, value):
        self._theta = float_array("theta", value, shape=(self.n_params,), dtype=self.dtype)

    @property
    def variances(self):
        """sigma_l^2 of layers 1..L, shape (L,)."""
        return self._variances.copy()

    @variances.setter
    def variances(self, value):
        v = positive_array("variances", value, len(self.group_sizes) - 1)
        self._variances = v
        self._precisions = np.concatenate(([0.0], 1.0 / v)).astype(self.dtype)

    def weights(self, l):
        """View of W_l (1 <= l <= L), shape (n_{l-1}, n_l)."""
        return self._theta[self._w_off[l]:self._w_off[l] + self.group_sizes[l - 1] * self.group_sizes[l]].reshape(
            self.group_sizes[l - 1], self.group_sizes[l])

    def biases(self, l):
        """View of b_l (1 <= l <= L), shape (n_l,)."""
        start = self._b_off + self._free_off[l]
        return self._theta[start:start + self.group_sizes[l]]

    def parameter_blocks(self):
        """Named slices of theta: ``W_<pre>_<post>`` and ``b_<layer>``."""
        blocks = {}
        for l in range(1, len(self.group_sizes)):
            start = int(self._w_off[l])
            blocks[f"W_{self.group_names[l - 1]}_{self.group_names[l]}"] = slice(
                start, start + self.group_sizes[l - 1] * self.group_sizes[l])
        for l in range(1, len(self.group_sizes)):
            start = self._b_off + int(self._free_off[l])
            blocks[f"b_{self.group_names[l]}"] = slice(start, start + self.group_sizes[l])
        return blocks

    def layer_of_block(self):
        """The layer each block feeds (W_l and b_l belong to layer l)."""
        layers = {}
        for l in range(1, len(self.group_sizes)):
            layers[f"W_{self.group_names[l - 1]}_{self.group_names[l]}"] = l
            layers[f"b_{self.group_names[l]}"] = l
        return layers

    # ----------------------------------------------------------------- description
    def describe(self):
        return {"model": "predictive_coding", "group_sizes": list(self.group_sizes),
                "group_names": list(self.group_names),
                "connections": [[l - 1, l] for l in range(1, len(self.group_sizes))],
                "activation": self.activation, "variances": self.variances.tolist(),
                "fixed_prediction": self.fixed_prediction, "n_params": self.n_params,
                "dtype": np.dtype(self.dtype).name}

    # ----------------------------------------------------------------- relaxation
    def input_drive(self, x, input_activity=None):
        """Feedforward predictions mu_hat (batch, n_free), constant during a relaxation.

        ``input_activity`` (f(x), from :meth:`input_activity`) saves
        recomputing the activation of the input.
        """
        x = self.check_input(x)
        if input_activity is None:
            fx = self._input_activity_of(x)
        else:
            fx = float_array("input_activity", input_activity, shape=x.shape, dtype=self.dtype)
        return K.feedforward_from_activity(fx, self._theta, self._sizes, self._w_off, self._b_off, self._free_off,
                                           self._act)

    def _input_activity_of(self, x):
        """f(x) of a checked ``x``; the last one computed is reused while ``x`` holds the same numbers.

        A training step computes f(x) of its minibatch for the feedforward
        pass (:meth:`input_drive`) and again for the update of W_1
        (:func:`dynsim.learning.pc_fused.run`); for a GELU network on 784 pixels that
        is a millisecond each time. The memo compares the numbers (not the
        identity), so it cannot go stale; it does not depend on theta.
        Internal: the array returned is shared, and must not be written.
        """
        memo = self.__dict__.get("_fx_memo")
        if memo is not None and memo[0].shape == x.shape and np.array_equal(memo[0], x):
            return memo[1]
        fx = K.input_activity(x, self._act)
        self._fx_memo = (x.copy(), fx)
        return fx

    def input_activity(self, x):
        """f(x) of the clamped input, shape (batch, n_input): the presynaptic activity of the first layer."""
        return K.input_activity(self.check_input(x), self._act)

    def feedforward(self, x):
        """The feedforward pass x_l = mu_l: the free equilibrium when the output is free."""
        return self.input_drive(x)

    def initial_state(self, drive):
        """Inference starts from the feedforward pass (Whittington & Bogacz 2017)."""
        return drive.copy()

    def kernel_args(self, drive, beta=0.0, target=None, clamp_output=False):
        """The ``args`` tuple of :func:`dynsim.networks.pc_kernels.pc_vector_field`."""
        if target is None:
            target = np.zeros((drive.shape[0], self.n_output), dtype=self.dtype)
        return (self._theta, self._sizes, self._w_off, self._b_off, self._free_off, self._act, self._precisions,
                drive, self.fixed_prediction, float(beta), target, bool(clamp_output))

    def _kernel(self, fn, s, drive, *extra):
        return fn(*extra, s, self._theta, self._sizes, self._w_off, self._b_off, self._free_off, self._act,
                  self._precisions, drive, self.fixed_prediction)

    def energy_from_drive(self, s, drive):
        """F per sample from a precomputed drive, shape (batch,)."""
        s = self.check_state(s)
        return self._kernel(K.energy, s, float_array("drive", drive, shape=s.shape, dtype=self.dtype))

    def energy(self, x, s):
        """F per sample, shape (batch,)."""
        x = self.check_input(x)
        return self.energy_from_drive(self.check_state(s, x.shape[0]), self.input_drive(x))

    def energy_grad_state(self, x, s):
        """dF/dx, shape (batch, n_free)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return self._kernel(K.energy_grad_state, s, self.input_drive(x))

    def energy_grad_params(self, x, s, drive=None, input_activity=None):
        """Gradient of the batch-mean F with respect to theta, shape (n_params,).

        ``drive`` (:meth:`input_drive`) and ``input_activity``
        (:meth:`input_activity`) of this ``x``, when given, are not
        recomputed: a learning rule that has relaxed the state already holds both.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        fx = (K.input_activity(x, self._act) if input_activity is None
              else float_array("input_activity", input_activity, shape=x.shape, dtype=self.dtype))
        drive = (K.feedforward_from_activity(fx, self._theta, self._sizes, self._w_off, self._b_off, self._free_off,
                                             self._act)
                 if drive is None else float_array("drive", drive, shape=s.shape, dtype=self.dtype))
        return self._kernel(K.energy_grad_params_from_activity, s, drive, fx)

    def errors(self, x, s):
        """Prediction errors per layer: ``{layer name: eps_l (batch, n_l)}``."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        eps, _, _ = K.errors(s, self._theta, self._sizes, self._w_off, self._b_off, self._free_off, self._act,
                             self.input_drive(x), self.fixed_prediction)
        return self.split_state(eps)

    # ----------------------------------------------------------------- reference
    def backprop_gradient(self, x, target):
        """Exact backprop gradient of the feedforward loss mean_b 1/2 ||y_hat_b - target_b||^2, shape (n_params,).

        Written in plain numpy, independently of the compiled kernels: the
        ground truth predictive coding is compared against.
        """
        x = self.check_input(x)
        target = self.check_target(target, x.shape[0])
        L = len(self.group_sizes) - 1
        acts = [x]
        for l in range(1, L + 1):
            f_below, _ = activation_and_derivative(acts[-1], self.activation)
            acts.append(f_below @ self.weights(l) + self.biases(l))
        grad = np.zeros(self.n_params)
        blocks = self.parameter_blocks()
        names = list(blocks)
        delta = (acts[-1] - target) / x.shape[0]
        for l in range(L, 0, -1):
            f_below, fp_below = activation_and_derivative(acts[l - 1], self.activation)
            grad[blocks[names[l - 1]]] = (f_below.T @ delta).ravel()
            grad[blocks[names[L + l - 1]]] = delta.sum(0)
            delta = (delta @ self.weights(l).T) * fp_below
        return grad
