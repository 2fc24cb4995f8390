"""The architecture description and the convolutional Hopfield network against independent references.

The references written here: the energy in plain numpy (``scipy.signal.correlate``
per channel pair, pooling by loops over windows, the parameter offsets worked
out from the documented layout), central finite differences of the energy
(float64, smooth activations, max pooling on states whose window maxima are
far apart), the fixed-point conditions of the relaxation schemes, and the
equilibrium-propagation theorem: centered EP at small beta against a
finite-difference gradient of the loss at the free fixed point.
"""
import numpy as np
import pytest
from scipy import signal

from dynsim.networks.architecture import Architecture, Conv, Dense, Group
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.validation import ValidationError

# ---------------------------------------------------------------------------------------------------------------
# Reference energy
# ---------------------------------------------------------------------------------------------------------------


def ref_rho(v, activation):
    if activation == "hard_sigmoid":
        return np.clip(v, 0.0, 1.0)
    if activation == "logistic":
        return 1.0 / (1.0 + np.exp(-v))
    return np.tanh(v)


def ref_conv(a, w, stride, pad):
    """Cross-correlation with zero padding, from scipy's 2-D correlation of every channel pair."""
    ap = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return np.array([[sum(signal.correlate(ap[b, c], w[o, c], mode="valid")[::stride, ::stride]
                          for c in range(a.shape[1])) for o in range(w.shape[0])] for b in range(a.shape[0])])


