"""ONNX export and import: cnnkit networks out to onnxruntime and other frameworks, their models in.

* :func:`export` writes a network (and optionally its preprocessing and class names) as an ONNX model
  with an NCHW input ``input`` of dynamic batch size; :func:`to_model` gives the ``onnx.ModelProto``.
* :func:`load` reads an ONNX model as an ordinary, trainable cnnkit network (a Sequential or a Graph)
  that takes NHWC input; :func:`load_model_file` also returns the input shape, classes and preprocessing.

The ``onnx`` package is an optional dependency: ``pip install 'cnnkit[interop]'``. Inference on an
imported model runs on cnnkit's NumPy engine; onnxruntime is not needed. The operators each way are
listed in :mod:`cnnkit.onnx.exporter` and :mod:`cnnkit.onnx.importer`.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import cnnkit.onnx
>>> from cnnkit.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
>>> rng = np.random.default_rng(0)
>>> net = Sequential(Conv2d(3, 8, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(8 * 4 * 4, 10, rng=rng))
>>> with tempfile.TemporaryDirectory() as d:
...     _ = cnnkit.onnx.export(net, (8, 8, 3), os.path.join(d, "net.onnx"))
...     again = cnnkit.onnx.load(os.path.join(d, "net.onnx"))
>>> x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)  # NHWC, as every cnnkit network
>>> float(np.abs(again.eval()(x) - net.eval()(x)).max()) < 1e-5
True
"""

from cnnkit.onnx.exporter import export, exportable_layers, to_model
from cnnkit.onnx.importer import load, load_model_file

__all__ = ["export", "exportable_layers", "load", "load_model_file", "to_model"]
