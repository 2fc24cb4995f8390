"""Status codes returned by the compiled drivers (scipy's habit: an int and a message)."""

CONVERGED = 0
"""Every sample reached the steady state ``||f|| <= atol + rtol * ||y||``."""
STEP_LIMIT = 1
"""``max_steps`` step attempts were taken."""
TIME_LIMIT = 2
"""The integration time reached ``t_max``."""
DIVERGED = -1
"""A state or a vector field value became non-finite or exceeded ``max_abs``."""
STEP_TOO_SMALL = -2
"""The adaptive step size fell below the resolution of the time variable."""

STATUS_NAMES = {
    CONVERGED: "converged",
    STEP_LIMIT: "step_limit",
    TIME_LIMIT: "time_limit",
    DIVERGED: "diverged",
    STEP_TOO_SMALL: "step_too_small",
}