def ref_pool(z, kind, k, s):
    B, C, H, W = z.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((B, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            window = z[:, :, s * i:s * i + k, s * j:s * j + k]
            out[:, :, i, j] = window.max(axis=(2, 3)) if kind == "max" else window.mean(axis=(2, 3))
    return out


def ref_unpack(arch, theta):
    """Weights in coupling order, then biases of the free groups with a bias in group order (the documented layout)."""
    weights, biases, at = [], {}, 0
    for c in arch.couplings:
        pre, post = arch.group(c.pre), arch.group(c.post)
        if isinstance(c, Dense):
            shape = (int(np.prod(pre.shape)), int(np.prod(post.shape)))
        else:
            shape = (post.shape[0], pre.shape[0]) + c.kernel
        size = int(np.prod(shape))
        weights.append(theta[at:at + size].reshape(shape))
        at += size
    for g in arch.groups[1:]:
        if g.bias:
            biases[g.name] = theta[at:at + g.shape[0]]
            at += g.shape[0]
    assert at == theta.size
    return weights, biases


def ref_states(arch, x, s):
    """{group name: state shaped (batch, *shape)}: the input from x, the free groups side by side in s."""
    B = x.shape[0]
    states = {arch.groups[0].name: x.reshape((B,) + arch.groups[0].shape)}
    at = 0
    for g in arch.groups[1:]:
        n = int(np.prod(g.shape))
        states[g.name] = s[:, at:at + n].reshape((B,) + g.shape)
        at += n
    return states


def ref_energy(arch, theta, x, s):
    """E = 1/2 ||s||^2 - sum_c <rho(s_post), K_c(rho(s_pre))> - sum_g <b_g, rho(s_g)> per sample, in numpy."""
    x, s, theta = (np.asarray(v, dtype=np.float64) for v in (x, s, theta))
    B = x.shape[0]
    weights, biases = ref_unpack(arch, theta)
    states = ref_states(arch, x, s)
    act = {g.name: ref_rho(states[g.name], g.activation) for g in arch.groups}
    E = 0.5 * np.sum(s * s, axis=1)
    for c, W in zip(arch.couplings, weights):
        a = act[c.pre]
        if isinstance(c, Dense):
            K = a.reshape(B, -1) @ W
        else:
            K = ref_conv(a, W, c.stride, c.padding)
            if c.pool is not None:
                K = ref_pool(K, c.pool, c.pool_size, c.pool_step)
        E -= np.sum(act[c.post].reshape(B, -1) * K.reshape(B, -1), axis=1)
    for name, b in biases.items():
        r = act[name]
        bb = b[None, :, None, None] if r.ndim == 4 else b[None, :]
        E -= np.sum((r * bb).reshape(B, -1), axis=1)
    return E


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------


def tiny_arch(pool="avg", activation="logistic"):
    """input (1, 6, 6) -> conv 3x3 + pool 2 -> (2, 2, 2) -> dense -> 3 outputs."""
    return Architecture([Group("input", (1, 6, 6), activation), Group("h", (2, 2, 2), activation),
                         Group("out", (3,), activation)],
                        [Conv("input", "h", 3, pool=pool), Dense("h", "out")])


def deep_arch(pool="max", activation="logistic", mixed=False):
    """Convolutions from the input (padding, pooling) and between free groups, a bias-free group, then dense.

    input (2, 7, 7) -> conv 3x3 pad 1 + pool 2 -> h1 (3, 3, 3), no bias -> conv 2x2 -> h2 (2, 2, 2) -> dense -> out (3).
    """
    acts = ["tanh", "logistic", "tanh", "logistic"] if mixed else [activation] * 4
    return Architecture([Group("input", (2, 7, 7), acts[0]), Group("h1", (3, 3, 3), acts[1], bias=False),
                         Group("h2", (2, 2, 2), acts[2]), Group("out", (3,), acts[3])],
                        [Conv("input", "h1", 3, padding=1, pool=pool), Conv("h1", "h2", 2),
                         Dense("h2", "out")])


def pooled_stack_arch(pool="max", activation="logistic"):
    """Max (or avg) pooling between free groups, on both sides of the block scheme's halves.

    input (1, 12, 12) -> conv 3x3 pad 1 + pool 2 -> h1 (2, 6, 6) -> conv 3x3 pad 1 + pool 2 -> h2 (3, 3, 3)
    -> conv 2x2 stride 1 + pool 2 -> h3 (2, 1, 1) -> dense -> out (3). h1 and h3 are the block scheme's first half,
    h2 and out its second; h1 and h2 feed max-pooled couplings.
    """
    groups = [Group("input", (1, 12, 12), activation), Group("h1", (2, 6, 6), activation),
              Group("h2", (3, 3, 3), activation), Group("h3", (2, 1, 1), activation), Group("out", (3,), activation)]
    return Architecture(groups, [Conv("input", "h1", 3, padding=1, pool=pool),
                                 Conv("h1", "h2", 3, padding=1, pool=pool), Conv("h2", "h3", 2, pool=pool),
                                 Dense("h3", "out")])


def net_of(arch, seed=0, dtype=np.float64, gain=1.0, bias=0.0):
    net = ConvHopfieldNetwork(arch, seed=seed, dtype=dtype)
    theta = net.theta.astype(np.float64) * gain
    rng = np.random.default_rng(seed + 100)
    for name, sl in net.parameter_blocks().items():
        if name.startswith("b_"):
            theta[sl] = bias + 0.3 * rng.standard_normal(sl.stop - sl.start)
    net.theta = theta
    return net


def data(net, rng, batch=3):
    x = rng.uniform(size=(batch, net.n_input))
    s = rng.uniform(-1.0, 2.0, size=(batch, net.n_free))
    return x.astype(net.dtype), s.astype(net.dtype)


ARCHS = {"tiny-avg": lambda: tiny_arch("avg"), "tiny-max": lambda: tiny_arch("max"),
         "tiny-none": lambda: Architecture([Group("input", (1, 6, 6), "tanh"), Group("h", (2, 4, 4), "tanh"),
                                            Group("out", (3,), "tanh")], [Conv("input", "h", 3), Dense("h", "out")]),
         "deep-max": lambda: deep_arch("max"), "deep-avg-mixed": lambda: deep_arch("avg", mixed=True),
         "stack-max": lambda: pooled_stack_arch("max"), "stack-avg": lambda: pooled_stack_arch("avg"),
         "strided": lambda: Architecture(
             [Group("input", (2, 9, 8), "tanh"), Group("h1", (3, 3, 2), "tanh"), Group("h2", (2, 1, 1), "tanh"),
              Group("out", (2,), "tanh")],
             [Conv("input", "h1", 3, stride=2, pool="avg", pool_stride=1), Conv("h1", "h2", (3, 2), stride=2),
              Dense("input", "out"), Dense("h2", "out")])}


# ---------------------------------------------------------------------------------------------------------------
# Energy and its gradients
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHS))
def test_energy_matches_a_numpy_reference(rng, name):
    arch = ARCHS[name]()
    net = net_of(arch, seed=1)
    x, s = data(net, rng)
    np.testing.assert_allclose(net.energy(x, s), ref_energy(arch, net.theta, x, s), rtol=1e-12, atol=1e-12)
    # E = 1/2 ||s||^2 - 1/2 <rho(s), h + d>: the form the relaxation evaluates (K_c positively homogeneous).
    d = net.input_drive(x)
    h = net.local_field(x, s)
    acts = np.concatenate([ref_rho(v.reshape(len(x), -1), arch.group(k).activation)
                           for k, v in net.group_states(s).items()], axis=1)
    np.testing.assert_allclose(0.5 * np.sum(s * s, 1) - 0.5 * np.sum(acts * (h + d), 1), net.energy(x, s),
                               rtol=1e-12, atol=1e-12)


def test_hard_sigmoid_energy_matches_the_reference(rng):
    arch = pooled_stack_arch("max", "hard_sigmoid")
    net = net_of(arch, seed=2)
    x, s = data(net, rng)
    np.testing.assert_allclose(net.energy(x, s), ref_energy(arch, net.theta, x, s), rtol=1e-12, atol=1e-12)


