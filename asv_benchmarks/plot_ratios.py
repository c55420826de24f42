"""Draw docs/performance.md's plots, nova vs each peer per operation, from the ratio report.

    # one real run, then the plots (what docs/performance.md's images come from):
    python asv_benchmarks/ratios.py --json docs/img/ratios.json
    python asv_benchmarks/plot_ratios.py docs/img/ratios.json --out docs/img

    python asv_benchmarks/plot_ratios.py --run docs/img/ratios.json --out docs/img  # both steps

The input is ``ratios.py --json``'s document.  A row is plotted when its baseline is a
peer: another library (pyee, blinker, kafka-python, mmh3, pyrate-limiter, limits,
pandas, redis-py) or the plain-Python/stdlib way of doing the same thing (a bare loop,
``queue.Queue``, ``ThreadPoolExecutor``, ``deque``, a slots dataclass, numpy, raw
sqlite3 or raw Redis commands).  Rows whose baseline is a target, nova itself (another
configuration, the pure twin) or a size in bytes are not plots of nova vs a peer and are
left out.

Every measurement is drawn as the time one operation takes (rates become ``1/rate``),
on a log scale, one panel per area, nova's bar beside the peer's, annotated with the
factor.  Lower is better.  Needs matplotlib (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: baseline-name prefix -> the peer's label on the plot (first match wins).
PEERS: tuple[tuple[str, str], ...] = (
    ("pyee", "pyee"),
    ("blinker", "blinker"),
    ("kafka-python", "kafka-python"),
    ("mmh3", "mmh3"),
    ("pyrate_limiter", "pyrate-limiter"),
    ("limits", "limits"),
    ("queue.Queue", "queue.Queue"),
    ("ThreadPoolExecutor", "ThreadPoolExecutor"),
    ("deque", "collections.deque"),
    ("@dataclass", "dataclass(slots=True)"),
    ("np.searchsorted", "numpy searchsorted"),
    ("DataFrame.loc", "pandas"),
    ("bare `for l in ls", "bare loop"),
    ("sqlite3", "sqlite3"),
    ("raw sqlite3", "raw sqlite3"),
    ("raw executemany", "raw sqlite3"),
    ("raw indexed range", "raw sqlite3"),
    ("raw fetchall", "raw sqlite3"),
    ("raw pipelined XADD", "raw redis-py"),
    ("raw single XADD", "raw redis-py"),
    ("raw XRANGE", "raw redis-py"),
)

#: unit -> (nanoseconds per unit for times, or None) and (items per unit for rates, or None).
TIME_NS = {"ns": 1.0, "ns/key": 1.0, "ns/call": 1.0, "ns/emit": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
RATE = {"ev/s": 1.0, "items/s": 1.0, "tasks/s": 1.0, "k ev/s": 1e3, "M ev/s": 1e6,
        "M keys/s": 1e6, "M rows/s": 1e6}

#: the order areas are drawn in, and their titles.
AREAS = {
    "foundation": "events and hashing",
    "primitives": "primitives",
    "emitter": "emitter",
    "compat": "compat facades (pyee / blinker API)",
    "bus": "bus",
    "store": "MemoryStore",
    "store_sqlite": "SQLiteStore",
    "store_redis": "RedisStore (local valkey)",
}


@dataclass(frozen=True)
class Comparison:
    """One plotted pair: nova's time per operation and the peer's, in nanoseconds."""

    area: str
    operation: str
    peer: str
    nova_ns: float
    peer_ns: float

    @property
    def factor(self) -> str:
        """``"4.3x faster"`` when nova takes less time, ``"1.7x the time"`` otherwise."""
        if self.nova_ns <= self.peer_ns:
            return f"{_times(self.peer_ns / self.nova_ns)} faster"
        return f"{_times(self.nova_ns / self.peer_ns)} the time"


def _times(x: float) -> str:
    return f"{x:,.0f}x" if x >= 100 else f"{x:.3g}x"


def peer_of(baseline_name: str) -> str | None:
    """The peer label of a row's baseline, or None when the baseline is not a peer."""
    for prefix, label in PEERS:
        if baseline_name.startswith(prefix):
            return label
    return None


