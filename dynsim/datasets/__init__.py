"""Data: MNIST and Fashion-MNIST from their IDX files, and small tasks generated in code."""
from dynsim.datasets.tasks import Task, xor, moons, two_spirals, TASKS
from dynsim.datasets.idx import (
    Dataset, DATASETS, DatasetError, Splits, FILES, ENV_VAR, default_data_dir, data_root, dataset_folder, file_md5,
    verify_md5, read_idx, write_idx, download_files, load_folder, load,
)
