"""PyTorch as a test-only oracle: layout helpers. Import ``torch`` through :func:`require_torch`."""

from __future__ import annotations

import numpy as np
import pytest


def require_torch():
    """Return the torch module, or skip the test cleanly when it is not installed."""
    return pytest.importorskip("torch")


def nchw(x: np.ndarray):
    """NHWC numpy -> NCHW torch tensor (float64 kept), requiring grad."""
    torch = require_torch()
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)


def nhwc(t) -> np.ndarray:
    """NCHW torch tensor -> NHWC numpy."""
    return t.detach().numpy().transpose(0, 2, 3, 1)


def conv_weight_to_torch(w: np.ndarray):
    """(kh, kw, C_in/g, C_out) -> torch's (C_out, C_in/g, kh, kw), requiring grad."""
    torch = require_torch()
    return torch.tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), requires_grad=True)


def conv_weight_from_torch(t) -> np.ndarray:
    """torch's (C_out, C_in/g, kh, kw) (or its grad) -> (kh, kw, C_in/g, C_out)."""
    return t.detach().numpy().transpose(2, 3, 1, 0)


def assert_close(a, b, dtype=np.float64) -> None:
    """float64: ~1e-10; float32: ~1e-4 relative."""
    tol = 1e-9 if np.dtype(dtype) == np.float64 else 2e-4
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=tol, atol=tol)
