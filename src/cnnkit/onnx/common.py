"""What the ONNX exporter and importer share: the optional ``onnx`` import and the metadata keys.

cnnkit writes these ``metadata_props`` into every model it exports and reads them back on import:

===========================  ==========================================================================
``cnnkit.format``            ``cnnkit-onnx-1``
``cnnkit.input_shape``       JSON list: one example's shape as cnnkit sees it, ``[H, W, C]`` (NHWC)
``cnnkit.classes``           JSON list of the class names (when given)
``cnnkit.preprocess``        the preprocessing mode built into the graph (``none``, ``scale``,
                             ``mean_image``, ``per_channel``; absent when the graph takes ready inputs)
===========================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

from cnnkit.errors import require

FORMAT = "cnnkit-onnx-1"
KEY_FORMAT = "cnnkit.format"
KEY_INPUT_SHAPE = "cnnkit.input_shape"
KEY_CLASSES = "cnnkit.classes"
KEY_PREPROCESS = "cnnkit.preprocess"

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def onnx_module(feature: str = "ONNX export and import") -> Any:
    """The ``onnx`` package, or :class:`~cnnkit.errors.MissingDependencyError` naming the ``interop`` extra.

    Examples
    --------
    >>> import importlib.util
    >>> from cnnkit.onnx.common import onnx_module
    >>> importlib.util.find_spec("onnx") is None or onnx_module().__name__ == "onnx"
    True
    """
    return require("onnx", "interop", feature)


def nhwc_axis_to_nchw(axis: int) -> int:
    """The NCHW axis of a 4-D tensor's NHWC axis ``axis`` (negative axes count from the end).

    Examples
    --------
    >>> from cnnkit.onnx.common import nhwc_axis_to_nchw
    >>> [nhwc_axis_to_nchw(a) for a in (0, 1, 2, 3, -1)]
    [0, 2, 3, 1, 1]
    """
    a = axis + 4 if axis < 0 else axis
    return (0, 2, 3, 1)[a]


def nchw_axis_to_nhwc(axis: int) -> int:
    """The NHWC axis of a 4-D tensor's NCHW axis ``axis`` (the inverse of :func:`nhwc_axis_to_nchw`).

    Examples
    --------
    >>> from cnnkit.onnx.common import nchw_axis_to_nhwc
    >>> [nchw_axis_to_nhwc(a) for a in (0, 1, 2, 3, -3)]
    [0, 3, 1, 2, 3]
    """
    a = axis + 4 if axis < 0 else axis
    return (0, 3, 1, 2)[a]
