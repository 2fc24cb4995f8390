"""Training: the one minibatch loop (:func:`fit`), optimizers, learning-rate schedules, checkpoints, resumable
run folders."""
from dynsim.training.optimizers import learning_rates, SGD, Adam, NonFiniteGradientError
from dynsim.training.schedules import Constant, WarmupCosine, ExponentialPerEpoch, SCHEDULES, make_schedule
from dynsim.training.checkpoint import (
    Checkpoint, CheckpointError, CheckpointFallbackWarning, save_checkpoint, load_checkpoint, previous_path,
    checkpoint_exists,
)
from dynsim.training.loop import (
    fit, train, History, evaluate, evaluate_split, predict, describe_evaluation, TrainingDivergedError, metric_columns,
    ParticleStore,
)
from dynsim.training.run_folder import RunFolderError, open_run_log, remove_stale_temporaries
