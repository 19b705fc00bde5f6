"""Seeded mutation fuzzing of every reader of untrusted input (see README.md in this directory).

``tests/fuzz/test_fuzz.py`` runs a few hundred cases in the default test run; ``python -m tests.fuzz --cases N``
runs as many as asked and prints, per format, what came out (clean errors, correct loads, failures with the
seed that reproduces each, worst time and memory next to the valid file's).
"""
