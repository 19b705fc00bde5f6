"""``cnnkit`` with ``train --distributed``, for the tests and benchmarks of :mod:`cnnkit.train.distributed`.

When ``cnnkit.cli`` already offers ``--distributed`` this is ``cnnkit`` itself. Until then it applies the lines
the command line needs (``add_distributed_flag`` on the train parser; ``train(..., distributed=comm)`` in
``cmd_train``; only rank 0 prints the summary line), so that ``mpiexec -n K python tests/distributed/cnnkit_mpi.py
train ... --distributed`` behaves as ``mpiexec -n K cnnkit train ... --distributed`` will.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `cnnkit` importable from the checkout too
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import cnnkit.cli as cli
import cnnkit.train.run as run
from cnnkit.train import distributed as dist


def _train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def has_flag() -> bool:
    """Whether ``cnnkit train`` already takes ``--distributed``."""
    return "--distributed" in _train_parser(cli.build_parser())._option_string_actions


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("CNNKIT_TEST_NO_PLOTS"):  # the tests' runs skip curves.png (matplotlib costs seconds per process)
        import cnnkit.train.plots as plots

        plots.learning_curves = lambda *args, **kwargs: False  # type: ignore[assignment]
    if has_flag():
        return cli.main(argv)
    build_parser, cmd_train = cli.build_parser, cli.COMMANDS["train"]

    def with_flag() -> argparse.ArgumentParser:
        parser = build_parser()
        dist.add_distributed_flag(_train_parser(parser))
        return parser

    def distributed_cmd_train(args: argparse.Namespace) -> int:
        comm = dist.communicator_from_args(args)
        if comm is None:
            return cmd_train(args)
        train = run.train
        run.train = functools.partial(train, distributed=comm)  # type: ignore[assignment]
        try:
            with contextlib.redirect_stdout(io.StringIO()) if comm.rank else contextlib.nullcontext():
                return cmd_train(args)
        finally:
            run.train = train  # type: ignore[assignment]

    cli.build_parser = with_flag  # type: ignore[assignment]
    cli.COMMANDS["train"] = distributed_cmd_train
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
