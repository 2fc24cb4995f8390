"""Bad command lines of the ``dynsim`` command and the scenarios: each ends in one clear line and exit status 2.

Every case is a command line a user could type. It must be refused during
argument validation, before any data set is loaded, any log written or any
training started: one line holding ``error:`` on stderr (argparse's usage
line aside), exit status 2, no traceback, and nothing created in ``--out``.

The cases run in one subprocess through ``tests/bad_input_driver.py`` (one
start-up instead of one per case), which calls the real entry points with
their work guarded: a case that is not refused shows up as having reached
the guarded call. A few cases also run as plain subprocesses, unguarded.

None of these cases is covered by another test: those of test_cli.py,
test_sweep.py, test_scenario_*.py and the command-line cases of
test_bad_input.py were left out.
"""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynsim.io.log import TrajectoryLog

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("bad_input_driver.py")



C = pytest.param  # (entry, argv, text of the error line); {out}: a fresh folder, {fx}: the fixtures' folder

CASES = [
    # ------------------------------------------------------------------ dynsim run (settle_hopfield's parameters)
    C("dynsim", ["run", "settle_hopfield", "--set", "seed=-1", "--out", "{out}"], "--seed must be an integer >= 0",
      id="run-seed-negative"),
    C("dynsim", ["run", "settle_hopfield", "--set", "max_steps=0", "--out", "{out}"], "max_steps must be an integer",
      id="run-max_steps-zero"),
    C("dynsim", ["run", "settle_hopfield", "--set", "max_steps=-5", "--out", "{out}"], "max_steps must be",
      id="run-max_steps-negative"),
    C("dynsim", ["run", "settle_hopfield", "--set", "record_every=-1", "--out", "{out}"], "record_every must be",
      id="run-record_every-negative"),
    C("dynsim", ["run", "settle_hopfield", "--set", "record_samples=0", "--out", "{out}"], "record_samples must be",
      id="run-record_samples-zero"),
    C("dynsim", ["run", "settle_hopfield", "--set", "rtol=nan", "--out", "{out}"], "rtol must be finite",
      id="run-rtol-nan"),
    C("dynsim", ["run", "settle_hopfield", "--set", "atol=inf", "--out", "{out}"], "atol must be finite",
      id="run-atol-inf"),
    C("dynsim", ["run", "settle_hopfield", "--set", "beta=nan", "--out", "{out}"], "--beta must be finite",
      id="run-beta-nan"),
    C("dynsim", ["run", "settle_hopfield", "--set", "beta=inf", "--out", "{out}"], "--beta must be finite",
      id="run-beta-inf"),
    C("dynsim", ["run", "settle_hopfield", "--set", "sizes=8", "--out", "{out}"], "sizes needs >= 2 layers",
      id="run-sizes-one-layer"),
    C("dynsim", ["run", "settle_hopfield", "--set", "sizes=8-0-4", "--out", "{out}"], "sizes needs >= 2 layers",
      id="run-sizes-zero-units"),
    C("dynsim", ["run", "settle_hopfield", "--set", "dt=0", "--out", "{out}"], "dt must be finite, in (0.0, inf)",
      id="run-dt-zero"),
    C("dynsim", ["run", "settle_hopfield", "--set", "dt=-0.1", "--out", "{out}"], "dt must be finite",
      id="run-dt-negative"),
    C("dynsim", ["run", "settle_hopfield", "--set", "dt=nan", "--out", "{out}"], "dt must be finite",
      id="run-dt-nan"),
    C("dynsim", ["run", "settle_hopfield", "--set", "batch=abc", "--out", "{out}"], "invalid int value: 'abc'",
      id="run-batch-text"),
    C("dynsim", ["run", "settle_hopfield", "--set", "batch=1000000000", "--out", "{out}"],
      "--sizes and --batch: a 16-24-12-4 network with a batch of 1000000000 would need about", id="run-batch-huge"),
    C("dynsim", ["run", "settle_hopfield", "--set", "sizes=200000-200000-10", "--out", "{out}"],
      "would need about 1.2 TiB, more than the", id="run-sizes-huge"),
    C("dynsim", ["run", "settle_hopfield", "--set", "integrator=dopri5", "--set", "dt=0.1", "--out", "{out}"],
      "dopri5 chooses its own steps", id="run-dt-with-dopri5"),
    C("dynsim", ["run", "settle_hopfield", "--set", "=3", "--out", "{out}"], "must look like key=value",
      id="run-set-empty-key"),
    C("dynsim", ["run", "settle_hopfield", "--set", "activation=relu", "--out", "{out}"], "invalid choice: 'relu'",
      id="run-activation"),
    C("dynsim", ["run", "settle_hopfield", "--out", "{fx}/plain.txt"], "is a file: name a folder",
      id="run-out-is-a-file"),
    C("dynsim", ["run", "scenarios/nope.py"], "no scenario script at", id="run-script-missing"),
    C("dynsim", [], "the following arguments are required: COMMAND", id="no-command"),
    # ------------------------------------------------------------------ dynsim show / plot
    C("dynsim", ["show", "{fx}/folder"], "is a folder, not a dynsim log file", id="show-folder"),
    C("dynsim", ["show", "{fx}/empty.h5"], "is not an HDF5 file", id="show-empty-file"),
    C("dynsim", ["plot", "{fx}/folder"], "is a folder, not a dynsim log file", id="plot-folder"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "energy", "--out", "{out}/p.png"], "holds no relaxation",
      id="plot-energy-of-a-training-log"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "gradients", "--out", "{out}/p.png"],
      "holds no gradient comparison", id="plot-gradients-of-a-training-log"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "training", "--out", "{fx}/folder"], "is a folder; name a PNG",
      id="plot-out-is-a-folder"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "training", "--out", "{fx}/plain.txt/x.png"],
      "plain.txt is a file: name a folder", id="plot-out-inside-a-file"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "training", "--out", "{out}/x.txt"], "must name a .png file",
      id="plot-out-not-png"),
    C("dynsim", ["plot", "{fx}/train.h5", "--kind", "bogus"], "invalid choice: 'bogus'", id="plot-kind"),
    # ------------------------------------------------------------------ dynsim sweep
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "seed=3..1", "--out", "{out}"], "is empty (a..b needs a <= b)",
      id="sweep-range-reversed"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "beta=1,,2", "--out", "{out}"], "has an empty value",
      id="sweep-empty-value"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "=1", "--out", "{out}"], "must look like key=v1,v2",
      id="sweep-empty-key"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "overwrite=true", "--out", "{out}"],
      "cannot set 'out' or 'overwrite'", id="sweep-overwrite"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "beta=1", "beta=2", "--out", "{out}"], "is given twice",
      id="sweep-key-twice"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "seed=a..b", "--out", "{out}"],
      "rejected by settle_hopfield's parameters: argument --seed: invalid int value", id="sweep-range-text"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "sizes=8-x", "--out", "{out}"],
      "rejected by settle_hopfield's parameters: argument --sizes", id="sweep-bad-sizes"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "beta=1", "--workers", "-3", "--out", "{out}"],
      "workers must be an integer >= 1", id="sweep-workers-negative"),
    C("dynsim", ["sweep", "nope", "--grid", "beta=1", "--out", "{out}"], "unknown scenario 'nope'",
      id="sweep-unknown-scenario"),
    C("dynsim", ["sweep", "settle_hopfield", "--grid", "beta=1", "--out", "{fx}/plain.txt"],
      "is a file: name a folder", id="sweep-out-is-a-file"),
    # ------------------------------------------------------------------ train_hopfield
    C("train_hopfield", ["--n-samples", "1", "--out", "{out}"], "--n-samples must be an integer >= 2",
      id="train_hopfield-n-samples"),
    C("train_hopfield", ["--bias", "nan", "--out", "{out}"], "--bias must be finite", id="train_hopfield-bias-nan"),
    C("train_hopfield", ["--beta", "inf", "--out", "{out}"], "--beta must be finite", id="train_hopfield-beta-inf"),
    C("train_hopfield", ["--atol", "0", "--out", "{out}"], "atol must be finite", id="train_hopfield-atol-zero"),
    C("train_hopfield", ["--rtol", "-1", "--out", "{out}"], "rtol must be finite", id="train_hopfield-rtol"),
    C("train_hopfield", ["--seed", "-1", "--out", "{out}"], "seed must be None, an integer >= 0",
      id="train_hopfield-seed"),
    C("train_hopfield", ["--hidden", "0", "--out", "{out}"], "hidden needs >= 1 layers", id="train_hopfield-hidden"),
    C("train_hopfield", ["--batch-size", "0", "--out", "{out}"], "--batch-size must be an integer >= 1",
      id="train_hopfield-batch-size"),
    C("train_hopfield", ["--lr", "nan", "--out", "{out}"], "--lr must be finite", id="train_hopfield-lr-nan"),
    C("train_hopfield", ["--task", "moons", "--n-samples", "1000000000000", "--out", "{out}"],
      "n: 1000000000000 points would need about", id="train_hopfield-n-samples-huge"),
    C("train_hopfield", ["--hidden", "1000000-1000000", "--out", "{out}"],
      "--hidden and --batch-size: a 2-1000000-1000000-2 network", id="train_hopfield-hidden-huge"),
    C("train_hopfield", ["--epochs", "x", "--out", "{out}"], "invalid int value: 'x'", id="train_hopfield-epochs"),
    C("train_hopfield", ["--out", "{fx}/plain.txt"], "is a file: name a folder", id="train_hopfield-out-file"),
    # ------------------------------------------------------------------ train_pc
    C("train_pc", ["--sizes", "2-2", "--out", "{out}"], "sizes needs >= 3 layers", id="train_pc-sizes"),
    C("train_pc", ["--dt", "0", "--out", "{out}"], "--dt must be finite", id="train_pc-dt-zero"),
    C("train_pc", ["--dt", "nan", "--out", "{out}"], "--dt must be finite", id="train_pc-dt-nan"),
    C("train_pc", ["--inference-steps", "0", "--out", "{out}"], "--inference-steps must be an integer >= 1",
      id="train_pc-inference-steps"),
    C("train_pc", ["--tol", "nan", "--out", "{out}"], "--tol must be finite", id="train_pc-tol-nan"),
    C("train_pc", ["--output-variance", "0", "--out", "{out}"], "--output-variance must be finite",
      id="train_pc-output-variance"),
    C("train_pc", ["--seed", "-1", "--out", "{out}"], "seed must be None, an integer >= 0", id="train_pc-seed"),
    C("train_pc", ["--integrator", "projected_euler", "--out", "{out}"], "needs a box", id="train_pc-projected"),
    C("train_pc", ["--sizes", "2-1000000-1000000-2", "--out", "{out}"], "would need about", id="train_pc-huge"),
    C("train_pc", ["--rules", "pc-strict,pc-strict", "--out", "{out}"], "is listed twice", id="train_pc-rules-twice"),
    # ------------------------------------------------------------------ associative_memory
    C("associative_memory", ["--patterns", "0", "--out", "{out}"], "--patterns must be >= 1", id="memory-patterns"),
    C("associative_memory", ["--units", "0", "--out", "{out}"], "--units must be >= 1", id="memory-units"),
    C("associative_memory", ["--hidden", "-1", "--out", "{out}"], "n_hidden must be an integer >= 0",
      id="memory-hidden"),
    C("associative_memory", ["--trials", "0", "--out", "{out}"], "--trials must be >= 1", id="memory-trials"),
    C("associative_memory", ["--lr", "0", "--out", "{out}"], "--lr must be finite", id="memory-lr-zero"),
    C("associative_memory", ["--dt", "nan", "--out", "{out}"], "--dt must be finite", id="memory-dt-nan"),
    C("associative_memory", ["--max-steps", "0", "--out", "{out}"], "max_steps must be an integer >= 1",
      id="memory-max-steps"),
    C("associative_memory", ["--seed", "-1", "--out", "{out}"], "--seed must be an integer >= 0", id="memory-seed"),
    C("associative_memory", ["--corruption", "nan", "--out", "{out}"], "--corruption must lie in",
      id="memory-corruption-nan"),
    C("associative_memory", ["--patterns", "20", "--units", "4", "--out", "{out}"], "could not draw 20 patterns",
      id="memory-too-many-patterns"),
    C("associative_memory", ["--units", "100000000", "--out", "{out}"], "--units and --hidden: a fully coupled",
      id="memory-units-huge"),
    C("associative_memory", ["--beta", "nan", "--out", "{out}"], "--beta must be > 0", id="memory-beta-nan"),
    # ------------------------------------------------------------------ sweep_budget
    C("sweep_budget", ["--run", "{out}/no-run", "--out", "{out}"], "no log.h5 there", id="budget-run-missing"),
    C("sweep_budget", ["--run", "{out}", "--free-steps", "10,300", "--out", "{out}"],
      "--free-steps must stay below --long-free (300)", id="budget-free-steps-long"),
    C("sweep_budget", ["--run", "{out}", "--nudged-steps", "5", "--long-nudged", "5", "--out", "{out}"],
      "--nudged-steps must stay below --long-nudged (5)", id="budget-nudged-steps-long"),
    C("sweep_budget", ["--run", "{out}", "--batch", "0", "--out", "{out}"], "--batch must be an integer >= 1",
      id="budget-batch-zero"),
    # ------------------------------------------------------------------ gradient_vs_iterations
    C("gradient_vs_iterations", ["--sizes", "10-x", "--out", "{out}"], "--sizes must look like",
      id="gradients-sizes-text"),
    C("gradient_vs_iterations", ["--sizes", "10-0-4", "--out", "{out}"], "group_sizes[1] must be an integer >= 1",
      id="gradients-sizes-zero"),
    C("gradient_vs_iterations", ["--free-steps", "0", "--out", "{out}"], "free-steps must lie in [1, inf]",
      id="gradients-free-steps"),
    C("gradient_vs_iterations", ["--betas", "0", "--out", "{out}"], "--betas value must be finite",
      id="gradients-betas-zero"),
    C("gradient_vs_iterations", ["--betas", "nan", "--out", "{out}"], "--betas value must be finite",
      id="gradients-betas-nan"),
    C("gradient_vs_iterations", ["--dt", "0", "--out", "{out}"], "--dt must be finite", id="gradients-dt"),
    C("gradient_vs_iterations", ["--gdu-beta", "0", "--out", "{out}"], "--gdu-beta must be finite",
      id="gradients-gdu-beta"),
    C("gradient_vs_iterations", ["--gdu-free-steps", "0", "--out", "{out}"], "--gdu-free-steps must be an integer",
      id="gradients-gdu-free-steps"),
    C("gradient_vs_iterations", ["--gdu-nudged-steps", "-1", "--out", "{out}"], "--gdu-nudged-steps must be",
      id="gradients-gdu-nudged-steps"),
    C("gradient_vs_iterations", ["--seed", "-1", "--out", "{out}"], "--seed must be an integer >= 0",
      id="gradients-seed"),
    C("gradient_vs_iterations", ["--batch", "100000000", "--out", "{out}"], "--sizes and --batch:",
      id="gradients-batch-huge"),
    # ------------------------------------------------------------------ pc_vs_backprop
    C("pc_vs_backprop", ["--sizes", "20", "--out", "{out}"], "sizes needs an input and at least one more layer",
      id="pc_vs_bp-sizes"),
    C("pc_vs_backprop", ["--batch", "0", "--out", "{out}"], "--batch must be >= 1", id="pc_vs_bp-batch"),
    C("pc_vs_backprop", ["--dt", "nan", "--out", "{out}"], "must be positive and finite", id="pc_vs_bp-dt-nan"),
    C("pc_vs_backprop", ["--euler-steps", "nan", "--out", "{out}"], "must be positive and finite",
      id="pc_vs_bp-euler-steps-nan"),
    C("pc_vs_backprop", ["--output-variances", "0", "--out", "{out}"], "must be positive and finite",
      id="pc_vs_bp-output-variances"),
    C("pc_vs_backprop", ["--seed", "-1", "--out", "{out}"], "--seed must be an integer >= 0", id="pc_vs_bp-seed"),
    C("pc_vs_backprop", ["--sizes", "20-x-10", "--out", "{out}"], "--sizes must look like", id="pc_vs_bp-sizes-text"),
    C("pc_vs_backprop", ["--batch", "1000000000", "--out", "{out}"], "would need about", id="pc_vs_bp-batch-huge"),
    # ------------------------------------------------------------------ mnist_pc (no data needed: refused first)
    C("mnist_pc", ["--epochs", "-1", "--out", "{out}"], "--epochs must be an integer >= 0", id="mnist_pc-epochs"),
    C("mnist_pc", ["--batch-size", "0", "--out", "{out}"], "--batch-size must be", id="mnist_pc-batch-size"),
    C("mnist_pc", ["--dt", "nan", "--out", "{out}"], "--dt must be finite", id="mnist_pc-dt-nan"),
    C("mnist_pc", ["--lr", "inf", "--out", "{out}"], "--lr must be finite", id="mnist_pc-lr-inf"),
    C("mnist_pc", ["--inference-steps", "0", "--out", "{out}"], "--inference-steps must be",
      id="mnist_pc-inference-steps"),
    C("mnist_pc", ["--train-size", "0", "--out", "{out}"], "--train-size must be an integer >= 1",
      id="mnist_pc-train-size-zero"),
    C("mnist_pc", ["--train-size", "100000", "--out", "{out}"], "--train-size must be at most 50000",
      id="mnist_pc-train-size-above-the-data"),
    C("mnist_pc", ["--eval-size", "100000", "--out", "{out}"], "--eval-size must be at most 10000",
      id="mnist_pc-eval-size-above-the-data"),
    C("mnist_pc", ["--max-batches", "0", "--out", "{out}"], "--max-batches must be", id="mnist_pc-max-batches"),
    C("mnist_pc", ["--validation-size", "-1", "--out", "{out}"], "--validation-size must be an integer in [0, 59999]",
      id="mnist_pc-validation-size-negative"),
    C("mnist_pc", ["--validation-size", "60000", "--out", "{out}"], "--validation-size must be",
      id="mnist_pc-validation-size-all"),
    C("mnist_pc", ["--seed", "-1", "--out", "{out}"], "--seed must be an integer >= 0", id="mnist_pc-seed"),
    C("mnist_pc", ["--rules", "pc-strict,pc-strict", "--out", "{out}"], "is listed twice", id="mnist_pc-rules-twice"),
    C("mnist_pc", ["--resume", "--overwrite", "--out", "{out}"], "--resume and --overwrite exclude each other",
      id="mnist_pc-resume-and-overwrite"),
    C("mnist_pc", ["--output-variance", "-1", "--out", "{out}"], "--output-variance must be finite",
      id="mnist_pc-output-variance"),
    C("mnist_pc", ["--hidden", "1000000-1000000", "--out", "{out}"],
      "--hidden and --batch-size: a 784-1000000-1000000-10 network", id="mnist_pc-hidden-huge"),
    C("mnist_pc", ["--dtp-top", "gradient", "--out", "{out}"],
      "--dtp-top applies only to the rule dtp, which --rules pc-strict,bp does not train: add dtp to --rules or drop "
      "it", id="mnist_pc-dtp-option-without-dtp"),
    C("mnist_pc", ["--rules", "fa", "--dtp-step", "0.5", "--dtp-space", "rate", "--out", "{out}"],
      "--dtp-step, --dtp-space apply only to the rule dtp, which --rules fa does not train",
      id="mnist_pc-dtp-options-without-dtp"),
    C("mnist_pc", ["--pool", "avg", "--kernel", "3", "--out", "{out}"],
      "--kernel, --pool apply only to the --conv stages, and none is given: give --conv or drop them",
      id="mnist_pc-conv-options-without-conv"),
    C("mnist_pc", ["--out", "{fx}/plain.txt"], "is a file: name a folder", id="mnist_pc-out-file"),
    C("mnist_pc", ["--data-dir", "{fx}/plain.txt", "--out", "{out}"], "is a file; name the folder",
      id="mnist_pc-data-dir-file"),
    # ------------------------------------------------------------------ mnist_ep
    C("mnist_ep", ["--seed", "-1", "--out", "{out}"], "--seed", id="mnist_ep-seed"),
    C("mnist_ep", ["--preset", "lab-mlp", "--autocast", "bfloat16", "--out", "{out}"],
      "--autocast bfloat16 runs on the torch backend: give --device", id="mnist_ep-autocast-without-device"),
    C("mnist_pc", ["--autocast", "bfloat16", "--device", "cpu", "--dtype", "float64", "--out", "{out}"],
      "--autocast bfloat16 casts float32 operands down: it needs --dtype float32, got --dtype float64",
      id="mnist_pc-autocast-float64"),
    C("mnist_ep", ["--train-size", "100000", "--out", "{out}"], "--train-size must be at most 50000",
      id="mnist_ep-train-size"),
    C("mnist_ep", ["--eval-size", "100000", "--out", "{out}"], "--eval-size must be at most 10000",
      id="mnist_ep-eval-size"),
    C("mnist_ep", ["--out", "{fx}/plain.txt"], "is a file", id="mnist_ep-out-file"),
    C("mnist_ep", ["--hidden", "1000000-1000000", "--lr", "0.1,0.1,0.1", "--out", "{out}"],
      "--hidden and --batch-size: a 784-1000000-1000000-10 network", id="mnist_ep-hidden-huge"),
]

