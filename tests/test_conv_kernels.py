"""Convolution, pooling and convolutional coupling kernels against independent references.

The references here are plain loops over output positions (gather for the
convolution, scatter for its transpose and weight gradient), scipy's
``signal.correlate``, the adjoint identity, and central finite differences
of the coupling energy. That energy is piecewise linear in each argument
(linear in ``s_post``; linear in ``a`` and ``w`` while the max-pooling
winners stay put), so central differences carry no truncation error and
agree to rounding; the max-pooling cases use inputs whose window maxima are
separated by far more than the step.
"""
import numpy as np
import pytest
from scipy import signal

from dynsim.networks import conv_kernels as ck
from dynsim.validation import ValidationError

# (batch, C_in, H, W, C_out, kh, kw, stride, padding): non-square maps and kernels, strides 1 to 3, padding 0 to 2,
# and sizes where the last window stops short of the last rows or columns (they are dropped).
CONV_CASES = [
    (2, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 2, 1, 1),
    (3, 2, 8, 9, 3, 3, 3, 2, 0),   # H: windows cover rows 0..6, row 7 dropped
    (2, 2, 9, 7, 3, 3, 3, 2, 1),
    (1, 2, 6, 7, 2, 4, 3, 2, 2),
    (2, 3, 5, 4, 2, 5, 5, 1, 2),   # kernel larger than the width: padding makes it fit
    (2, 2, 7, 8, 3, 2, 2, 3, 0),   # stride > kernel: rows 2, 5, 6 and columns 2, 5, 6, 7 in no window
]


def _case_arrays(rng, case, dtype=np.float64):
    B, C_in, H, W, C_out, kh, kw, s, p = case
    x = rng.standard_normal((B, C_in, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C_in, kh, kw)).astype(dtype)
    Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    g = rng.standard_normal((B, C_out, Ho, Wo)).astype(dtype)
    return x, w, g, s, p