def _max_pool_gap(net, x, s):
    """Smallest gap between the two largest entries of a pooling window, over every max-pooled coupling."""
    arch = net.architecture
    states = ref_states(arch, x, s)
    gaps = [np.inf]
    weights, _ = ref_unpack(arch, net.theta)
    for c, W in zip(arch.couplings, weights):
        if isinstance(c, Conv) and c.pool == "max":
            z = ref_conv(ref_rho(states[c.pre], arch.group(c.pre).activation), W, c.stride, c.padding)
            k, st = c.pool_size, c.pool_step
            for i in range((z.shape[2] - k) // st + 1):
                for j in range((z.shape[3] - k) // st + 1):
                    w = np.sort(z[:, :, st * i:st * i + k, st * j:st * j + k].reshape(*z.shape[:2], -1), axis=2)
                    gaps.append(float(np.min(w[:, :, -1] - w[:, :, -2])))
    return min(gaps)


@pytest.mark.parametrize("name", ["tiny-avg", "tiny-max", "deep-max", "deep-avg-mixed", "stack-max", "strided"])
def test_state_gradient_matches_central_differences(rng, name):
    net = net_of(ARCHS[name](), seed=3)
    x, s = data(net, rng)
    eps = 1e-6
    # A step eps in one state moves a convolution's output by at most eps |w| rho' (< eps here): the winners stay put.
    assert _max_pool_gap(net, x, s) > 10 * eps
    grad = net.energy_grad_state(x, s)
    fd = np.empty_like(s)
    for j in range(net.n_free):
        e = np.zeros_like(s)
        e[:, j] = eps
        fd[:, j] = (net.energy(x, s + e) - net.energy(x, s - e)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)
    drive = net.input_drive(x)
    np.testing.assert_array_equal(net.energy_grad_state(x, s, drive=drive), grad)


@pytest.mark.parametrize("name", ["tiny-avg", "tiny-max", "deep-max", "deep-avg-mixed", "stack-max", "strided"])
def test_parameter_gradient_is_the_central_difference_of_the_batch_mean_energy(rng, name):
    net = net_of(ARCHS[name](), seed=4)
    x, s = data(net, rng)
    eps = 1e-6
    # A step eps in one weight moves a convolution's output by at most eps |rho(s_pre)| <= eps: the winners stay put.
    assert _max_pool_gap(net, x, s) > 10 * eps
    grad = net.energy_grad_params(x, s)
    theta = net.theta.copy()
    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = eps
        net.theta = theta + e
        up = net.energy(x, s).mean()
        net.theta = theta - e
        fd[k] = (up - net.energy(x, s).mean()) / (2 * eps)
    net.theta = theta
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", ["tiny-max", "deep-max", "stack-max", "strided"])
def test_gradient_difference_equals_the_difference_of_gradients(rng, name):
    net = net_of(ARCHS[name](), seed=5)
    x, s_a = data(net, rng)
    s_b = s_a + 0.3 * rng.standard_normal(s_a.shape)
    want = 2.5 * (net.energy_grad_params(x, s_b) - net.energy_grad_params(x, s_a))
    np.testing.assert_allclose(net.energy_grad_params_difference(x, s_a, s_b, 2.5), want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Relaxation
# ---------------------------------------------------------------------------------------------------------------


def relaxed(net, x, scheme, beta=0.0, target=None, s0=None, **kw):
    drive = net.input_drive(x)
    s0 = net.initial_state(drive) if s0 is None else s0
    kw.setdefault("atol", 1e-11)
    kw.setdefault("rtol", 0.0)
    kw.setdefault("max_steps", 5000)
    return net.relax_with_energy(s0, drive, scheme, beta, target, **kw)


@pytest.mark.parametrize("arch", [lambda: tiny_arch("max", "hard_sigmoid"),
                                  lambda: pooled_stack_arch("max", "hard_sigmoid"),
                                  lambda: pooled_stack_arch("avg", "hard_sigmoid")])
def test_both_schemes_reach_one_fixed_point_where_each_group_is_rho_of_its_total_input(rng, arch):
    # Weak couplings: with max pooling and saturating units the energy may have several minima (at gain 0.5 one
    # sample of the pooled stack has two, each a fixed point of both schemes, and the schemes find one each); at
    # gain 0.3 the map contracts to a single one.
    net = net_of(arch(), seed=6, bias=0.4, gain=0.3)
    x = rng.uniform(size=(4, net.n_input))
    states = {}
    for scheme in ("fixed_point", "block"):
        result, energy = relaxed(net, x, scheme)
        assert result.status_name == "converged", result.message
        s = result.y
        # Laborieux et al.'s fixed point: every unit is rho (here clip to [0, 1]) of its total input.
        np.testing.assert_allclose(s, np.clip(net.local_field(x, s), 0.0, 1.0), atol=1e-10)
        np.testing.assert_allclose(energy, net.energy(x, s), rtol=1e-12, atol=1e-12)
        assert np.all(result.residual <= result.tolerance)
        states[scheme] = s
    np.testing.assert_allclose(states["block"], states["fixed_point"], atol=1e-9)


@pytest.mark.parametrize("name", ["deep-max", "deep-avg-mixed", "stack-max"])
def test_smooth_fixed_points_are_stationary_points_of_the_energy(rng, name):
    net = net_of(ARCHS[name](), seed=7)
    x = rng.uniform(size=(3, net.n_input))
    results = [relaxed(net, x, scheme)[0] for scheme in ("fixed_point", "block")]
    for r in results:
        assert r.status_name == "converged", r.message
        np.testing.assert_allclose(net.energy_grad_state(x, r.y), 0.0, atol=1e-10)
    np.testing.assert_allclose(results[0].y, results[1].y, atol=1e-9)
    # Block sweeps (Gauss-Seidel) need no more sweeps than synchronous ones here.
    assert results[1].n_steps <= results[0].n_steps


@pytest.mark.parametrize("scheme", ["fixed_point", "block"])
def test_nudging_moves_the_output_towards_the_target_and_negative_nudging_away(rng, scheme):
    net = net_of(pooled_stack_arch("max", "hard_sigmoid"), seed=8, bias=0.4)
    x = rng.uniform(size=(4, net.n_input))
    target = np.eye(net.n_output)[rng.integers(0, net.n_output, 4)]
    free, _ = relaxed(net, x, scheme)
    cost0 = net.cost(free.y, target)
    plus, _ = relaxed(net, x, scheme, 0.5, target, s0=free.y)
    minus, _ = relaxed(net, x, scheme, -0.5, target, s0=free.y)
    assert plus.status_name == minus.status_name == "converged"
    assert np.all(net.cost(plus.y, target) < cost0)
    assert np.all(net.cost(minus.y, target) > cost0)
    # The nudged output update is the exact minimiser along the outputs: s_out = (h_out + beta y) / (1 + beta).
    h = net.local_field(x, plus.y)[:, net.output_slice]
    np.testing.assert_allclose(plus.y[:, net.output_slice], np.clip((h + 0.5 * target) / 1.5, 0, 1), atol=1e-10)


def test_clamped_output_stays_at_the_target(rng):
    net = net_of(tiny_arch("max", "hard_sigmoid"), seed=9)
    x = rng.uniform(size=(3, net.n_input))
    target = np.eye(3)[[0, 2, 1]]
    drive = net.input_drive(x)
    s0 = np.zeros_like(drive)
    s0[:, net.output_slice] = target
    for scheme in ("fixed_point", "block"):
        result, energy = net.relax_with_energy(s0, drive, scheme, target=target, clamp_output=True, atol=1e-11,
                                               rtol=0.0)
        assert result.status_name == "converged"
        np.testing.assert_array_equal(result.y[:, net.output_slice], target)
        np.testing.assert_allclose(energy, net.energy(x, result.y), rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64(rng):
    arch = pooled_stack_arch("max", "hard_sigmoid")
    n64 = net_of(arch, seed=10, bias=0.4)
    n32 = ConvHopfieldNetwork(arch, theta=n64.theta.astype(np.float32), dtype=np.float32)
    x, s = data(n64, rng)
    for f in ("energy", "energy_grad_state", "energy_grad_params"):
        got, want = getattr(n32, f)(x, s), getattr(n64, f)(x, s)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for scheme in ("fixed_point", "block"):
        r64, e64 = relaxed(n64, x, scheme, atol=1e-5)
        r32, e32 = relaxed(n32, x.astype(np.float32), scheme, atol=1e-5)
        assert r32.status_name == "converged" and r32.y.dtype == np.float32 and e32.dtype == np.float32
        np.testing.assert_allclose(r32.y, r64.y, atol=1e-4)
        np.testing.assert_allclose(e32, e64, rtol=1e-4, atol=1e-4)


def test_step_limit_recording_and_counts(rng):
    net = net_of(pooled_stack_arch("avg", "hard_sigmoid"), seed=11)
    x = rng.uniform(size=(3, net.n_input))
    drive = net.input_drive(x)
    s0 = np.zeros_like(drive)
    result, energy = net.relax_with_energy(s0, drive, "block", max_steps=7, stop_at_steady_state=False,
                                           record_every=3, record_samples=[2, 0])
    assert result.status_name == "step_limit" and result.n_steps == 7 and result.nfev == 8 and result.t == 7.0
    traj = result.trajectory
    np.testing.assert_array_equal(traj.t, [0.0, 3.0, 6.0, 7.0])
    assert traj.y.shape == (4, 2, net.n_free) and traj.residual.shape == (4, 2)
    np.testing.assert_array_equal(traj.y[0], s0[[2, 0]])
    np.testing.assert_array_equal(traj.y[-1], result.y[[2, 0]])
    # Seven sweeps from the same start, run as 3 + 4: the same state.
    a, _ = net.relax_with_energy(s0, drive, "block", max_steps=3, stop_at_steady_state=False)
    b, _ = net.relax_with_energy(a.y, drive, "block", max_steps=4, stop_at_steady_state=False)
    np.testing.assert_array_equal(b.y, result.y)


def test_divergence_is_reported(rng):
    arch = Architecture([Group("input", (1, 4, 4), "tanh"), Group("h", (2, 2, 2), "tanh"), Group("out", (2,), "tanh")],
                        [Conv("input", "h", 3), Dense("h", "out")])
    net = ConvHopfieldNetwork(arch, seed=0, dtype=np.float64)
    x = rng.uniform(size=(2, 16))
    drive = net.input_drive(x)
    result, _ = net.relax_with_energy(np.zeros_like(drive), drive, "fixed_point", box=None, max_abs=1e-3)
    assert result.status_name == "diverged" and result.diverged_sample == 0 and "diverged at sweep" in result.message


def test_block_refuses_an_odd_cycle_and_fixed_point_takes_it(rng):
    arch = Architecture([Group("input", (1, 6, 6)), Group("h1", (2, 4, 4)), Group("h2", (4,)), Group("out", (3,))],
                        [Conv("input", "h1", 3), Dense("h1", "h2"), Dense("h2", "out"), Dense("h1", "out")])
    net = ConvHopfieldNetwork(arch, seed=0, dtype=np.float64)
    x = rng.uniform(size=(2, 36))
    with pytest.raises(ValidationError, match=r"coupling dense2 \(h2 -> out\) closes an odd cycle.*use 'fixed_point'"):
        relaxed(net, x, "block")
    assert relaxed(net, x, "fixed_point")[0].status_name == "converged"


def test_relaxation_arguments_are_checked(rng):
    net = net_of(tiny_arch(), seed=0)
    x = rng.uniform(size=(2, 36))
    drive = net.input_drive(x)
    s0 = np.zeros_like(drive)
    with pytest.raises(ValidationError, match="scheme must be one of"):
        net.relax_with_energy(s0, drive, "euler")
    with pytest.raises(ValidationError, match="target is required"):
        net.relax_with_energy(s0, drive, "block", beta=0.1)
    with pytest.raises(ValidationError, match="beta must be > -1"):
        net.relax_with_energy(s0, drive, "block", beta=-1.0, target=np.zeros((2, 3)))
    with pytest.raises(ValidationError, match=r"drive must have shape \(2, 11\)"):
        net.relax_with_energy(s0, drive[:, :5], "block")
    with pytest.raises(ValidationError, match="box must be"):
        net.relax_with_energy(s0, drive, "block", box="unit")


@pytest.mark.parametrize("activation", ["hard_sigmoid", "tanh"])
def test_dense_architecture_is_the_dense_hopfield_network(rng, activation):
    """Dense couplings only: the parameter layout, energy, gradients and sweeps of HopfieldNetwork (its own kernels)."""
    from dynsim.networks.hopfield import HopfieldNetwork
    from dynsim.relax import block_relaxation

    dense = HopfieldNetwork.layered([6, 5, 4, 3], activation=activation, seed=3)
    arch = Architecture([Group("input", (6,), activation), Group("hidden_1", (5,), activation),
                         Group("hidden_2", (4,), activation), Group("output", (3,), activation)],
                        [Dense("input", "hidden_1"), Dense("hidden_1", "hidden_2"), Dense("hidden_2", "output")])
    theta = dense.theta.copy()
    theta[-dense.n_free:] = 0.3 * rng.standard_normal(dense.n_free)
    dense.theta = theta
    net = ConvHopfieldNetwork(arch, theta=theta, dtype=np.float64)
    assert net.parameter_blocks() == dense.parameter_blocks()
    x = rng.uniform(size=(4, 6))
    s = rng.uniform(-0.5, 1.5, size=(4, net.n_free))
    for f in ("energy", "energy_grad_state", "energy_grad_params"):
        np.testing.assert_allclose(getattr(net, f)(x, s), getattr(dense, f)(x, s), rtol=1e-12, atol=1e-12)
    target = np.eye(3)[[0, 1, 2, 0]]
    drive = net.input_drive(x)
    np.testing.assert_allclose(drive, dense.input_drive(x), rtol=1e-13, atol=1e-13)
    box = dense.natural_box
    for scheme in ("fixed_point", "block"):
        for beta in (0.0, 0.7):
            kw = dict(max_steps=500, atol=1e-10, rtol=1e-10)
            got, e_got = net.relax_with_energy(np.zeros_like(drive), drive, scheme, beta, target, box="natural", **kw)
            want, _ = block_relaxation.relax_with_energy(dense, np.zeros_like(drive), drive, scheme, beta, target,
                                                         box=box, fused=False, **kw)
            assert (got.status, got.n_steps, got.nfev) == (want.status, want.n_steps, want.nfev)
            np.testing.assert_allclose(got.y, want.y, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got.residual, want.residual, rtol=1e-6, atol=1e-14)
            np.testing.assert_allclose(e_got, dense.energy(x, got.y), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Equilibrium propagation
# ---------------------------------------------------------------------------------------------------------------


def test_centered_ep_matches_the_gradient_of_the_loss_at_the_free_fixed_point(rng):
    """EP theorem (Scellier & Bengio 2017): (dE/dtheta(s_beta) - dE/dtheta(s_-beta)) / 2 beta -> dL/dtheta.

    The reference is a central difference of L(theta) = mean C(s*(theta)) with the free fixed point s*
    relaxed tightly for each perturbed theta. Centered nudging's error falls as beta^2, one-sided nudging's
    as beta (Laborieux et al. 2021); the max-pooling winners stay put under every perturbation.
    """
    net = net_of(tiny_arch("max", "logistic"), seed=12, gain=1.5)
    x = rng.uniform(size=(3, net.n_input))
    target = np.eye(3)[[1, 0, 2]]
    free, _ = relaxed(net, x, "block", atol=1e-13)
    assert _max_pool_gap(net, x, free.y) > 1e-3

    def loss(theta):
        net.theta = theta
        r, _ = relaxed(net, x, "block", atol=1e-13, s0=free.y)
        assert r.status_name == "converged"
        return net.cost(r.y, target).mean()

    theta = net.theta.copy()
    eps = 1e-6
    fd = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)])
    net.theta = theta
    centered, positive = [], []
    for beta in (1e-2, 1e-3, 1e-4):
        plus, _ = relaxed(net, x, "block", beta, target, s0=free.y, atol=1e-13)
        minus, _ = relaxed(net, x, "block", -beta, target, s0=free.y, atol=1e-13)
        ep = net.energy_grad_params_difference(x, minus.y, plus.y, 1.0 / (2 * beta))
        one_sided = net.energy_grad_params_difference(x, free.y, plus.y, 1.0 / beta)
        centered.append(np.linalg.norm(ep - fd) / np.linalg.norm(fd))
        positive.append(np.linalg.norm(one_sided - fd) / np.linalg.norm(fd))
    np.testing.assert_allclose(ep, fd, rtol=1e-4, atol=1e-7)
    assert centered[-1] < 1e-6
    # Measured: centered 9.4e-5, 9.4e-7; one-sided 1.0e-2, 1.0e-3 at beta 1e-2, 1e-3.
    assert 70 < centered[0] / centered[1] < 130
    assert 7 < positive[0] / positive[1] < 13 and 7 < positive[1] / positive[2] < 13


def test_ep_gradient_through_settle_is_the_contrast_of_its_own_relaxations(rng):
    """dynsim.learning.ep_gradient on the conv network: settle routes the relaxation schemes to the network."""
    from dynsim.learning.contrastive import ep_gradient
    from dynsim.relax.phases import SettleOptions

    net = net_of(tiny_arch("max", "hard_sigmoid"), seed=13, bias=0.4)
    x = rng.uniform(size=(3, net.n_input))
    target = np.eye(3)[[1, 0, 2]]
    options = SettleOptions(integrator="fixed_point", atol=1e-12, rtol=1e-14, max_steps=5000)
    estimate = ep_gradient(net, x, target, 0.01, "centered", options)
    free, _ = relaxed(net, x, "fixed_point", atol=1e-12)
    plus, _ = relaxed(net, x, "fixed_point", 0.01, target, s0=free.y, atol=1e-12)
    minus, _ = relaxed(net, x, "fixed_point", -0.01, target, s0=free.y, atol=1e-12)
    np.testing.assert_allclose(estimate.gradient, net.energy_grad_params_difference(x, minus.y, plus.y, 50.0),
                               rtol=1e-6, atol=1e-9)


def test_settle_refuses_an_ode_integrator_with_the_schemes_it_can_use(rng):
    from dynsim.relax.phases import SettleOptions, free_phase

    net = net_of(tiny_arch("avg", "hard_sigmoid"), seed=1)
    with pytest.raises(ValidationError, match=r"integrator 'euler': a ConvHopfieldNetwork relaxes with "
                                              r"\['fixed_point', 'block'\] only"):
        free_phase(net, rng.uniform(size=(2, net.n_input)), options=SettleOptions(integrator="euler"))


# ---------------------------------------------------------------------------------------------------------------
# The description: validation, parameter layout, initialisation
# ---------------------------------------------------------------------------------------------------------------


def mnist_groups(h1=(32, 12, 12)):
    return [Group("input", (1, 28, 28)), Group("h1", h1), Group("h2", (64, 4, 4)), Group("out", (10,))]


def mnist_couplings():
    return [Conv("input", "h1", 5, pool="max"), Conv("h1", "h2", 5, pool="max"), Dense("h2", "out")]


@pytest.mark.parametrize("groups, couplings, message", [
    (mnist_groups((32, 14, 14)), mnist_couplings(),
     r"coupling conv1 \(input -> h1\): conv 5x5 stride 1 padding 0 then max pool 2 gives \(32, 12, 12\) from "
     r"\(1, 28, 28\), but group h1 has shape \(32, 14, 14\)"),
    (mnist_groups(), [Conv("input", "h1", 5, pool="max"), Conv("h1", "h9", 5, pool="max"), Dense("h2", "out")],
     r"coupling conv2 \(h1 -> h9\): unknown group 'h9' as post; the groups are \['input', 'h1', 'h2', 'out'\]"),
    (mnist_groups()[:2] + [Group("h1", (64, 4, 4)), Group("out", (10,))], mnist_couplings(),
     r"group names must be unique: 'h1' appears twice"),
    (mnist_groups(), mnist_couplings()[:2] + [Dense("h2", "out", name="conv1")],
     r"coupling names must be unique: 'conv1' appears twice"),
    ([Group("input", (1, 3, 3)), Group("h", (2, 1, 1)), Group("out", (2,))], [Conv("input", "h", 5), Dense("h", "out")],
     r"coupling conv1 \(input -> h\): a 5x5 kernel does not fit the 3x3 maps of group input padded by 0"),
    ([Group("input", (1, 4, 4)), Group("h", (2, 1, 1)), Group("out", (2,))],
     [Conv("input", "h", 3, pool="max", pool_size=3), Dense("h", "out")],
     r"coupling conv1 \(input -> h\): a 3x3 max pool does not fit the 2x2 maps"),
    (mnist_groups(), mnist_couplings() + [Dense("out", "input")],
     r"coupling dense2 \(out -> input\): the post group must be free, but input is the clamped input"),
    (mnist_groups() + [Group("h3", (5, 1, 1))], mnist_couplings(),
     r"the last group is the output and must be units \(n,\), but group h3 has shape \(5, 1, 1\)"),
    (mnist_groups()[:3] + [Group("h3", (5,)), Group("out", (10,))], mnist_couplings(),
     r"group h3 \(5,\) has no coupling"),
    ([Group("input", (4,)), Group("h", (2, 2, 2)), Group("out", (2,))], [Conv("input", "h", 1), Dense("h", "out")],
     r"coupling conv1 \(input -> h\): a convolution needs feature maps \(C, H, W\) on both sides, but group input "
     r"has shape \(4,\)"),
    (mnist_groups(), mnist_couplings() + [Dense("out", "h2")],
     r"coupling dense2 \(out -> h2\): groups out and h2 are already coupled by dense1"),
    (mnist_groups(), mnist_couplings() + [Dense("h1", "h1")], r"coupling dense2 \(h1 -> h1\): a group cannot be "
                                                                r"coupled to itself"),
    (mnist_groups(), [Conv("input", "h1", 5, pool="min")] + mnist_couplings()[1:],
     r"coupling conv1 \(input -> h1\): pool must be one of \[None, 'max', 'avg'\], got 'min'"),
    ([Group("input", (4,))], [], r"at least one free group"),
])
def test_descriptions_that_do_not_fit_are_refused_with_the_group_or_coupling_and_shapes(groups, couplings, message):
    with pytest.raises(ValidationError, match=message):
        Architecture(groups, couplings)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="h 1", shape=(3,)), "group name must be a non-empty string without spaces"),
    (dict(name="h", shape=(3, 4)), r"group h: shape must be \(n,\) units or \(C, H, W\)"),
    (dict(name="h", shape=(3,), activation="softplus"), r"group h: activation must be one of"),
])
def test_bad_groups_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        Group(**kwargs)


