"""The driver of Laborieux et al.'s own PyTorch code times their MNIST MLP step and names a bad checkout clearly.

Their code is not part of dynsim: these tests need a checkout of
https://github.com/Laborieux-Axel/Equilibrium-Propagation in $LABORIEUX_CHECKOUT
(default ``.authors/laborieux-ep`` at the repository's root) and PyTorch, and
skip otherwise.
"""
import math
import os
from pathlib import Path

import pytest

from dynsim.validation import ValidationError

torch = pytest.importorskip("torch")

from dynsim.benchmarks import laborieux_runner  # noqa: E402

CHECKOUT = Path(os.environ.get("LABORIEUX_CHECKOUT") or Path(__file__).parents[1] / ".authors" / "laborieux-ep")


@pytest.fixture
def checkout():
    if not (CHECKOUT / "model_utils.py").is_file():
        pytest.skip(f"no checkout of the authors' code at {CHECKOUT} (set LABORIEUX_CHECKOUT)")
    return CHECKOUT


def test_mnist_mlp_minibatches_are_timed_on_random_data(checkout):
    threads = torch.get_num_threads()
    try:
        result = laborieux_runner.time_minibatches(checkout, "mnist-mlp", "cpu", n_batches=2, warmup=0, batch_size=8,
                                                   threads=1)
    finally:
        torch.set_num_threads(threads)
    ms = result["ms_per_minibatch"]
    assert math.isfinite(ms) and ms > 0
    assert result["batch_size"] == 8 and result["n_batches"] == 2 and result["device"] == "cpu"
    assert result["train_size"] == 60_000 and result["minibatches_per_epoch"] == 7500
    assert result["seconds_per_epoch"] == pytest.approx(7500 * ms / 1e3)
    assert "random" in result["data"]
    assert "random" in laborieux_runner.summary_line(result).lower()


def test_bad_checkout_gives_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="model_utils.py"):
        laborieux_runner.time_minibatches(tmp_path, "mnist-mlp", "cpu", n_batches=1, warmup=0)
    with pytest.raises(ValidationError, match="not a folder"):
        laborieux_runner.time_minibatches(tmp_path / "absent", "mnist-mlp", "cpu", n_batches=1, warmup=0)
    with pytest.raises(SystemExit) as exit_info:
        laborieux_runner.main(["--checkout", str(tmp_path), "--setting", "mnist-mlp"])
    assert exit_info.value.code == 2


def test_bad_arguments_are_refused(checkout):
    with pytest.raises(ValidationError, match="setting"):
        laborieux_runner.time_minibatches(checkout, "mnist-rnn", "cpu", n_batches=1, warmup=0)
    with pytest.raises(ValidationError, match="n_batches"):
        laborieux_runner.time_minibatches(checkout, "mnist-mlp", "cpu", n_batches=0, warmup=0)
    with pytest.raises(ValidationError, match="device"):
        laborieux_runner.time_minibatches(checkout, "mnist-mlp", "tpu", n_batches=1, warmup=0)


def test_their_activation_can_be_swapped_for_the_one_dynsim_runs(checkout):
    result = laborieux_runner.time_minibatches(checkout, "mnist-mlp", "cpu", n_batches=1, warmup=0, batch_size=4,
                                               threads=1, act="hard_sigmoid", eval_images=450)
    assert result["act"] == "hard_sigmoid" and "--act 'hard_sigmoid' instead of 'mysig'" in result["changes"]
    # Their evaluate ran over the 450 images (3 minibatches of their test loader's 200, the last partial).
    assert result["eval_images"] == 450 and result["eval_seconds"] > 0
    assert "act hard_sigmoid" in laborieux_runner.summary_line(result)
    mu = laborieux_runner.load_model_module(checkout)
    assert laborieux_runner._activation(mu, "hard_sigmoid") is mu.hard_sigmoid  # theirs, not a copy


def test_an_unknown_activation_is_refused_before_their_code_is_loaded(tmp_path):
    with pytest.raises(ValidationError, match="act must be one of"):
        laborieux_runner.time_minibatches(tmp_path, "mnist-mlp", "cpu", n_batches=1, warmup=0, act="relu")