def _padded(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def ref_conv(x, w, s, p):
    """Gather: each output is the sum of its window times the kernel."""
    B, _, H, W = x.shape
    C_out, _, kh, kw = w.shape
    xp = _padded(x, p)
    Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    out = np.zeros((B, C_out, Ho, Wo))
    for b in range(B):
        for o in range(C_out):
            for i in range(Ho):
                for j in range(Wo):
                    out[b, o, i, j] = np.sum(xp[b, :, s * i:s * i + kh, s * j:s * j + kw] * w[o])
    return out


def ref_conv_transpose(g, w, s, p, H, W):
    """Scatter: each output's gradient is spread back over its window with the kernel's weights."""
    B, C_out, Ho, Wo = g.shape
    _, C_in, kh, kw = w.shape
    dxp = np.zeros((B, C_in, H + 2 * p, W + 2 * p))
    for b in range(B):
        for o in range(C_out):
            for i in range(Ho):
                for j in range(Wo):
                    dxp[b, :, s * i:s * i + kh, s * j:s * j + kw] += g[b, o, i, j] * w[o]
    return dxp[:, :, p:p + H, p:p + W]


def ref_weight_grad(x, g, s, p, kh, kw):
    B, C_out, Ho, Wo = g.shape
    xp = _padded(x, p)
    dw = np.zeros((C_out, x.shape[1], kh, kw))
    for b in range(B):
        for o in range(C_out):
            for i in range(Ho):
                for j in range(Wo):
                    dw[o] += g[b, o, i, j] * xp[b, :, s * i:s * i + kh, s * j:s * j + kw]
    return dw


def ref_pool(x, kind, k, s):
    B, C, H, W = x.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = np.zeros((B, C, Ho, Wo))
    reduce = np.max if kind == "max" else np.mean
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = reduce(x[:, :, s * i:s * i + k, s * j:s * j + k], axis=(2, 3))
    return out


def ref_pool_backward(x, g, kind, k, s):
    """Max: the window's first maximum (row-major) receives g; average: each entry of the window g / k^2."""
    out = np.zeros(x.shape)
    B, C, Ho, Wo = g.shape
    for b in range(B):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[b, c, s * i:s * i + k, s * j:s * j + k]
                    if kind == "max":
                        u, v = np.unravel_index(np.argmax(window), window.shape)
                        out[b, c, s * i + u, s * j + v] += g[b, c, i, j]
                    else:
                        out[b, c, s * i:s * i + k, s * j:s * j + k] += g[b, c, i, j] / (k * k)
    return out


def _min_window_gap(x, k, s):
    """Smallest difference between the largest and second largest entry over all pooling windows."""
    B, C, H, W = x.shape
    gap = np.inf
    for i in range((H - k) // s + 1):
        for j in range((W - k) // s + 1):
            window = np.sort(x[:, :, s * i:s * i + k, s * j:s * j + k].reshape(B, C, k * k), axis=2)
            gap = min(gap, float(np.min(window[:, :, -1] - window[:, :, -2])))
    return gap


# ---------------------------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_its_transpose_and_weight_gradient_match_plain_loops(rng, case):
    x, w, g, s, p = _case_arrays(rng, case)
    np.testing.assert_allclose(ck.conv2d(x, w, s, p), ref_conv(x, w, s, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ck.conv2d_transpose(g, w, x.shape, s, p),
                               ref_conv_transpose(g, w, s, p, x.shape[2], x.shape[3]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ck.conv2d_weight_grad(x, g, w.shape[2:], s, p),
                               ref_weight_grad(x, g, s, p, w.shape[2], w.shape[3]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[7] == 1])
def test_unit_stride_convolution_is_the_channel_sum_of_scipy_correlations(rng, case):
    x, w, _, s, p = _case_arrays(rng, case)
    xp = _padded(x, p)
    want = np.array([[sum(signal.correlate(xp[b, c], w[o, c], mode="valid") for c in range(x.shape[1]))
                      for o in range(w.shape[0])] for b in range(x.shape[0])])
    np.testing.assert_allclose(ck.conv2d(x, w, s, p), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_transpose_and_weight_gradient_are_adjoints_of_the_convolution(rng, case):
    x, w, g, s, p = _case_arrays(rng, case)
    y = ck.conv2d(x, w, s, p)
    lhs = np.sum(y * g)
    assert np.sum(x * ck.conv2d_transpose(g, w, x.shape, s, p)) == pytest.approx(lhs, rel=1e-12, abs=1e-12)
    # <conv(x, w), g> is linear in w too: its gradient dw gives back the same number.
    assert np.sum(w * ck.conv2d_weight_grad(x, g, w.shape[2:], s, p)) == pytest.approx(lhs, rel=1e-12, abs=1e-12)


def test_bias_gradient_is_the_sum_over_batch_and_positions(rng):
    g = rng.standard_normal((3, 4, 5, 2))
    np.testing.assert_allclose(ck.conv2d_bias_grad(g), g.sum(axis=(0, 2, 3)), rtol=1e-13)


def test_kernels_ignore_what_their_workspaces_and_outputs_held_before(rng):
    """Workspaces are reused across calls: stale values (NaN here) must never leak into a result."""
    x, w, g, s, p = _case_arrays(rng, (2, 2, 9, 7, 3, 3, 3, 2, 1))
    ws = ck.conv_workspace(x.shape, w.shape, s, p, np.float64)
    for buf in ws:
        buf[...] = np.nan
    out = np.full(g.shape, np.nan)
    dx = np.full(x.shape, np.nan)
    dw = np.full(w.shape, np.nan)
    ck.conv2d_into(x, w, s, p, ws.padded, ws.cols, out)
    ck.conv2d_transpose_into(g, w, s, p, ws.padded, ws.cols, dx)
    ck.conv2d_weight_grad_into(x, g, s, p, ws.padded, ws.cols, ws.prod, dw)
    np.testing.assert_allclose(out, ref_conv(x, w, s, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, ref_conv_transpose(g, w, s, p, 9, 7), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ref_weight_grad(x, g, s, p, 3, 3), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------------------------

POOL_CASES = [(2, 2), (2, 1), (3, 2), (3, 3)]  # (k, stride): disjoint, overlapping, and windows that drop rows


@pytest.mark.parametrize("k, s", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_forward_and_backward_match_loops(rng, kind, k, s):
    x = rng.standard_normal((2, 3, 7, 8))
    if kind == "max":
        out, argmax = ck.max_pool2d(x, k, s)
    else:
        out = ck.avg_pool2d(x, k, s)
    np.testing.assert_allclose(out, ref_pool(x, kind, k, s), rtol=1e-13, atol=1e-14)
    g = rng.standard_normal(out.shape)
    back = ck.max_pool2d_backward(g, argmax, x.shape) if kind == "max" else ck.avg_pool2d_backward(g, x.shape, k, s)
    np.testing.assert_allclose(back, ref_pool_backward(x, g, kind, k, s), rtol=1e-13, atol=1e-14)


def test_max_pooling_routes_each_gradient_to_exactly_its_winner(rng):
    x = rng.standard_normal((2, 3, 6, 8))
    out, argmax = ck.max_pool2d(x, 2)
    g = rng.uniform(1.0, 2.0, out.shape)  # nonzero, so that every routed entry shows
    back = ck.max_pool2d_backward(g, argmax, x.shape)
    assert np.count_nonzero(back) == g.size  # disjoint windows: one unit per window, no other
    for b, c, i, j in np.ndindex(*g.shape):
        window = x[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        u, v = np.unravel_index(np.argmax(window), window.shape)
        assert argmax[b, c, i, j] == (2 * i + u) * 8 + 2 * j + v
        assert x[b, c, 2 * i + u, 2 * j + v] == out[b, c, i, j]
        assert back[b, c, 2 * i + u, 2 * j + v] == g[b, c, i, j]


def test_max_pooling_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 1.0  # the window's maximum twice: (1, 0) comes first
    _, argmax = ck.max_pool2d(x, 2)
    assert argmax[0, 0].tolist() == [[1 * 4 + 0, 2], [2 * 4 + 0, 2 * 4 + 2]]


# ---------------------------------------------------------------------------------------------------------------
# The coupling energy E_c = -sum_b <s_post, pool(conv(a))>
# ---------------------------------------------------------------------------------------------------------------

# (a shape, w shape, stride, padding, pool, pool size, pool stride)
COUPLING_CASES = [
    ((2, 2, 6, 6), (3, 2, 3, 3), 1, 0, "none", 2, None),
    ((2, 2, 6, 6), (3, 2, 3, 3), 1, 0, "avg", 2, None),
    ((2, 2, 6, 6), (3, 2, 3, 3), 1, 0, "max", 2, None),
    ((2, 2, 7, 6), (2, 2, 3, 2), 1, 1, "max", 2, None),   # 7x7 conv output: the last row and column dropped
    ((1, 3, 9, 8), (2, 3, 3, 3), 2, 1, "avg", 2, 1),      # overlapping average windows after a strided conv
    ((1, 3, 9, 8), (2, 3, 3, 3), 2, 1, "max", 3, 1),      # overlapping max windows
]


def _central_differences(f, arr, h):
    grad = np.empty_like(arr)
    for idx in np.ndindex(*arr.shape):
        keep = arr[idx]
        arr[idx] = keep + h
        up = f()
        arr[idx] = keep - h
        down = f()
        arr[idx] = keep
        grad[idx] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("a_shape, w_shape, s, p, pool, k, ps", COUPLING_CASES)
def test_coupling_energy_and_its_gradients_match_a_reference_and_finite_differences(rng, a_shape, w_shape, s, p,
                                                                                   pool, k, ps):
    a = rng.standard_normal(a_shape)
    w = rng.standard_normal(w_shape)
    conv = ref_conv(a, w, s, p)
    pooled = conv if pool == "none" else ref_pool(conv, pool, k, k if ps is None else ps)
    h = 1e-5
    if pool == "max":
        # A step h moves each conv output by at most h * max(sum |w|, sum |a|); kept 10 times below the smallest gap
        # between a window's largest and second largest value, the winners stay put.
        gap = _min_window_gap(conv, k, k if ps is None else ps)
        assert gap > 1e-9, "ties in the test data"
        h = min(h, gap / (10 * max(np.abs(w).sum(), np.abs(a).sum())))
    s_post = rng.standard_normal(pooled.shape)
    args = (s, p, pool, k, ps)
    e, grad_a, grad_post, grad_w = ck.coupling_gradients(a, s_post, w, *args)
    np.testing.assert_allclose(e, -np.sum(s_post * pooled, axis=(1, 2, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_post, -pooled, rtol=1e-12, atol=1e-12)

    def total():
        return ck.coupling_energy(a, s_post, w, *args).sum()

    for arr, got in ((a, grad_a), (s_post, grad_post), (w, grad_w)):
        np.testing.assert_allclose(got, _central_differences(total, arr, h), rtol=1e-6, atol=1e-7)


def test_coupling_kernels_reuse_the_convolution_buffer_for_unpooling(rng):
    """What a relaxation step does: one buffer for conv(a) and then for unpool(s_post), outputs reused."""
    a = rng.standard_normal((3, 2, 8, 8))
    w = rng.standard_normal((4, 2, 3, 3))
    s_post = rng.standard_normal((3, 4, 3, 3))
    _, want_a, want_post, want_w = ck.coupling_gradients(a, s_post, w, 1, 0, "max", 2)
    ws = ck.conv_workspace(a.shape, w.shape, 1, 0, np.float64)
    conv_out = np.empty((3, 4, 6, 6))
    argmax = np.empty(s_post.shape, dtype=np.int64)
    drive = np.empty(s_post.shape)
    back = np.empty(a.shape)
    dw = np.empty(w.shape)
    e = np.empty(3)
    for _ in range(2):
        ck.conv_pool_into(a, w, 1, 0, ck.POOL_MAX, 2, 2, ws.padded, ws.cols, conv_out, argmax, drive)
        ck.coupling_energy_into(s_post, drive, e)
        ck.conv_pool_transpose_into(s_post, w, 1, 0, ck.POOL_MAX, 2, 2, argmax, ws.padded, ws.cols, conv_out, back)
        ck.conv_pool_weight_grad_into(a, s_post, 1, 0, ck.POOL_MAX, 2, 2, argmax, ws.padded, ws.cols, conv_out,
                                      ws.prod, dw)
    np.testing.assert_allclose(drive, -want_post, rtol=1e-13)
    np.testing.assert_allclose(back, -want_a, rtol=1e-13)
    np.testing.assert_allclose(dw, -want_w, rtol=1e-13)
    np.testing.assert_allclose(e, -np.sum(s_post * drive, axis=(1, 2, 3)), rtol=1e-13)


# ---------------------------------------------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------------------------------------------

# float32 rounds each operation to 6e-8 relative; the sums here hold at most ~100 products of O(1) numbers, so
# their errors stay below ~1e-5 of the typical magnitude (a few units).
RTOL32, ATOL32 = 1e-5, 1e-5


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3]])
def test_float32_inputs_give_float32_results_that_agree_with_float64(rng, case):
    x, w, g, s, p = _case_arrays(rng, case)
    x32, w32, g32 = (v.astype(np.float32) for v in (x, w, g))
    pairs = [
        (ck.conv2d(x32, w32, s, p), ck.conv2d(x32.astype(np.float64), w32.astype(np.float64), s, p)),
        (ck.conv2d_transpose(g32, w32, x.shape, s, p),
         ck.conv2d_transpose(g32.astype(np.float64), w32.astype(np.float64), x.shape, s, p)),
        (ck.conv2d_weight_grad(x32, g32, w.shape[2:], s, p),
         ck.conv2d_weight_grad(x32.astype(np.float64), g32.astype(np.float64), w.shape[2:], s, p)),
        (ck.conv2d_bias_grad(g32), ck.conv2d_bias_grad(g32.astype(np.float64))),
        (ck.avg_pool2d(x32, 2), ck.avg_pool2d(x32.astype(np.float64), 2)),
        (ck.avg_pool2d_backward(g32, (g.shape[2] * 2, g.shape[3] * 2), 2),
         ck.avg_pool2d_backward(g32.astype(np.float64), (g.shape[2] * 2, g.shape[3] * 2), 2)),
        (ck.max_pool2d(x32, 2)[0], ck.max_pool2d(x32.astype(np.float64), 2)[0]),
    ]
    for got, want in pairs:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=RTOL32, atol=ATOL32)


@pytest.mark.parametrize("pool", ["none", "avg", "max"])
def test_float32_coupling_gradients_agree_with_float64(rng, pool):
    a = rng.standard_normal((2, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    shape = (2, 3, 7, 7) if pool == "none" else (2, 3, 3, 3)
    s_post = rng.standard_normal(shape).astype(np.float32)
    got = ck.coupling_gradients(a, s_post, w, 1, 1, pool, 2)
    want = ck.coupling_gradients(a.astype(np.float64), s_post.astype(np.float64), w.astype(np.float64), 1, 1,
                                 pool, 2)
    for g32, g64 in zip(got, want):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=RTOL32, atol=ATOL32 * 10)


# ---------------------------------------------------------------------------------------------------------------
# Python boundary
# ---------------------------------------------------------------------------------------------------------------

def test_wrappers_refuse_mismatched_arrays_by_name(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(ValidationError, match="w must have the dtype"):
        ck.conv2d(x, w.astype(np.float32))
    with pytest.raises(ValidationError, match="input channels"):
        ck.conv2d(x, rng.standard_normal((3, 1, 3, 3)))
    with pytest.raises(ValidationError, match="does not fit"):
        ck.conv2d(x, rng.standard_normal((3, 2, 6, 6)))
    with pytest.raises(ValidationError, match="x must be a float32 or float64"):
        ck.conv2d(x.astype(np.int64), w)
    with pytest.raises(ValidationError, match="stride"):
        ck.conv2d(x, w, stride=0)
    with pytest.raises(ValidationError, match="s_post must have shape"):
        ck.coupling_gradients(x, np.zeros((1, 3, 2, 2)), w, pool="max", pool_size=2)
    with pytest.raises(ValidationError, match="pool must be one of"):
        ck.coupling_gradients(x, np.zeros((1, 3, 1, 1)), w, pool="sum")


# ---------------------------------------------------------------------------------------------------------------
# The coupling on chunks of the minibatch (Numba's threads)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_batch, want", [(0, [0]), (1, [0, 1]), (5, [0, 1, 2, 3, 4, 5]),
                                           (8, list(range(9))), (100, [0, 12, 25, 37, 50, 62, 75, 87, 100])])
def test_a_minibatch_is_split_in_at_most_eight_chunks_fixed_by_its_size(n_batch, want):
    assert ck.CONV_CHUNKS == 8
    assert ck.conv_chunks(n_batch).tolist() == want


@pytest.mark.parametrize("n_batch", [1, 3, 8, 11])
@pytest.mark.parametrize("a_shape, w_shape, s, p, pool, k, ps", COUPLING_CASES)
def test_chunked_coupling_kernels_give_the_loop_references(rng, n_batch, a_shape, w_shape, s, p, pool, k, ps):
    """Each chunk with its own workspace: the forward and transposed products equal the plain loops of this file,
    the weight gradient their sum over the whole minibatch, for minibatches of fewer and more samples than chunks."""
    ps = k if ps is None else ps
    a = rng.standard_normal((n_batch,) + a_shape[1:])
    w = rng.standard_normal(w_shape)
    conv = ref_conv(a, w, s, p)
    pooled = conv if pool == "none" else ref_pool(conv, pool, k, ps)
    if pool == "max":
        assert _min_window_gap(conv, k, ps) > 1e-9, "ties in the test data"
    g = rng.standard_normal(pooled.shape)
    unpooled = g if pool == "none" else ref_pool_backward(conv, g, pool, k, ps)
    want_back = ref_conv_transpose(unpooled, w, s, p, a.shape[2], a.shape[3])
    want_dw = ref_weight_grad(a, unpooled, s, p, w.shape[2], w.shape[3])

    starts = ck.conv_chunks(n_batch)
    n_chunks = starts.shape[0] - 1
    ws = ck.conv_workspace(a.shape, w.shape, s, p, np.float64, chunks=n_chunks)
    for buf in ws:
        buf[...] = np.nan  # stale workspaces must not leak into results
    code = ck.POOLS[pool]
    conv_out = np.full(conv.shape if code != ck.POOL_NONE else (1, 1, 1, 1), np.nan)
    argmax = np.zeros(pooled.shape if code == ck.POOL_MAX else (1, 1, 1, 1), dtype=np.int64)
    drive = np.full(pooled.shape, np.nan)
    back = np.full(a.shape, np.nan)
    partial = np.full((n_chunks,) + w.shape, np.nan)
    dw = np.full(w.shape, np.nan)
    ck.conv_pool_chunks_into(a, w, s, p, code, k, ps, starts, ws.padded, ws.cols, conv_out, argmax, drive)
    ck.conv_pool_transpose_chunks_into(g, w, s, p, code, k, ps, argmax, starts, ws.padded, ws.cols, conv_out, back)
    ck.conv_pool_weight_grad_chunks_into(a, g, s, p, code, k, ps, argmax, starts, ws.padded, ws.cols, conv_out,
                                         ws.prod, partial, dw)
    np.testing.assert_allclose(drive, pooled, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back, want_back, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-12, atol=1e-12)


def test_chunked_weight_gradient_of_an_empty_minibatch_is_zero():
    w_shape = (3, 2, 3, 3)
    a = np.empty((0, 2, 6, 6))
    g = np.empty((0, 3, 4, 4))
    starts = ck.conv_chunks(0)
    ws = ck.conv_workspace(a.shape, w_shape, 1, 0, np.float64, chunks=1)
    dw = np.full(w_shape, np.nan)
    ck.conv_pool_weight_grad_chunks_into(a, g, 1, 0, ck.POOL_NONE, 1, 1, np.zeros((1, 1, 1, 1), dtype=np.int64),
                                         starts, ws.padded, ws.cols, np.empty((1, 1, 1, 1)), ws.prod,
                                         np.empty((1,) + w_shape), dw)
    assert np.all(dw == 0.0)


def test_the_chunk_workspaces_have_a_leading_axis_and_a_bad_count_is_named():
    ws = ck.conv_workspace((2, 9, 7), (3, 2, 3, 3), 2, 1, np.float32, chunks=4)
    assert ws.padded.shape == (4, 2, 11, 9) and ws.cols.shape == (4, 18, 20) and ws.prod.shape == (4, 3, 18)
    assert all(buf.dtype == np.float32 for buf in ws)
    with pytest.raises(ValidationError, match="chunks must be an integer >= 1, got 0"):
        ck.conv_workspace((2, 9, 7), (3, 2, 3, 3), chunks=0)


# ---------------------------------------------------------------------------------------------------------------
# A group's activations (dynsim.networks.coupling_ops.activate_into)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tanh_tol", [(np.float32, 4e-7), (np.float64, 1e-15)])
def test_group_activations_are_the_closed_forms_in_the_groups_dtype(rng, dtype, tanh_tol):
    """rho and rho' of every activation against numpy's closed forms; the hard sigmoid exact (1 on the closed
    interval [0, 1], NaN kept NaN for the divergence test), tanh to a few units in the last place."""
    from dynsim.networks.activations import activation_code
    from dynsim.networks.coupling_ops import activate_into

    s = (3.0 * rng.standard_normal((11, 37))).astype(dtype)
    s[0, :4] = [0.0, 1.0, -0.0, 0.5]
    s[1, 0] = np.nan
    want = {
        "hard_sigmoid": (np.clip(s, 0, 1), ((s >= 0) & (s <= 1)).astype(dtype)),
        "tanh": (np.tanh(s), 1 - np.tanh(s) ** 2),
        "logistic": (1 / (1 + np.exp(-s)), np.exp(-s) / (1 + np.exp(-s)) ** 2),
        "linear": (s, np.ones_like(s)),
    }
    for name, (r_want, rp_want) in want.items():
        r = np.full_like(s, -7.0)
        rp = np.full_like(s, -7.0)
        activate_into(s, activation_code(name), r, rp)
        assert r.dtype == dtype and np.isnan(r[1, 0]) and np.isnan(r_want[1, 0]), name
        ok = ~np.isnan(s)
        if name in ("hard_sigmoid", "linear"):
            np.testing.assert_array_equal(r[ok], r_want[ok])
            np.testing.assert_array_equal(rp[ok], rp_want[ok])
        else:
            tol = tanh_tol if name == "tanh" else 10 * np.finfo(dtype).eps
            np.testing.assert_allclose(r[ok], r_want[ok], rtol=tol, atol=tol)
            np.testing.assert_allclose(rp[ok], rp_want[ok], rtol=0, atol=4 * tol)
