"""argparse types shared by the scenarios, each checking its text and saying what it expects, and the checks of
option combinations the scenarios share.

The scenario registry shows a parameter's type by the function's name, so
each factory names the function it returns.
"""
from __future__ import annotations

import argparse

__all__ = ["layer_sizes", "number_list", "choice_list", "add_autocast_argument", "check_autocast"]


def layer_sizes(min_layers=2, name="sizes", example="8-16-4"):
    """Type for ``a-b-c``: at least ``min_layers`` integers >= 1 joined by '-'."""

    def parse(text):
        try:
            sizes = [int(v) for v in text.split("-")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must look like {example} (integers joined by '-'), got {text!r}") from None
        if len(sizes) < min_layers or min(sizes) < 1:
            raise argparse.ArgumentTypeError(f"{name} needs >= {min_layers} layers of >= 1 unit, got {text!r}")
        return sizes

    parse.__name__ = "layer_sizes"
    return parse


def number_list(kind=float, low=None, high=None, name="values", example="0.1,0.5"):
    """Type for ``v1,v2,...``: numbers of ``kind``, each in [low, high] where given."""

    def parse(text):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must look like {example} ({kind.__name__} values joined by ','), got {text!r}") from None
        if any((low is not None and v < low) or (high is not None and v > high) for v in values):
            raise argparse.ArgumentTypeError(
                f"{name} must lie in [{'-inf' if low is None else low}, {'inf' if high is None else high}], "
                f"got {text!r}")
        return values

    parse.__name__ = f"{kind.__name__}_list"
    return parse


def choice_list(allowed, name="values"):
    """Type for ``a,b,...``: distinct names among ``allowed``."""
    allowed = tuple(allowed)

    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"unknown {name} {unknown or [text]}; choose from {','.join(allowed)}")
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"a {name} entry is listed twice in {text!r}")
        return values

    parse.__name__ = "choice_list"
    return parse


def add_autocast_argument(parser, needs_device=True):
    """The scenarios' ``--autocast bfloat16`` option (the torch backend's bfloat16 products)."""
    parser.add_argument("--autocast", choices=["bfloat16"], default=None,
                        help=("with --device: " if needs_device else "") + "products and convolutions in bfloat16 "
                        "(their results rounded to bfloat16); states, parameters and the optimizer in float32; "
                        "float32 runs only")


def check_autocast(autocast, device, dtype):
    """``--autocast`` runs on the torch backend (``--device``) and casts float32 operands down.

    Raises :class:`~dynsim.validation.ValidationError` naming the option to give.
    """
    from dynsim.validation import ValidationError

    if autocast is None:
        return
    if device is None:
        raise ValidationError(f"--autocast {autocast} runs on the torch backend: give --device (cpu or cuda)")
    if dtype != "float32":
        raise ValidationError(f"--autocast {autocast} casts float32 operands down: it needs --dtype float32, got "
                              f"--dtype {dtype}")
