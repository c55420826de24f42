"""The examples in docs/emitter.md and examples/emitter_*.py really run."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "emitter.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index: int) -> None:
    exec(compile(BLOCKS[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc_example__"})


def test_basic_example(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "emitter_basic.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "welcomed 101, audited 102, accepted 100" in out
    assert "no mail for Mallory" in out
    assert "failed 1, delivered 100" in out


def test_asyncio_example(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "emitter_asyncio.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "stored 20 readings, counted 20, peak concurrency 3" in out
