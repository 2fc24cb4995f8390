"""Convolutional predictive coding networks: energy, gradients and learning rules against independent references.

The references are written here: a plain numpy forward pass with loop
convolutions and poolings (its loss differentiated by central differences),
the PC energy written out group by group from it, the dense
:class:`PCNetwork` for architectures of dense couplings, and PyTorch's
autograd where it is installed.
"""
import numpy as np
import pytest
from test_pc import PHI

from dynsim.learning import gradient_estimate
from dynsim.learning.predictive_coding import pc_gradient, zil_gradient
from dynsim.networks import Architecture, Conv, ConvPCNetwork, Dense, Group, PCNetwork
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import ValidationError

SETTLED = SettleOptions(integrator="euler", dt=0.2, max_steps=50_000, atol=1e-13, rtol=1e-13)


# ----------------------------------------------------------------------------- a plain numpy reference
def loop_conv(a, w, stride, pad):
    """Cross-correlation of maps a (C, H, W) with kernels w (C_out, C, kh, kw), by loops."""
    C, H, W = a.shape
    a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    co, _, kh, kw = w.shape
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    out = np.zeros((co, Ho, Wo))
    for o in range(co):
        for i in range(Ho):
            for j in range(Wo):
                out[o, i, j] = np.sum(a[:, i * stride:i * stride + kh, j * stride:j * stride + kw] * w[o])
    return out


def loop_pool(a, kind, k, stride):
    C, H, W = a.shape
    Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
    out = np.zeros((C, Ho, Wo))
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                window = a[c, i * stride:i * stride + k, j * stride:j * stride + k]
                out[c, i, j] = window.max() if kind == "max" else window.mean()
    return out


def coupling_of(net, c, theta, a):
    """K_c(a) for one sample's activity a (shape of the pre group), by the loops above."""
    blocks = net.parameter_blocks()
    w = theta[blocks[f"W_{c.pre}_{c.post}"]].reshape(net.architecture.weight_shape(c))
    if c.kind == "dense":
        return a.reshape(-1) @ w
    out = loop_conv(a, w, c.stride, c.padding)
    if c.pool is not None:
        out = loop_pool(out, c.pool, c.pool_size, c.pool_step)
    return out


def predictions(net, theta, x, states):
    """mu_g of every free group for one sample, from the clamped x and the groups' states (dict name -> array)."""
    arch = net.architecture
    blocks = net.parameter_blocks()
    acts = {arch.input.name: PHI[arch.input.activation](x)}
    acts.update({name: PHI[arch.group(name).activation](v) for name, v in states.items()})
    mu = {}
    for g in arch.groups[1:]:
        if any(c.post == g.name and c.pre not in acts for c in arch.couplings):
            continue  # a presynaptic group not known yet (the feedforward pass has not reached it)
        total = np.zeros(g.shape)
        if f"b_{g.name}" in blocks:
            b = theta[blocks[f"b_{g.name}"]]
            total = total + (b[:, None, None] if len(g.shape) == 3 else b)
        for c in arch.couplings:
            if c.post == g.name:
                pre = arch.group(c.pre)
                total = total + coupling_of(net, c, theta, acts[c.pre].reshape(pre.shape)).reshape(g.shape)
        mu[g.name] = total
    return mu


def loop_feedforward(net, theta, x):
    """The feedforward pass of one sample x (flat): each group set to its prediction in turn."""
    arch = net.architecture
    xs = x.reshape(arch.input.shape)
    states = {}
    for g in arch.groups[1:]:
        states[g.name] = predictions(net, theta, xs, states)[g.name]
    return states


def loop_loss(net, theta, x, y):
    """mean_b 1/2 ||y_hat_b - y_b||^2 through the loop feedforward pass."""
    out = net.architecture.output.name
    return np.mean([0.5 * np.sum((loop_feedforward(net, theta, xb)[out] - yb) ** 2) for xb, yb in zip(x, y)])


