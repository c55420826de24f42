"""Print nova's performance ratios against baselines measured in the same process.

    python asv_benchmarks/ratios.py            # every area
    python asv_benchmarks/ratios.py hashing    # one or more areas
    python asv_benchmarks/ratios.py --quick    # fewer repeats (smoke run)

Each area is a module ``asv_benchmarks/ratio_<area>.py`` with a function
``run(quick: bool) -> list[Row]``.  A row compares a nova measurement with a baseline
run beside it (this machine is shared and noisy, so only same-process ratios mean
anything) and states the target the issue set.  Absolute numbers are printed too, for
the record, but nothing is gated on wall-clock time.

Exit status is 0 even when a target is missed (this is a report, not a gate); the
``met`` column says which targets hold on this run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import Row  # noqa: E402


def areas() -> list[str]:
    return sorted(p.stem[len("ratio_"):] for p in HERE.glob("ratio_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help=f"areas to run (default: all of {areas()})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    chosen = args.areas or areas()
    import nova

    print(f"nova {nova.__version__}, compiled kernels active: {nova.USING_EXTENSIONS}")
    rows: list[Row] = []
    for area in chosen:
        mod = importlib.import_module(f"ratio_{area}")
        print(f"\n== {area} ==", flush=True)
        area_rows = mod.run(args.quick)
        for r in area_rows:
            print(r.format(), flush=True)
        rows.extend(area_rows)
    missed = [r for r in rows if r.met is False]
    print(f"\n{len(rows)} ratios, {len(rows) - len(missed)} met, {len(missed)} missed")
    for r in missed:
        print(f"  missed: {r.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