def test_a_hopfield_network_refuses_the_activations_of_predictive_coding_naming_the_group():
    arch = Architecture([Group("input", (4,)), Group("h", (3,), activation="relu"), Group("out", (2,))],
                        [Dense("input", "h"), Dense("h", "out")])
    with pytest.raises(ValidationError, match=r"group h: a Hopfield network's activation must be one of .* "
                                              r"got 'relu'"):
        ConvHopfieldNetwork(arch)


def test_parameter_blocks_cover_theta_exactly_once_in_the_documented_order():
    arch = Architecture(mnist_groups(), mnist_couplings())
    net = ConvHopfieldNetwork(arch, seed=0)
    blocks = net.parameter_blocks()
    assert list(blocks) == ["W_input_h1", "W_h1_h2", "W_h2_out", "b_h1", "b_h2", "b_out"]
    covered = np.zeros(net.n_params, dtype=int)
    for sl in blocks.values():
        covered[sl] += 1
    np.testing.assert_array_equal(covered, 1)
    sizes = {name: sl.stop - sl.start for name, sl in blocks.items()}
    assert sizes == {"W_input_h1": 32 * 1 * 25, "W_h1_h2": 64 * 32 * 25, "W_h2_out": 1024 * 10, "b_h1": 32,
                     "b_h2": 64, "b_out": 10}
    assert net.weights("conv2").shape == (64, 32, 5, 5) and net.weights(2).shape == (1024, 10)
    assert net.biases("h1").shape == (32,) and np.shares_memory(net.biases("h1"), net.theta)
    assert net.layer_of_block() == {"W_input_h1": 1, "W_h1_h2": 2, "W_h2_out": 3, "b_h1": 1, "b_h2": 2, "b_out": 3}
    assert net.n_free == 32 * 144 + 64 * 16 + 10 and net.output_slice == slice(net.n_free - 10, net.n_free)


