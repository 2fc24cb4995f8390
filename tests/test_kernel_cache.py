"""Numba's cache folder follows the version of dynsim's and integrators' sources."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dynsim
import integrators
from dynsim import _kernel_cache

# Imports dynsim, runs one small cached kernel, prints where Numba caches.
PROBE = ("import json, numba, dynsim, numpy as np; from dynsim.networks.activations import rho_and_prime; "
         "rho_and_prime(np.ones((1, 3)), 0); print(json.dumps(numba.config.CACHE_DIR))")


def _run(env):
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_edit_of_any_source_moves_the_cache_to_a_new_folder(tmp_path):
    copies = []
    for pkg in (dynsim, integrators):
        dst = tmp_path / Path(pkg.__file__).parent.name
        shutil.copytree(Path(pkg.__file__).parent, dst, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(dst)
    before = _kernel_cache.source_digest(copies)
    assert before == _kernel_cache.source_digest([Path(dynsim.__file__).parent, Path(integrators.__file__).parent])
    # A change in a file other kernels inline from (the activations) must change the key.
    activations = copies[0] / "networks" / "activations.py"
    activations.write_text(activations.read_text() + "\n# edited\n")
    assert _kernel_cache.source_digest(copies) != before


def test_importing_dynsim_points_numba_at_the_versioned_folder_and_kernels_cache_there(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    folder = Path(_run(env))
    digest = _kernel_cache.source_digest([Path(dynsim.__file__).parent, Path(integrators.__file__).parent])
    assert folder == tmp_path / "dynsim" / _kernel_cache.cache_root().name / digest[:16]
    assert any(folder.rglob("*.nbi")), "the compiled kernels were not cached in the versioned folder"


def test_a_cache_folder_chosen_by_the_user_is_respected(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "mine"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert Path(_run(env)) == tmp_path / "mine"
    assert not (tmp_path / "xdg" / "dynsim").exists()
