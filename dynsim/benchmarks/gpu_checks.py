"""Every check that needs a GPU, in one prepared run: agreement on CUDA with the Numba path, timings, short training.

``python -m dynsim.benchmarks.gpu_checks --out FOLDER [--authors-checkout PATH] [--data-dir DIR]`` runs, each
section on its own so that one failure does not hide the others:

1. ``agreement``: the torch backend on CUDA against the Numba path on the CPU,
   float64 and float32, on the networks of ``tests/test_torch_backend.py``
   and on the MNIST conv net: states after the free and nudged phases,
   centered-EP and CHL updates, three Adam training steps, eager and
   replayed as a CUDA graph (largest absolute differences);
2. ``precision``: the CIFAR-10 network's centered-EP update in float32
   without and with TF32, and with bfloat16 products, against float64 on
   the GPU (cosine, relative error);
3. ``timings``: :func:`dynsim.benchmarks.device_epochs.compare` for every
   preset, alternating dynsim (float32, and bfloat16 products) and the
   authors' code (medians, ratios);
4. ``training``: one epoch of ``mnist-mlp-lab`` and of ``lab-conv`` on MNIST
   (when its files are in ``--data-dir``), and of ``lab-conv`` with
   bfloat16 products, test error and seconds;
5. ``settling`` (asked for by name): the CIFAR network's free-phase residual
   and predictions after k fixed-point or block sweeps, against 500 block
   sweeps;
7. ``pc`` (asked for by name): predictive coding on pcx's benchmark network,
   agreement with Numba and ms per minibatch beside pcx (when it imports);
6. ``iterations`` (asked for by name): the MNIST conv net trained two epochs
   with block 30 / 10 + 10, fixed-point 30 / 10 + 10 and fixed-point
   200 / 10 + 10 (the authors' counts), test error per epoch.
8. ``fit`` (asked for by name): the training scenarios' loop on the device
   (:func:`dynsim.backends.torch.fit.fit_on_device`) against ``fit`` on the
   Numba path, conv PC and centered EP on 784-512-10, float64 parameters
   after two epochs, then a float32 epoch of each (CUDA graph on a GPU).

Results go to ``FOLDER/gpu_checks.json`` (rewritten after each section) and
to standard output. Needs PyTorch with CUDA, numpy and Numba; nothing is
installed. ``--device cpu --quick`` runs the same code on small sizes (a
smoke test of the script itself).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from pathlib import Path

import numpy as np

QUICK = dict(agreement_batch=4, time_batches=1, rounds=1, train_size=600, eval_size=200)
FULL = dict(agreement_batch=16, time_batches=5, rounds=2, train_size=None, eval_size=None)


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def agreement(device, batch):
    import torch

    from dynsim.backends.torch import TorchAdam, TorchHopfieldNetwork, TorchTrainer, estimate, relax
    from dynsim.learning.rules import gradient_estimate
    from dynsim.networks import Architecture, Conv, ConvHopfieldNetwork, Dense, Group, HopfieldNetwork
    from dynsim.relax.phases import SettleOptions, settle
    from dynsim.training.optimizers import Adam

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    def nets(dtype):
        yield "dense 20-15-12-5", HopfieldNetwork.layered([20, 15, 12, 5], seed=1, dtype=dtype)
        yield "conv 1x12x12-4-6-5", ConvHopfieldNetwork(
            Architecture.conv_stack((1, 12, 12), [4, 6], [3, 3], "mm", fc=[5]), seed=2, dtype=dtype)
        groups = [Group("in", (2, 11, 11)), Group("c1", (3, 2, 2)), Group("c2", (4, 2, 2), activation="tanh"),
                  Group("out", 5, activation="linear")]
        couplings = [Conv("in", "c1", kernel_size=3, stride=2, pool="avg", pool_size=2),
                     Conv("c1", "c2", kernel_size=2, padding=1, pool="max", pool_size=2, pool_stride=1),
                     Dense("c2", "out")]
        yield "conv avg/strided/overlapping", ConvHopfieldNetwork(Architecture(groups, couplings), seed=3, dtype=dtype)
        net = ConvHopfieldNetwork(Architecture.conv_stack((1, 28, 28), [32, 64], [5, 5], "mm", fc=[10]), seed=4,
                                  dtype=dtype)
        net.theta = net.theta * net.dtype.type(0.5)
        yield "MNIST conv 1-32-64-10", net

    rows = []
    free = SettleOptions(integrator="block", max_steps=30, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="block", max_steps=10, stop_at_steady_state=False)
    steady = SettleOptions(integrator="fixed_point", max_steps=400, atol=1e-5, rtol=1e-5, not_converged="ignore")
    for dtype in (np.float64, np.float32):
        for name, net in nets(dtype):
            rng = np.random.default_rng(0)
            x = rng.random((batch, net.n_input)).astype(dtype)
            labels = rng.integers(0, net.n_output, batch)
            y = np.eye(net.n_output, dtype=dtype)[labels]
            tn = TorchHopfieldNetwork(net, device=device)
            row = {"network": name, "dtype": np.dtype(dtype).name}
            ref = settle(net, x, None, None, 0.0, False, free)
            got = relax(tn, tn.zeros(batch), tn.input_drive(x), free)
            row["free state"] = _max_abs(tn.flatten(got.state).cpu(), ref.state)
            ref_n = settle(net, x, ref.state, y, 0.4, False, nudged)
            got_n = relax(tn, got.state, tn.input_drive(x), nudged, beta=0.4, target=tn.tensor(y))
            row["nudged state"] = _max_abs(tn.flatten(got_n.state).cpu(), ref_n.state)
            ref_s = settle(net, x, None, None, 0.0, False, steady)
            got_s = relax(tn, tn.zeros(batch), tn.input_drive(x), steady, check_every=1)
            row["steady steps (numba, torch)"] = [int(ref_s.integration.n_steps), got_s.steps]
            for rule in ("ep-centered", "chl"):
                g_ref = gradient_estimate(rule, net, x, y, beta=0.4, options=free, nudged_options=nudged).gradient
                g = estimate(tn, rule, tn.tensor(x), tn.tensor(y), 0.4, free, nudged).gradient.cpu().numpy()
                row[f"{rule} update"] = _max_abs(g, g_ref)
                row[f"{rule} update scale"] = float(np.abs(g_ref).max())
            batches = [(rng.random((batch, net.n_input)).astype(dtype), rng.integers(0, net.n_output, batch))
                       for _ in range(3)]
            start = net.theta.copy()
            modes = [False, True] if device.startswith("cuda") else [False]
            results = {}
            for graph in modes:
                tn2 = TorchHopfieldNetwork(net, device=device)
                tr = TorchTrainer(tn2, "ep-centered", TorchAdam(tn2, 1e-3), beta=0.4, options=free,
                                  nudged_options=nudged, cuda_graph=graph)
                for xb, lb in batches:
                    tr.step(tn2.tensor(xb), torch.as_tensor(lb, device=device))
                results[graph] = tn2.host_theta()
            opt = Adam(net, 1e-3)
            for xb, lb in batches:
                est = gradient_estimate("ep-centered", net, xb, np.eye(net.n_output, dtype=dtype)[lb], beta=0.4,
                                        options=free, nudged_options=nudged)
                opt.step(net.theta, est.gradient)
            row["3 Adam steps, eager"] = _max_abs(results[False], net.theta)
            if True in results:
                row["3 Adam steps, CUDA graph"] = _max_abs(results[True], net.theta)
            row["parameter change"] = _max_abs(net.theta, start)
            rows.append(row)
            print("agreement", json.dumps(row), flush=True)
    return rows


def precision(device, batch):
    import torch

    from dynsim.backends.torch import TorchHopfieldNetwork, estimate, relax
    from dynsim.backends.torch.training import autocast_context
    from dynsim.benchmarks.device_epochs import build_network, settle_options

    net64 = build_network("cifar-lab", seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    x = rng.random((batch, net64.n_input))
    y = np.eye(10)[rng.integers(0, 10, batch)]
    out = {}
    t64 = TorchHopfieldNetwork(net64, device=device)
    for scheme in ("fixed_point", "block"):
        free, nudged = settle_options("cifar-lab", scheme=scheme)
        # How settled the float64 free phase is: its residual after the 250 iterations.
        ph = relax(t64, t64.zeros(batch), t64.input_drive(x), free)
        ref = estimate(t64, "ep-centered", t64.tensor(x), t64.tensor(y), 0.5, free, nudged).gradient.double()
        row = {"float64 free residual (max over samples)": float(ph.residual.max())}
        # float32, float32 with TF32, and float32 with bfloat16 products and convolutions (operands and results;
        # float32 states): TorchTrainer's autocast='bfloat16'.
        for name, tf32, cast in (("float32", False, None), ("float32 + TF32", True, None),
                                 ("float32 + bfloat16 products", False, "bfloat16")):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            t32 = TorchHopfieldNetwork(net64, device=device, dtype=np.float32)
            with autocast_context(device, cast):
                g = estimate(t32, "ep-centered", t32.tensor(x), t32.tensor(y), 0.5, free, nudged).gradient.double()
            row[name] = {"cosine to float64": float(torch.dot(g, ref) / (g.norm() * ref.norm())),
                         "relative error": float((g - ref).norm() / ref.norm()),
                         "cosine per block": {
                             block: float(torch.dot(g[sl], ref[sl]) / (g[sl].norm() * ref[sl].norm() + 1e-300))
                             for block, sl in net64.parameter_blocks().items()}}
        out[scheme] = row
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    print("precision", json.dumps(out), flush=True)
    return out


def settling(device, batch, ks=(10, 20, 30, 40, 60, 100, 250), reference_steps=500):
    """CIFAR network, float32, random data: the free phase's residual and predictions after k sweeps per scheme."""
    import torch

    from dynsim.backends.torch import TorchHopfieldNetwork, relax
    from dynsim.benchmarks.device_epochs import build_network
    from dynsim.relax.phases import SettleOptions

    torch.backends.cudnn.allow_tf32 = False
    net = TorchHopfieldNetwork(build_network("cifar-lab", seed=0, dtype=np.float32), device=device)
    x = torch.rand((batch, net.group_sizes[0]), device=device)
    drive = net.input_drive(x)
    ref = relax(net, net.zeros(batch), drive, SettleOptions(integrator="block", max_steps=reference_steps,
                                                            stop_at_steady_state=False))
    ref_pred = ref.state[-1].argmax(1)
    out = {"reference": f"{reference_steps} block sweeps, residual max {float(ref.residual.max()):.3g}"}
    for scheme in ("fixed_point", "block"):
        rows = {}
        for k in ks:
            ph = relax(net, net.zeros(batch), drive, SettleOptions(integrator=scheme, max_steps=k,
                                                                   stop_at_steady_state=False))
            rows[k] = {"residual max": float(ph.residual.max()), "residual median": float(ph.residual.median()),
                       "same prediction as reference": float((ph.state[-1].argmax(1) == ref_pred).float().mean()),
                       "output max abs difference": float((ph.state[-1] - ref.state[-1]).abs().max())}
        out[scheme] = rows
    print("settling", json.dumps(out), flush=True)
    return out


