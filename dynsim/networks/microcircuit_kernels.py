"""Compiled vector field of the dendritic error microcircuit (:mod:`dynsim.networks.microcircuit`).

The free state ``s`` (batch, n_free) holds, side by side, the somatic
potentials of the groups 1..G-1 in the order pyr_1, int_1, pyr_2, int_2,
..., pyr_{N-1}, int_{N-1}, output (``free_off[g]``, ``sizes[g]``; group 0 is
the clamped input). ``kind[g]`` is 0 for a pyramidal group, 1 for an
interneuron group; ``above[g]`` is the pyramidal group an interneuron group
mirrors (or, for a hidden pyramidal group, the pyramidal group above it),
``below[g]`` the pyramidal (or input) group under a pyramidal group,
``inter[g]`` the interneuron group of a hidden pyramidal group (-1 for the
output). ``offs[g, :]`` are the theta offsets of the group's incoming
matrices: 0 the basal W (pyramidal) or the interneurons' dendritic IP, 1 the
apical top-down B, 2 the apical interneuron PI (-1 where absent).

``cond = (g_lk, g_B, g_A, g_D, g_som)``.

References
----------
.. [1] J. Sacramento, R. Ponte Costa, Y. Bengio, W. Senn, "Dendritic cortical
       microcircuits approximate the backpropagation algorithm", NeurIPS (2018).
"""
import numpy as np
from numba import njit

from dynsim.networks.activations import unit_rho_and_prime
from integrators._numerics import add_rows, copy_rows


@njit(cache=True)
def _block(theta, start, n_rows, n_cols):
    return theta[start:start + n_rows * n_cols].reshape((n_rows, n_cols))


@njit(cache=True)
def rates(s, acts, sizes, free_off):
    """phi_g(u_g) of every free group, shape of ``s``."""
    r = np.empty_like(s)
    for g in range(1, sizes.shape[0]):
        o = free_off[g]
        for i in range(s.shape[0]):
            for j in range(sizes[g]):
                r[i, o + j] = unit_rho_and_prime(s[i, o + j], acts[g])[0]
    return r


@njit(cache=True)
def _cols(a, o, m):
    return np.ascontiguousarray(a[:, o:o + m])


@njit(cache=True)
def dendrites(s, theta, sizes, free_off, kind, above, below, inter, offs, acts, drive):
    """Basal (or interneuron dendritic) and apical potentials of every free group, each shaped like ``s``.

    ``drive`` holds the input's basal projection r_0 W_1 in the columns of
    pyr_1 (zeros elsewhere). Apical potentials are zero for interneurons and the output.
    """
    r = rates(s, acts, sizes, free_off)
    basal = np.zeros_like(s)
    apical = np.zeros_like(s)
    for g in range(1, sizes.shape[0]):
        o, n = free_off[g], sizes[g]
        if kind[g] == 1:  # interneurons: dendrite IP from the pyramidal group they sit in
            p = below[g]
            copy_rows(basal[:, o:o + n],
                      np.dot(_cols(r, free_off[p], sizes[p]), _block(theta, offs[g, 0], sizes[p], n)))
            continue
        b = below[g]
        if b == 0:
            copy_rows(basal[:, o:o + n], drive[:, o:o + n])
        else:
            copy_rows(basal[:, o:o + n],
                      np.dot(_cols(r, free_off[b], sizes[b]), _block(theta, offs[g, 0], sizes[b], n)))
        if inter[g] >= 0:
            a, q = above[g], inter[g]
            ap = apical[:, o:o + n]
            copy_rows(ap, np.dot(_cols(r, free_off[a], sizes[a]), _block(theta, offs[g, 1], sizes[a], n)))
            add_rows(ap, np.dot(_cols(r, free_off[q], sizes[q]), _block(theta, offs[g, 2], sizes[q], n)))
    return basal, apical


@njit(cache=True)
def microcircuit_vector_field(t, s, dsdt, args):
    """du/dt of every group; the output nudged by ``beta (target - u)`` or held (``clamp_output``).

    ``args = (theta, sizes, free_off, kind, above, below, inter, offs, acts, cond, drive, beta, target,
    clamp_output)``.
    """
    theta, sizes, free_off, kind, above, below, inter, offs, acts, cond, drive, beta, target, clamp_output = args
    g_lk, g_b, g_a, g_d, g_som = cond[0], cond[1], cond[2], cond[3], cond[4]
    basal, apical = dendrites(s, theta, sizes, free_off, kind, above, below, inter, offs, acts, drive)
    G = sizes.shape[0]
    for g in range(1, G):
        o, n = free_off[g], sizes[g]
        for i in range(s.shape[0]):
            for j in range(n):
                u = s[i, o + j]
                if kind[g] == 1:
                    a = above[g]
                    v = -g_lk * u + g_d * (basal[i, o + j] - u) + g_som * (s[i, free_off[a] + j] - u)
                elif inter[g] >= 0:
                    v = -g_lk * u + g_b * (basal[i, o + j] - u) + g_a * (apical[i, o + j] - u)
                else:  # the output
                    v = -g_lk * u + g_b * (basal[i, o + j] - u)
                    if clamp_output:
                        v = 0.0
                    elif beta != 0.0:
                        v += beta * (target[i, j] - u)
                dsdt[i, o + j] = v
