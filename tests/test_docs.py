"""The documentation's examples run: every module's doctests, and an Examples section on every public callable.

Each module of the ``cnnkit`` package is one test case that runs its doctests (``>>>`` lines in module,
class, function and method docstrings) and fails with doctest's report. A module whose import, or one of
whose examples, needs an optional dependency that is missing (torch, ray, matplotlib, numba, Pillow) is
skipped, saying which.

``test_public_callables_have_examples`` lists the public functions and classes without a numpydoc
``Examples`` section in the packages named in ``DOCUMENTED``; adding a package to the check is one line there.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

import cnnkit

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

OPTIONAL_DEPENDENCIES = frozenset(
    {"torch", "ray", "matplotlib", "numba", "PIL", "Pillow", "onnx", "onnxruntime", "safetensors", "mpi4py", "cupy"}
)
"""Top-level module names (and package names) of the optional dependencies: what needs a missing one is skipped."""

DOCUMENTED: tuple[str, ...] = (
    "cnnkit.ops",
    "cnnkit.optim",
    "cnnkit.data",
    "cnnkit.models",
    "cnnkit.textbook",
    "cnnkit.gradcheck",
    "cnnkit.serialize",
    "cnnkit.summary",
    "cnnkit.errors",
    "cnnkit.protocols",
    "cnnkit.backend",
    "cnnkit.jit",
    "cnnkit.nn",
    "cnnkit.train",
    "cnnkit.inspect",
    "cnnkit.interop",
    "cnnkit.experiment",
)
"""Packages (or modules) whose public functions and classes must each carry an Examples section."""

# The numba-compiled kernels of cnnkit.jit, by module. They are exempt: an example would compile the kernel
# (seconds), and it could run only with numba installed (without it the names are None). The ops reach them
# through cnnkit.jit.usable, whose example runs either way, and the ops' examples and tests exercise them.
_JIT_KERNELS = {
    "activation": ("bias_relu_", "relu_backward", "relu_forward"),
    "conv": (
        "depthwise_backward_input",
        "depthwise_backward_weight",
        "depthwise_forward",
        "im2row_gather",
        "wino_gather",
        "wino_scatter",
    ),
    "optim": ("adam_", "sgd_momentum_"),
    "pool": ("maxpool_backward", "maxpool_backward_disjoint", "maxpool_forward"),
    "scatter": ("row2im_add",),
}

EXEMPT: dict[str, str] = {
    **{f"cnnkit.jit.{m}.{n}": "numba kernel: compiled on first call, None without numba" for m, ns in _JIT_KERNELS.items() for n in ns},
    **{f"cnnkit.jit.{n}": "numba kernel, re-exported by cnnkit.jit" for m, ns in _JIT_KERNELS.items() if m != "conv" for n in ns},
}
"""Fully qualified public names exempt from the Examples rule, with the reason."""

_EXAMPLES = re.compile(r"^\s*Examples\s*\n\s*-{8}\s*$", re.MULTILINE)


def _module_names() -> list[str]:
    """Every module and package under cnnkit (packages whose import fails are still listed, then skipped)."""
    names = {"cnnkit"}
    names.update(info.name for info in pkgutil.walk_packages(cnnkit.__path__, "cnnkit.", onerror=lambda _name: None))
    return sorted(names)


MODULES = _module_names()


def _import(name: str) -> ModuleType:
    """Import a module; skip the test when an optional dependency is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in OPTIONAL_DEPENDENCIES:
            pytest.skip(f"{name} needs the optional dependency {missing!r}, which is not installed: {exc}")
        raise


def _internal(name: str) -> bool:
    return any(part.startswith("_") for part in name.split("."))


def _covered(name: str) -> bool:
    return not _internal(name) and any(name == p or name.startswith(p + ".") for p in DOCUMENTED)


def _public_callables(module: ModuleType) -> dict[str, object]:
    """The module's public functions and classes: those in ``__all__`` if it has one, else those defined in
    it whose names do not start with ``_``. Numba dispatchers (with a ``py_func``) count as functions."""

    def is_callable(obj: object) -> bool:
        return inspect.isfunction(obj) or inspect.isclass(obj) or hasattr(obj, "py_func")

    exported = getattr(module, "__all__", None)
    if exported is not None:
        return {n: getattr(module, n) for n in exported if is_callable(getattr(module, n, None))}
    return {
        n: obj
        for n, obj in vars(module).items()
        if not n.startswith("_") and is_callable(obj) and getattr(obj, "__module__", None) == module.__name__
    }


def _has_examples(obj: object) -> bool:
    doc = obj.__doc__ if isinstance(obj.__doc__, str) else ""  # its own docstring, not one inherited
    return bool(_EXAMPLES.search(inspect.cleandoc(doc)))


def _missing_optional(exc: BaseException | None) -> str | None:
    """The optional dependency whose absence raised ``exc`` (or what caused it), else None."""
    while exc is not None:
        if isinstance(exc, ImportError):
            missing = (getattr(exc, "package", None) or exc.name or "").split(".")[0]  # MissingDependencyError names .package
            if missing in OPTIONAL_DEPENDENCIES:
                return missing
        exc = exc.__cause__ or exc.__context__
    return None


class _Runner(doctest.DocTestRunner):
    """A DocTestRunner that notes the optional dependencies an example found missing."""

    def __init__(self) -> None:
        super().__init__(optionflags=OPTIONFLAGS)
        self.missing: set[str] = set()

    def report_unexpected_exception(
        self, out: Callable[[str], object], test: doctest.DocTest, example: doctest.Example, exc_info: Any
    ) -> None:
        missing = _missing_optional(exc_info[1])
        if missing is not None:
            self.missing.add(missing)
        super().report_unexpected_exception(out, test, example, exc_info)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = _import(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = _Runner()
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    if runner.failures and runner.missing:
        pytest.skip(f"the examples of {name} need the optional dependencies {sorted(runner.missing)}, which are not installed")
    if runner.failures:
        pytest.fail(f"{runner.failures} of {runner.tries} doctest examples failed in {name}:\n" + "".join(report), pytrace=False)


def test_documented_packages_exist() -> None:
    for prefix in DOCUMENTED:
        assert any(n == prefix or n.startswith(prefix + ".") for n in MODULES), f"DOCUMENTED names {prefix!r}, which is no module"
    for qualname in EXEMPT:
        module, _, attr = qualname.rpartition(".")
        exported = getattr(importlib.import_module(module), "__all__", ())  # a kernel is None without numba
        assert module in MODULES and attr in exported, f"stale exemption {qualname}"


def test_public_callables_have_examples() -> None:
    missing = []
    for name in MODULES:
        if not _covered(name):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if (exc.name or "").split(".")[0] in OPTIONAL_DEPENDENCIES:
                continue  # test_doctests reports the skip
            raise
        for attr, obj in _public_callables(module).items():
            qualname = f"{name}.{attr}"
            if qualname not in EXEMPT and not _has_examples(obj):
                missing.append(qualname)
    assert not missing, f"{len(missing)} public callables lack an 'Examples' section:\n" + "\n".join(missing)