# Run again as plain subprocesses, unguarded: the real start-up, the real exit status.
SUBPROCESS_IDS = ["run-seed-negative", "plot-out-not-png", "sweep-range-text", "mnist_pc-train-size-above-the-data",
                  "train_pc-huge", "gradients-betas-nan"]


def fill(argv, out, fx):
    return [a.replace("{out}", str(out)).replace("{fx}", str(fx)) for a in argv]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    fx = tmp_path_factory.mktemp("fixtures")
    with TrajectoryLog(fx / "train.h5", {"scenario": "bad inputs"}) as log:
        for epoch in range(3):
            log.append_row("epochs", {"epoch": epoch, "train_error": 0.5, "test_error": 0.4, "train_loss": 1.0})
    (fx / "plain.txt").write_text("not a log\n")
    (fx / "empty.h5").write_bytes(b"")
    (fx / "folder").mkdir()
    with h5py.File(fx / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    return fx


@pytest.fixture(scope="module")
def results(fixtures, tmp_path_factory):
    """Every case run once, in one driver process: {case id: (result, its --out folder)}."""
    work = tmp_path_factory.mktemp("cases")
    cases, outs = [], {}
    for param in CASES:
        entry, argv, _ = param.values
        outs[param.id] = work / param.id
        cases.append({"id": param.id, "entry": entry, "argv": fill(argv, outs[param.id], fixtures)})
    (work / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, str(DRIVER), str(work / "cases.json"), str(work / "results.json")],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return {r["id"]: (r, outs[r["id"]]) for r in json.loads((work / "results.json").read_text())}


def check_refusal(code, stderr, expected, out):
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    assert expected in errors[0], stderr
    assert code == 2, (code, stderr)
    assert not out.exists(), f"{out} was created by a refused command line"


def test_there_are_at_least_50_new_bad_inputs():
    assert sum(not param.marks for param in CASES) >= 50


@pytest.mark.parametrize("entry,argv,expected", CASES)
def test_bad_input_is_refused_in_one_line_with_status_2(results, request, entry, argv, expected):
    result, out = results[request.node.callspec.id]
    assert result["reached"] is None, f"accepted: the run went on to {result['reached']}"
    check_refusal(result["code"], result["stderr"], expected, out)


@pytest.mark.parametrize("case_id", SUBPROCESS_IDS)
def test_bad_input_in_a_real_subprocess(fixtures, tmp_path, case_id):
    entry, argv, expected = next(p.values for p in CASES if p.id == case_id)
    out = tmp_path / "out"
    argv = fill(argv, out, fixtures)
    command = ["-m", "dynsim.cli.main", *argv] if entry == "dynsim" else [str(ROOT / "scenarios" / f"{entry}.py"),
                                                                          *argv]
    proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120, cwd=ROOT)
    check_refusal(proc.returncode, proc.stderr, expected, out)
