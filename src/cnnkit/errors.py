"""The exceptions cnnkit raises for a user's mistake or a bad input (never bare asserts).

Every one derives from :class:`CnnkitError` and from the built-in type a Python user would catch
(``ValueError``, ``ImportError``, ``FileNotFoundError``), and its message names what was received and what
was expected. The command line prints any of them as one line and exits with status 1.

=======================  ====================================================================
``ShapeError``           impossible geometry or a wrong shape (names the layer inside a network)
``StateError``           an operation in the wrong order or mode (``backward`` before ``forward``)
``SpecError``            a network string that does not parse or does not fit its input
``MismatchError``        data and model disagree (classes, input shape, number of outputs)
``ModelFileError``       a model file that is malformed, truncated, too large or of another kind
``CheckpointError``      a checkpoint (or run directory) that cannot be resumed
``DatasetError``         a dataset file that is missing, corrupt or malformed (:mod:`cnnkit.data`)
``MissingDependencyError``    an optional package a feature needs is not installed (names the extra)
``OnnxError``            an ONNX graph cnnkit cannot import or a network it cannot export (:mod:`cnnkit.onnx`)
=======================  ====================================================================

Examples
--------
>>> from cnnkit.errors import ShapeError
>>> err = ShapeError("expected 3 input channels, got 1").within("0", "Conv2d").within("2", "Sequential")
>>> str(err)
'layer 2.0 (Conv2d): expected 3 input channels, got 1'
>>> isinstance(err, ValueError)
True
"""

from __future__ import annotations

import reprlib

MAX_QUOTE = 200
"""Characters of a received value quoted in a message at most (see :func:`quote`)."""


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (a few levels, a few items each), an integer too long to print named by its size."""

    def repr_int(self, x: int, level: int) -> str:
        return f"<int of {x.bit_length():,} bits>" if x.bit_length() > 4096 else super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, MAX_QUOTE, MAX_QUOTE, 80
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 8


def _cheap_repr(value: object, budget: int = 10_000) -> bool:
    """Whether ``repr(value)`` is cheap: at most ``budget`` items counted through containers (a shared one once
    per use), and no integer too long to print."""
    stack, n = [value], 0
    while stack:
        v = stack.pop()
        n += 1
        if n > budget:
            return False
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif isinstance(v, int) and v.bit_length() > 4096:
            return False
    return True


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, shortened to ``limit`` characters with the length said, for error messages.

    A value whose repr would be costly (a container of many items, or one that shares itself many times over;
    an integer too long to print) is shown a few levels deep and a few items wide instead, so quoting what a
    file holds costs little whatever it holds.

    Examples
    --------
    >>> quote("x" * 1000, 20)
    "'xxxxxxxxxxxxxx... (1002 characters)"
    >>> quote(list(range(100_000)), 40)
    '[0, 1, 2, 3, 4, 5, 6, 7, ...]'
    >>> quote(10**5000)
    '<int of 16,610 bits>'
    """
    if isinstance(value, (list, tuple, dict, set, frozenset, int)) and not _cheap_repr(value):
        text = _SHORT.repr(value)
        return text if len(text) <= limit else f"{text[: max(limit - 5, 1)]}..."
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 5, 1)]}... ({len(text)} characters)"


class CnnkitError(Exception):
    """Base class of every error cnnkit raises for a user's input.

    Examples
    --------
    One ``except`` catches every error cnnkit raises for a user's input, whatever its built-in base:

    >>> from cnnkit.errors import CnnkitError
    >>> from cnnkit.models import parse
    >>> try:
    ...     parse("conv3x3")
    ... except CnnkitError as e:
    ...     print(type(e).__name__, isinstance(e, ValueError))
    SpecError True
    """


class ShapeError(CnnkitError, ValueError):
    """Impossible geometry or a wrong shape: the message names what was received and what was expected.

    Inside a container the error is re-raised with the path of the layer that failed
    (:meth:`within`), as in ``layer 3.body.0 (Conv2d): ...``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.errors import ShapeError
    >>> from cnnkit.ops.linear import linear_forward
    >>> try:
    ...     linear_forward(np.ones((2, 3)), np.ones((4, 5)))
    ... except ShapeError as e:
    ...     print(e)
    linear: input has 3 features (shape (2, 3)) but the weight (4, 5) expects in_features = 4
    >>> str(ShapeError("bad input").within("conv1", "Conv2d"))
    'layer conv1 (Conv2d): bad input'
    """

    def __init__(self, message: str, path: tuple[str, ...] = (), layer: str = "") -> None:
        self.detail, self.path, self.layer = message, tuple(path), layer
        super().__init__(f"layer {'.'.join(path)} ({layer}): {message}" if path else message)

    def within(self, name: str, layer: str) -> ShapeError:
        """The same error seen from the container holding the failing layer as child ``name``."""
        return ShapeError(self.detail, (name, *self.path), self.layer or layer)

    def __reduce__(self) -> tuple[type, tuple[str, tuple[str, ...], str]]:
        return (type(self), (self.detail, self.path, self.layer))