def loop_energy(net, x, s):
    """F per sample written out: sum_g p_g/2 ||x_g - mu_g||^2 with the loop predictions."""
    arch = net.architecture
    out = []
    for xb, sb in zip(x, s):
        states = {name: v.reshape(arch.group(name).shape) for name, v in net.split_state(sb).items()}
        mu = predictions(net, net.theta, xb.reshape(arch.input.shape), states)
        out.append(sum(0.5 / net.variances[k] * np.sum((states[g.name] - mu[g.name]) ** 2)
                       for k, g in enumerate(arch.groups[1:])))
    return np.array(out)


# ----------------------------------------------------------------------------- networks
def small_arch(activation="tanh", pool1="max", pool2="avg"):
    return Architecture(
        [Group("input", (2, 8, 8), activation), Group("c1", (3, 3, 3), activation),
         Group("c2", (4, 1, 1), activation), Group("out", (3,), activation)],
        [Conv("input", "c1", 3, pool=pool1), Conv("c1", "c2", 2, pool=pool2), Dense("c2", "out")])


def strided_arch():
    """Stride 2, padding 1, overlapping 3x3 max pools of step 1, then dense."""
    return Architecture(
        [Group("input", (1, 7, 7), "logistic"), Group("c1", (2, 2, 2), "gelu"), Group("out", (2,), "relu")],
        [Conv("input", "c1", 3, stride=2, padding=1, pool="max", pool_size=3, pool_stride=1), Dense("c1", "out")])


def skip_arch():
    """A DAG: the input predicts c1 and (skipping it) the hidden units h, which c1 predicts too."""
    return Architecture(
        [Group("input", (1, 6, 6), "tanh"), Group("c1", (2, 2, 2), "tanh"), Group("h", (5,), "tanh"),
         Group("out", (2,), "tanh")],
        [Conv("input", "c1", 3, pool="max"), Dense("c1", "h"), Dense("input", "h"), Dense("h", "out")])


def data(net, rng, batch=3):
    x = rng.uniform(-1, 1, (batch, net.n_input))
    y = rng.uniform(-1, 1, (batch, net.n_output))
    return x, y


ARCHS = {"small": small_arch, "strided": strided_arch, "skip": skip_arch}


