"""Time pcx (a JAX predictive coding library, PyPI ``pcx``) on the network of the PC benchmarks.

pcx pins its own JAX, so it lives in a separate environment
(``python -m venv .venv-pcx && .venv-pcx/bin/pip install pcx==0.6.3``) that
has neither dynsim nor Numba. This file therefore imports only the standard
library and numpy at module level, and the benchmarks run it by its path in
that environment's interpreter::

    .venv-pcx/bin/python dynsim/benchmarks/pcx_runner.py minibatches '<json>'
    .venv-pcx/bin/python dynsim/benchmarks/pcx_runner.py epoch '<json>'

The last line printed is the result as JSON. ``minibatches`` times a fixed
number of minibatches on random data (:func:`time_minibatches`, used by
:mod:`dynsim.benchmarks.kernels`); ``epoch`` trains one epoch on the arrays
of an ``.npz`` file and evaluates the test images (:func:`time_epoch`, used
by :mod:`dynsim.benchmarks.training_epochs`).

The model is the one of pcx's tutorials: an ``EnergyModule`` with one
``Vode`` per layer, the last one clamped to the target, ``value_and_grad``
of the energy for the inference steps and for the weight update, all in one
``pxf.jit``; mu_l = f(x_{l-1}) W_l + b_l as in dynsim (f applied to the
input too). JAX runs on the CPU unless ``JAX_PLATFORMS`` says otherwise.

References
----------
.. [1] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (pcx).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def _build(sizes, activation, batch, dt, weight_optimizer):
    """Model, jitted training step, jitted prediction and the optimizers of pcx for ``sizes``.

    The state optimizer is (re)initialised inside the training step on the
    vodes that are not frozen, as pcx's examples do: built on every
    ``VodeParam``, it would also expect a gradient for the clamped output
    vode, which ``value_and_grad`` leaves as None, and with ``allow_none``
    its step would silently do nothing (the hidden states would stay at the
    feedforward pass, so only the last layer's weights would ever learn).
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import optax
    import pcx as px
    import pcx.functional as pxf
    import pcx.nn as pxnn
    import pcx.predictive_coding as pxc
    import pcx.utils as pxu

    act = {"tanh": jax.nn.tanh, "gelu": jax.nn.gelu}[activation]

    class Model(pxc.EnergyModule):
        def __init__(self):
            super().__init__()
            self.act_fn = px.static(act)
            self.layers = [pxnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
            self.vodes = [pxc.Vode() for _ in sizes[1:]]
            self.vodes[-1].h.frozen = True  # the output vode: clamped to the target, not inferred

        def __call__(self, x, y):
            for v, layer in zip(self.vodes, self.layers):
                x = v(layer(self.act_fn(x)))
            if y is not None:
                self.vodes[-1].set("h", y)
            return self.vodes[-1].get("u")

    batched = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))
    inferred = pxu.M_hasnot(pxc.VodeParam, frozen=True)  # the hidden vodes' states

    @pxf.vmap(batched, in_axes=(0, 0), out_axes=0)
    def forward(x, y, *, model):
        return model(x, y)

    @pxf.vmap(batched, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
    def energy(x, *, model):
        y_ = model(x, None)
        return jax.lax.psum(model.energy(), "batch"), y_

    @pxf.jit(static_argnums=0)
    def train_on_batch(T, x, y, *, model, optim_w, optim_h):
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)  # feedforward initialisation, output clamped to y
        optim_h.init(inferred(model))
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                _, grads = pxf.value_and_grad(inferred.to([False, True]), has_aux=True)(energy)(x, model=model)
            optim_h.step(model, grads["model"])  # no allow_none: a missing gradient is an error, not a no-op
        optim_h.clear()
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, grads = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(
                x, model=model)
        optim_w.step(model, grads["model"], scale_by=1.0 / x.shape[0])

    @pxf.jit()
    def predict(x, *, model):
        model.eval()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            out = forward(x, None, model=model)
        return out.argmax(axis=-1)

    model = Model()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((batch, sizes[0])), None, model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(dt))  # initialised per minibatch in train_on_batch
        optim_w = pxu.Optim(weight_optimizer, pxu.M(pxnn.LayerParam)(model))
    return model, train_on_batch, predict, optim_w, optim_h


def _weights(model):
    return [np.array(layer.nn.weight.get()) for layer in model.layers]


def _check_learned(model, before):
    """Raise when a layer's weights did not change: the step was (partly) compiled away and its time means nothing.

    The first layer learns only if inference moved the hidden states, so
    every layer is checked.
    """
    unchanged = [k for k, (a, b) in enumerate(zip(_weights(model), before)) if np.array_equal(a, b)]
    if unchanged:
        raise RuntimeError(f"sanity check failed: the pcx training step did not change the weights of layer(s) "
                           f"{unchanged} (the model/optimizer wiring does not match this pcx version)")