class StateError(CnnkitError, ValueError):
    """An operation called in the wrong order or mode, e.g. ``backward`` before ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.ops.dropout import dropout_backward
    >>> dropout_backward(np.ones(3), None)
    Traceback (most recent call last):
    ...
    cnnkit.errors.StateError: dropout backward called before forward
    """


class SpecError(CnnkitError, ValueError):
    """A network string that does not parse or does not fit its input; the message points at the bad token.

    Examples
    --------
    >>> from cnnkit.models import infer_shapes, parse
    >>> infer_shapes(parse("conv5x5x3x20"), (28, 28, 1))
    Traceback (most recent call last):
    ...
    cnnkit.errors.SpecError: token 1 'conv5x5x3x20' (character 1 of 'conv5x5x3x20'): the kernel expects 3 input channels ...
    """


class MismatchError(CnnkitError, ValueError):
    """Data and model disagree: class names, number of classes, input shape or number of outputs.

    Examples
    --------
    >>> from cnnkit.errors import MismatchError
    >>> err = MismatchError("the data has 10 classes but the model has 2 outputs")
    >>> isinstance(err, ValueError), str(err)
    (True, 'the data has 10 classes but the model has 2 outputs')
    """


class ModelFileError(CnnkitError, ValueError):
    """A model file that cannot be used: malformed, truncated, of another kind, or larger than the limits.

    Examples
    --------
    >>> from cnnkit.errors import CnnkitError, ModelFileError
    >>> err = ModelFileError("m.npz: not a cnnkit model file")
    >>> isinstance(err, CnnkitError), isinstance(err, ValueError)
    (True, True)
    """


class CheckpointError(CnnkitError, ValueError):
    """A checkpoint or run directory that cannot be resumed (malformed, or another run's).

    Examples
    --------
    >>> from cnnkit.errors import CheckpointError, CnnkitError
    >>> err = CheckpointError("runs/a/last.npz: written by another run")
    >>> isinstance(err, CnnkitError), isinstance(err, ValueError)
    (True, True)
    """


class OnnxError(CnnkitError, ValueError):
    """An ONNX graph cnnkit cannot represent (every unsupported operator or attribute, each with its node), or a
    network with a layer that has no ONNX form (its dotted path and class); see :mod:`cnnkit.onnx`.

    Examples
    --------
    >>> from cnnkit.errors import CnnkitError, OnnxError
    >>> err = OnnxError("m.onnx: unsupported: node 'lstm_1' (LSTM): operator LSTM")
    >>> isinstance(err, CnnkitError), isinstance(err, ValueError)
    (True, True)
    """


class MissingDependencyError(CnnkitError, ImportError):
    """An optional package is not installed; the message names it and the extra that installs it (or, with
    ``hint``, says what else is missing, e.g. a GPU).

    Examples
    --------
    >>> from cnnkit.errors import MissingDependencyError
    >>> err = MissingDependencyError("PIL", "images", "reading image folders")
    >>> str(err)
    "reading image folders needs PIL, which is not installed: pip install 'cnnkit[images]'"
    >>> isinstance(err, ImportError), err.extra
    (True, 'images')
    """

    def __init__(self, package: str, extra: str, feature: str, hint: str = "") -> None:
        self.package, self.extra, self.feature, self.hint = package, extra, feature, hint
        tail = hint or f"which is not installed: pip install 'cnnkit[{extra}]'"
        super().__init__(f"{feature} needs {package}, {tail}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        return (type(self), (self.package, self.extra, self.feature, self.hint))


def require(module: str, extra: str, feature: str) -> object:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra`` and ``feature``.

    Examples
    --------
    >>> require("math", "core", "square roots").__name__
    'math'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(module.split(".")[0], extra, feature) from None
