"""A small training run to be killed: the subprocess of tests/test_resume_kill.py.

``python train_for_kill.py OUT EPOCHS`` trains a 2-12-2 hard-sigmoid network
on moons with EP (random sign, persistent particles) through
:func:`dynsim.training.loop`, with a checkpoint and an HDF5 log in OUT. When
OUT holds a checkpoint it resumes from it, continuing the same log, as the
MNIST scenario's ``--resume`` does; otherwise it starts afresh (replacing
the log of a run killed before its first checkpoint).
"""
import sys
from pathlib import Path

from dynsim.datasets.tasks import moons
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions
from dynsim.training.checkpoint import checkpoint_exists
from dynsim.training.loop import fit
from dynsim.training.optimizers import SGD
from dynsim.training.run_folder import open_run_log

OPTIONS = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=15, stop_at_steady_state=False)
CHECKPOINT_EVERY = 10
"""Minibatches between the checkpoints within an epoch (150 minibatches an epoch): kills land mid-epoch too."""
NUDGED = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=4, stop_at_steady_state=False)


def main(out, epochs):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.h5"
    net = HopfieldNetwork.layered([2, 12, 2], activation="hard_sigmoid", seed=3)
    # As the dataset scenarios do: continue when there is a checkpoint, else start (again).
    # (A kill between the two renames of a checkpoint write leaves only checkpoint.h5.prev: that counts too.)
    log, logged, resume = open_run_log(out, {"scenario": "train_for_kill"}, network=net,
                                       resume=checkpoint_exists(ckpt), say=lambda line: None)

    def on_epoch(row):
        if int(row["epoch"]) not in logged:
            log.append_row("epochs", {k: v for k, v in row.items() if k != "replayed"})
            logged.add(int(row["epoch"]))

    data = {"train": moons(600, seed=0), "test": moons(100, seed=1)}
    with log:
        fit(net, data, "ep-random", SGD(net, [0.2, 0.1], momentum=0.5), epochs, 4, beta=0.5, options=OPTIONS,
            nudged_options=NUDGED, persistent=True, seed=11, checkpoint=ckpt, resume=resume, on_epoch=on_epoch,
            checkpoint_every=CHECKPOINT_EVERY, progress=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
