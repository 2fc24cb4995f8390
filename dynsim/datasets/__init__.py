"""Data: MNIST and Fashion-MNIST (IDX files), CIFAR-10 (pickled batches), and small tasks generated in code."""
from dynsim.datasets.tasks import Task, xor, moons, two_spirals, TASKS
from dynsim.datasets.idx import (
    Dataset, DATASETS, NAMES, DatasetError, Splits, FILES, ENV_VAR, default_data_dir, data_root, dataset_folder,
    file_md5, verify_md5, read_idx, write_idx, download_files, load_folder, load,
)
from dynsim.datasets.cifar import cifar10_folder, load_batches, load_cifar10
