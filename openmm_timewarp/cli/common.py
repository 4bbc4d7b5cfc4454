"""What the ``timewarp`` subcommands share: the help formatter, the parser class, number types."""

from __future__ import annotations

import argparse
import copy
import math


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows every option's default in ``--help``, except where there is none to show (None, a
    flag that is off) or where the help text already speaks of it."""

    def _format_action(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and action.help != argparse.SUPPRESS and "default" not in text.lower():
            default = action.default
            if isinstance(default, (list, tuple)):
                default = " ".join(map(str, default))
            default = str(default).replace("%", "%%")
            action = copy.copy(action)
            action.help = f"{text} (default: {default})" if text else f"default: {default}"
        return super()._format_action(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``timewarp`` and of each subcommand (argparse passes the class on to
    subparsers): defaults shown in every ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or positive, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value
