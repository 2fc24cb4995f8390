"""Compiled symbol names must not repeat across processes (Numba issue 10486).

Caches compiled in different processes are loaded side by side; with Numba's
per-process counter the same function got the same mangled name in each, and
a kernel found the environment of another library's copy ('descr' is NULL).
"""
import subprocess
import sys

import integrators
from integrators import unique_symbols

PROGRAM = """
import integrators, numba
@numba.njit
def twice(x):
    return 2.0 * x
twice(1.0)
(overload,) = twice.overloads.values()
print(overload.fndesc.mangled_name)
"""


def mangled_name_in_fresh_process():
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout.strip()


def test_importing_integrators_installs_random_ids():
    assert integrators is not None
    assert unique_symbols.installed()


def test_same_function_gets_different_symbols_in_two_processes():
    first, second = mangled_name_in_fresh_process(), mangled_name_in_fresh_process()
    assert "twice" in first and "twice" in second
    assert first != second


def test_the_counter_it_replaces_repeats_across_processes():
    # The property the fix removes, shown on plain Numba: without the random
    # ids the two processes agree on the name.
    program = PROGRAM.replace("import integrators, numba", "import numba")
    names = {subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            check=True).stdout.strip() for _ in range(2)}
    assert len(names) == 1
