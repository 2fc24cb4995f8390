"""Files: the HDF5 trajectory log and the record locks that keep its live readers out of its writer's way."""
from dynsim.io.file_lock import LogBusyError, RecordLock
from dynsim.io.log import (
    FORMAT, FORMAT_VERSION, LogFormatError, LogNotFoundError, TrajectoryLog, LogReader, Relaxation, PhaseRecord,
    read_log,
)
