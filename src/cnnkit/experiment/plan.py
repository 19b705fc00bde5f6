"""What every experiment programme is made of: jobs (one training run each, keyed by its configuration) and
table rows (a label and the job giving its numbers).

A programme's ``plan(parts, epochs, max_train, test_limit)`` returns ``(jobs, table)``: the jobs keyed by
:func:`job_key` (identical configurations are one job, trained once, also across programmes sharing an
experiment directory) and, per part, its rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.train import TrainConfig

#: the entries that a job key always spells out; any other entry that differs from the model's defaults adds a hash
_KEYED = ("model", "data", "train_limit", "train_range", "seed", "epochs", "test_limit")


@dataclass(frozen=True)
class Job:
    """One training run: a stable key (its directory name) and its configuration.

    Examples
    --------
    >>> from cnnkit.train import TrainConfig
    >>> job = Job("base_n100_seed0_ep1", TrainConfig(model="base", train_limit=100, epochs=1).resolved())
    >>> job.key, job.config.lr
    ('base_n100_seed0_ep1', 0.001)
    """

    key: str
    config: TrainConfig


@dataclass(frozen=True)
class Entry:
    """One row of a part's table: the label shown and the job giving its numbers.

    ``x``: the value plotted on a curve (training-set size, multiplier, depth); ``group``: what the row
    belongs to when a part compares families (e.g. "plain" and "residual").

    Examples
    --------
    >>> Entry("SK-0.2", "sk-0.2_n10000_seed0_ep20", x=0.2)
    Entry(label='SK-0.2', job='sk-0.2_n10000_seed0_ep20', x=0.2, group=None)
    """

    label: str
    job: str
    x: float | None = None
    group: str | None = None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "net"


def job_key(c: TrainConfig, name: str | None = None) -> str:
    """A readable, unique directory name for a (resolved) configuration.

    Model (or ``name``, for a network string), dataset when it is not MNIST, training subset, seed, epochs and
    test limit are spelled out; any other setting that differs from the model's defaults (or a ``name`` standing
    for a network string) adds a short hash of those settings, so two different configurations never share a key.

    Examples
    --------
    >>> from cnnkit.train import TrainConfig
    >>> job_key(TrainConfig(model="sk-0.2", train_limit=10000, epochs=20).resolved())
    'sk-0.2_n10000_seed0_ep20'
    >>> job_key(TrainConfig(model="cnn-gap-mnist", data="fashion-mnist", train_limit=10000, epochs=10).resolved())
    'cnn-gap-mnist_fashion-mnist_n10000_seed0_ep10'
    >>> job_key(TrainConfig(model="cnn-gap-mnist", train_limit=500, epochs=2, lr=0.05).resolved())[:-7]  # + a hash of lr
    'cnn-gap-mnist_n500_seed0_ep2_'
    """
    subset = c.train_range if c.train_range else (f"n{c.train_limit}" if c.train_limit else "all")
    model = _safe(name or c.model)
    key = f"{model}_{_safe(c.data)}_" if c.data != "mnist" else f"{model}_"
    key += f"{subset}_seed{c.seed}_ep{c.epochs}"
    if c.test_limit:
        key += f"_test{c.test_limit}"
    mine = c.resolved().to_dict()
    defaults = TrainConfig(**{k: mine[k] for k in _KEYED}).resolved().to_dict()
    extra = {k: v for k, v in mine.items() if k not in _KEYED and v != defaults[k]}
    if name is not None:
        extra["model"] = c.model
    if extra:
        key += "_" + hashlib.sha1(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:7]
    return key.replace("/", "-")


def make_config(model: str, *, epochs: int, n: int | None = 10000, max_train: int | None = None,
                test_limit: int | None = None, seed: int = 0, **settings: Any) -> TrainConfig:
    """The resolved configuration of a run on the first ``n`` training examples (None: all), capped at
    ``max_train`` for shrunken runs; ``settings`` are any other :class:`~cnnkit.train.TrainConfig` entries.

    Examples
    --------
    >>> c = make_config("cnn-gap-mnist", epochs=3, n=10000, max_train=500, data="fashion-mnist")
    >>> c.train_limit, c.epochs, c.data, c.lr
    (500, 3, 'fashion-mnist', 0.01)
    >>> make_config("base", epochs=1, n=None).train_limit is None
    True
    """
    limit = min(n, max_train) if (n and max_train) else (n if n else max_train)
    return TrainConfig(model=model, train_limit=limit if limit and limit < 60000 else None, epochs=epochs, seed=seed,
                       test_limit=test_limit, **settings).resolved()


class Planner:
    """Collects jobs (deduplicated by key) and table rows while a programme's plan is written.

    Examples
    --------
    >>> p = Planner()
    >>> p.add("a", "first", make_config("base", epochs=1, n=100))
    'base_n100_seed0_ep1'
    >>> _ = p.add("b", "again", make_config("base", epochs=1, n=100))  # the same configuration: the same job
    >>> len(p.jobs), [e.label for e in p.table["b"]]
    (1, ['again'])
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.table: dict[str, list[Entry]] = {}

    def add(self, part: str, label: str, config: TrainConfig, name: str | None = None, x: float | None = None,
            group: str | None = None) -> str:
        """Add a row to ``part`` for the run ``config`` (a job, unless one with this key exists); returns its key."""
        key = job_key(config, name)
        self.jobs.setdefault(key, Job(key, config))
        self.table.setdefault(part, []).append(Entry(label, key, x, group))
        return key


