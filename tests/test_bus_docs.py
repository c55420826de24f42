"""The Bus page's code blocks and the bus examples really run."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "bus.md").read_text(encoding="utf-8"), re.S)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_block_runs(index):
    exec(compile(BLOCKS[index], f"docs/bus.md block {index}", "exec"), {"__name__": "docs_bus"})


@pytest.mark.parametrize("name", ["bus_orders.py", "bus_patterns.py"])
def test_example_runs(name, capsys):
    runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip()
