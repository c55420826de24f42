"""Print nova's performance ratios against baselines measured in the same process.

    python asv_benchmarks/ratios.py            # every area
    python asv_benchmarks/ratios.py foundation store   # one or more areas
    python asv_benchmarks/ratios.py --quick    # fewer repeats (smoke run)
    python asv_benchmarks/ratios.py --json ratios.json   # also write every row as JSON

Each area is a module ``asv_benchmarks/ratio_<area>.py`` with a function
``run(quick: bool) -> list[Row]``.  A row compares a nova measurement with a baseline
run beside it (this machine is shared and noisy, so only same-process ratios mean
anything) and states the target the issue set.  Absolute numbers are printed too, for
the record, but nothing is gated on wall-clock time.

Exit status is 0 even when a target is missed (this is a report, not a gate); the
``met`` column says which targets hold on this run.

``--json FILE`` (``-`` for stdout, then the table goes to stderr) writes the same rows
machine-readably: ``{"nova_version", "compiled", "python", "machine", "created",
"quick", "areas", "rows": [{"area", "name", "value", "unit", "baseline_name",
"baseline", "ratio", "target", "met"}, ...]}``, numbers that were not measured (a
missing peer) as ``null``.  ``asv_benchmarks/plot_ratios.py`` draws the docs' plots from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import Row  # noqa: E402


def areas() -> list[str]:
    return sorted(p.stem[len("ratio_"):] for p in HERE.glob("ratio_*.py"))


def _number(x: Any) -> Any:
    """JSON has no NaN or infinity: a number that was not measured is ``null``."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def report(rows: list[tuple[str, Row]], *, quick: bool, areas_run: list[str]) -> dict[str, Any]:
    """The ``--json`` document for *rows* (``(area, row)`` pairs, in report order)."""
    import nova

    return {
        "nova_version": nova.__version__,
        "compiled": bool(nova.USING_EXTENSIONS),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {_cpus()} CPUs",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "areas": areas_run,
        "rows": [{"area": area, **{k: _number(v) for k, v in dataclasses.asdict(row).items()}}
                 for area, row in rows],
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help=f"areas to run (default: all of {areas()})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", metavar="FILE", help="also write every row to FILE as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    chosen = args.areas or areas()
    unknown = sorted(set(chosen) - set(areas()))
    if unknown:
        parser.error(f"Expected areas among {areas()}, got {unknown}")
    import nova

    out: TextIO = sys.stderr if args.json == "-" else sys.stdout
    print(f"nova {nova.__version__}, compiled kernels active: {nova.USING_EXTENSIONS}", file=out)
    rows: list[tuple[str, Row]] = []
    for area in chosen:
        mod = importlib.import_module(f"ratio_{area}")
        print(f"\n== {area} ==", file=out, flush=True)
        area_rows = mod.run(args.quick)
        for r in area_rows:
            print(r.format(), file=out, flush=True)
        rows.extend((area, r) for r in area_rows)
    missed = [r for _, r in rows if r.met is False]
    print(f"\n{len(rows)} ratios, {len(rows) - len(missed)} met, {len(missed)} missed", file=out)
    for r in missed:
        print(f"  missed: {r.name}", file=out)
    if args.json:
        text = json.dumps(report(rows, quick=args.quick, areas_run=chosen), indent=1) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
