"""Tests of cnnkit.train: the trainer, exact resume, checkpoints."""