def iterations(device, data_dir, epochs=2, train_size=None, eval_size=None):
    """The MNIST conv net with lab-conv's optimizer and beta, three relaxation protocols: test error per epoch."""
    from dynsim.benchmarks.device_epochs import load_data, train

    data = load_data("lab-conv", device, data_dir, train_size, eval_size)
    out = {"data": data[4]}
    for scheme, free, nudged in (("block", 30, 10), ("fixed_point", 30, 10), ("fixed_point", 200, 10)):
        key = f"{scheme} {free}/{nudged}+{nudged}"
        try:
            rows, _ = train("lab-conv", device, data, epochs, cuda_graph=device.startswith("cuda"), scheme=scheme,
                            free_steps=free, nudged_steps=nudged)
            out[key] = [{k: r[k] for k in ("epoch", "train_error", "test_error", "seconds", "ms_per_batch")}
                        for r in rows]
        except Exception:  # noqa: BLE001
            out[key] = {"error": traceback.format_exc(limit=6)}
        print("iterations", key, json.dumps(out[key]), flush=True)
    return out


def _pc_agreement(net, device_class, device, batch, options, rng, label):
    """One dtype's agreement row of a PC network on the device against the Numba path.

    The inference state and strict-PC update of one random minibatch, then three Adam steps (eager, and as a
    CUDA graph on a CUDA device) against :class:`~dynsim.training.optimizers.Adam` on the host; ``net`` is
    left at the host's parameters after those steps.
    """
    import torch

    from dynsim.backends.torch import TorchAdam, TorchTrainer, estimate
    from dynsim.learning.rules import gradient_estimate
    from dynsim.training.optimizers import Adam

    dtype = net.dtype
    n_in, n_out = net.group_sizes[0], net.group_sizes[-1]
    x = rng.random((batch, n_in)).astype(dtype)
    y = np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, batch)]
    tn = device_class(net, device=device)
    ref = gradient_estimate("pc-strict", net, x, y, options=options)
    got = estimate(tn, "pc-strict", tn.tensor(x), tn.tensor(y), options=options)
    row = {"dtype": np.dtype(dtype).name,
           "inference state": _max_abs(tn.flatten(got.phases["inference"].state).cpu(), ref.inference.state),
           "update": _max_abs(got.gradient.cpu(), ref.gradient), "update scale": float(np.abs(ref.gradient).max())}
    batches = [(rng.random((batch, n_in)).astype(dtype), rng.integers(0, n_out, batch)) for _ in range(3)]
    stepped = {}
    for graph in ([False, True] if str(device).startswith("cuda") else [False]):
        tn2 = device_class(net, device=device)
        trainer = TorchTrainer(tn2, "pc-strict", TorchAdam(tn2, 1e-3), options=options, cuda_graph=graph)
        for xb, lb in batches:
            trainer.step(tn2.tensor(xb), torch.as_tensor(lb, device=device))
        stepped["graph" if graph else "eager"] = tn2.host_theta()
    opt = Adam(net, 1e-3)
    for xb, lb in batches:
        opt.step(net.theta, gradient_estimate("pc-strict", net, xb, np.eye(n_out, dtype=dtype)[lb],
                                              options=options).gradient)
    for key, theta in stepped.items():
        row[f"3 Adam steps, {key}"] = _max_abs(theta, net.theta)
    print(f"{label} agreement", json.dumps(row), flush=True)
    return row


