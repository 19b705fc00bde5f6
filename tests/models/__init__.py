"""Tests of cnnkit.models: the network-string grammar and the model zoo."""
