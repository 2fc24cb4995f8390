"""Time the original PyTorch code of Laborieux et al. (2021) per minibatch, on random data of the real shape.

Nothing of the authors' code is in dynsim: this driver imports their
``model_utils.py`` (and the ``data_utils.py`` it star-imports) from a
checkout of their repository given on the command line, builds their
``P_MLP`` / ``P_CNN`` with the constructor arguments their ``main.py``
derives from a command line of theirs (:data:`SETTINGS`), and times one
minibatch of their centered EP (``--alg 'EP' --thirdphase``) exactly as the
body of their ``train`` loop runs it::

    neurons = model.init_neurons(mbs, device)
    neurons = model(x, y, neurons, T1, beta=0.0, criterion=criterion)       # free phase
    neurons_1 = copy(neurons)
    (argmax of the output for the running accuracy, .item())
    neurons = model(x, y, neurons, T2, beta=beta, criterion=criterion)      # nudged, +beta
    neurons_2 = copy(neurons)
    neurons = copy(neurons_1)
    neurons = model(x, y, neurons, T2, beta=-beta, criterion=criterion)     # nudged, -beta
    neurons_3 = copy(neurons)
    model.compute_syn_grads(x, y, neurons_2, neurons_3, (beta, -beta), criterion)
    optimizer.step()

``model``, ``init_neurons``, ``copy``, ``compute_syn_grads`` and the
activation functions are theirs; the optimizer is built as their
``main.py`` builds it (one parameter group per synapse, their rates, weight
decays and momentum). Their ``train`` itself is not called: it also runs
the test-set evaluation and the printing of every epoch. Their ``main.py``
is not imported either (it parses ``sys.argv`` and downloads the data sets
at import); ``torchvision`` and ``matplotlib``, imported but not used by
their model code, are replaced by empty placeholder modules for the import
when they are not installed.

**The data is random, of the real shape**: uniform pixels in [0, 1)
(normalised with their CIFAR-10 constants for CIFAR-10), labels uniform in
0..9, held on the CPU and moved to the device per minibatch as their loop
does. No data augmentation, no loader workers. The time of one minibatch
is from before the copy to the device to after the optimizer's step, with
``torch.cuda.synchronize()`` before each reading of the clock on CUDA;
seconds per epoch = ceil(training images / batch) x the median (the
training set their setting loads: 50,000 CIFAR-10 or 60,000 MNIST images;
their per-epoch test-set evaluation is not included).

Run::

    python -m dynsim.benchmarks.laborieux_runner --checkout .authors/laborieux-ep \\
        --setting mnist-mlp --device cpu --batches 20 --warmup 2 [--json]

References
----------
.. [1] A. Laborieux, M. Ernoult, B. Scellier, Y. Bengio, J. Grollier,
       D. Querlioz, "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing Its Gradient Estimator Bias", Front. Neurosci.
       15 (2021), 633674.
.. [2] The authors' code: https://github.com/Laborieux-Axel/Equilibrium-Propagation
       (``main.py``, ``model_utils.py``; this driver was written against
       commit 93660ed6c5b0ec07978b674a69c169ce32e8cd5f).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path

from dynsim.validation import ValidationError, fail, one_of, positive_int

REPOSITORY = "https://github.com/Laborieux-Axel/Equilibrium-Propagation"

_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)  # their main.py divides by 3 std

_CIFAR_CNN = dict(model="CNN", task="CIFAR10", channels=[128, 256, 512, 512], kernels=[3, 3, 3, 3], pools="mmmm",
                  strides=[1, 1, 1, 1], paddings=[1, 1, 1, 0], fc=[10], act="my_hard_sig", optim="sgd",
                  lrs=[0.25, 0.15, 0.1, 0.08, 0.05], wds=[3e-4] * 5, mmt=0.9, mbs=128, T1=250, thirdphase=True,
                  train_size=50_000)

SETTINGS = {
    "cifar10-conv": dict(
        _CIFAR_CNN, T2=25, betas=(0.0, 1.0), loss="cel", softmax=True,
        source="README.md, 'Training a recurrent CNN on CIFAR-10', Cross Entropy, 'EP with symmetric gradient "
               "estimate': python main.py --model 'CNN' --task 'CIFAR10' --data-aug --channels 128 256 512 512 "
               "--kernels 3 3 3 3 --pools 'mmmm' --strides 1 1 1 1 --paddings 1 1 1 0 --fc 10 --optim 'sgd' "
               "--lrs 0.25 0.15 0.1 0.08 0.05 --wds 3e-4 3e-4 3e-4 3e-4 3e-4 --mmt 0.9 --lr-decay --epochs 120 "
               "--act 'my_hard_sig' --todo 'train' --T1 250 --T2 25 --mbs 128 --alg 'EP' --betas 0.0 1.0 "
               "--thirdphase --loss 'cel' --softmax --save --device 0",
        changes="no data augmentation (random data); the per-epoch cosine learning-rate decay does not act within "
                "the timed minibatches"),
    "cifar10-conv-mse": dict(
        _CIFAR_CNN, T2=30, betas=(0.0, 0.5), loss="mse", softmax=False,
        source="README.md, 'Training a recurrent CNN on CIFAR-10', MSE, 'EP with symmetric gradient estimate': "
               "python main.py --model 'CNN' --task 'CIFAR10' --data-aug --channels 128 256 512 512 --kernels 3 3 3 3 "
               "--pools 'mmmm' --strides 1 1 1 1 --paddings 1 1 1 0 --fc 10 --optim 'sgd' --lrs 0.25 0.15 0.1 0.08 "
               "0.05 --wds 3e-4 3e-4 3e-4 3e-4 3e-4 --mmt 0.9 --lr-decay --epochs 120 --act 'my_hard_sig' --todo "
               "'train' --T1 250 --T2 30 --mbs 128 --alg 'EP' --thirdphase --betas 0.0 0.5 --loss 'mse' --save "
               "--device 0",
        changes="no data augmentation (random data); the per-epoch cosine learning-rate decay does not act within "
                "the timed minibatches"),
    "mnist-conv": dict(
        model="CNN", task="MNIST", channels=[32, 64], kernels=[5, 5], pools="mm", strides=[1, 1], paddings=[0, 0],
        fc=[10], act="hard_sigmoid", optim="adam", lrs=[5e-5, 1e-5, 8e-6], wds=None, mmt=0.0, mbs=100, T1=200,
        T2=10, betas=(0.0, 0.4), loss="mse", softmax=False, thirdphase=True, train_size=60_000,
        source="check/train_mnist_cnn.sh: python main.py --model 'CNN' --task 'MNIST' --channels 32 64 --kernels 5 5 "
               "--pools 'mm' --strides 1 1 --fc 10 --optim 'adam' --lrs 5e-5 1e-5 8e-6 --epochs 1 --act "
               "'hard_sigmoid' --todo 'train' --betas 0.0 0.4 --T1 200 --T2 10 --mbs 100 --device 0 "
               "(paddings: main.py's default 0 0)",
        changes="--thirdphase added (centered EP; the script is one-sided)"),
    "mnist-mlp": dict(
        model="MLP", task="MNIST", archi=[784, 512, 10], act="mysig", optim="adam", lrs=[5e-4, 5e-4], wds=None,
        mmt=0.0, mbs=50, T1=30, T2=10, betas=(0.0, 0.1), loss="mse", softmax=False, thirdphase=True,
        train_size=60_000,
        source="check/train_mnist.sh (the README points there for the MNIST MLP): python main.py --model 'MLP' --task "
               "'MNIST' --archi 784 512 10 --optim 'adam' --lrs 5e-4 5e-4 --epochs 2 --act 'mysig' --todo 'train' "
               "--betas 0.0 0.1 --T1 30 --T2 10 --check-thm --mbs 50 --device 0 --save",
        changes="--thirdphase added (centered EP; the script is one-sided); --check-thm dropped (a BPTT gradient "
                "check interleaved with training, not part of a training step)"),
}
"""The settings: their command line (``source``), what is changed here (``changes``) and the arguments it gives."""


@contextlib.contextmanager
def _placeholders_for_unused_imports():
    """Empty ``torchvision`` / ``matplotlib`` modules while their code is imported, for those not installed.

    ``model_utils.py`` and ``data_utils.py`` import both at module level, but
    the model classes and the training step use neither (torchvision serves
    their ``main.py``'s data loaders, matplotlib their plots).
    """
    added = []

    def missing(name):
        try:
            importlib.import_module(name)
            return False
        except ImportError:
            return True

    if missing("torchvision"):
        added.append("torchvision")
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    if missing("matplotlib"):
        mpl = types.ModuleType("matplotlib")
        mpl.use = lambda *args, **kwargs: None
        mpl.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, mpl.pyplot
        added += ["matplotlib", "matplotlib.pyplot"]
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def load_model_module(checkout):
    """Import the authors' ``model_utils`` from the checkout folder ``checkout``.

    Parameters
    ----------
    checkout : str or Path
        A checkout of their repository: the folder that holds ``model_utils.py``
        and ``data_utils.py``.

    Returns
    -------
    module
        Their ``model_utils`` (``P_MLP``, ``P_CNN``, ``copy``, ``make_pools``, activations).

    Raises
    ------
    ValidationError
        The folder does not hold their model module, or a different
        ``model_utils`` is already imported in this process.
    """
    folder = Path(checkout).expanduser()
    if not folder.is_dir():
        raise ValidationError(f"checkout must be a folder holding the authors' model_utils.py and data_utils.py "
                              f"({REPOSITORY}); {str(folder)!r} is not a folder")
    folder = folder.resolve()
    absent = [f for f in ("model_utils.py", "data_utils.py") if not (folder / f).is_file()]
    if absent:
        raise ValidationError(f"checkout {str(folder)!r} does not hold the authors' model module: "
                              f"{' and '.join(absent)} missing (a checkout of {REPOSITORY} is expected)")
    for name in ("model_utils", "data_utils"):
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != folder:
            raise ValidationError(f"a module {name!r} from {getattr(loaded, '__file__', None)!r} is already imported "
                                  f"in this process; cannot import the authors' one from {str(folder)!r}")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    with _placeholders_for_unused_imports():
        try:
            module = importlib.import_module("model_utils")
        except ImportError as exc:
            raise ImportError(f"importing the authors' model_utils from {str(folder)!r} failed: {exc}") from exc
    missing = [a for a in ("P_MLP", "P_CNN", "copy", "make_pools") if not hasattr(module, a)]
    if missing:
        raise ValidationError(f"{module.__file__!r} is not the authors' model module: no {', '.join(missing)}")
    return module


def _activation(mu, name):
    """The activation their ``main.py`` picks for ``--act name``."""
    import torch

    return {"mysig": getattr(mu, "my_sigmoid", None), "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "hard_sigmoid": getattr(mu, "hard_sigmoid", None), "my_hard_sig": getattr(mu, "my_hard_sig", None),
            "ctrd_hard_sig": getattr(mu, "ctrd_hard_sig", None)}[name]


def build(mu, setting, device):
    """Their model, optimizer and criterion for ``setting``, as their ``main.py`` builds them.

    Parameters
    ----------
    mu : module
        Their ``model_utils`` (:func:`load_model_module`).
    setting : dict
        One of :data:`SETTINGS`.
    device : torch.device

    Returns
    -------
    model, optimizer, criterion
    """
    import torch

    activation = _activation(mu, setting["act"])
    if setting["model"] == "MLP":
        model = mu.P_MLP(setting["archi"], activation=activation)
    else:
        in_size, in_channels = (28, 1) if setting["task"] == "MNIST" else (32, 3)
        model = mu.P_CNN(in_size, [in_channels] + setting["channels"], setting["kernels"], setting["strides"],
                         setting["fc"], mu.make_pools(setting["pools"]), setting["paddings"], activation=activation,
                         softmax=setting["softmax"])
    model.to(device)
    if setting["loss"] == "mse":
        criterion = torch.nn.MSELoss(reduction="none").to(device)
    else:
        criterion = torch.nn.CrossEntropyLoss(reduction="none").to(device)
    lrs, wds = setting["lrs"], setting["wds"]
    if len(lrs) != len(model.synapses):
        raise RuntimeError(f"the setting gives {len(lrs)} rates for {len(model.synapses)} synapses")
    groups = []
    for idx in range(len(model.synapses)):
        group = {"params": model.synapses[idx].parameters(), "lr": lrs[idx]}
        if wds is not None:
            group["weight_decay"] = wds[idx]
        groups.append(group)
    if setting["optim"] == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=setting["mmt"])
    else:
        optimizer = torch.optim.Adam(groups)
    return model, optimizer, criterion


def train_minibatch(mu, model, optimizer, criterion, x, y, device, setting):
    """One minibatch of their ``train`` loop (``alg='EP'``), in their order; returns the number right (free phase).

    The body of the ``for idx, (x, y) in enumerate(train_loader)`` loop of
    their ``model_utils.train`` for ``alg == 'EP'`` without ``random_sign``,
    ``save`` and ``check_thm``: the calls are theirs.
    """
    import torch
    import torch.nn.functional as F

    T1, T2 = setting["T1"], setting["T2"]
    beta_1, beta_2 = setting["betas"]
    x, y = x.to(device), y.to(device)
    neurons = model.init_neurons(x.size(0), device)
    neurons = model(x, y, neurons, T1, beta=beta_1, criterion=criterion)
    neurons_1 = mu.copy(neurons)
    with torch.no_grad():  # their running accuracy
        if not model.softmax:
            pred = torch.argmax(neurons[-1], dim=1).squeeze()
        else:
            pred = torch.argmax(F.softmax(model.synapses[-1](neurons[-1].view(x.size(0), -1)), dim=1), dim=1).squeeze()
        correct = (y == pred).sum().item()
    neurons = model(x, y, neurons, T2, beta=beta_2, criterion=criterion)
    neurons_2 = mu.copy(neurons)
    if setting["thirdphase"]:
        neurons = mu.copy(neurons_1)
        neurons = model(x, y, neurons, T2, beta=-beta_2, criterion=criterion)
        neurons_3 = mu.copy(neurons)
        model.compute_syn_grads(x, y, neurons_2, neurons_3, (beta_2, -beta_2), criterion)
    else:
        model.compute_syn_grads(x, y, neurons_1, neurons_2, (beta_1, beta_2), criterion)
    optimizer.step()
    return correct


def _device(device):
    import torch

    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ValidationError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValidationError(f"device {device!r}: CUDA is not available to this PyTorch ({torch.__version__})")
        try:
            return torch.device(device if device != "cuda" else "cuda:0")
        except RuntimeError as exc:
            raise ValidationError(f"device {device!r}: {exc}") from exc
    return torch.device("cpu")


ACTIVATIONS = ("mysig", "sigmoid", "tanh", "hard_sigmoid", "my_hard_sig", "ctrd_hard_sig")
"""The names their ``--act`` takes."""


EVAL_BATCH = 200
"""Minibatch of their test loader (``main.py``: ``DataLoader(..., batch_size=200)``)."""


class _Dataset:
    """What their ``evaluate`` reads of a loader's data set: its size and that it is not the training split."""

    train = False

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


class _Loader:
    """What their ``evaluate`` reads of a DataLoader: (x, y) minibatches and ``dataset``."""

    def __init__(self, batches):
        self.batches = batches
        self.dataset = _Dataset(sum(int(y.shape[0]) for _, y in batches))

    def __iter__(self):
        return iter(self.batches)


def time_minibatches(checkout, setting, device, n_batches, warmup, batch_size=None, seed=0, threads=None, act=None,
                     eval_images=0):
    """Median milliseconds per minibatch of the authors' centered EP training step, on random data.

    Parameters
    ----------
    checkout : str or Path
        Folder of a checkout of their repository (holding ``model_utils.py``).
    setting : {'cifar10-conv', 'cifar10-conv-mse', 'mnist-conv', 'mnist-mlp'}
        Network and hyperparameters (:data:`SETTINGS`).
    device : {'cpu', 'cuda', 'cuda:N'}
    n_batches : int
        Timed minibatches (>= 1).
    warmup : int
        Untimed minibatches first (>= 0).
    batch_size : int, optional
        Minibatch size; their setting's (``--mbs``) by default.
    seed : int
        ``torch.manual_seed`` before the model is built (as their ``--seed``)
        and the random data's seed.
    threads : int, optional
        ``torch.set_num_threads`` (CPU); PyTorch's default otherwise.
    act : str, optional
        Their ``--act`` (one of :data:`ACTIVATIONS`) instead of the
        setting's, e.g. ``'hard_sigmoid'`` to time the algorithm dynsim runs
        for a setting whose script uses their smooth ``'mysig'``.
    eval_images : int
        Then also time their ``evaluate`` (T1 free steps, minibatches of
        :data:`EVAL_BATCH`, as their test loader) on this many random images
        (0: not timed).

    Returns
    -------
    dict
        ``ms_per_minibatch`` (median over the timed minibatches),
        ``ms_mean``, ``ms_min``, ``seconds_per_epoch`` (ceil(train_size /
        batch_size) x the median), ``train_size``, ``minibatches_per_epoch``,
        ``setting``, ``device``, ``batch_size``, ``n_batches``, ``warmup``,
        ``T1``, ``T2``, ``beta``, ``threads``, ``torch``, ``data`` (what the
        data is: random, of the real shape), ``source`` and ``changes`` (their
        command line and what differs here), ``checkout``; ``eval_seconds``
        and ``eval_images`` when ``eval_images`` > 0.

    Raises
    ------
    ValidationError
        A bad argument, or a checkout folder without their model module.

    References
    ----------
    .. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep
           ConvNets by Drastically Reducing Its Gradient Estimator Bias",
           Front. Neurosci. 15 (2021).
    .. [2] https://github.com/Laborieux-Axel/Equilibrium-Propagation
    """
    one_of("setting", setting, tuple(SETTINGS))
    n_batches = positive_int("n_batches", n_batches)
    warmup = positive_int("warmup", warmup, minimum=0)
    eval_images = positive_int("eval_images", eval_images, minimum=0)
    cfg = dict(SETTINGS[setting])
    if act is not None and one_of("act", act, ACTIVATIONS) != cfg["act"]:
        cfg["changes"] = f"{cfg['changes']}; --act '{act}' instead of '{cfg['act']}'"
        cfg["act"] = act
    batch = cfg["mbs"] if batch_size is None else positive_int("batch_size", batch_size)
    seed = positive_int("seed", seed, minimum=0)
    if threads is not None:
        threads = positive_int("threads", threads)
    mu = load_model_module(checkout)
    import torch

    dev = _device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, optimizer, criterion = build(mu, cfg, dev)
    model.train()

    # Random data of the real shape, on the CPU as a DataLoader would give it.
    shape = (1, 28, 28) if cfg["task"] == "MNIST" else (3, 32, 32)
    total = n_batches + warmup
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.rand((total * batch,) + shape, generator=gen)
    if cfg["task"] == "CIFAR10":
        x_all = (x_all - torch.tensor(_CIFAR_MEAN).view(3, 1, 1)) / torch.tensor(_CIFAR_STD).view(3, 1, 1)
    y_all = torch.randint(0, 10, (total * batch,), generator=gen)
    batches = [(x_all[k * batch:(k + 1) * batch], y_all[k * batch:(k + 1) * batch]) for k in range(total)]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    ms = []
    for k, (x, y) in enumerate(batches):
        sync()
        t = time.perf_counter()
        train_minibatch(mu, model, optimizer, criterion, x, y, dev, cfg)
        sync()
        if k >= warmup:
            ms.append(1e3 * (time.perf_counter() - t))
    for p in model.parameters():
        if not bool(torch.isfinite(p).all()):
            raise FloatingPointError(f"setting {setting!r}: a parameter became non-finite during the timed steps")
    median = statistics.median(ms)
    per_epoch = math.ceil(cfg["train_size"] / batch)
    evaluation = {}
    if eval_images:
        x_eval = torch.rand((eval_images,) + shape, generator=gen)
        if cfg["task"] == "CIFAR10":
            x_eval = (x_eval - torch.tensor(_CIFAR_MEAN).view(3, 1, 1)) / torch.tensor(_CIFAR_STD).view(3, 1, 1)
        y_eval = torch.randint(0, 10, (eval_images,), generator=gen)
        loader = _Loader([(x_eval[a:a + EVAL_BATCH], y_eval[a:a + EVAL_BATCH])
                          for a in range(0, eval_images, EVAL_BATCH)])
        sync()
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # their accuracy line, of random labels
            mu.evaluate(model, loader, cfg["T1"], dev)
        sync()
        evaluation = {"eval_seconds": time.perf_counter() - t, "eval_images": eval_images}
    return {**evaluation,
        "setting": setting, "device": str(dev), "batch_size": batch, "n_batches": n_batches, "warmup": warmup,
        "T1": cfg["T1"], "T2": cfg["T2"], "beta": cfg["betas"][1], "thirdphase": cfg["thirdphase"], "act": cfg["act"],
        "ms_per_minibatch": median, "ms_mean": statistics.fmean(ms), "ms_min": min(ms),
        "train_size": cfg["train_size"], "minibatches_per_epoch": per_epoch,
        "seconds_per_epoch": per_epoch * median / 1e3,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "data": f"random, of the real shape {shape} (uniform pixels, labels uniform in 0..9); no augmentation",
        "source": cfg["source"], "changes": cfg["changes"], "checkout": str(Path(checkout).resolve()),
    }


def summary_line(result):
    """The result as one printed line."""
    r = result
    return (f"Laborieux et al.'s code, {r['setting']} (T1 {r['T1']}, T2 {r['T2']}+{r['T2']}, beta {r['beta']}, "
            f"batch {r['batch_size']}, act {r['act']}), {r['device']}, {r['threads']} thread(s), torch {r['torch']}: "
            f"{r['ms_per_minibatch']:.1f} ms per minibatch (median of {r['n_batches']}, after {r['warmup']} warm-up), "
            f"{r['seconds_per_epoch']:.1f} s per epoch of {r['train_size']:,} images "
            f"({r['minibatches_per_epoch']} minibatches, no test evaluation)"
            + (f"; their evaluate: {r['eval_seconds']:.2f} s for {r['eval_images']:,} images ({r['T1']} steps)"
               if "eval_seconds" in r else "") + "; RANDOM data of the real shape")


def main(argv=None):
    """Command line: time their code for one setting and print one line (and the result as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(
        prog="python -m dynsim.benchmarks.laborieux_runner",
        description="Time Laborieux et al. (2021)'s PyTorch EP code per minibatch on random data of the real shape. "
                    f"Needs a checkout of {REPOSITORY}.")
    parser.add_argument("--checkout", required=True, help="folder of the authors' checkout (holds model_utils.py)")
    parser.add_argument("--setting", required=True, choices=sorted(SETTINGS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batches", type=int, default=10, help="timed minibatches (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed minibatches first (default 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: their setting's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--eval-images", type=int, default=0,
                        help="also time their evaluate (T1 steps, minibatches of 200) on this many images (default 0)")
    parser.add_argument("--act", default=None, choices=ACTIVATIONS,
                        help="their --act instead of the setting's (default: the setting's)")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON (the last line)")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("PyTorch is not installed: the authors' code needs it")
    try:
        result = time_minibatches(args.checkout, args.setting, args.device, args.batches, args.warmup,
                                  batch_size=args.batch_size, seed=args.seed, threads=args.threads, act=args.act,
                                  eval_images=args.eval_images)
    except (ValidationError, ImportError) as exc:
        fail(str(exc))
    print(summary_line(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
