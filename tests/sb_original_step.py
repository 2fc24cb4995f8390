"""A literal numpy rendition of Scellier & Bengio's (2017) equilibrium-propagation training step.

The oracle of ``tests/test_original_protocol.py`` (issue 15's differential test). Written here from a
reading of their Theano code (bscellier/Towards-a-Biologically-Plausible-Backprop,
``model.py`` and ``train_model.py``), to serve as an oracle for dynsim. Every convention below is the
code's, not dynsim's:

- states of the layers: ``layers[0]`` is the clamped input x, ``layers[1:]`` the hidden layers and the
  output, shapes (batch, n_k);
- energy per example, summed over *all* layers including the input,
  ``E = 1/2 sum_k |rho(s_k)|^2 - sum_k rho(s_k).b_k - sum_k rho(s_k) W_k rho(s_{k+1})``
  with ``rho = clip(., 0, 1)`` (note 1/2 |rho(s)|^2, not 1/2 |s|^2);
- the derivative of clip used for dE/ds is Theano's (>= 0.7, 2015): 1 on the *closed* interval [0, 1]
  (``(x >= lo) & (x <= hi)``), 0 outside; before Theano 0.7 it was the open interval;
- cost ``C = |s_out - y|^2`` (no 1/2) on the raw output state; total energy ``F = E + beta C``;
- one step of either phase, all layers at once from the old state (Theano ``scan``):
  ``s_k <- clip(s_k - eps dF/ds_k, 0, 1)`` for k >= 1;
- update with the batch-mean energy: ``theta <- theta - alpha_k d/dtheta [(E(s_beta) - E(s_0)) / beta]``,
  the states held constant, i.e. ``W_k += alpha_k / beta * mean(rho(s_k) rho(s_{k+1})^T |_beta - |_0)``
  and the same for the bias of layer k+1 with the same alpha_k; the input bias b_0 is never updated;
- persistent particles: one stored state per example of the whole data set (train, validation, test
  concatenated), zeros at the start; the free phase starts from the stored state of its minibatch and
  writes its end back; the nudged phase starts from that free end and writes nothing;
- per minibatch, in this order: free phase (writes the particles), measure (error = argmax of the output
  state, first index on ties, against the label), draw the sign of beta, nudged phase, update;
- the code's sign draw is ``beta = sign * beta`` with the *previous* (signed) beta, so the sign used is
  the running product of the draws (still a fair coin per minibatch); :func:`code_signs` reproduces it;
- Glorot uniform weights ``+-sqrt(6 / (n_in + n_out))`` of shape (n_in, n_out), zero biases;
- minibatches taken in order, index 0, 1, ..., n_train / batch - 1, every epoch (no shuffling);
  validation: the next 10,000 examples, same free phase from their own particles, after each epoch.

Hyperparameters of the code for 784-500-500-10: 150 free / 6 nudged iterations, eps 0.5, beta 1,
alphas 0.4, 0.1, 0.01, batch 20, 60 epochs (:data:`NET2`).
"""
from __future__ import annotations

import numpy as np

NET2 = dict(hidden_sizes=[500, 500], n_epochs=60, batch_size=20, n_it_neg=150, n_it_pos=6, epsilon=0.5, beta=1.0,
            alphas=[0.4, 0.1, 0.01])
"""The code's hyperparameters of the two-hidden-layer network (``net2`` in ``train_model.py``)."""


def rho(s):
    """Hard sigmoid clip(s, 0, 1)."""
    return np.clip(s, 0.0, 1.0)


def clip_grad(s, closed=True):
    """Derivative of clip(s, 0, 1) as Theano computes it: 1 on [0, 1] (closed=True, Theano >= 0.7), else (0, 1)."""
    inside = (s >= 0.0) & (s <= 1.0) if closed else (s > 0.0) & (s < 1.0)
    return inside.astype(s.dtype)


def glorot_init(sizes, rng, dtype=np.float32):
    """Weights (n_in, n_out) uniform in +-sqrt(6 / (n_in + n_out)), and zero biases for every layer (input too)."""
    weights = [rng.uniform(-np.sqrt(6.0 / (a + b)), np.sqrt(6.0 / (a + b)), size=(a, b)).astype(dtype)
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(n, dtype=dtype) for n in sizes]
    return weights, biases


def energy(layers, weights, biases):
    """E per example, shape (batch,), over all layers (input included)."""
    r = [rho(s) for s in layers]
    e = sum(0.5 * np.sum(rk * rk, axis=1) for rk in r)
    e = e - sum(rk @ b for rk, b in zip(r, biases))
    e = e - sum(np.sum((r[k] @ W) * r[k + 1], axis=1) for k, W in enumerate(weights))
    return e


def cost(output, y_one_hot):
    """C = |s_out - y|^2 per example (the code's cost, without 1/2)."""
    return np.sum((output - y_one_hot) ** 2, axis=1)


def energy_grad(layers, weights, biases, closed=True):
    """dE/ds_k for the free layers k = 1..L, a list (entry 0 is None: the input does not move)."""
    r = [rho(s) for s in layers]
    L = len(layers) - 1
    grads = [None]
    for k in range(1, L + 1):
        field = biases[k] + r[k - 1] @ weights[k - 1]
        if k < L:
            field = field + r[k + 1] @ weights[k].T
        grads.append(clip_grad(layers[k], closed) * (r[k] - field))
    return grads


