"""Pure functions, one module per family. ``*_forward(...)`` returns ``(y, cache)``; ``*_backward(dy, cache)``
returns the gradients of the inputs and parameters.

- :mod:`cnnkit.ops.geometry`: window geometry, padding ("same", asymmetric), output sizes
- :mod:`cnnkit.ops.im2row`: im2row / row2im (eqs. 15.21-15.25, 15.49)
- :mod:`cnnkit.ops.conv`: conv2d (15.25, 15.38, 15.49), conv_transpose2d
- :mod:`cnnkit.ops.pool`: max/avg/Lp pooling, max-unpooling, nearest upsampling and resizing (ONNX Resize)
- :mod:`cnnkit.ops.activation`: ReLU (15.13-15.15), sigmoid, tanh, leaky ReLU, PReLU, ELU, softplus, softmax (15.7)
- :mod:`cnnkit.ops.loss`: softmax cross-entropy, NLL, squared l2 (15.6), MSE, L1, MSLE, MAPE, hinge, BCE
- :mod:`cnnkit.ops.norm`: batch normalisation; :mod:`cnnkit.ops.dropout`: inverted dropout
- :mod:`cnnkit.ops.lrn`: local response normalisation across channels (AlexNet, GoogLeNet)
- :mod:`cnnkit.ops.linear`: fully connected layer and FC <-> convolution (§15.5.8)
- :mod:`cnnkit.ops.local`: locally connected layer (unshared weights)
"""
