"""A module-scoped fixture that runs the PyTorch oracle on one thread while a test module runs.

The oracle's tensors are tiny; with two threads on a busy machine PyTorch spin-waits for each operation
(measured: 0.2 s instead of 0.2 ms for one small cross_entropy forward and backward). The previous thread
count is restored afterwards, so other modules are unaffected. Use ``one_torch_thread = one_torch_thread_fixture()``
at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


def one_torch_thread_fixture() -> Callable[[], Iterator[None]]:
    """An autouse, module-scoped fixture setting torch.set_num_threads(1) (nothing without torch)."""

    @pytest.fixture(autouse=True, scope="module")
    def one_torch_thread() -> Iterator[None]:
        try:
            import torch
        except ImportError:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return one_torch_thread
