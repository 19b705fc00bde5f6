"""The limits cnnkit applies to what it reads from files and arguments it did not write itself.

Every size a file declares (an ``.npy`` header's shape, an IDX header's dimensions, an image's pixel count,
a model's parameters, a network string's length) is checked against these limits, and against the file's
real size, before anything is allocated; decompression stops at the size the header declared. The
defaults admit every model in the zoo and every dataset cnnkit reads; change them in Python
(``cnnkit.limits.LIMITS.file_bytes = 8 << 30``) or with environment variables named
``CNNKIT_MAX_<FIELD>`` (e.g. ``CNNKIT_MAX_FILE_BYTES=8589934592``).

Examples
--------
>>> from cnnkit.limits import LIMITS, check_size
>>> LIMITS.file_bytes >= 1 << 30
True
>>> check_size(10 << 40, LIMITS.file_bytes, "a declared array")
Traceback (most recent call last):
...
ValueError: a declared array would take 10,995,116,277,760 bytes, over the limit of 4,294,967,296 (CNNKIT_MAX_FILE_BYTES)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass
class Limits:
    """Bounds on untrusted inputs (see the module docstring); each field has an environment variable."""

    file_bytes: int = 4 << 30  # bytes of data one file may hold or declare (arrays, images, datasets)
    meta_bytes: int = 64 << 20  # bytes of JSON metadata in a model or checkpoint file
    json_depth: int = 64  # nesting of that metadata
    members: int = 100_000  # arrays in one .npz archive
    image_pixels: int = 64 << 20  # pixels of one decoded image
    spec_chars: int = 100_000  # characters of a network string
    layers: int = 10_000  # layers (tokens) of one network
    param_bytes: int = 4 << 30  # bytes of parameters a network may allocate
    epochs: int = 1_000_000  # epochs one command may ask for

    @classmethod
    def from_env(cls) -> Limits:
        out = cls()
        for f in fields(cls):
            raw = os.environ.get(f"CNNKIT_MAX_{f.name.upper()}")
            if raw is not None:
                try:
                    value = int(raw)
                except ValueError:
                    continue
                if value > 0:
                    setattr(out, f.name, value)
        return out


LIMITS = Limits.from_env()
"""The limits in force (a module-level instance: assign its fields to change them)."""


def check_size(n: int, limit: int, what: str, field: str = "file_bytes", error: type[ValueError] = ValueError) -> int:
    """``n`` if it is at most ``limit``; ``error`` naming ``what``, the limit and its variable otherwise."""
    if n > limit:
        digits = len(str(n)) if n < 10**4000 else None  # str() of a huge integer is slow and refused past 4300 digits
        shown = f"{n:,}" if digits is not None and digits <= 24 else f"about 10^{digits - 1 if digits else int(n.bit_length() * 0.30103)}"
        raise error(f"{what} would take {shown} bytes, over the limit of {limit:,} (CNNKIT_MAX_{field.upper()})")
    return n