def time_minibatches(sizes, batch, steps, dt, lr, minibatches, repeats, activation="tanh"):
    """Median seconds per minibatch of pcx (SGD on states and weights) on random data, and JAX's version.

    Parameters
    ----------
    sizes : list of int
        Units per layer, input first.
    batch, steps : int
        Minibatch size and inference steps.
    dt, lr : float
        Inference step (the state optimizer's SGD rate) and the weights' SGD rate.
    minibatches, repeats : int
        Minibatches per timed repeat and repeats (the median is returned).
    activation : {'tanh', 'gelu'}
    """
    import jax
    import jax.numpy as jnp
    import optax

    model, train_on_batch, _, optim_w, optim_h = _build(sizes, activation, batch, dt, lambda: optax.sgd(lr))
    rng = np.random.default_rng(0)
    n_batches = 8
    xs = jnp.asarray(rng.random((n_batches * batch, sizes[0])), dtype=jnp.float32)
    ys = jax.nn.one_hot(rng.integers(0, sizes[-1], n_batches * batch), sizes[-1])
    batches = [(xs[k * batch:(k + 1) * batch], ys[k * batch:(k + 1) * batch]) for k in range(n_batches)]

    def run(count):
        t = time.perf_counter()
        for k in range(count):
            xb, yb = batches[k % n_batches]
            train_on_batch(steps, xb, yb, model=model, optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready(model.layers[0].nn.weight.get())
        return (time.perf_counter() - t) / count

    w0 = _weights(model)
    run(2)  # compiles
    seconds = float(np.median([run(minibatches) for _ in range(repeats)]))
    _check_learned(model, w0)
    return {"seconds": seconds, "jax": str(jax.__version__)}


def time_epoch(data, sizes, batch, steps, dt, lr, activation="gelu", seed=0):
    """One epoch of pcx training (Adam on the weights, SGD of step ``dt`` on the states), then the test accuracy.

    Parameters
    ----------
    data : str
        ``.npz`` file with ``x_train`` (n, 784), ``y_train`` (n, 10) one-hot,
        ``x_test`` (m, 784) and ``labels_test`` (m,).
    sizes : list of int
    batch, steps : int
    dt, lr : float
    activation : {'tanh', 'gelu'}
    seed : int
        Minibatch order.

    Returns
    -------
    dict
        ``seconds`` (the epoch's training loop, without the first
        minibatch's compilation), ``compile_seconds`` (that first
        minibatch), ``eval_seconds`` (test predictions, compilation
        included), ``images`` trained (whole minibatches only),
        ``test_accuracy``, ``jax`` version.
    """
    import jax
    import jax.numpy as jnp
    import optax

    arrays = np.load(data)
    x_train = jnp.asarray(arrays["x_train"], dtype=jnp.float32)
    y_train = jnp.asarray(arrays["y_train"], dtype=jnp.float32)
    x_test = jnp.asarray(arrays["x_test"], dtype=jnp.float32)
    labels_test = np.asarray(arrays["labels_test"])
    n = x_train.shape[0]
    n_batches = n // batch
    if n_batches < 2:
        raise ValueError(f"data: needs at least 2 minibatches of {batch} training images, got {n} images")
    model, train_on_batch, predict, optim_w, optim_h = _build(sizes, activation, batch, dt, lambda: optax.adam(lr))
    order = np.random.default_rng(seed).permutation(n)
    w0 = _weights(model)

    def train(b):
        idx = order[b * batch:(b + 1) * batch]
        train_on_batch(steps, x_train[idx], y_train[idx], model=model, optim_w=optim_w, optim_h=optim_h)

    t0 = time.perf_counter()
    train(0)
    jax.block_until_ready(model.layers[0].nn.weight.get())
    t1 = time.perf_counter()
    for b in range(1, n_batches):
        train(b)
    jax.block_until_ready(model.layers[0].nn.weight.get())
    t2 = time.perf_counter()
    _check_learned(model, w0)
    # The test set in minibatches of the training size: one compiled shape (the remainder padded by repetition).
    m = x_test.shape[0]
    padded = -(-m // batch) * batch
    idx = np.arange(padded) % m
    predictions = np.concatenate([np.asarray(predict(x_test[idx[k:k + batch]], model=model))
                                  for k in range(0, padded, batch)])[:m]
    t3 = time.perf_counter()
    # The first minibatch's time is taken as compilation; its training work (one of n_batches) is added back.
    first = (t2 - t1) / (n_batches - 1)
    return {"seconds": t2 - t1 + first, "compile_seconds": t1 - t0 - first, "eval_seconds": t3 - t2,
            "images": n_batches * batch, "test_accuracy": float(np.mean(predictions == labels_test)),
            "jax": str(jax.__version__)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("minibatches", "epoch"):
        print("usage: pcx_runner.py {minibatches,epoch} '<json keyword arguments>'", file=sys.stderr)
        return 2
    kwargs = json.loads(argv[1])
    result = time_minibatches(**kwargs) if argv[0] == "minibatches" else time_epoch(**kwargs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