@dataclass
class ReportContext:
    """What a programme's report is written from: the directory, the plan, the finished runs' results, the
    invocation's description (``meta``) and where the data are (for reports that evaluate saved models).

    Examples
    --------
    >>> from cnnkit.experiment import PROGRAMMES
    >>> ctx = ReportContext(Path("runs/x"), PROGRAMMES["ex15.4c"], {}, {}, {}, {"runs": 0})
    >>> ctx.report_path.name, ctx.results_name
    ('report-ex15.4c.md', 'results-ex15.4c.json')
    """

    exp_dir: Path
    programme: Programme
    jobs: dict[str, Job]
    table: dict[str, list[Entry]]
    results: dict[str, dict]
    meta: dict[str, Any]
    data_dir: str | None = None
    test_limit: int | None = None
    log: Callable[[str], None] = print

    @property
    def report_path(self) -> Path:
        return self.exp_dir / self.programme.report_name

    @property
    def results_name(self) -> str:
        return self.programme.results_name

    def head_lines(self, title: str, part: str) -> list[str]:
        """A programme report's first lines: ``# title``, the invocation's description and the heading of ``part``.

        Examples
        --------
        >>> from cnnkit.experiment import PROGRAMMES
        >>> ReportContext(Path("runs/x"), PROGRAMMES["ex15.5a"], {}, {}, {}, {"runs": 4}).head_lines("Exercise", "speed")
        ['# Exercise', '', '- runs: 4', '', '## ReLU vs tanh: epochs to reach a training error', '']
        """
        return [f"# {title}", "", *(f"- {k}: {v}" for k, v in self.meta.items()), "", f"## {self.programme.titles[part]}", ""]

    def write(self, lines: Sequence[str], entries: Sequence[Entry], analysis: dict[str, Any], plots: Sequence[str] = ()) -> Path:
        """Finish and write a programme report: ``lines``, then its ``plots`` (file names), the configuration of
        ``entries``' jobs; and the results JSON (meta, ``analysis``, the table, the results). Returns the report's path.

        Examples
        --------
        >>> import tempfile
        >>> from cnnkit.experiment import PROGRAMMES
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ctx = ReportContext(Path(d), PROGRAMMES["ex15.5a"], {}, {}, {}, {"runs": 0})
        ...     print(ctx.write(["# X", ""], [], {}, ["a.png"]).read_text().rstrip())
        # X
        <BLANKLINE>
        ## Plots
        <BLANKLINE>
        ![a.png](a.png)
        <BLANKLINE>
        ## Configuration
        """
        from cnnkit.experiment.report import configuration_lines, write_files  # report.py imports this module

        lines = list(lines)
        if plots:
            lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
        lines += ["## Configuration", "", *configuration_lines(self.jobs, [(e.label, e.job) for e in entries])]
        payload = {"meta": self.meta, "analysis": analysis, "parts": {p: [vars(e) for e in es] for p, es in self.table.items()},
                   "results": self.results}
        return write_files(self.exp_dir, self.programme.report_name, self.results_name, lines, payload)

    def finish(self, lines: Sequence[str], entries: Sequence[Entry], comments: Sequence[str], analysis: dict[str, Any],
               prefix: str, draw: Callable[[Any], None]) -> Path:
        """End a one-part report: ``comments`` as bullets, then the plots ``draw(figs)`` saves through a
        :class:`~cnnkit.experiment.report.Figures` named with ``prefix`` (only with matplotlib installed and once a
        run of ``entries`` has finished), then :meth:`write` with ``analysis`` and the commentary.

        Examples
        --------
        >>> import tempfile
        >>> from cnnkit.experiment import PROGRAMMES
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ctx = ReportContext(Path(d), PROGRAMMES["ex15.5a"], {}, {}, {}, {"runs": 0})
        ...     print(ctx.finish(["# X"], [], ["an answer"], {}, "x-", print).read_text().rstrip())
        # X
        <BLANKLINE>
        - an answer
        <BLANKLINE>
        ## Configuration
        """
        from cnnkit.experiment.report import figures  # report.py imports this module

        plots: list[str] = []
        with figures(self.exp_dir, prefix) as figs:
            if figs is not None and any(e.job in self.results for e in entries):
                draw(figs)
                plots = figs.made
        return self.write([*lines, "", *(f"- {c}" for c in comments), ""], entries,
                          {**analysis, "commentary": list(comments)}, plots)