def conv_predictive_coding(device, batch, minibatches):
    """Convolutional PC on the device: agreement with the Numba ConvPCNetwork, then ms per training minibatch.

    The Fashion-MNIST network of the README (1-32-64, 5x5 kernels, max
    pooling, tanh, 10 outputs), strict PC with 5 Euler steps of 0.05, Adam.
    Agreement: float64 and float32 inference states, updates and three
    Adam steps against the Numba path on the CPU; timing: eager and (on
    CUDA) one training step captured as a CUDA graph, batch 128, float32.
    """
    import torch

    from dynsim.backends.torch import TorchAdam, TorchConvPCNetwork, TorchTrainer
    from dynsim.benchmarks.device_epochs import time_training
    from dynsim.networks import Architecture, Conv, ConvPCNetwork, Dense, Group
    from dynsim.relax.phases import SettleOptions

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    arch = Architecture([Group("input", (1, 28, 28), "tanh"), Group("conv_1", (32, 12, 12), "tanh"),
                         Group("conv_2", (64, 4, 4), "tanh"), Group("output", (10,), "tanh")],
                        [Conv("input", "conv_1", 5, pool="max"), Conv("conv_1", "conv_2", 5, pool="max"),
                         Dense("conv_2", "output")])
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    rng = np.random.default_rng(0)
    out = {"agreement": [_pc_agreement(ConvPCNetwork(arch, seed=0, dtype=dtype), TorchConvPCNetwork, device, batch,
                                       options, rng, "conv pc") for dtype in (np.float64, np.float32)]}
    net = ConvPCNetwork(arch, seed=0, dtype=np.float32)
    x = torch.rand((8 * 128, 784), device=device)
    labels = torch.randint(0, 10, (8 * 128,), device=device)
    out["ms per minibatch of 128"] = {}
    for graph in ([False, True] if str(device).startswith("cuda") else [False]):
        tn = TorchConvPCNetwork(net, device=device)
        trainer = TorchTrainer(tn, "pc-strict", TorchAdam(tn, 3e-4), options=options, cuda_graph=graph)
        ms = time_training(trainer, x, labels, 128, minibatches)
        out["ms per minibatch of 128"]["graph" if graph else "eager"] = ms
        print("conv pc", "graph" if graph else "eager", f"{ms:.2f} ms per minibatch", flush=True)
    return out


