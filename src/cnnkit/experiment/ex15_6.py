"""Exercise 15.6 (seed 000): the programme of MNIST experiments (b)-(j) as independent training jobs.

Every part is a list of (label, job); identical configurations shared by several parts (e.g. SK-0.2 on the
first 10,000 examples with seed 0 appears in (f), (g), (h), (i) and (j)) are one job, trained once.
Settings are MatConvNet 1.0-beta20's (see :class:`cnnkit.train.TrainConfig`), including its BN epsilon 1e-4 and
the SGD momentum zeroed at the start of every epoch; ``matconvnet=False`` plans cnnkit's own way instead (momentum
kept across epochs, epsilon 1e-5), for comparison.
"""

from __future__ import annotations

from cnnkit.experiment.plan import Entry, Job, job_key
from cnnkit.train import TrainConfig

__all__ = ["MULTIPLIERS", "PARTS", "SEEDS", "SIZES", "TITLES", "Entry", "Job", "job_key", "plan"]

PARTS = ("b", "c", "d", "e", "f", "g", "h", "i", "j")

TITLES = {
    "b": "(b) BASE (first 10,000 training examples, seed 0, unless the run was shrunken)",
    "c": "(c) BN: batch normalisation after each convolution of blocks 1-3",
    "d": "(d) BASE and BN with a dropout layer after block 4's classifier",
    "e": "(e) SK: block 1 as two 3x3 convolutions (+BN+ReLU)",
    "f": "(f) SK-s: channel multiplier s",
    "g": "(g) SK-0.2 against training-set size",
    "h": "(h) SK-0.2 on six disjoint slices of 10,000 examples",
    "i": "(i) SK-0.2 with seven random seeds",
    "j": "(j) SK-0.2 with ReLU vs sigmoid",
}

SIZES = (500, 1000, 2000, 5000, 10000, 20000, 60000)
MULTIPLIERS = (2.0, 1.5, 1.0, 0.5, 0.2)
SEEDS = (0, 1, 12, 123, 1234, 12345, 123456)


def _mult(s: float) -> str:
    return f"{s:g}"


def plan(
    parts: tuple[str, ...] = PARTS,
    epochs: int = 20,
    max_train: int | None = None,
    test_limit: int | None = None,
    matconvnet: bool = True,
) -> tuple[dict[str, Job], dict[str, list[Entry]]]:
    """The jobs (deduplicated, keyed) and, per part, its table rows.

    ``max_train`` caps every training subset (first N examples of a size, first N of a slice) and
    ``test_limit`` the test set: both only for shrunken runs (tests, smoke checks). ``matconvnet=False``:
    momentum kept across epochs and BN epsilon 1e-5 (cnnkit's defaults elsewhere) instead of MatConvNet's.

    Examples
    --------
    >>> jobs, table = plan(("c", "j"))
    >>> [e.label for e in table["c"]], len(jobs)  # (c)'s BASE and BN, (j)'s ReLU and sigmoid SK-0.2
    (['BASE', 'BN'], 4)
    >>> cfg = jobs[table["j"][1].job].config
    >>> cfg.model, cfg.train_limit, cfg.epochs, cfg.momentum_reset, cfg.bn_eps
    ('sk-0.2-sigmoid', 10000, 20, True, 0.0001)
    >>> [job.config.momentum_reset for job in plan(("j",), matconvnet=False)[0].values()]
    [False, False]
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    jobs: dict[str, Job] = {}
    table: dict[str, list[Entry]] = {}
    other: dict = {} if matconvnet else {"momentum_reset": False, "bn_eps": 1e-5}

    def add(part: str, label: str, model: str, n: int | None = 10000, rng: tuple[int, int] | None = None,
            seed: int = 0, x: float | None = None) -> None:
        if rng is not None and rng[0] == 1:  # examples 1-N are the first N: the same job as (f), (g), (i), (j)'s
            n, rng = rng[1], None
        if rng is not None:
            first, last = rng
            if max_train:
                last = min(last, first + max_train - 1)
            cfg = TrainConfig(model=model, train_range=f"{first}-{last}", epochs=epochs, seed=seed, test_limit=test_limit,
                              **other).resolved()
        else:
            limit = min(n, max_train) if (n and max_train) else (n if n else max_train)
            cfg = TrainConfig(model=model, train_limit=limit if limit and limit < 60000 else None, epochs=epochs,
                              seed=seed, test_limit=test_limit, **other).resolved()
        key = job_key(cfg)
        jobs.setdefault(key, Job(key, cfg))
        table.setdefault(part, []).append(Entry(label, key, x))

    for part in parts:
        if part == "b":
            add("b", "BASE", "base")
        elif part == "c":
            add("c", "BASE", "base")
            add("c", "BN", "bn")
        elif part == "d":
            for name in ("base", "bn"):
                add("d", name.upper(), name)
                add("d", f"{name.upper()} + dropout", f"{name}-dropout")
        elif part == "e":
            add("e", "BN", "bn")
            add("e", "SK", "sk")
        elif part == "f":
            for s in MULTIPLIERS:
                add("f", f"SK-{_mult(s)}", f"sk-{_mult(s)}" if s != 1.0 else "sk", x=s)
        elif part == "g":
            for n in SIZES:
                add("g", f"first {n:,}", "sk-0.2", n=n, x=float(n))
        elif part == "h":
            for i in range(6):
                add("h", f"examples {10000 * i + 1:,}-{10000 * (i + 1):,}", "sk-0.2", rng=(10000 * i + 1, 10000 * (i + 1)))
        elif part == "i":
            for seed in SEEDS:
                add("i", f"seed {seed}", "sk-0.2", seed=seed)
        elif part == "j":
            add("j", "SK-0.2 (ReLU)", "sk-0.2")
            add("j", "SK-0.2 (sigmoid)", "sk-0.2-sigmoid")
    return jobs, table
