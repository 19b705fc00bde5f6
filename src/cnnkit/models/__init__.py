"""The model zoo and the network-string grammar (see :mod:`cnnkit.models.spec`)."""

from cnnkit.models.spec import BuildOptions, SpecError, build, infer_shapes, parse, to_string
from cnnkit.models.zoo import ModelDef, create, get_model_def, model_input, model_names, resolve

__all__ = [
    "BuildOptions",
    "ModelDef",
    "SpecError",
    "build",
    "create",
    "get_model_def",
    "infer_shapes",
    "model_input",
    "model_names",
    "parse",
    "resolve",
    "to_string",
]
