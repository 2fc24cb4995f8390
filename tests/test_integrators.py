"""The generic integrators against closed forms (expm), scipy's RK45, and known fixed points."""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import integrators
from integrators import DOPRI5, drivers_for

from conftest import LINEAR, VAN_DER_POL

SPIRAL = np.array([[-0.5, 1.0], [-1.0, -0.5]])
Y0 = np.array([[1.0, 0.5]])
T_END = 2.0


def run_fixed(A, b, c, dt, y0=Y0, matrix=SPIRAL, t_end=T_END):
    """Fixed-step explicit RK with an arbitrary tableau, straight through the compiled driver."""
    out = drivers_for(LINEAR).explicit_rk(
        np.ascontiguousarray(y0), 0.0, dt, 10**7, t_end, 1.0, 1.0, False, A, b, c,
        np.full(2, -np.inf), np.full(2, np.inf), False, 1e300, 0, np.zeros(0, np.int64),
        (matrix, np.zeros(2)))
    return out[0]


def observed_order(A, b, c):
    exact = scipy.linalg.expm(SPIRAL * T_END) @ Y0[0]
    steps = np.array([0.2, 0.1, 0.05, 0.025])
    errors = [np.linalg.norm(run_fixed(A, b, c, dt)[0] - exact) for dt in steps]
    return np.polyfit(np.log(steps), np.log(errors), 1)[0]


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_convergence_order_against_expm(name):
    tab = integrators.TABLEAUS[name]
    slope = observed_order(tab.A, tab.b, tab.c)
    assert abs(slope - tab.order) <= 0.3, f"{name}: observed order {slope:.2f}, expected {tab.order}"


def test_convergence_order_of_the_dopri5_pair():
    # Both members of the embedded pair, run as fixed-step methods.
    assert abs(observed_order(DOPRI5.A, DOPRI5.b, DOPRI5.c) - 5) <= 0.3
    assert abs(observed_order(DOPRI5.A, DOPRI5.b - DOPRI5.b_error, DOPRI5.c) - 4) <= 0.3


def test_public_fixed_step_methods_match_expm():
    exact = scipy.linalg.expm(SPIRAL * T_END) @ Y0[0]
    res = integrators.integrate(LINEAR, Y0, (SPIRAL, np.zeros(2)), method="rk4", dt=0.01,
                                t_max=T_END, stop_at_steady_state=False, max_steps=10**6)
    assert res.status_name == "time_limit"
    assert res.t == pytest.approx(T_END)
    np.testing.assert_allclose(res.y[0], exact, atol=1e-9)


# The error estimate is a small difference of stage sums, so rounding in it (our
# loops against numpy's dot) nudges the step sizes by ~1e-9 relative at tight
# tolerances; the step decisions stay identical and the states agree to `state_tol`.
@pytest.mark.parametrize("rtol,atol,state_tol", [(1e-3, 1e-6, 1e-10), (1e-6, 1e-9, 1e-8)])
def test_dopri5_in_lockstep_with_scipy_rk45(rtol, atol, state_tol):
    args = (2.0, 0.8, 1.3)
    fun = lambda t, y: np.array([y[1], args[0] * (1 - y[0] ** 2) * y[1] - y[0] + args[1] * math.cos(args[2] * t)])
    y0 = np.array([2.0, 0.0])
    t_end = 12.0
    ref = scipy.integrate.RK45(fun, 0.0, y0, t_end, rtol=rtol, atol=atol)
    ts, ys = [ref.t], [ref.y.copy()]
    while ref.status == "running":
        ref.step()
        ts.append(ref.t)
        ys.append(ref.y.copy())
    assert ref.status == "finished"

    res = integrators.integrate(VAN_DER_POL, y0[None], args, method="dopri5", t_max=t_end,
                                stop_at_steady_state=False, error_atol=atol, error_rtol=rtol,
                                pi_beta=0.0, record_every=1, max_steps=10**6)
    assert res.status_name == "time_limit"
    traj = res.trajectory
    assert len(traj.t) == len(ts), "same number of accepted steps"
    np.testing.assert_allclose(traj.t, ts, rtol=0, atol=state_tol)
    np.testing.assert_allclose(traj.y[:, 0, :], np.array(ys), rtol=0, atol=state_tol)
    assert res.nfev == ref.nfev, "same evaluations, hence the same rejected steps"
    assert res.n_rejected > 0, "the test should exercise rejected steps"


