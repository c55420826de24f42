"""README's quick start and the pages without a test file of their own run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "concepts.md",
    ROOT / "docs" / "primitives.md",
    ROOT / "docs" / "guarantees.md",
    ROOT / "docs" / "performance.md",
]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page: Path) -> None:
    blocks = _blocks(page)
    assert blocks, f"{page.name} has no python example"
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "__doc_example__"})


def test_quickstart_example_output() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "billing grace: 99.00" in out
    assert "replayed: [('order.placed', 'ada'), ('order.placed', 'grace')]" in out
    assert "columns: 4 events" in out
    assert "ada: ['order.placed', 'order.placed', 'order.shipped'] next position 4" in out


def test_readme_commands_are_the_ci_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python -m pip install -e ".[test]" && python -m pytest' in readme
    assert 'python -m pip install -e ".[test]"' in ci
    assert "NOVA_REQUIRE_EXTENSIONS=1 python -m pytest" in ci
    assert "python -m pip install . && python examples/quickstart.py" in readme
