"""The engines ``cnnkit bench`` times, by name: cnnkit, PyTorch (NCHW and ``channels_last``) and onnxruntime
(inference only). A new framework is one :class:`Engine` subclass in its own module and one entry in
:data:`ENGINES`."""

from __future__ import annotations

from cnnkit.bench.engines.base import ConvCalls, Engine
from cnnkit.bench.engines.cnnkit_engine import CnnkitEngine, cnnkit_conv_calls, cnnkit_step
from cnnkit.bench.engines.onnxruntime_engine import OrtEngine, have_onnxruntime, ort_inference, ort_session
from cnnkit.bench.engines.torch_engine import TorchEngine, have_torch, torch_conv_calls, torch_model, torch_step

ENGINES: dict[str, Engine] = {e.name: e for e in (CnnkitEngine(), TorchEngine(), OrtEngine())}


def get_engine(name: str) -> Engine:
    """The engine called ``name``; raises ValueError for an unknown one."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}") from None


def installed_engines() -> list[Engine]:
    """The engines whose framework is installed, in :data:`ENGINES` order."""
    return [e for e in ENGINES.values() if e.available()]


__all__ = [
    "ENGINES",
    "CnnkitEngine",
    "ConvCalls",
    "Engine",
    "OrtEngine",
    "TorchEngine",
    "cnnkit_conv_calls",
    "cnnkit_step",
    "get_engine",
    "have_onnxruntime",
    "have_torch",
    "installed_engines",
    "ort_inference",
    "ort_session",
    "torch_conv_calls",
    "torch_model",
    "torch_step",
]