def test_dopri5_error_estimate_bounds_true_error():
    # One step from the same state: the embedded estimate is at least the size of the true
    # error of the 4th-order solution and it shrinks like h^5.
    exact_flow = lambda h: scipy.linalg.expm(SPIRAL * h) @ Y0[0]
    ratios = []
    for h in (0.4, 0.2, 0.1):
        y5 = run_fixed(DOPRI5.A, DOPRI5.b, DOPRI5.c, h, t_end=h)[0]
        y4 = run_fixed(DOPRI5.A, DOPRI5.b - DOPRI5.b_error, DOPRI5.c, h, t_end=h)[0]
        estimate = np.linalg.norm(y5 - y4)
        true_error = np.linalg.norm(y4 - exact_flow(h))
        assert estimate >= 0.5 * true_error
        ratios.append(estimate)
    assert 2 ** 4.5 < ratios[0] / ratios[1] < 2 ** 5.5


@pytest.mark.parametrize("method,dt", [("euler", 0.2), ("heun", 0.2), ("rk4", 0.3), ("dopri5", None)])
def test_steady_state_of_a_linear_system(rng, method, dt):
    A = -np.eye(3) * 1.5 + 0.3 * rng.standard_normal((3, 3))
    b = rng.standard_normal(3)
    fixed_point = np.linalg.solve(A, -b)
    y0 = rng.standard_normal((4, 3))
    res = integrators.integrate(LINEAR, y0, (A, b), method=method, dt=dt, atol=1e-9, rtol=1e-9)
    assert res.status_name == "converged" and res.success
    assert res.converged.all()
    # The reported residual is ||A y + b|| per sample ...
    np.testing.assert_allclose(res.residual, np.linalg.norm(res.y @ A.T + b, axis=1), rtol=1e-12, atol=1e-15)
    assert np.all(res.residual <= 1e-9 + 1e-9 * np.linalg.norm(res.y, axis=1))
    # ... so the distance to the fixed point is at most ||A^-1|| times the tolerance.
    bound = np.linalg.norm(np.linalg.inv(A), 2) * (1e-9 + 1e-9 * np.linalg.norm(fixed_point))
    assert np.abs(res.y - fixed_point).max() <= 1.01 * bound


def test_stop_happens_at_the_first_step_that_meets_the_tolerance():
    A = -np.eye(2)
    res = integrators.integrate(LINEAR, np.ones((1, 2)), (A, np.zeros(2)), method="euler", dt=0.5,
                                atol=1e-3, rtol=1e-12)
    # y_k = 0.5**k, residual sqrt(2) * 0.5**k <= 1e-3  first at k = 11.
    assert res.n_steps == 11 and res.nfev == 12


def test_step_and_time_limits():
    A = -np.eye(2) * 0.01
    y0 = np.ones((2, 2))
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(2)), method="heun", dt=0.1, max_steps=7)
    assert res.status_name == "step_limit" and res.n_steps == 7 and not res.success
    assert "largest residual" in res.message
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(2)), method="euler", dt=0.3, t_max=1.0)
    assert res.status_name == "time_limit" and res.t == pytest.approx(1.0) and res.n_steps == 4
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(2)), method="dopri5", t_max=3.0)
    assert res.status_name == "time_limit" and res.t == 3.0


@pytest.mark.parametrize("method,dt", [("euler", 0.1), ("heun", 0.1), ("rk4", 0.1), ("dopri5", None)])
def test_divergence_is_reported_with_the_last_finite_state(method, dt):
    A = np.diag([3.0, -1.0])
    y0 = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(2)), method=method, dt=dt, max_abs=1e6,
                                max_steps=100_000)
    assert res.status_name == "diverged"
    assert res.diverged_sample == 1, "the sample with the largest growing component"
    assert res.diverged_step > 0
    assert np.isfinite(res.y).all() and np.abs(res.y).max() <= 1e6
    assert f"step {res.diverged_step}" in res.message and "sample 1" in res.message


@pytest.mark.parametrize("method", ["euler", "dopri5"])
def test_overflow_in_the_vector_field_is_a_divergence_even_without_max_abs(method):
    # f = 1e10 * y overflows to inf at y = 1e300, before any state does.
    res = integrators.integrate(LINEAR, np.array([[1e300, 0.0]]), (np.eye(2) * 1e10, np.zeros(2)),
                                method=method, dt=1.0, max_abs=math.inf)
    assert res.status_name == "diverged" and res.diverged_step == 0
    np.testing.assert_array_equal(res.y, [[1e300, 0.0]])


