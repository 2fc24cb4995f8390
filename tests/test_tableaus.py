"""Butcher tableau identities and the classical order conditions (rooted trees)."""
from fractions import Fraction
from math import prod

import numpy as np
import pytest

from integrators import DOPRI5, EULER, HEUN, RK4, TABLEAUS


def rooted_trees(order):
    """All rooted trees with ``order`` nodes, as sorted tuples of child trees."""
    if order == 1:
        return [()]
    trees = set()

    def partitions(n, max_part):
        # Multisets of subtree sizes summing to n (non-increasing).
        if n == 0:
            yield []
            return
        for k in range(min(n, max_part), 0, -1):
            for rest in partitions(n - k, k):
                yield [k] + rest

    def combos(sizes):
        if not sizes:
            yield ()
            return
        for first in rooted_trees(sizes[0]):
            for rest in combos(sizes[1:]):
                yield (first,) + rest

    for sizes in partitions(order - 1, order - 1):
        for children in combos(sizes):
            trees.add(tuple(sorted(children)))
    return sorted(trees)


def density(tree):
    """gamma(t) = |t| * prod gamma(children)."""
    return size(tree) * prod(density(c) for c in tree)


def size(tree):
    return 1 + sum(size(c) for c in tree)


def stage_weights(tree, A):
    """Vector Phi_i(t): product over children of A @ Phi(child) (ones for a leaf)."""
    v = np.ones(A.shape[0])
    for child in tree:
        v = v * (A @ stage_weights(child, A))
    return v


def order_conditions_hold(b, A, order, tol=1e-13):
    return all(abs(b @ stage_weights(t, A) - 1.0 / density(t)) < tol
               for p in range(1, order + 1) for t in rooted_trees(p))


def test_tree_counts():
    # Number of rooted trees with 1..6 nodes (OEIS A000081): 1, 1, 2, 4, 9, 20.
    assert [len(rooted_trees(p)) for p in range(1, 7)] == [1, 1, 2, 4, 9, 20]


@pytest.mark.parametrize("tab", list(TABLEAUS.values()), ids=list(TABLEAUS))
def test_rows_of_A_sum_to_c_and_b_sums_to_one(tab):
    np.testing.assert_allclose(tab.A.sum(axis=1), tab.c, atol=1e-15)
    assert abs(tab.b.sum() - 1.0) < 1e-15
    assert np.all(np.triu(tab.A) == 0), "explicit methods have a strictly lower triangular A"


@pytest.mark.parametrize("tab", list(TABLEAUS.values()), ids=list(TABLEAUS))
def test_order_conditions_up_to_the_stated_order(tab):
    assert order_conditions_hold(tab.b, tab.A, tab.order)
    # ... and not one order higher: the stated order is the true one.
    assert not order_conditions_hold(tab.b, tab.A, tab.order + 1)


def test_dopri5_embedded_pair():
    b_hat = DOPRI5.b - DOPRI5.b_error
    assert abs(DOPRI5.b_error.sum()) < 1e-15
    assert order_conditions_hold(b_hat, DOPRI5.A, 4)
    assert not order_conditions_hold(b_hat, DOPRI5.A, 5)
    # FSAL: the last stage is evaluated at y_new.
    np.testing.assert_array_equal(DOPRI5.A[-1], DOPRI5.b)
    assert DOPRI5.c[-1] == 1.0


def test_exact_coefficients_match_published_fractions():
    # Dormand & Prince (1980), Table 2: fifth-order weights.
    b = [Fraction(35, 384), 0, Fraction(500, 1113), Fraction(125, 192), Fraction(-2187, 6784),
         Fraction(11, 84), 0]
    np.testing.assert_allclose(DOPRI5.b, [float(v) for v in b], rtol=0, atol=1e-16)
    assert EULER.order == 1 and HEUN.order == 2 and RK4.order == 4 and DOPRI5.order == 5
