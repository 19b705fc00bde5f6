"""Argument types the command lines share (``cnnkit`` and its ``show``/``report``/``filter`` commands): each turns
one option's text into its value or raises :class:`argparse.ArgumentTypeError` with a one-line reason (exit 2).

Kept apart from :mod:`cnnkit.cli` so that :mod:`cnnkit.inspect.cli`, which :mod:`cnnkit.cli` imports while it
builds its parser, can use them without importing the command line itself.
"""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """An integer >= 1.

    Examples
    --------
    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def number(value: str) -> float:
    """A finite number.

    Examples
    --------
    >>> number("-1.5")
    -1.5
    >>> number("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number, got 'nan'
    """
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return v
