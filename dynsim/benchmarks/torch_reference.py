"""PyTorch versions of centered EP and strict PC, written as a careful user would, for the epoch benchmark.

Both run in float32 under ``torch.no_grad`` with explicit gradient formulas
(no autograd), every buffer allocated once and updated in place, and
``torch.optim.Adam``:

- :class:`TorchEP`: centered equilibrium propagation (Laborieux et al.
  2021) on a layered Hopfield network with the hard sigmoid
  rho(s) = clip(s, 0, 1) and the energy of :mod:`dynsim.networks.hopfield_kernels`,
  E(s) = 1/2 ||s||^2 - sum_l rho(s_l)^T W_l rho(s_{l+1}) - sum_l b_l . rho(s_l)
  (s_0 = x clamped). A relaxation step is projected Euler,
  s <- clip(s + dt (h - s), 0, 1) with the field h = -dE/drho(s), plus
  beta (y - s_out) on the output in a nudged phase. The states never leave
  [0, 1], where rho(s) = s and rho'(s) = 1 (dynsim's convention on the
  closed interval), so the field is a sum of matrix products. Free phase
  from zero, then two nudged phases at +beta and -beta from the free state;
  the gradient is (dE/dtheta(s_+) - dE/dtheta(s_-)) / (2 beta), batch mean.
- :class:`TorchPC`: strict predictive coding (Whittington & Bogacz 2017)
  on mu_l = f(x_{l-1}) W_l + b_l (f applied to the input too), output
  clamped to the target, hidden states started at the feedforward pass and
  moved by Euler steps of dt on F = sum_l 1/2 ||x_l - mu_l||^2; the weight
  gradient is dF/dtheta at the last state, batch mean.

The conventions (scales, signs, the activation's derivative) are dynsim's:
in float64 one step of either class gives dynsim's gradient on the same
weights to rounding, and Adam's step too (``tests/test_benchmark_epochs.py``).

This file imports only numpy and torch at module level: the epoch benchmark
runs it by its path (``python torch_reference.py epoch '<json>'``) so that
the process's time and memory are PyTorch's alone; the last line printed is
the result as JSON (see :func:`time_epoch`).

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep
       ConvNets by Drastically Reducing its Gradient Estimator Bias",
       Front. Neurosci. 15 (2021).
.. [2] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import torch

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def _decision(out):
    """Labels of outputs (n, n_out): the argmax, or -1 where the largest output is tied, as dynsim scores them.

    Hard-sigmoid outputs pin at 0 or 1; a tie is no decision and counts as an error on both sides.
    """
    top = out.amax(dim=1, keepdim=True)
    return torch.where((out == top).sum(dim=1) > 1, torch.full_like(out[:, 0], -1, dtype=torch.int64),
                       out.argmax(dim=1))


def _rates(lr, n_layers, name="lr"):
    rates = [float(lr)] * n_layers if np.isscalar(lr) else [float(v) for v in lr]
    if len(rates) != n_layers or not all(r > 0 for r in rates):
        raise ValueError(f"{name} must be one positive rate or {n_layers} of them (one per layer), got {lr!r}")
    return rates


class TorchEP:
    """Centered EP on a layered hard-sigmoid Hopfield network, in place, float32.

    Parameters
    ----------
    weights : list of ndarray, shapes (n_l, n_{l+1})
        Initial weights, input block first (copied).
    biases : list of ndarray, shapes (n_{l+1},)
        Initial biases of the free layers (copied).
    batch : int
        Minibatch size (the buffers' size; a smaller last minibatch uses
        views of them).
    free_steps, nudged_steps : int
        Projected-Euler steps of the free phase and of each nudged phase.
    dt, beta : float
        Step and nudging strength.
    lr : float or list of float
        Adam's rate, one for all or one per layer (block l and the biases of
        layer l + 1).
    dtype : torch.dtype
        float32 (what is timed) or float64 (to compare with dynsim exactly).
    """

    def __init__(self, weights, biases, batch, free_steps, nudged_steps, dt, beta, lr, dtype=torch.float32):
        self.W = [torch.tensor(np.asarray(w), dtype=dtype) for w in weights]
        self.b = [torch.tensor(np.asarray(v), dtype=dtype) for v in biases]
        self.sizes = [self.W[0].shape[0]] + [w.shape[1] for w in self.W]
        self.free_steps, self.nudged_steps = int(free_steps), int(nudged_steps)
        self.dt, self.beta = float(dt), float(beta)
        free = self.sizes[1:]
        new = lambda: [torch.zeros(batch, n, dtype=dtype) for n in free]  # noqa: E731
        self.s, self.s_plus, self.s_minus, self.h = new(), new(), new(), new()
        self.drive = torch.zeros(batch, free[0], dtype=dtype)
        self.diff = new()
        for p in self.W + self.b:
            p.grad = torch.zeros_like(p)
        rates = _rates(lr, len(self.W))
        self.optimizer = torch.optim.Adam([{"params": [w, v], "lr": r} for w, v, r in zip(self.W, self.b, rates)])

    def _relax(self, s, x, y, beta, steps, n):
        """``steps`` projected-Euler steps of the first ``n`` rows of the states ``s`` (in place)."""
        L = len(s)
        h = [v[:n] for v in self.h]
        drive = self.drive[:n]
        for _ in range(steps):
            # Every field from the same state (a Jacobi step, as an ODE integrator takes), then every update.
            for l in range(L):
                if l == 0:
                    h[0].copy_(drive)
                else:
                    torch.addmm(self.b[l], s[l - 1], self.W[l], out=h[l])
                if l + 1 < L:
                    h[l].addmm_(s[l + 1], self.W[l + 1].T)
            if beta != 0.0:
                h[-1].add_(y, alpha=beta).add_(s[-1], alpha=-beta)
            for l in range(L):
                s[l].mul_(1.0 - self.dt).add_(h[l], alpha=self.dt).clamp_(0.0, 1.0)

    @torch.no_grad()
    def gradient(self, x, y):
        """Fill ``.grad`` of every parameter with the centered EP estimate for the minibatch (x, y).

        Parameters
        ----------
        x : Tensor, shape (n, n_input), float32, values in [0, 1]
        y : Tensor, shape (n, n_output), float32
        """
        n = x.shape[0]
        s = [v[:n] for v in self.s]
        plus = [v[:n] for v in self.s_plus]
        minus = [v[:n] for v in self.s_minus]
        # The input's projection is constant during the three relaxations: once per minibatch.
        torch.addmm(self.b[0], x, self.W[0], out=self.drive[:n])
        for v in s:
            v.zero_()
        self._relax(s, x, y, 0.0, self.free_steps, n)
        for a, c, f in zip(plus, minus, s):
            a.copy_(f)
            c.copy_(f)
        self._relax(plus, x, y, self.beta, self.nudged_steps, n)
        self._relax(minus, x, y, -self.beta, self.nudged_steps, n)
        scale = -1.0 / (2.0 * self.beta * n)  # dE/dW = -rho(s_pre)^T rho(s_post), batch mean
        diff = [v[:n] for v in self.diff]
        for l, (a, c) in enumerate(zip(plus, minus)):
            torch.sub(a, c, out=diff[l])
            torch.sum(diff[l], 0, out=self.b[l].grad)
            self.b[l].grad.mul_(scale)
        torch.mm(x.T, diff[0], out=self.W[0].grad)
        self.W[0].grad.mul_(scale)
        for l in range(1, len(self.W)):
            g = self.W[l].grad
            torch.mm(plus[l - 1].T, plus[l], out=g)
            g.addmm_(minus[l - 1].T, minus[l], alpha=-1.0)
            g.mul_(scale)
        return s

    def step(self, x, y):
        """One training step: the EP estimate, then Adam; returns the free state's output (n, n_output)."""
        s = self.gradient(x, y)
        self.optimizer.step()
        return s[-1]

    @torch.no_grad()
    def predict(self, x):
        """Labels from the free phase of ``free_steps`` steps from zero (as in training), shape (n,)."""
        n = x.shape[0]
        s = [v[:n] for v in self.s]
        torch.addmm(self.b[0], x, self.W[0], out=self.drive[:n])
        for v in s:
            v.zero_()
        self._relax(s, x, None, 0.0, self.free_steps, n)
        return _decision(s[-1])


