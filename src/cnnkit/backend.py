"""The array-module seam.

Every module of cnnkit takes its array functions from ``xp`` here instead of importing NumPy
directly, so that a NumPy-compatible GPU array library (CuPy) can be swapped in at this one place.
"""

from __future__ import annotations

import numpy

xp = numpy
"""The array module every op computes with (NumPy today)."""

Array = numpy.ndarray
"""Type alias used in annotations for an array of ``xp``."""

as_strided = numpy.lib.stride_tricks.as_strided


def default_float() -> numpy.dtype:
    """The dtype parameters are created in unless asked otherwise (float32).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.backend import default_float
    >>> default_float()
    dtype('float32')
    >>> np.zeros(2, default_float()).dtype
    dtype('float32')
    """
    return numpy.dtype(numpy.float32)