def total_energy_grad(layers, weights, biases, beta, y_one_hot, closed=True):
    """dF/ds_k, F = E + beta C: the cost adds 2 beta (s_out - y) to the output (no clip derivative there)."""
    grads = energy_grad(layers, weights, biases, closed)
    if beta != 0.0:
        grads[-1] = grads[-1] + (2.0 * beta) * (layers[-1] - y_one_hot)
    return grads


def relax(x, states, weights, biases, n_iterations, epsilon, beta=0.0, y_one_hot=None, closed=True):
    """``n_iterations`` synchronous projected-Euler steps of every free layer; returns the new free states."""
    layers = [x] + [s.copy() for s in states]
    dtype = x.dtype
    eps = dtype.type(epsilon)
    b = dtype.type(beta)
    for _ in range(n_iterations):
        grads = total_energy_grad(layers, weights, biases, b, y_one_hot, closed)
        layers = [layers[0]] + [np.clip(s - eps * g, 0.0, 1.0).astype(dtype) for s, g in zip(layers[1:], grads[1:])]
    return layers[1:]


def free_phase(x, states, weights, biases, n_iterations, epsilon, closed=True):
    """Free phase from ``states`` (the particles of the minibatch)."""
    return relax(x, states, weights, biases, n_iterations, epsilon, closed=closed)


def nudged_phase(x, free_states, y_one_hot, weights, biases, n_iterations, epsilon, beta, closed=True):
    """Weakly clamped phase from the free end, beta signed."""
    return relax(x, free_states, weights, biases, n_iterations, epsilon, beta, y_one_hot, closed)


def parameter_updates(x, free_states, nudged_states, beta, alphas):
    """The code's increments ``(dW, db)``: dW_k = alpha_k / beta * mean(rho rho^T |_beta - rho rho^T |_0).

    ``db`` has one entry per layer; ``db[0]`` (the input bias) is None: never updated.
    """
    r0 = [rho(x)] + [rho(s) for s in free_states]
    rb = [rho(x)] + [rho(s) for s in nudged_states]
    n = x.shape[0]
    dtype = x.dtype
    dW, db = [], [None]
    for k, alpha in enumerate(alphas):
        c = dtype.type(alpha / beta / n)
        dW.append(c * (rb[k].T @ rb[k + 1] - r0[k].T @ r0[k + 1]))
        db.append(c * np.sum(rb[k + 1] - r0[k + 1], axis=0))
    return dW, db


def apply_updates(weights, biases, dW, db):
    """In place: W_k += dW_k, b_k += db_k (k >= 1)."""
    for W, d in zip(weights, dW):
        W += d
    for b, d in zip(biases[1:], db[1:]):
        b += d


def code_signs(n, rng):
    """The signs of beta the code uses for ``n`` minibatches: the running product of fair draws.

    ``rng`` is a numpy Generator; one ``rng.random()`` per minibatch, ``< 0.5`` meaning a draw of +1 (the
    convention of dynsim's 'ep-random', so that the same generator gives both programs the same signs when
    ``running_product=False`` is not used). Returns (draws, used): ``used`` is what the code's loop applies.
    """
    draws = np.array([1.0 if rng.random() < 0.5 else -1.0 for _ in range(n)])
    return draws, np.cumprod(draws)


class Particles:
    """Stored states, one row per example and layer (the code's ``persistent_particles``)."""

    def __init__(self, n_examples, sizes, dtype=np.float32):
        self.layers = [np.zeros((n_examples, m), dtype=dtype) for m in sizes[1:]]

    def get(self, idx):
        return [p[idx] for p in self.layers]

    def put(self, idx, states):
        for p, s in zip(self.layers, states):
            p[idx] = s


def predict(output):
    """argmax of the output state (first index on ties, as Theano's argmax)."""
    return np.argmax(output, axis=1)


def train_minibatch(x, y, y_one_hot, idx, weights, biases, particles, hyper, sign, closed=True):
    """One minibatch of the code's loop; returns a dict of what was computed (states, increments, error).

    ``sign`` (+1 or -1) is the sign of beta for this minibatch.
    """
    s0 = particles.get(idx)
    free = free_phase(x, s0, weights, biases, hyper["n_it_neg"], hyper["epsilon"], closed)
    particles.put(idx, free)
    error = float(np.mean(predict(free[-1]) != y))
    c = float(np.mean(cost(free[-1], y_one_hot)))
    beta = float(sign) * hyper["beta"]
    nudged = nudged_phase(x, free, y_one_hot, weights, biases, hyper["n_it_pos"], hyper["epsilon"], beta, closed)
    dW, db = parameter_updates(x, free, nudged, beta, hyper["alphas"])
    apply_updates(weights, biases, dW, db)
    return dict(free=free, nudged=nudged, dW=dW, db=db, error=error, cost=c, beta=beta)


def evaluate(x, y, weights, biases, particles, idx_all, n_iterations, epsilon, batch_size=20, closed=True):
    """Error rate of the free phase over ``idx_all`` (rows of x / particles), from and into the particles."""
    wrong = 0
    for lo in range(0, len(idx_all), batch_size):
        idx = idx_all[lo:lo + batch_size]
        free = free_phase(x[idx], particles.get(idx), weights, biases, n_iterations, epsilon, closed)
        particles.put(idx, free)
        wrong += int(np.sum(predict(free[-1]) != y[idx]))
    return wrong / len(idx_all)


def one_hot(labels, n=10, dtype=np.float32):
    out = np.zeros((labels.shape[0], n), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out