def to_ns(value: float, unit: str) -> float | None:
    """Nanoseconds per operation for a time or a rate in *unit*; None for other units."""
    if unit in TIME_NS:
        return value * TIME_NS[unit]
    if unit in RATE:
        return 1e9 / (value * RATE[unit])
    return None


def comparisons(report: dict[str, Any]) -> list[Comparison]:
    """The nova-vs-peer pairs of a ``ratios.py --json`` document, in report order."""
    out: list[Comparison] = []
    for row in report["rows"]:
        name = row["name"]
        peer = peer_of(row["baseline_name"])
        if peer is None or name != name.strip() or "[py]" in name or row["area"] not in AREAS:
            # not a peer; a detail line; the pure twin (the plots show the compiled
            # kernels); an area whose baselines are nova itself (observability's only
            # peer row repeats the emitter's)
            continue
        value, baseline = row["value"], row["baseline"]
        if value is None or baseline is None or value <= 0 or baseline <= 0:
            continue  # the peer was not installed
        nova_ns, peer_ns = to_ns(value, row["unit"]), to_ns(baseline, row["unit"])
        if nova_ns is None or peer_ns is None:
            continue
        operation = name.replace(" (compiled)", "").replace(" [c]", "").split(" vs ")[0]
        out.append(Comparison(row["area"], operation, peer, nova_ns, peer_ns))
    return out


def _label(ns: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def draw(report: dict[str, Any], path: Path) -> Path:
    """Draw every comparison of *report* into *path* (SVG or PNG by its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "nova", "font.size": 9})
    pairs = comparisons(report)
    order = [a for a in AREAS if any(c.area == a for c in pairs)]
    counts = [sum(c.area == a for c in pairs) for a in order]
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, axes = plt.subplots(len(order), 1, figsize=(10, 1.0 + 0.62 * sum(counts) + 0.55 * len(order)),
                             gridspec_kw={"height_ratios": counts}, squeeze=False, layout="constrained")
    nova_color, peer_color = "#3f51b5", "#b0b0b0"
    for ax, area in zip(axes[:, 0], order):
        rows = [c for c in pairs if c.area == area]
        ys = range(len(rows))
        ax.barh([y + 0.2 for y in ys], [c.nova_ns for c in rows], height=0.38, color=nova_color,
                label="nova")
        ax.barh([y - 0.2 for y in ys], [c.peer_ns for c in rows], height=0.38, color=peer_color,
                label="peer")
        for y, c in zip(ys, rows):
            ax.text(c.nova_ns, y + 0.2, f" {_label(c.nova_ns)}  {c.factor}", va="center", fontsize=8)
            ax.text(c.peer_ns, y - 0.2, f" {_label(c.peer_ns)}  {c.peer}", va="center", fontsize=8,
                    color="#555555")
        ax.set_yticks(list(ys), [c.operation for c in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _label(x)))
        lo = min(min(c.nova_ns, c.peer_ns) for c in rows)
        hi = max(max(c.nova_ns, c.peer_ns) for c in rows)
        ax.set_xlim(lo / 2, hi * 60)
        ax.set_title(AREAS.get(area, area), loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="x", which="major", color="#e0e0e0")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1, 0].set_xlabel("time per operation (log scale; lower is better)")
    axes[0, 0].legend(loc="lower right", frameon=False)
    kind = "compiled kernels" if report.get("compiled") else "pure-Python twins"
    fig.suptitle(f"nova vs peers, per operation (nova {report.get('nova_version')}, {kind}, "
                 f"Python {report.get('python')}, {report.get('machine')}, {report.get('created')})",
                 fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="the ratios.py --json document to plot")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="directory for the image")
    parser.add_argument("--name", default="perf-vs-peers.svg", help="image file name (.svg or .png)")
    parser.add_argument("--run", nargs="*", metavar="AREA",
                        help="first run ratios.py (these areas; none: all) and write its JSON to JSON")
    args = parser.parse_args(argv)
    if args.run is not None:
        subprocess.run([sys.executable, str(HERE / "ratios.py"), *args.run, "--json", str(args.json)],
                       check=True)
    try:
        report = json.loads(args.json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"Expected a ratios.py --json file, got {str(args.json)!r}: {exc}")
    if not comparisons(report):
        parser.error(f"Expected rows comparing nova with a peer in {str(args.json)!r}, got none")
    print(draw(report, args.out / args.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