class TorchPC:
    """Strict predictive coding with the output clamped, in place, float32.

    Parameters
    ----------
    weights : list of ndarray, shapes (n_{l-1}, n_l)
        Initial weights W_1..W_L (copied).
    biases : list of ndarray, shapes (n_l,)
        Initial biases b_1..b_L (copied).
    batch : int
        Minibatch size of the buffers.
    steps : int
        Euler inference steps.
    dt : float
        Euler step.
    lr : float or list of float
        Adam's rate.
    activation : {'gelu', 'tanh'}
        f; GELU is the tanh approximation (JAX's default, dynsim's).
    dtype : torch.dtype
        float32 (what is timed) or float64 (to compare with dynsim exactly).
    """

    def __init__(self, weights, biases, batch, steps, dt, lr, activation="gelu", dtype=torch.float32):
        if activation not in ("gelu", "tanh"):
            raise ValueError(f"activation must be 'gelu' or 'tanh', got {activation!r}")
        self.W = [torch.tensor(np.asarray(w), dtype=dtype) for w in weights]
        self.b = [torch.tensor(np.asarray(v), dtype=dtype) for v in biases]
        self.sizes = [self.W[0].shape[0]] + [w.shape[1] for w in self.W]
        self.steps, self.dt, self.activation = int(steps), float(dt), activation
        L = len(self.W)
        new = lambda sizes: [torch.zeros(batch, k, dtype=dtype) for k in sizes]  # noqa: E731
        self.x = new(self.sizes[1:L])              # hidden states x_1..x_{L-1}
        self.f = new(self.sizes[0:L])              # f(x_0)..f(x_{L-1})
        self.df = new(self.sizes[0:L])             # f'(x_l) (index 0 unused)
        self.eps = new(self.sizes[1:])             # eps_1..eps_L
        self.grad_x = new(self.sizes[1:L])
        self.mu1 = torch.zeros(batch, self.sizes[1], dtype=dtype)
        self.inp = torch.zeros(batch, self.sizes[0], dtype=dtype)
        self.out = torch.zeros(batch, self.sizes[-1], dtype=dtype)
        self.tmp = new(self.sizes[0:L])
        for p in self.W + self.b:
            p.grad = torch.zeros_like(p)
        self.optimizer = torch.optim.Adam([{"params": [w, v], "lr": r}
                                           for w, v, r in zip(self.W, self.b, _rates(lr, L))])

    def _act(self, l, n, derivative=True):
        """f(x_l) (and f'(x_l)) into the buffers of layer l, first n rows; x_0 is the input in ``self.inp``."""
        a = self.inp[:n] if l == 0 else self.x[l - 1][:n]
        f, df, t = self.f[l][:n], self.df[l][:n], self.tmp[l][:n]
        if self.activation == "tanh":
            torch.tanh(a, out=f)
            if derivative:
                torch.mul(f, f, out=df)
                df.neg_().add_(1.0)
            return
        # GELU, tanh form: f = x/2 (1 + tanh u), u = c (x + a x^3); f' by the product rule.
        torch.mul(a, a, out=df)                          # x^2
        torch.mul(df, GELU_A, out=t).add_(1.0).mul_(a).mul_(GELU_C).tanh_()   # t = tanh(u)
        if derivative:
            df.mul_(3.0 * GELU_A).add_(1.0).mul_(GELU_C)   # c (1 + 3 a x^2)
            df.mul_(a).mul_(0.5)                           # x/2 c (1 + 3 a x^2)
            df.mul_(torch.mul(t, t, out=f).neg_().add_(1.0))   # times (1 - t^2); f is scratch here
            df.add_(t, alpha=0.5).add_(0.5)
        torch.add(t, 1.0, out=f).mul_(a).mul_(0.5)

    def _errors(self, y, n):
        """eps_l = x_l - f(x_{l-1}) W_l - b_l for l = 2..L at the current state (f of the hidden layers current)."""
        L = len(self.W)
        for l in range(1, L):
            upper = y if l == L - 1 else self.x[l][:n]
            torch.addmm(self.b[l], self.f[l][:n], self.W[l], out=self.eps[l][:n])
            torch.sub(upper, self.eps[l][:n], out=self.eps[l][:n])
        torch.sub(self.x[0][:n], self.mu1[:n], out=self.eps[0][:n])

    @torch.no_grad()
    def gradient(self, x, y):
        """Fill ``.grad`` of every parameter with dF/dtheta after the inference on (x, y); returns the prediction.

        Parameters
        ----------
        x : Tensor, shape (n, n_input), float32
        y : Tensor, shape (n, n_output), float32

        Returns
        -------
        Tensor, shape (n, n_output)
            The feedforward output (the network's prediction).
        """
        n = x.shape[0]
        L = len(self.W)
        self.inp[:n].copy_(x)
        self._act(0, n, derivative=False)
        # Feedforward pass: the start of inference; mu_1 = f(x) W_1 + b_1 stays constant.
        torch.addmm(self.b[0], self.f[0][:n], self.W[0], out=self.mu1[:n])
        self.x[0][:n].copy_(self.mu1[:n])
        out = self.out[:n]
        for l in range(1, L):
            self._act(l, n, derivative=False)
            target = out if l == L - 1 else self.x[l][:n]
            torch.addmm(self.b[l], self.f[l][:n], self.W[l], out=target)
        for _ in range(self.steps):
            for l in range(1, L):
                self._act(l, n)
            self._errors(y, n)
            # dF/dx_l = eps_l - f'(x_l) * (eps_{l+1} W_{l+1}^T), every layer from the same state.
            for l in range(1, L):
                g = self.grad_x[l - 1][:n]
                torch.mm(self.eps[l][:n], self.W[l].T, out=g)
                g.mul_(self.df[l][:n]).neg_().add_(self.eps[l - 1][:n])
            for l in range(1, L):
                self.x[l - 1][:n].add_(self.grad_x[l - 1][:n], alpha=-self.dt)
        for l in range(1, L):
            self._act(l, n, derivative=False)
        self._errors(y, n)
        scale = -1.0 / n  # dF/dW_l = -f(x_{l-1})^T eps_l, dF/db_l = -sum eps_l, batch mean
        for l in range(L):
            torch.mm(self.f[l][:n].T, self.eps[l][:n], out=self.W[l].grad)
            self.W[l].grad.mul_(scale)
            torch.sum(self.eps[l][:n], 0, out=self.b[l].grad)
            self.b[l].grad.mul_(scale)
        return out

    def step(self, x, y):
        """One training step: inference, dF/dtheta, then Adam; returns the feedforward output."""
        out = self.gradient(x, y)
        self.optimizer.step()
        return out

    @torch.no_grad()
    def predict(self, x):
        """Labels from the feedforward pass, shape (n,)."""
        n = x.shape[0]
        self.inp[:n].copy_(x)
        self._act(0, n, derivative=False)
        a = torch.addmm(self.b[0], self.f[0][:n], self.W[0])
        for l in range(1, len(self.W)):
            self.x[l - 1][:n].copy_(a)
            self._act(l, n, derivative=False)
            a = torch.addmm(self.b[l], self.f[l][:n], self.W[l])
        return _decision(a)