@dataclass(frozen=True)
class Programme:
    """A named experiment programme: its parts, their titles, its plan and its report.

    ``plan(parts, epochs, max_train, test_limit, **options)`` returns ``(jobs, table)``; ``report(ctx)``
    writes the report and returns its path. ``epochs`` and ``out`` are the defaults of ``--epochs`` and
    ``--out``; ``options`` the plan options it accepts (e.g. ``matconvnet``).

    Examples
    --------
    >>> from cnnkit.experiment import PROGRAMMES
    >>> p = PROGRAMMES["ex15.6"]
    >>> p.parts, p.epochs, p.report_name
    (('b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'), 20, 'report.md')
    >>> jobs, table = p.plan(("b",), 1, 100, 50)
    >>> list(jobs)
    ['base_n100_seed0_ep1_test50']
    """

    name: str
    title: str
    parts: tuple[str, ...]
    titles: Mapping[str, str]
    plan: Callable[..., tuple[dict[str, Job], dict[str, list[Entry]]]]
    report: Callable[[ReportContext], Path]
    epochs: int
    out: str
    data: str
    options: frozenset[str] = field(default_factory=frozenset)

    @property
    def report_name(self) -> str:
        return "report.md" if self.name == "ex15.6" else f"report-{self.name}.md"

    @property
    def results_name(self) -> str:
        return "results.json" if self.name == "ex15.6" else f"results-{self.name}.json"


def check_parts(parts: tuple[str, ...], known: tuple[str, ...]) -> None:
    """ValueError naming the parts a programme does not have.

    Examples
    --------
    >>> check_parts(("b", "z"), ("b", "c"))
    Traceback (most recent call last):
    ...
    ValueError: unknown part(s) z; expected some of b, c
    """
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
