"""Prints the largest output differences the zoo-export and architecture-import tests recorded."""

from __future__ import annotations

from typing import Any

DIFFERENCES: list[tuple[str, str, float, float | None, float]] = []
"""(model, input, largest |cnnkit - onnxruntime|, largest |cnnkit - torch| (None: no torch model), largest |output|),
appended by tests/onnx/test_export.py (cnnkit's zoo exported) and tests/onnx/test_torch_import.py (PyTorch's imported)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not DIFFERENCES:
        return
    terminalreporter.section("cnnkit.onnx: largest absolute output difference of cnnkit's evaluation")
    for name, what, d_ort, d_torch, scale in DIFFERENCES:
        torch = f"vs torch {d_torch:<9.3g}" if d_torch is not None else " " * 18
        terminalreporter.write_line(f"{name:<22} {what:<34} vs onnxruntime {d_ort:<9.3g} {torch} (outputs up to {scale:.3g})")