def glorot(sizes, rng):
    """Weights uniform in +-sqrt(6 / (fan_in + fan_out)) and zero biases (the start of dynsim's Hopfield nets)."""
    weights = [rng.uniform(-1, 1, (a, b)) * math.sqrt(6.0 / (a + b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return weights, [np.zeros(b) for b in sizes[1:]]


def fan_in(sizes, rng):
    """Weights and biases uniform in +-1/sqrt(fan_in) (PyTorch's linear layers, dynsim's PC default)."""
    weights = [rng.uniform(-1, 1, (a, b)) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    return weights, [rng.uniform(-1, 1, b) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]


def scaled_fan_in(sizes, rng, gain):
    """Weights uniform in +-gain/sqrt(fan_in) and zero biases (dynsim's Hopfield nets with ``init_gain``)."""
    weights = [rng.uniform(-1, 1, (a, b)) * (gain / math.sqrt(a)) for a, b in zip(sizes[:-1], sizes[1:])]
    return weights, [np.zeros(b) for b in sizes[1:]]


def time_epoch(algorithm, data, sizes, batch, lr, dt, steps, nudged_steps=0, beta=0.0, activation="gelu", seed=0,
               threads=None, init_gain=None, n_train=None):
    """Train one epoch on the arrays of ``data``, then predict the test images; the figures as a dict.

    Parameters
    ----------
    algorithm : {'ep', 'pc'}
        :class:`TorchEP` (``steps`` free, ``nudged_steps`` per nudged phase,
        ``beta``) or :class:`TorchPC` (``steps`` inference steps,
        ``activation``).
    data : str
        ``.npz`` file with ``x_train`` (n, 784), ``y_train`` (n, 10) one-hot,
        ``x_test`` (m, 784) and ``labels_test`` (m,).
    sizes : list of int
    batch : int
    lr, dt : float
    seed : int
        Initial weights and minibatch order.
    init_gain : float, optional
        EP: weights uniform in +-init_gain/sqrt(fan-in), zero biases, as the
        scenario's preset; None: Glorot's limit (:func:`glorot`).
    threads : int, optional
        ``torch.set_num_threads``; default PyTorch's choice.
    n_train : int, optional
        Train on the first ``n_train`` images only (the scenario's split:
        MNIST's EP scenarios train on 50,000 and keep 10,000 for
        validation); default all.

    Returns
    -------
    dict
        ``seconds`` (the training loop: every minibatch, the last one
        partial), ``eval_seconds`` (test predictions), ``images``, ``n_test``,
        ``test_accuracy``, ``threads``, ``torch`` version.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    arrays = np.load(data)
    x_train = torch.tensor(arrays["x_train"][:n_train], dtype=torch.float32)
    y_train = torch.tensor(arrays["y_train"][:n_train], dtype=torch.float32)
    x_test = torch.tensor(arrays["x_test"], dtype=torch.float32)
    labels_test = torch.tensor(arrays["labels_test"])
    rng = np.random.default_rng(seed)
    if algorithm == "ep":
        start = glorot(sizes, rng) if init_gain is None else scaled_fan_in(sizes, rng, init_gain)
        model = TorchEP(*start, batch, steps, nudged_steps, dt, beta, lr)
    elif algorithm == "pc":
        model = TorchPC(*fan_in(sizes, rng), batch, steps, dt, lr, activation)
    else:
        raise ValueError(f"algorithm must be 'ep' or 'pc', got {algorithm!r}")
    n = x_train.shape[0]
    order = torch.tensor(rng.permutation(n))
    xb = torch.empty(batch, x_train.shape[1])
    yb = torch.empty(batch, y_train.shape[1])
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        k = idx.shape[0]
        torch.index_select(x_train, 0, idx, out=xb[:k])
        torch.index_select(y_train, 0, idx, out=yb[:k])
        model.step(xb[:k], yb[:k])
    t1 = time.perf_counter()
    correct = 0
    for start in range(0, x_test.shape[0], batch):
        correct += int((model.predict(x_test[start:start + batch]) == labels_test[start:start + batch]).sum())
    t2 = time.perf_counter()
    return {"seconds": t1 - t0, "eval_seconds": t2 - t1, "images": int(n), "n_test": int(x_test.shape[0]),
            "test_accuracy": correct / max(1, x_test.shape[0]), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "epoch":
        print("usage: torch_reference.py epoch '<json keyword arguments of time_epoch>'", file=sys.stderr)
        return 2
    print(json.dumps(time_epoch(**json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
