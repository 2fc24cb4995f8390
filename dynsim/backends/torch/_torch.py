"""PyTorch, imported once, with a message that says how to install it when it is missing."""
from __future__ import annotations

from dynsim.validation import ValidationError

try:
    import torch
except ImportError as err:  # pragma: no cover - exercised only where torch is absent
    torch = None
    _IMPORT_ERROR = err
else:
    _IMPORT_ERROR = None

__all__ = ["require_torch", "resolve_device", "torch_dtype"]


def require_torch():
    """The ``torch`` module; ImportError naming the extra to install when PyTorch is absent."""
    if torch is None:
        raise ImportError("dynsim's torch backend needs PyTorch: pip install -e \".[torch]\" "
                          f"(import failed: {_IMPORT_ERROR})")
    return torch


def resolve_device(device):
    """A :class:`torch.device` from ``'cpu'``, ``'cuda'``, ``'cuda:1'`` or a device; clear error otherwise.

    Raises
    ------
    ValidationError
        When the name is not a device PyTorch knows, or names CUDA on a
        machine where PyTorch sees no GPU.
    """
    t = require_torch()
    try:
        dev = device if isinstance(device, t.device) else t.device(str(device))
    except (RuntimeError, TypeError):
        raise ValidationError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValidationError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if dev.type == "cuda":
        if not t.cuda.is_available():
            raise ValidationError(f"device {device!r}: PyTorch sees no CUDA GPU on this machine (torch "
                                  f"{t.__version__}); use device='cpu'")
        if dev.index is not None and not dev.index < t.cuda.device_count():
            raise ValidationError(f"device {device!r}: this machine has {t.cuda.device_count()} CUDA device(s), "
                                  f"index in [0, {t.cuda.device_count() - 1}]")
    return dev


def torch_dtype(dtype):
    """The torch dtype of a numpy float32 / float64 dtype."""
    t = require_torch()
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return t.float32
    if dtype == np.float64:
        return t.float64
    raise ValidationError(f"dtype must be float32 or float64, got {dtype}")