def test_projection_onto_a_box():
    # y' = -y + 5 would settle at 5; clipped to [0, 1] it settles at the upper bound,
    # where the projected residual is zero.
    A = -np.eye(3)
    b = np.full(3, 5.0)
    for method, dt in (("projected_euler", 0.5), ("rk4", 0.5), ("dopri5", None)):
        res = integrators.integrate(LINEAR, np.zeros((2, 3)), (A, b), method=method, dt=dt,
                                    lower=0.0, upper=1.0, atol=1e-10, rtol=1e-10)
        assert res.status_name == "converged", method
        np.testing.assert_array_equal(res.y, 1.0)
        np.testing.assert_array_equal(res.residual, 0.0)
    # Without the box the same system is not at rest at 1.
    res = integrators.integrate(LINEAR, np.ones((1, 3)), (A, b), method="euler", dt=0.5, max_steps=1,
                                record_every=1)
    assert res.trajectory.residual[0, 0] == pytest.approx(4 * math.sqrt(3))


def test_trajectory_recording_every_k_steps_and_subset_of_samples(rng):
    A = -np.eye(3)
    y0 = rng.standard_normal((5, 3))
    res = integrators.integrate(LINEAR, y0, (A, np.zeros(3)), method="euler", dt=0.1, max_steps=23,
                                stop_at_steady_state=False, record_every=5, record_samples=[4, 1])
    traj = res.trajectory
    np.testing.assert_allclose(traj.t, [0.0, 0.5, 1.0, 1.5, 2.0, 2.3])
    assert traj.y.shape == (6, 2, 3) and traj.residual.shape == (6, 2)
    np.testing.assert_array_equal(traj.y[0], y0[[4, 1]])
    np.testing.assert_allclose(traj.y[-1], res.y[[4, 1]])
    np.testing.assert_allclose(traj.y[1], y0[[4, 1]] * 0.9 ** 5)
    np.testing.assert_allclose(traj.residual, np.linalg.norm(traj.y, axis=2))


def test_float32_states_are_integrated_in_float32(rng):
    A = (-np.eye(3)).astype(np.float32)
    res = integrators.integrate(LINEAR, np.ones((2, 3), np.float32), (A, np.zeros(3, np.float32)),
                                method="euler", dt=0.1, atol=1e-4, rtol=1e-4)
    assert res.y.dtype == np.float32 and res.success


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="midpoint"), "method must be one of"),
    (dict(method="euler"), "give dt > 0"),
    (dict(method="euler", dt=-0.1), "dt must lie in"),
    (dict(atol=0.0), "atol must lie in"),
    (dict(rtol=float("nan")), "rtol must lie in"),
    (dict(max_steps=0), "max_steps must be an integer >= 1"),
    (dict(t_max=-1.0), "t_max must be greater than t0"),
    (dict(method="projected_euler", dt=0.1), "needs lower and/or upper"),
    (dict(lower=[0.0, 1.0, 2.0]), r"lower must be a scalar or have shape \(2,\)"),
    (dict(lower=1.0, upper=0.0), "lower must not exceed upper"),
    (dict(record_every=1, record_samples=[5]), r"record_samples must lie in \[0, 0\]"),
    (dict(record_every=-1), "record_every must be an integer >= 0"),
    (dict(pi_beta=0.5), "pi_beta"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        integrators.integrate(LINEAR, np.ones((1, 2)), (-np.eye(2), np.zeros(2)), **kwargs)


@pytest.mark.parametrize("y0,match", [
    (np.ones(2), r"shape \(batch, n\)"),
    (np.array([[1.0, np.nan]]), "must be finite"),
    (np.array([["a", "b"]]), "real float array"),
])
def test_bad_initial_states(y0, match):
    with pytest.raises((ValueError, TypeError), match=match):
        integrators.integrate(LINEAR, y0, (-np.eye(2), np.zeros(2)))


def test_unknown_vector_field_module():
    with pytest.raises((ValueError, ImportError)):
        integrators.integrate(integrators.VectorField("no_such_module_here", "f"), np.ones((1, 2)))
    with pytest.raises(ValueError, match="identifier"):
        integrators.VectorField("fields_for_tests", "not a name")
