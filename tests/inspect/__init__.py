"""Tests of cnnkit.inspect: pictures, receptive fields, score maps, kernels, the report and the commands."""
