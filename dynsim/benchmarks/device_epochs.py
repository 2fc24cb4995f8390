"""Training epochs of the torch backend on a device, and the authors' code beside them, for the GPU presets.

Presets (``DEVICE_PRESETS``), each with centered EP and the iteration counts,
batch size and optimizer of Laborieux et al. (2021)'s code for that network:

- ``cifar-lab``: their CIFAR-10 network, 3-128-256-512-512 (3x3 kernels,
  paddings 1 1 1 0, 2x2 max pooling after each) then 10 outputs, 250 free
  and 30 + 30 nudged synchronous (``fixed_point``) iterations, beta 0.5,
  batch 128, SGD with momentum 0.9 and their per-layer rates (their MSE
  setting). CIFAR-10 when its files are there, else random CIFAR-shaped
  data (the results say which);
- ``mnist-conv-lab``: their MNIST conv net 1-32-64 (5x5, max pooling) then
  10, 200 free and 10 + 10 nudged iterations, beta 0.4, batch 100, Adam;
- ``lab-conv``: the same network with dynsim's ``scenarios/mnist_ep.py``
  preset of that name (30 free / 10 + 10 nudged block sweeps, Adam 5e-4);
- ``mnist-mlp-lab``: 784-512-10, 30 free and 10 + 10 nudged iterations,
  batch 50, Adam 5e-4.

dynsim's networks use the hard sigmoid clip(s, 0, 1) of Scellier & Bengio
(their CIFAR code's ``my_hard_sig`` is clip(s / 2, 0, 1) and their MLP's a
smooth sigmoid): the cost per iteration is the same, the dynamics are not.
Timings (:func:`time_training`) run whole training steps through
:class:`dynsim.backends.torch.TorchTrainer`, the path a user trains with;
:func:`time_authors` runs the authors' own step
(:mod:`dynsim.benchmarks.laborieux_runner`), and :func:`compare` alternates
the two over rounds and reports medians.

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
.. [2] https://github.com/Laborieux-Axel/Equilibrium-Propagation (the authors' code, run beside, never copied).
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from dynsim.networks.architecture import Architecture
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions
from dynsim.validation import ValidationError, one_of, positive_int

__all__ = ["DEVICE_PRESETS", "build_network", "settle_options", "make_trainer", "load_data", "time_training",
           "time_authors", "compare", "train"]

DEVICE_PRESETS = {
    "cifar-lab": dict(dataset="cifar10", input_shape=(3, 32, 32),
                      conv=dict(channels=[128, 256, 512, 512], kernels=[3, 3, 3, 3], pools="mmmm",
                                paddings=[1, 1, 1, 0]),
                      scheme="fixed_point", free_steps=250, nudged_steps=30, beta=0.5, batch_size=128,
                      optimizer="sgd", lr=[0.25, 0.15, 0.1, 0.08, 0.05], momentum=0.9, init_gain=None,
                      authors="cifar10-conv-mse", train_size=50_000),
    "mnist-conv-lab": dict(dataset="mnist", input_shape=(1, 28, 28),
                           conv=dict(channels=[32, 64], kernels=[5, 5], pools="mm", paddings=[0, 0]),
                           scheme="fixed_point", free_steps=200, nudged_steps=10, beta=0.4, batch_size=100,
                           optimizer="adam", lr=[5e-5, 1e-5, 8e-6], momentum=0.0, init_gain=0.5,
                           authors="mnist-conv", train_size=60_000),
    "lab-conv": dict(dataset="mnist", input_shape=(1, 28, 28),
                     conv=dict(channels=[32, 64], kernels=[5, 5], pools="mm", paddings=[0, 0]),
                     scheme="block", free_steps=30, nudged_steps=10, beta=0.4, batch_size=100, optimizer="adam",
                     lr=[5e-4, 5e-4, 5e-4], momentum=0.0, init_gain=0.5, authors="mnist-conv", train_size=60_000),
    "mnist-mlp-lab": dict(dataset="mnist", input_shape=(1, 28, 28), hidden=[512], scheme="fixed_point",
                          free_steps=30, nudged_steps=10, beta=0.5, batch_size=50, optimizer="adam",
                          lr=[5e-4, 5e-4], momentum=0.0, init_gain=None, authors="mnist-mlp", train_size=60_000),
}
# The same network and protocol with block sweeps (odd layers, then even ones) and fewer of them: a timing variant.
# Its iteration counts are not validated for accuracy here (no CIFAR-10 files on these machines).
DEVICE_PRESETS["cifar-block"] = dict(DEVICE_PRESETS["cifar-lab"], scheme="block", free_steps=60, nudged_steps=15)
"""The GPU presets (see the module's docstring); ``authors`` names the matching setting of
:data:`dynsim.benchmarks.laborieux_runner.SETTINGS`."""


def build_network(preset, seed=0, dtype=np.float32):
    """The preset's dynsim network (a ConvHopfieldNetwork or a layered HopfieldNetwork) on the host."""
    p = DEVICE_PRESETS[one_of("preset", preset, tuple(DEVICE_PRESETS))]
    if "conv" in p:
        c = p["conv"]
        arch = Architecture.conv_stack(p["input_shape"], c["channels"], c["kernels"], c["pools"],
                                       paddings=c["paddings"], fc=[10])
        net = ConvHopfieldNetwork(arch, seed=seed, dtype=dtype)
        if p["init_gain"] is not None:
            # As scenarios/mnist_ep.py's lab-conv: at gain 1 the MNIST net's outputs start saturated and tied.
            net.theta = net.theta * net.dtype.type(p["init_gain"])
        return net
    return HopfieldNetwork.layered([int(np.prod(p["input_shape"])), *p["hidden"], 10], seed=seed, dtype=dtype)


def settle_options(preset, free_steps=None, nudged_steps=None, scheme=None):
    """(free, nudged) SettleOptions: fixed iteration counts, as the papers train."""
    p = DEVICE_PRESETS[preset]
    scheme = p["scheme"] if scheme is None else scheme
    free = SettleOptions(integrator=scheme, max_steps=free_steps or p["free_steps"], stop_at_steady_state=False)
    nudged = SettleOptions(integrator=scheme, max_steps=nudged_steps or p["nudged_steps"], stop_at_steady_state=False)
    return free, nudged


def make_trainer(preset, device="cpu", dtype=np.float32, seed=0, cuda_graph=False, autocast=None, **overrides):
    """A :class:`~dynsim.backends.torch.TorchTrainer` of the preset on ``device`` (and its network).

    ``autocast='bfloat16'`` runs its products in bfloat16 (:class:`~dynsim.backends.torch.TorchTrainer`).
    """
    from dynsim.backends.torch import TorchHopfieldNetwork, TorchTrainer, make_optimizer

    p = DEVICE_PRESETS[one_of("preset", preset, tuple(DEVICE_PRESETS))]
    unknown = set(overrides) - {"free_steps", "nudged_steps", "scheme"}
    if unknown:
        raise ValidationError(f"make_trainer overrides free_steps, nudged_steps and scheme only, got {sorted(unknown)}")
    net = TorchHopfieldNetwork(build_network(preset, seed, dtype), device=device)
    opt_args = {"momentum": p["momentum"]} if p["optimizer"] == "sgd" else {}
    optimizer = make_optimizer(p["optimizer"], net, p["lr"], **opt_args)
    free, nudged = settle_options(preset, overrides.get("free_steps"), overrides.get("nudged_steps"),
                                  overrides.get("scheme"))
    trainer = TorchTrainer(net, "ep-centered", optimizer, beta=p["beta"], options=free, nudged_options=nudged,
                           cuda_graph=cuda_graph, seed=seed, autocast=autocast)
    return trainer


def load_data(preset, device, data_dir=None, train_size=None, eval_size=None, dtype=np.float32, seed=0):
    """The preset's data set on ``device``: ``(x_train, labels_train, x_test, labels_test, description)``.

    CIFAR-10 comes from its files when they are there (:func:`dynsim.datasets.cifar.load_cifar10`), else as
    random CIFAR-shaped data (uniform pixels, uniform labels), and ``description`` says which.
    """
    import torch

    from dynsim.datasets.idx import DatasetError, load

    p = DEVICE_PRESETS[preset]
    try:
        splits = load(p["dataset"], data_dir=data_dir, download=False, validation_size=0, dtype=dtype)
        data = splits.as_dict(train_size, eval_size)
        xs, ys, xt, yt = data["train"].x, data["train"].labels, data["test"].x, data["test"].labels
        what = f"{p['dataset']} ({xs.shape[0]} training, {xt.shape[0]} test images)"
    except DatasetError:
        if p["dataset"] != "cifar10":
            raise
        rng = np.random.default_rng(seed)
        n, m = train_size or 50_000, eval_size or 10_000
        xs, xt = (rng.random((k, int(np.prod(p["input_shape"])))).astype(dtype) for k in (n, m))
        ys, yt = (rng.integers(0, 10, k) for k in (n, m))
        what = f"RANDOM CIFAR-shaped data ({n} training, {m} test images): no CIFAR-10 files here"
    as_t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    return as_t(xs), as_t(ys), as_t(xt), as_t(yt), what


def time_training(trainer, x, labels, batch, n_batches, warmup=1):
    """Median ms per training minibatch of ``batch`` examples over ``n_batches`` timed steps (after ``warmup``)."""
    import torch

    batch = positive_int("batch", batch)
    n_batches = positive_int("n_batches", n_batches)
    warmup = positive_int("warmup", warmup, minimum=0)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    times = []
    for b in range(warmup + n_batches):
        a = (b * batch) % max(1, x.shape[0] - batch + 1)
        sync()
        t0 = time.perf_counter()
        trainer.step(x[a:a + batch], labels[a:a + batch])
        sync()
        if b >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    trainer.check()
    return statistics.median(times)


def time_authors(checkout, preset, device, n_batches, warmup=1):
    """Median ms per minibatch of the authors' code for the preset's matching setting (random data)."""
    from dynsim.benchmarks.laborieux_runner import time_minibatches

    return time_minibatches(checkout, DEVICE_PRESETS[preset]["authors"], device, n_batches, warmup)


def compare(preset, x, labels, n_batches=5, rounds=2, authors_checkout=None, cuda_graph=None, seed=0,
            autocasts=(None,)):
    """Alternated rounds of dynsim (eager, and CUDA graphs on a GPU) and the authors' code; medians per contender.

    ``autocasts`` lists dynsim's product types to time (None: float32; ``'bfloat16'``: contenders named
    ``dynsim-eager-bfloat16`` and ``dynsim-graph-bfloat16``); the authors' code runs as it is.

    Returns
    -------
    dict
        ``{contender: {"ms_per_minibatch": median over rounds, "seconds_per_epoch": ...}}`` plus ``"ratios"``
        (the authors' time over each dynsim contender's).
    """
    p = DEVICE_PRESETS[preset]
    rounds = positive_int("rounds", rounds)
    graph_options = [False] if cuda_graph is False or x.device.type != "cuda" else [False, True]
    trainers = {}
    for cast in autocasts:
        for g in graph_options:
            tr = make_trainer(preset, device=x.device, seed=seed, cuda_graph=g, autocast=cast)
            trainers[("dynsim-graph" if g else "dynsim-eager") + ("" if cast is None else f"-{cast}")] = tr
    samples = {name: [] for name in trainers}
    if authors_checkout is not None:
        samples["authors"] = []
    failed = {}

    def measure(name, run):
        # A contender that fails (a CUDA graph capture, the authors' code) is reported; the others still run.
        if name in failed:
            return
        try:
            samples[name].append(run())
        except Exception as err:  # noqa: BLE001
            failed[name] = f"{type(err).__name__}: {err}"

    for _ in range(rounds):
        for name, tr in trainers.items():
            measure(name, lambda: time_training(tr, x, labels, p["batch_size"], n_batches))
        if authors_checkout is not None:
            measure("authors", lambda: time_authors(authors_checkout, preset, str(x.device), n_batches)
                    ["ms_per_minibatch"])
    per_epoch = math.ceil(p["train_size"] / p["batch_size"])
    out = {name: ({"error": failed[name]} if name in failed else
                  {"ms_per_minibatch": statistics.median(v), "rounds": v,
                   "seconds_per_epoch": statistics.median(v) * per_epoch / 1e3}) for name, v in samples.items()}
    if "authors" in out and "error" not in out["authors"]:
        out["ratios"] = {name: out["authors"]["ms_per_minibatch"] / out[name]["ms_per_minibatch"]
                         for name in trainers if "error" not in out[name]}
    out["minibatches_per_epoch"] = per_epoch
    return out


def train(preset, device, data, epochs, seed=0, cuda_graph=False, on_epoch=None, **overrides):
    """Train the preset for ``epochs`` on ``data`` (from :func:`load_data`); one dict per epoch."""
    x, y, xt, yt, _ = data
    batch = overrides.pop("batch_size", None) or DEVICE_PRESETS[preset]["batch_size"]
    trainer = make_trainer(preset, device=device, seed=seed, cuda_graph=cuda_graph, **overrides)
    rows = []
    for epoch in range(1, positive_int("epochs", epochs) + 1):
        figures = trainer.train_epoch(x, y, batch)
        figures["test_error"] = trainer.evaluate(xt, yt)
        figures["epoch"] = epoch
        rows.append(figures)
        if on_epoch is not None:
            on_epoch(figures)
    return rows, trainer