# ----------------------------------------------------------------------------- energy and gradients
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_feedforward_and_energy_against_the_loop_reference(name, rng):
    net = ConvPCNetwork(ARCHS[name](), seed=1, dtype=np.float64, init="fan-in", variances=None)
    net.variances = np.linspace(0.5, 2.0, len(net.group_sizes) - 1)
    x, _ = data(net, rng)
    ff = net.feedforward(x)
    for b in range(x.shape[0]):
        ref = loop_feedforward(net, net.theta, x[b])
        for name_g, v in net.split_state(ff[b:b + 1]).items():
            np.testing.assert_allclose(v.ravel(), ref[name_g].ravel(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(net.energy(x, ff), 0.0, atol=1e-25)  # every error is zero there
    s = ff + 0.3 * rng.standard_normal(ff.shape)
    np.testing.assert_allclose(net.energy(x, s), loop_energy(net, x, s), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_state_and_parameter_gradients_against_central_differences(name, rng):
    net = ConvPCNetwork(ARCHS[name](), seed=2, dtype=np.float64, init="fan-in")
    net.variances = np.linspace(0.5, 2.0, len(net.group_sizes) - 1)
    x, _ = data(net, rng)
    s = net.feedforward(x) + 0.3 * rng.standard_normal((x.shape[0], net.n_free))
    h = 1e-6
    grad_s = net.energy_grad_state(x, s)
    for j in range(net.n_free):
        sp, sm = s.copy(), s.copy()
        sp[:, j] += h
        sm[:, j] -= h
        np.testing.assert_allclose(grad_s[:, j], (net.energy(x, sp) - net.energy(x, sm)) / (2 * h), atol=2e-8)
    grad_p = net.energy_grad_params(x, s)
    theta = net.theta.copy()
    fd = np.empty(net.n_params)
    for k in range(net.n_params):
        t = theta.copy()
        t[k] += h
        net.theta = t
        ep = net.energy(x, s).mean()
        t[k] -= 2 * h
        net.theta = t
        fd[k] = (ep - net.energy(x, s).mean()) / (2 * h)
    net.theta = theta
    np.testing.assert_allclose(grad_p, fd, atol=2e-8)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_backprop_reference_against_differences_of_the_loop_loss(name, rng):
    net = ConvPCNetwork(ARCHS[name](), seed=3, dtype=np.float64, init="fan-in")
    x, y = data(net, rng)
    grad = net.backprop_gradient(x, y)
    theta = net.theta.copy()
    h = 1e-6
    fd = np.empty(net.n_params)
    for k in range(net.n_params):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        fd[k] = (loop_loss(net, tp, x, y) - loop_loss(net, tm, x, y)) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=1e-8)


def test_backprop_reference_against_pytorch_autograd(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    net = ConvPCNetwork(small_arch(), seed=1, dtype=np.float64)
    x, y = data(net, rng, batch=5)
    theta = torch.tensor(net.theta, requires_grad=True)
    blocks = net.parameter_blocks()

    def block(name, shape):
        return theta[blocks[name]].reshape(shape)

    a0 = torch.tanh(torch.tensor(x).reshape(5, 2, 8, 8))
    m1 = F.max_pool2d(F.conv2d(a0, block("W_input_c1", (3, 2, 3, 3))), 2) + block("b_c1", (3,))[None, :, None, None]
    m2 = F.avg_pool2d(F.conv2d(torch.tanh(m1), block("W_c1_c2", (4, 3, 2, 2))), 2) \
        + block("b_c2", (4,))[None, :, None, None]
    out = torch.tanh(m2).reshape(5, -1) @ block("W_c2_out", (4, 3)) + block("b_out", (3,))
    (0.5 * ((out - torch.tensor(y)) ** 2).sum(1).mean()).backward()
    np.testing.assert_allclose(net.backprop_gradient(x, y), theta.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fixed", [False, True])
def test_dense_architecture_is_the_dense_pc_network(fixed, rng):
    """The same energy, fields, updates and inference as PCNetwork, to rounding, in both variants."""
    sizes = [6, 5, 4, 3]
    variances = [1.0, 2.0, 0.5]
    dense = PCNetwork(sizes, activation="tanh", seed=3, variances=variances, fixed_prediction=fixed)
    arch = Architecture([Group("input", (6,), "tanh"), Group("layer_1", (5,), "tanh"),
                         Group("layer_2", (4,), "tanh"), Group("output", (3,), "tanh")],
                        [Dense("input", "layer_1"), Dense("layer_1", "layer_2"), Dense("layer_2", "output")])
    conv = ConvPCNetwork(arch, theta=dense.theta, variances=variances, fixed_prediction=fixed, dtype=np.float64)
    assert list(conv.parameter_blocks().items()) == list(dense.parameter_blocks().items())
    assert conv.layer_of_block() == dense.layer_of_block()
    x, y = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    s = rng.standard_normal((4, 12))
    np.testing.assert_allclose(conv.energy(x, s), dense.energy(x, s), rtol=1e-13)
    np.testing.assert_allclose(conv.energy_grad_state(x, s), dense.energy_grad_state(x, s), atol=1e-14)
    np.testing.assert_allclose(conv.energy_grad_params(x, s), dense.energy_grad_params(x, s), atol=1e-14)
    np.testing.assert_allclose(conv.backprop_gradient(x, y), dense.backprop_gradient(x, y), atol=1e-15)
    variant = "fixed_prediction" if fixed else "strict"
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=7, stop_at_steady_state=False)
    a = pc_gradient(dense, x, y, variant, options=options)
    b = pc_gradient(conv, x, y, variant, options=options)
    np.testing.assert_allclose(b.inference.state, a.inference.state, atol=1e-14)
    np.testing.assert_allclose(b.gradient, a.gradient, atol=1e-14)
    assert b.inference.integration.message == a.inference.integration.message
    assert b.inference.integration.n_steps == 7


# ----------------------------------------------------------------------------- the rules against backprop
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_fixed_prediction_at_equilibrium_is_backprop(name, rng):
    """Millidge et al. 2020/2022: conv, pooling and a skip coupling included."""
    net = ConvPCNetwork(ARCHS[name](), seed=4, dtype=np.float64, init="fan-in")
    x, y = data(net, rng)
    est = pc_gradient(net, x, y, "fixed_prediction", options=SETTLED)
    assert est.inference.integration.status_name == "converged"
    bp = net.backprop_gradient(x, y)
    np.testing.assert_allclose(est.gradient, bp, rtol=0, atol=1e-8 * np.abs(bp).max())


@pytest.mark.parametrize("name", ["small", "strided"])
def test_zil_is_backprop(name, rng):
    net = ConvPCNetwork(ARCHS[name](), seed=5, dtype=np.float64, init="fan-in")
    x, y = data(net, rng)
    bp = net.backprop_gradient(x, y)
    np.testing.assert_allclose(zil_gradient(net, x, y).gradient, bp, rtol=0, atol=1e-12 * np.abs(bp).max())
    np.testing.assert_allclose(gradient_estimate("pc-zil", net, x, y).gradient, bp, rtol=0,
                               atol=1e-12 * np.abs(bp).max())


def test_zil_refuses_a_coupling_that_skips_a_layer(rng):
    net = ConvPCNetwork(skip_arch(), seed=0, dtype=np.float64)
    x, y = data(net, rng)
    with pytest.raises(ValidationError, match=r"Z-IL .* couplings \['dense2 \(input -> h\)'\] skip a layer"):
        zil_gradient(net, x, y)


def test_strict_pc_with_a_large_output_variance_approaches_backprop(rng):
    """Whittington & Bogacz 2017: the rescaled strict update tends to backprop as sigma_L^2 grows."""
    net = ConvPCNetwork(small_arch(), seed=6, dtype=np.float64, init="fan-in")
    x, y = data(net, rng)
    bp = net.backprop_gradient(x, y)
    errors = []
    for variance in (1.0, 100.0):
        net.variances = [1.0, 1.0, variance]
        est = pc_gradient(net, x, y, "strict", options=SETTLED)
        errors.append(np.linalg.norm(est.gradient - bp) / np.linalg.norm(bp))
    assert errors[1] < 0.05 < errors[0] and errors[1] < errors[0] / 10


# ----------------------------------------------------------------------------- the relaxation
def test_inference_is_the_euler_integration_of_minus_the_energy_gradient(rng):
    """Each recorded step is x + dt (-dF/dx) (output clamped); the energy falls along it."""
    net = ConvPCNetwork(small_arch(), seed=7, dtype=np.float64)
    x, y = data(net, rng)
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=6, stop_at_steady_state=False, record_every=1)
    phase = settle(net, x, target=y, clamp_output=True, options=options, phase="inference")
    traj = phase.integration.trajectory.y
    assert traj.shape == (7, x.shape[0], net.n_free) and phase.integration.n_steps == 6
    np.testing.assert_array_equal(traj[:, :, net.output_slice], np.broadcast_to(y, traj[:, :, net.output_slice].shape))
    for k in range(6):
        step = -0.1 * net.energy_grad_state(x, traj[k])
        step[:, net.output_slice] = 0.0
        np.testing.assert_allclose(traj[k + 1], traj[k] + step, atol=1e-14)
    assert np.all(np.diff(phase.trajectory_energy, axis=0) <= 1e-15)
    np.testing.assert_allclose(phase.energy, net.energy(x, phase.state), rtol=1e-13)


def test_a_nudged_free_output_settles_where_the_field_vanishes(rng):
    net = ConvPCNetwork(small_arch(), seed=8, dtype=np.float64)
    x, y = data(net, rng)
    beta = 0.5
    phase = settle(net, x, target=y, beta=beta, options=SETTLED)
    assert phase.integration.status_name == "converged" and phase.integration.n_steps > 0
    grad = net.energy_grad_state(x, phase.state)
    grad[:, net.output_slice] += beta * (phase.state[:, net.output_slice] - y)
    assert np.abs(grad).max() < 1e-11


def test_a_step_beyond_stability_is_reported_as_diverged_with_the_last_finite_state(rng):
    net = ConvPCNetwork(small_arch(), seed=9, dtype=np.float64)
    x, y = data(net, rng)
    options = SettleOptions(integrator="euler", dt=3.0, max_steps=500, max_abs=1e3)
    phase = settle(net, x, target=y, clamp_output=True, options=options)
    it = phase.integration
    assert it.status_name == "diverged" and 0 < it.diverged_step <= 500 and "diverged" in it.message
    assert np.isfinite(phase.state).all() and np.abs(phase.state).max() <= 1e3
    with pytest.raises(Exception, match="diverged"):
        pc_gradient(net, x, y, "strict", options=options)


def test_float32_network_agrees_with_float64(rng):
    n64 = ConvPCNetwork(small_arch(), seed=10, dtype=np.float64)
    n32 = ConvPCNetwork(small_arch(), theta=n64.theta, dtype=np.float32)
    x, y = data(n64, rng, batch=4)
    options = SettleOptions(integrator="euler", dt=0.1, max_steps=20, stop_at_steady_state=False)
    for variant in ("strict", "fixed_prediction"):
        a = pc_gradient(n64, x, y, variant, options=options)
        b = pc_gradient(n32, x, y, variant, options=options)
        assert b.gradient.dtype == np.float32 and b.inference.state.dtype == np.float32
        np.testing.assert_allclose(b.gradient, a.gradient, atol=2e-5 * np.abs(a.gradient).max())
        np.testing.assert_allclose(b.inference.state, a.inference.state, atol=1e-5)


# ----------------------------------------------------------------------------- bad descriptions and options
def test_bad_descriptions_and_options_are_refused_with_a_message(rng):
    backwards = Architecture([Group("input", (4,)), Group("a", (3,)), Group("b", (3,)), Group("out", (2,))],
                             [Dense("input", "b"), Dense("b", "a"), Dense("a", "out")])
    with pytest.raises(ValidationError, match=r"coupling dense2 \(b -> a\): .* list the groups in feedforward order"):
        ConvPCNetwork(backwards)
    unpredicted = Architecture([Group("input", (4,)), Group("a", (3,)), Group("out", (2,))],
                               [Dense("input", "out"), Dense("a", "out")])
    with pytest.raises(ValidationError, match=r"group a \(3,\) receives no coupling"):
        ConvPCNetwork(unpredicted)
    net = ConvPCNetwork(small_arch(), seed=0, dtype=np.float64)
    x, y = data(net, rng)
    drive = net.input_drive(x)
    with pytest.raises(ValidationError, match="integrator 'rk4': a ConvPCNetwork relaxes with \\['euler'\\] only"):
        settle(net, x, target=y, clamp_output=True, options=SettleOptions(integrator="rk4"))
    with pytest.raises(ValidationError, match="leave t_max at inf and retry_smaller_step at 0"):
        settle(net, x, options=SettleOptions(integrator="euler", t_max=3.0))
    with pytest.raises(ValidationError, match="box: the states of a predictive coding network are unbounded"):
        net.relax(drive, drive, box=(0.0, 1.0))
    with pytest.raises(ValidationError, match="dt must be"):
        net.relax(drive, drive, dt=0.0)
    with pytest.raises(ValidationError, match="variances must be > 0"):
        net.variances = [1.0, 0.0, 1.0]
    with pytest.raises(ValidationError, match="Hopfield network's activation"):
        from dynsim.networks import ConvHopfieldNetwork
        ConvHopfieldNetwork(Architecture([Group("input", (4,)), Group("out", (2,), "gelu")], [Dense("input", "out")]))
    with pytest.raises(ValidationError, match="init must be 'default' or 'fan-in'"):
        ConvPCNetwork(small_arch(), init="glorot")
