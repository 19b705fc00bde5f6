"""Exchanging weights with other frameworks: PyTorch ``state_dict`` files in safetensors format.

See :mod:`cnnkit.interop.torch_weights` for the names, the layouts and the NHWC -> NCHW reordering of the
features a Flatten hands to a Linear layer. Writing needs ``safetensors`` (``pip install 'cnnkit[interop]'``);
neither direction needs PyTorch.
"""

from cnnkit.interop.torch_weights import (
    IncompatibleKeys,
    load_torch_arrays,
    load_torch_state_dict,
    save_torch_state_dict,
    torch_state_dict,
)

__all__ = ["IncompatibleKeys", "load_torch_arrays", "load_torch_state_dict", "save_torch_state_dict", "torch_state_dict"]