def predictive_coding(device, batch, minibatches, rounds):
    """PC on the device: agreement with Numba on pcx's benchmark network, and ms per minibatch beside pcx.

    The network of pcx's benchmark (784-128-128-128-10, GELU, 5 Euler inference steps of 0.05, batch 128).
    pcx (JAX) is timed in the same process when it imports (``dynsim.benchmarks.pcx_runner``, SGD on the
    weights as there; dynsim uses Adam, one more elementwise pass per step).
    """
    import statistics

    import torch

    from dynsim.backends.torch import TorchAdam, TorchPCNetwork, TorchTrainer
    from dynsim.benchmarks.device_epochs import time_training
    from dynsim.networks import PCNetwork
    from dynsim.relax.phases import SettleOptions

    torch.backends.cuda.matmul.allow_tf32 = False
    sizes = [784, 128, 128, 128, 10]
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    rng = np.random.default_rng(0)
    out = {"agreement": [_pc_agreement(PCNetwork(sizes, activation="gelu", init="fan-in", seed=0, dtype=dtype),
                                       TorchPCNetwork, device, batch, options, rng, "pc")
                         for dtype in (np.float64, np.float32)]}
    net = PCNetwork(sizes, activation="gelu", init="fan-in", seed=0, dtype=np.float32)
    x = torch.rand((8 * 128, 784), device=device)
    labels = torch.randint(0, 10, (8 * 128,), device=device)
    contenders = {}
    for graph in ([False, True] if device.startswith("cuda") else [False]):
        tn = TorchPCNetwork(net, device=device)
        contenders["dynsim-graph" if graph else "dynsim-eager"] = TorchTrainer(
            tn, "pc-strict", TorchAdam(tn, 3e-4), options=options, cuda_graph=graph)
    samples = {name: [] for name in contenders}
    samples["pcx"] = []
    errors = {}
    for _ in range(rounds):
        for name, tr in contenders.items():
            samples[name].append(time_training(tr, x, labels, 128, minibatches))
        if "pcx" not in errors:
            try:
                from dynsim.benchmarks.pcx_runner import time_minibatches

                r = time_minibatches(sizes, 128, 5, 0.05, 3e-4, minibatches, 1, activation="gelu")
                samples["pcx"].append(1e3 * r["seconds"])
                out["pcx jax"] = r["jax"]
            except Exception as err:  # noqa: BLE001 - pcx pins an older JAX than the GPU image's
                errors["pcx"] = f"{type(err).__name__}: {err}"
    per_epoch = -(-60_000 // 128)
    out["timings"] = {name: ({"error": errors[name]} if name in errors else
                             {"ms_per_minibatch": statistics.median(v), "rounds": v,
                              "seconds_per_epoch": statistics.median(v) * per_epoch / 1e3})
                      for name, v in samples.items()}
    print("pc timings", json.dumps(out["timings"]), flush=True)
    return out


def timings(device, cfg, authors, data_dir, presets, variants=("float32", "TF32")):
    import torch

    from dynsim.benchmarks.device_epochs import compare, load_data

    out = {}
    # PyTorch's defaults: TF32 in cuDNN's convolutions, not in matrix products. Both contenders run under each
    # setting in turn: full float32, then TF32 in both.
    for variant in variants:
        tf32 = variant == "TF32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        # cudnn.benchmark: cuDNN times its algorithms for each new shape and keeps the fastest (both contenders).
        torch.backends.cudnn.benchmark = variant == "cudnn.benchmark"
        for preset in presets:
            if tf32 and "conv" not in preset and "cifar" not in preset:
                continue  # TF32 changes convolutions (cuDNN's default) and matrix products; the MLP's are tiny
            key = preset + ("" if variant == "float32" else " " + variant)
            try:
                x, labels, _, _, what = load_data(preset, device, data_dir, train_size=cfg["train_size"] or 2000,
                                                  eval_size=cfg["eval_size"] or 100)
                t0 = time.perf_counter()
                # Under full float32, dynsim also runs with bfloat16 products (the authors' code has no such option).
                r = compare(preset, x, labels, n_batches=cfg["time_batches"], rounds=cfg["rounds"],
                            authors_checkout=authors,
                            autocasts=(None, "bfloat16") if variant == "float32" else (None,))
                r["data"] = what
                r["wall seconds"] = time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - report and go on to the next preset
                r = {"error": traceback.format_exc(limit=6)}
            out[key] = r
            print("timing", key, json.dumps(r), flush=True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return out


def training(device, cfg, data_dir):
    from dynsim.benchmarks.device_epochs import load_data, train

    out = {}
    # One epoch each; lab-conv again with bfloat16 products, for its test error beside float32's.
    for preset, cast in (("mnist-mlp-lab", None), ("lab-conv", None), ("lab-conv", "bfloat16")):
        key = preset + ("" if cast is None else f" {cast}")
        try:
            data = load_data(preset, device, data_dir, cfg["train_size"], cfg["eval_size"])
            graph = device.startswith("cuda")
            rows, _ = train(preset, device, data, 1, cuda_graph=graph, autocast=cast)
            out[key] = {"data": data[4], "cuda_graph": graph, **rows[0]}
        except Exception:  # noqa: BLE001
            out[key] = {"error": traceback.format_exc(limit=6)}
        print("training", key, json.dumps(out[key]), flush=True)
    return out


def fit_agreement(device, n_train, epochs=2):
    """``fit_on_device`` on ``device`` against ``fit`` on the Numba path: the training scenarios' own loop.

    Conv PC (Adam) and centered EP on a dense Hopfield network (Adam), float64, random data with the label
    shown in the input, a warm-up-cosine schedule: the largest parameter difference after ``epochs`` epochs
    and whether the epochs' errors are equal; then the seconds of a float32 epoch of each on the device.
    """
    from dynsim.backends.torch.fit import fit_on_device
    from dynsim.datasets.tasks import Task
    from dynsim.networks import Architecture, ConvPCNetwork, HopfieldNetwork
    from dynsim.relax.phases import SettleOptions
    from dynsim.training.loop import fit
    from dynsim.training.optimizers import Adam
    from dynsim.training.schedules import make_schedule

    def task(name, n, seed, dtype):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, n)
        x = rng.random((n, 784))
        x[np.arange(n), labels * 7] += 1.0
        return Task(name, x.astype(dtype), labels, np.eye(10, dtype=dtype)[labels], image_shape=(1, 28, 28))

    cases = {
        "conv-pc": (lambda dtype: ConvPCNetwork(Architecture.conv_stack((1, 28, 28), [8, 16], [5, 5], "mm", fc=[10]),
                                                seed=0, dtype=dtype),
                    "pc-strict", dict(options=SettleOptions(integrator="euler", dt=0.05, max_steps=5,
                                                            stop_at_steady_state=False)), 128),
        "ep-mlp": (lambda dtype: HopfieldNetwork.layered([784, 512, 10], seed=0, dtype=dtype, init_gain=0.5),
                   "ep-centered", dict(beta=0.1, options=SettleOptions(integrator="projected_euler", dt=1.0,
                                                                       max_steps=30, stop_at_steady_state=False),
                                       nudged_options=SettleOptions(integrator="projected_euler", dt=1.0,
                                                                    max_steps=10, stop_at_steady_state=False)), 50),
    }
    out = {}
    for name, (make, rule, kw, batch) in cases.items():
        data = {"train": task("train", n_train, 0, np.float64), "test": task("test", 200, 1, np.float64)}
        host, dev = make(np.float64), make(np.float64)
        schedule = make_schedule("warmup-cosine")
        ref = fit(host, data, rule, Adam(host, 1e-3), epochs, batch, progress=False, lr_schedule=schedule, **kw)
        got = fit_on_device(dev, data, rule, Adam(dev, 1e-3), epochs, batch, device=device, lr_schedule=schedule,
                            **kw)
        row = {"theta float64": _max_abs(dev.theta, host.theta),
               "errors equal": bool(np.array_equal(got["test_error"], ref["test_error"], equal_nan=True)),
               "test error": [float(v) for v in got["test_error"]]}
        data32 = {k: Task(t.name, t.x.astype(np.float32), t.labels, t.targets.astype(np.float32))
                  for k, t in data.items()}
        net32 = make(np.float32)
        hist = fit_on_device(net32, data32, rule, Adam(net32, 1e-3), 1, batch, device=device,
                             cuda_graph=device.startswith("cuda"), **kw)
        row["float32 epoch seconds"] = float(hist["seconds"][-1])
        row["float32 ms per minibatch"] = 1e3 * float(hist["seconds"][-1]) / -(-n_train // batch)
        out[name] = row
        print("fit", name, json.dumps(row), flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--authors-checkout", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sections", default="agreement,precision,timings,training")
    p.add_argument("--presets", default="mnist-mlp-lab,lab-conv,mnist-conv-lab,cifar-lab,cifar-block")
    p.add_argument("--variants", default="float32,TF32", help="timing variants: float32, TF32, cudnn.benchmark")
    args = p.parse_args(argv)
    import torch

    cfg = QUICK if args.quick else FULL
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
              "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import numba
        report["numba"] = numba.__version__
    except ImportError as err:
        report["numba"] = f"missing: {err}"
    print(json.dumps(report), flush=True)

    def save():
        tmp = out_dir / "gpu_checks.json.tmp"
        tmp.write_text(json.dumps(report, indent=1, default=str))
        tmp.replace(out_dir / "gpu_checks.json")

    sections = args.sections.split(",")
    runners = {"agreement": lambda: agreement(args.device, cfg["agreement_batch"]),
               "precision": lambda: precision(args.device, 4 if args.quick else 32),
               "timings": lambda: timings(args.device, cfg, args.authors_checkout, args.data_dir,
                                          args.presets.split(","), args.variants.split(",")),
               "pc": lambda: predictive_coding(args.device, cfg["agreement_batch"], 5 if args.quick else 50,
                                               cfg["rounds"]),
               "conv-pc": lambda: conv_predictive_coding(args.device, cfg["agreement_batch"], 3 if args.quick else 30),
               "settling": lambda: (settling(args.device, 2, (1, 2), 3) if args.quick else settling(args.device, 128)),
               "iterations": lambda: iterations(args.device, args.data_dir, 1 if args.quick else 2, cfg["train_size"],
                                                cfg["eval_size"]),
               "training": lambda: training(args.device, cfg, args.data_dir),
               "fit": lambda: fit_agreement(args.device, 300 if args.quick else 6000)}
    for name in sections:
        t0 = time.perf_counter()
        try:
            report[name] = runners[name]()
        except Exception:  # noqa: BLE001 - one section's failure must not hide the others
            report[name] = {"error": traceback.format_exc(limit=8)}
            print(name, "FAILED", report[name]["error"], flush=True)
        report[f"{name} seconds"] = time.perf_counter() - t0
        print(f"section {name}: {report[f'{name} seconds']:.1f} s", flush=True)
        save()
    return report


if __name__ == "__main__":
    main()
