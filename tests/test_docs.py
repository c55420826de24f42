"""Every page's python blocks and every example really run, as written.

One parametrized test for all of ``README.md`` and ``docs/*.md`` (each ```` ```python ````
block runs on its own, with the active kernels), one for the example scripts with the
output each must print, and the check that README's commands are CI's.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The least number of python examples a page must keep (pages not listed: none needed).
MIN_BLOCKS = {
    "README.md": 1,
    "bus.md": 5,
    "concepts.md": 1,
    "emitter.md": 8,
    "guarantees.md": 1,
    "performance.md": 1,
    "quickstart.md": 5,
    "primitives.md": 1,
    "migration.md": 4,
    "resilience.md": 5,
    "store.md": 5,
}


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


#: Pages whose examples need a server: their own test runs them against the session's
#: server (the page says localhost; the test points it at the server it started).
SERVER_PAGES = {"backends.md": "test_store_redis_docs.py"}

BLOCKS = [(page, i, block) for page in PAGES if page.name not in SERVER_PAGES
          for i, block in enumerate(_blocks(page))]


def test_server_pages_have_their_own_test() -> None:
    for page, test in SERVER_PAGES.items():
        assert _blocks(ROOT / "docs" / page), page
        assert (ROOT / "tests" / test).read_text(encoding="utf-8").count(page), test


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_keeps_its_examples(page: Path) -> None:
    assert len(_blocks(page)) >= MIN_BLOCKS.get(page.name, 0)


@pytest.mark.parametrize(("page", "index", "block"), BLOCKS, ids=[f"{p.name}[{i}]" for p, i, _ in BLOCKS])
def test_python_block_runs(page: Path, index: int, block: str) -> None:
    exec(compile(block, f"{page.name}[{index}]", "exec"), {"__name__": "__doc_example__"})


EXAMPLES = {
    "quickstart.py": [
        "billing grace: 99.00",
        "replayed: [('order.placed', 'ada'), ('order.placed', 'grace')]",
        "columns: 4 events",
        "ada: ['order.placed', 'order.placed', 'order.shipped'] next position 4",
    ],
    "emitter_basic.py": [
        "welcomed 101, audited 102, accepted 100",
        "no mail for Mallory",
        "failed 1, delivered 100",
    ],
    "emitter_asyncio.py": ["stored 20 readings, counted 20, peak concurrency 3"],
    "listener_example.py": ["handled now 50 of 50"],
    "bus_orders.py": [],
    "bus_patterns.py": [],
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{name} printed nothing"
    for line in EXAMPLES[name]:
        assert line in out, f"{name}: {line!r} not in output:\n{out}"


def test_quickstart_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    for line in EXAMPLES["quickstart.py"]:
        assert line in out


def test_readme_commands_are_the_ci_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python -m pip install -e ".[test]" && python -m pytest' in readme
    assert 'python -m pip install -e ".[test]"' in ci
    assert "NOVA_REQUIRE_EXTENSIONS=1 python -m pytest" in ci
    assert "python -m pip install . && python examples/quickstart.py" in readme
