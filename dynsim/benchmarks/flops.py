"""Operation counts of EP and PC minibatches, and the machine's matrix-product rate they are measured against.

The efficiency the benchmarks print is

    efficiency = (FLOPs / matrix-product rate) / measured time,

the fraction of the machine's dense matrix-product rate (measured in the
same run, so a slower or busier machine lowers both) that the measured code
reaches on the products its algorithm needs. Only matrix products and the
plain gradient step are counted; elementwise work (activations, clipping,
Adam's moments) is not.
"""
from __future__ import annotations

import resource
import time

import numpy as np

__all__ = ["ep_flops", "pc_flops", "matmul_rate", "peak_memory_mb"]


def ep_flops(sizes, batch, free_steps, nudged_steps, nudged_phases):
    """Floating-point operations of one EP minibatch of a layered Hopfield network; a dict.

    A product of (m, k) and (k, n) matrices counts 2 m k n operations;
    elementwise work is not counted.

    - input projection, once per minibatch (shared by every phase):
      2 B n_0 n_1;
    - each iteration (one field evaluation, or one block sweep): for every
      coupling between free layers l, l+1 the two products rho(s_l) W and
      rho(s_{l+1}) W^T, 2 * 2 B n_l n_{l+1}; iterations = free + nudged
      phases x nudged;
    - weight update: the input block from one product with the difference of
      the two states, 2 B n_0 n_1; a block between free layers from one
      product over the two states stacked, 2 (2B) n_l n_{l+1}; the gradient
      step, 2 per parameter.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first (784, 512, 10).
    batch : int
        Minibatch size B.
    free_steps, nudged_steps : int
        Iterations of the free phase and of each nudged phase.
    nudged_phases : int
        1 for one-sided EP, 2 for centered EP (+beta and -beta).

    Returns
    -------
    dict
        ``projection``, ``iterations``, ``update`` and their ``total``.
    """
    B = batch
    projection = 2 * B * sizes[0] * sizes[1]
    per_iteration = sum(2 * 2 * B * sizes[l] * sizes[l + 1] for l in range(1, len(sizes) - 1))
    iterations = free_steps + nudged_phases * nudged_steps
    n_params = sum(sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1)) + sum(sizes[1:])
    update = (2 * B * sizes[0] * sizes[1] + sum(2 * 2 * B * sizes[l] * sizes[l + 1] for l in range(1, len(sizes) - 1))
              + 2 * n_params)
    return {"projection": projection, "iterations": iterations * per_iteration, "update": update,
            "total": projection + iterations * per_iteration + update}


def pc_flops(sizes, batch, steps):
    """Floating-point operations of one supervised PC minibatch (strict predictions, output clamped); a dict.

    - feedforward pass, once per minibatch (the start of inference and the
      first layer's prediction, constant): sum_l 2 B n_{l-1} n_l;
    - each inference step: the predictions of layers 2..L from the current
      state, sum_{l>=2} 2 B n_{l-1} n_l, and the errors sent down,
      eps_l W_l^T for l >= 2, the same again;
    - weight update: the predictions at the settled state, sum_{l>=2}
      2 B n_{l-1} n_l, the products f(x_{l-1})^T eps_l, sum_l 2 B n_{l-1} n_l,
      and the gradient step, 2 per parameter.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first (784, 128, 128, 128, 10).
    batch : int
        Minibatch size B.
    steps : int
        Inference steps.

    Returns
    -------
    dict
        ``projection``, ``iterations``, ``update`` and their ``total``.
    """
    B = batch
    L = len(sizes) - 1
    all_layers = sum(2 * B * sizes[l - 1] * sizes[l] for l in range(1, L + 1))
    upper = sum(2 * B * sizes[l - 1] * sizes[l] for l in range(2, L + 1))
    n_params = sum(sizes[l - 1] * sizes[l] for l in range(1, L + 1)) + sum(sizes[1:])
    update = upper + all_layers + 2 * n_params
    return {"projection": all_layers, "iterations": steps * 2 * upper, "update": update,
            "total": all_layers + steps * 2 * upper + update}


def matmul_rate(n, repeats, dtype=np.float64):
    """numpy's matrix-product rate in GFLOP/s: median over ``repeats`` products of two n x n matrices.

    Parameters
    ----------
    n : int
        Matrix size, >= 1 (2048 keeps BLAS at its peak on a CPU).
    repeats : int
        Timed products, >= 1; one untimed product first starts the threads
        and touches the pages.
    dtype : numpy floating dtype
        float64 (what dynsim computes in) or float32 (what PyTorch and pcx use).
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.dot(a, b, out=out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.dot(a, b, out=out)
        times.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / float(np.median(times)) / 1e9


def peak_memory_mb():
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