def test_initial_parameters_are_seeded_uniform_with_zero_biases():
    arch = Architecture(mnist_groups(), mnist_couplings())
    a, b = arch.initial_theta(seed=3), arch.initial_theta(seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, arch.initial_theta(seed=4))
    layout = {blk.name: blk for blk in arch.parameter_layout()}
    conv = a[layout["W_h1_h2"].slice]
    assert np.abs(conv).max() <= 1 / np.sqrt(32 * 25) and np.abs(conv).max() > 0.9 / np.sqrt(32 * 25)
    dense = a[layout["W_h2_out"].slice]
    assert np.abs(dense).max() <= np.sqrt(6 / (1024 + 10))
    for name in ("b_h1", "b_h2", "b_out"):
        np.testing.assert_array_equal(a[layout[name].slice], 0.0)
    assert ConvHopfieldNetwork(arch, seed=3).theta.dtype == np.float32


def test_conv_stack_builds_laborieux_mnist_network():
    arch = Architecture.conv_stack((1, 28, 28), [32, 64], [5, 5], "mm", fc=[10])
    assert [g.shape for g in arch.groups] == [(1, 28, 28), (32, 12, 12), (64, 4, 4), (10,)]
    assert [c.name for c in arch.couplings] == ["conv1", "conv2", "dense1"]


