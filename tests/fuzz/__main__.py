"""``python -m tests.fuzz``: fuzz cnnkit's readers at scale and print a table per format.

Examples::

    python -m tests.fuzz --cases 10000                       # 10,000 cases of every format
    python -m tests.fuzz --cases 2000 --format model --seed 7 --json model.json
    python -m tests.fuzz --format idx --seed 7 --case 1234   # one case again, with its traceback

Exit status 1 when any case failed (each failure is printed with the command that reproduces it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.fuzz.harness import FAILURE
from tests.fuzz.run import HEADER, Fuzzer, table_row
from tests.fuzz.targets import FORMATS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000, help="cases per format")
    p.add_argument("--start", type=int, default=0, help="first case index (to split a run into parts)")
    p.add_argument("--format", action="append", choices=sorted(FORMATS), help="format(s) to fuzz (default: all)")
    p.add_argument("--seed", type=int, default=0, help="master seed: case i of format f draws from Random('f:seed:i')")
    p.add_argument("--case", type=int, default=None, help="run this one case (with --format and --seed) and show its traceback")
    p.add_argument("--json", default=None, help="write the reports (every failure included) to this file")
    p.add_argument("--workdir", default=None, help="directory for the corpus and the mutated files (default: a temporary one)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    names = args.format or list(FORMATS)
    fuzzer = Fuzzer(Path(args.workdir) if args.workdir else None)
    try:
        if args.case is not None:
            if len(names) != 1:
                p.error("--case needs exactly one --format")
            result, text = fuzzer.replay(names[0], args.seed, args.case)
            print(f"{result.format} case {result.case} (seed {result.seed}, mutation {result.mutation}): {result.outcome}: "
                  f"{result.detail}\n  {result.seconds:.3f} s, traced {result.traced / 2**20:.1f} MiB, RSS +{result.rss / 2**20:.1f} MiB")
            if text:
                print(text)
            return 1 if result.outcome == FAILURE else 0
        reports = []
        for name in names:
            def progress(r: object, name: str = name) -> None:
                res = r  # a Result
                if res.outcome == FAILURE:  # type: ignore[attr-defined]
                    print(f"FAIL {name} case {res.case}: {res.seed} {res.mutation[:80]}: {res.detail[:300]}", flush=True)  # type: ignore[attr-defined]
                elif not args.quiet and (res.case + 1) % 1000 == 0:  # type: ignore[attr-defined]
                    print(f"  {name}: {res.case + 1 - args.start} cases", flush=True)  # type: ignore[attr-defined]

            reports.append(fuzzer.run(name, range(args.start, args.start + args.cases), args.seed, progress))
            print(table_row(reports[-1]), flush=True)
        print()
        print(f"cases {args.start}..{args.start + args.cases - 1}, seed {args.seed}")
        print(HEADER)
        for r in reports:
            print(table_row(r))
        failures = [f for r in reports for f in r.failures]
        for f in failures:
            print(f"FAIL {f.format} case {f.case} ({f.seed}; {f.mutation[:100]}): {f.detail[:400]}\n"
                  f"     reproduce: python -m tests.fuzz --format {f.format} --seed {args.seed} --case {f.case}")
        if args.json:
            Path(args.json).write_text(json.dumps({"seed": args.seed, "start": args.start, "cases": args.cases,
                                                   "reports": [r.to_dict() for r in reports]}, indent=1), encoding="utf-8")
        return 1 if failures else 0
    finally:
        fuzzer.close()


if __name__ == "__main__":
    sys.exit(main())
