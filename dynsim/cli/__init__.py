"""The ``dynsim`` command: scenarios, their parameters, sweeps on Dask."""
from dynsim.cli.main import main
