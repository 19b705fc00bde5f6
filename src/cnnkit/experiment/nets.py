"""The networks of the exercise 15.1-15.5 programmes that are not named models, as network strings.

They are trained with explicit settings (initialisation, preprocessing, learning rate) in the plans, since a
network string alone takes MatConvNet's defaults.
"""

from __future__ import annotations

from cnnkit.models.zoo import cifar_resnet_spec


def cnn4_spec(act: str = "relu", dropout: bool = False) -> str:
    """A four-layer CNN in the spirit of AlexNet's figure 1 (two 5x5 convolutions with pooling, a 512-unit fully
    connected layer, the classifier) with activation ``act``, and with ``dropout`` (rate 0.5) after the hidden
    fully connected layer, where AlexNet puts it.

    Examples
    --------
    >>> cnn4_spec("tanh")
    'conv5x5x1x32p2,tanh,pool2,conv5x5x32x64p2,tanh,pool2,fc512,tanh,fc10'
    >>> cnn4_spec(dropout=True).split(",")[-3:]
    ['relu', 'dropout', 'fc10']
    """
    return f"conv5x5x1x32p2,{act},pool2,conv5x5x32x64p2,{act},pool2,fc512,{act}," + ("dropout," if dropout else "") + "fc10"


def plain_spec(depth: int, act: str = "relu", bn: bool = True, residual: bool = False) -> str:
    """He et al.'s 6n+2-layer CIFAR network for 28x28x1 inputs: plain (``residual=False``) or with option-A
    shortcuts, with or without batch normalisation, with ``act`` for every activation.

    Examples
    --------
    >>> from cnnkit.models import get_model_def
    >>> plain_spec(20) == get_model_def("plain20-mnist").spec, plain_spec(56, residual=True) == get_model_def("resnet56-mnist").spec
    (True, True)
    >>> plain_spec(8, "sigmoid", bn=False).split(",")[:4]
    ['conv3x3x1x16p1', 'sigmoid', 'conv3x3x16x16p1', 'sigmoid']
    """
    spec = cifar_resnet_spec(depth, 1, shortcuts=residual)
    if not bn:
        spec = spec.replace("nobias,bn,", ",").replace("nobias,bn", "")
    return spec if act == "relu" else spec.replace("relu", act)