def test_inputs_are_images_flat_in_channel_height_width_order(rng):
    """A pixel (c, r, col) of example i is x[i, (c H + r) W + col] (Task.images); check by moving one pixel."""
    arch = Architecture([Group("input", (2, 3, 4), "tanh"), Group("h", (1, 1, 1), "tanh"), Group("out", (1,), "tanh")],
                        [Conv("input", "h", (3, 4)), Dense("h", "out")])
    net = ConvHopfieldNetwork(arch, seed=0, dtype=np.float64)
    x = np.zeros((1, 24))
    x[0, (1 * 3 + 2) * 4 + 1] = 0.5  # channel 1, row 2, column 1
    h = net.input_drive(x)[0, 0] - net.biases("h")[0]
    assert h == pytest.approx(np.tanh(0.5) * net.weights("conv1")[0, 1, 2, 1], rel=1e-14)


def test_every_thread_count_gives_the_same_bits(rng):
    """A minibatch's convolutions run in chunks fixed by its size on Numba's threads (and the per-sample sums row by
    row): one, two and again two threads relax to the same bits and give the same EP update."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    net = net_of(deep_arch("max", "hard_sigmoid"), seed=5, dtype=np.float32, gain=1.5)
    x = rng.uniform(size=(13, net.n_input)).astype(np.float32)
    target = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 13)]

    def update():
        free, _ = relaxed(net, x, "block", max_steps=20, stop_at_steady_state=False)
        plus, _ = relaxed(net, x, "block", 0.2, target, s0=free.y, max_steps=8, stop_at_steady_state=False)
        minus, _ = relaxed(net, x, "block", -0.2, target, s0=free.y, max_steps=8, stop_at_steady_state=False)
        return free.y, net.energy_grad_params_difference(x, minus.y, plus.y, 2.5)

    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = update()
        numba.set_num_threads(2)
        two, again = update(), update()
    finally:
        numba.set_num_threads(saved)
    assert np.abs(one[1]).max() > 0.0
    for a, b, c in zip(one, two, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_a_relaxation_called_outside_training_holds_blas_to_one_thread_throughout(rng, monkeypatch):
    """With Numba's threads running the convolutions' chunks, BLAS threads left spinning after the dense products
    between them took the cores: a direct call of 30 sweeps of the MNIST conv net took 1.6-1.7 s instead of 0.5 s.
    The network's methods hold BLAS for the whole call, as ``fit`` does."""
    numba = pytest.importorskip("numba")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from dynsim.networks import coupling_ops

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here")
    seen = []
    dense_forward = coupling_ops.DenseOps.forward_into

    def recording(self, *args):
        seen.append([lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"])
        return dense_forward(self, *args)

    monkeypatch.setattr(coupling_ops.DenseOps, "forward_into", recording)
    net = net_of(deep_arch("max", "hard_sigmoid"), seed=5, dtype=np.float32)
    x = rng.uniform(size=(16, net.n_input)).astype(np.float32)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        # The suite runs BLAS on one thread (conftest.py): give it two, as a user's session has.
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            relaxed(net, x, "block", max_steps=5, stop_at_steady_state=False)
            after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    finally:
        numba.set_num_threads(saved)
    assert len(seen) >= 5 and all(counts and all(n == 1 for n in counts) for counts in seen)
    assert after and all(n == 2 for n in after)  # the user's setting is back after the call
