"""Tests of cnnkit.experiment: the exercise-15.6 job list, its report, and the executors end to end."""
