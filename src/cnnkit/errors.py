"""Exceptions cnnkit raises for a user's mistakes (never bare asserts)."""

from __future__ import annotations


class ShapeError(ValueError):
    """Impossible geometry or a wrong shape: the message names what was received and what was expected."""


class StateError(ValueError):
    """An operation called in the wrong order, e.g. ``backward`` before ``forward``."""
