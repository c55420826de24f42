"""The documentation site's source stays whole: every link and anchor resolves, every page
is in the navigation, every public name has an API reference, the docstring converter
leaves no reST behind, README names the distribution and its extras, and the
performance plot's data and script agree.

These run without mkdocs; CI also runs ``mkdocs build --strict`` (.ci/run), which fails
on any broken link, anchor or API reference in the rendered site.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import math
import re
import sys
import tomllib
import types
import unicodedata
from pathlib import Path
from typing import Any

import pytest

import nova

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SITE_PAGES = sorted(p for p in DOCS.rglob("*.md") if "scripts" not in p.relative_to(DOCS).parts)
#: Markdown read on GitHub (not part of the site): links resolve in the source tree.
REPO_PAGES = [ROOT / "README.md", ROOT / "asv_benchmarks" / "README.md"]


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- links and anchors -------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """*text* without fenced blocks and inline code (links there are not links)."""
    return _CODE.sub("", _FENCE.sub("", text))


def slugify(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, title in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = slugify(title)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}_{n}")
    return out


def links(page: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]   # http:, https:, mailto: are not checked


def test_slugify_matches_the_toc_extension() -> None:
    assert slugify("Tracking with asv") == "tracking-with-asv"
    assert slugify("The `nova` command") == "the-nova-command"
    assert slugify('Tips, from "always do this" to "fast but sharp"') == "tips-from-always-do-this-to-fast-but-sharp"
    assert slugify("nova vs peers, at a glance") == "nova-vs-peers-at-a-glance"


@pytest.mark.parametrize("page", SITE_PAGES + REPO_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if page in SITE_PAGES and not dest.is_relative_to(DOCS):
            broken.append(f"{target}: outside docs/, which the site cannot serve")
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: {broken}"


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` here\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#some-code-here) [gone](missing.md) [bad](a.md#nope) "
                    "`[not](a link)` [web](https://example.org)\n", encoding="utf-8")
    assert links(page) == ["a.md#some-code-here", "missing.md", "a.md#nope"]
    assert anchors(tmp_path / "a.md") == {"title", "some-code-here"}


# --- navigation --------------------------------------------------------------------------

def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    nav = _nav_pages()
    assert len(nav) == len(set(nav))
    assert sorted(nav) == sorted(str(p.relative_to(DOCS)) for p in SITE_PAGES)
    for topic in ("quickstart.md", "concepts.md", "emitter.md", "bus.md", "resilience.md", "store.md",
                  "guarantees.md", "performance.md", "observability.md", "backends.md", "cli.md",
                  "architecture.md", "migration.md", "api/index.md"):
        assert topic in nav, topic


def test_the_site_is_strict() -> None:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^strict: true$", text, re.M)
    for check in ("omitted_files", "absolute_links", "unrecognized_links", "anchors", "not_found"):
        assert re.search(rf"^  {check}: warn$", text, re.M), check
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in ci and '".[test,bench,lint,docs]"' in ci


# --- every page ends in something runnable ---------------------------------------------

#: backends.md ends in prose after its (server-backed) examples; another change owns it.
ENDS_ELSEWHERE = {"backends.md"}


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_page_ends_in_a_runnable_example(page: Path) -> None:
    if page.name in ENDS_ELSEWHERE:
        assert re.search(r"```python\n", page.read_text(encoding="utf-8"))
        return
    text = page.read_text(encoding="utf-8").rstrip()
    assert text.endswith("```"), f"{page.name} does not end in a code block"
    last = text.rfind("```", 0, len(text) - 3)
    assert text[last:].startswith("```python\n"), f"{page.name}'s last block is not python (test_docs.py runs those)"


# --- API reference -----------------------------------------------------------------------

def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _directives() -> list[str]:
    return [d for page in (DOCS / "api").glob("*.md")
            for d in re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), re.M)]


def _rendered(ident: str, directives: list[str]) -> bool:
    """Whether a ``::: X`` directive renders *ident*: X is it, or a module whose
    ``__all__`` (or a class whose members) hold it."""
    for d in directives:
        if ident == d:
            return True
        if ident.startswith(d + "."):
            rest = ident[len(d) + 1:].split(".")[0]
            owner = _resolve(d)
            if isinstance(owner, types.ModuleType) and rest in getattr(owner, "__all__", ()):
                return True
            if isinstance(owner, type) and hasattr(owner, rest):
                return True
    return False


def test_every_public_name_has_an_api_reference() -> None:
    table = dict(re.findall(r"^\| \[`([^`]+)`\]\[([\w.]+)\] \|", (DOCS / "api" / "index.md").read_text(encoding="utf-8"), re.M))
    assert sorted(table) == sorted(nova.__all__)
    directives = _directives()
    kernels = nova._core.KERNELS
    for name, ident in table.items():
        documented, public = _resolve(ident), getattr(nova, name)
        twin = next((importlib.import_module(f"nova._core.{k}_py") for k, names in kernels.items() if name in names), None)
        assert documented is public or (twin is not None and documented is getattr(twin, name)), (name, ident)
        assert _rendered(ident, directives), f"{ident} is linked but no ::: directive renders it"


def test_every_public_module_has_a_reference_page() -> None:
    directives = set(_directives())
    for module in ("nova.events", "nova.emitter", "nova.bus", "nova.listener", "nova.store", "nova.pool",
                   "nova.observability", "nova.errors", "nova.testing", "nova.compat", "nova.cli",
                   "nova.transport"):
        assert module in directives, module


# --- the docstring converter ---------------------------------------------------------------

rest = _load(DOCS / "scripts" / "rest_markdown.py", "nova_docs_rest_markdown_test")


def test_rest_to_markdown() -> None:
    text = rest.rest_to_markdown(
        "Use :class:`~nova.Emitter`, :meth:`Bus.publish()` and ``x``, ``sqlite:///:memory:``.\n"
        "\n"
        ".. versionadded:: 0.2\n"
        "\n"
        "Example::\n"
        "\n"
        "    a = 1\n"
        "\n"
        "    b = 2\n"
        "\n"
        "after")
    assert text == ("Use `Emitter`, `Bus.publish` and `x`, `sqlite:///:memory:`.\n"
                    "\n"
                    "*Added in version 0.2.*\n"
                    "\n"
                    "Example:\n"
                    "\n"
                    "```\n"
                    "a = 1\n"
                    "\n"
                    "b = 2\n"
                    "```\n"
                    "\n"
                    "after")
    assert rest.rest_to_markdown("::\n\n    x\n") == "```\nx\n```\n"
    assert rest.rest_to_markdown("``a `b` c``") == "`` a `b` c ``"
    assert rest.rest_to_markdown("see ``f(a,\n  b)`` and ``g``") == "see `f(a,\n  b)` and `g`"
    assert rest.rest_to_markdown("``a\n\nb``") == "``a\n\nb``"          # not across a paragraph
    assert rest.rest_to_markdown("x::\n\n    ``y``\n") == "x:\n\n```\n``y``\n```\n"  # code stays code


def _docstrings() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "nova").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.append((f"{path.relative_to(ROOT)}:{getattr(node, 'name', '<module>')}", doc))
    return out


def test_no_docstring_keeps_rest_markup_the_site_would_show_raw() -> None:
    docs = _docstrings()
    assert len(docs) > 500
    unknown = []
    for where, doc in docs:
        text = re.sub(r"``.+?``", "", doc)              # literals may hold anything
        for role in re.findall(r"(?<![\w/]):((?:py:)?[a-z]+):`", text):
            if role.removeprefix("py:") not in rest.ROLES:
                unknown.append(f"{where}: :{role}:")
        md = rest.rest_to_markdown(doc)
        prose = re.sub(r"^\s*```.*?^\s*```\s*$", "", md, flags=re.S | re.M)
        if re.search(r"^\s*\.\. [\w-]+::", prose, re.M) or "``" in re.sub(r"`` .*? ``", "", prose):
            unknown.append(f"{where}: a directive or a literal left")
    assert not unknown, f"reST the converter does not turn into Markdown: {unknown}"


# --- README --------------------------------------------------------------------------------

def test_readme_names_the_distribution_every_extra_and_the_site() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["name"] == "nova-events"
    assert 'pip install "nova-events"' in readme
    for extra in meta["optional-dependencies"]:
        assert re.search(rf"^\| `{extra}` \|", readme, re.M), f"extra {extra!r} missing from README's table"
    assert 'pip install -e ".[docs]" && mkdocs serve' in readme
    assert "mkdocs build --strict" in readme


# --- performance plots ---------------------------------------------------------------------

ratios = _load(ROOT / "asv_benchmarks" / "ratios.py", "nova_docs_ratios_test")
plot = _load(ROOT / "asv_benchmarks" / "plot_ratios.py", "nova_docs_plot_ratios_test")
REPORT = json.loads((DOCS / "img" / "ratios.json").read_text(encoding="utf-8"))


def test_the_committed_data_is_one_full_compiled_run() -> None:
    assert REPORT["compiled"] is True and REPORT["quick"] is False
    assert set(plot.AREAS) <= set(REPORT["areas"]) <= set(ratios.areas())
    assert {r["area"] for r in REPORT["rows"]} == set(REPORT["areas"])


def test_the_plot_compares_nova_with_every_peer() -> None:
    pairs = plot.comparisons(REPORT)
    assert {c.peer for c in pairs} >= {"pyee", "blinker", "kafka-python", "mmh3", "pyrate-limiter", "limits",
                                       "queue.Queue", "ThreadPoolExecutor", "pandas", "sqlite3",
                                       "raw sqlite3", "raw redis-py"}
    assert {c.area for c in pairs} == set(plot.AREAS)
    for c in pairs:
        assert c.nova_ns > 0 and c.peer_ns > 0 and math.isfinite(c.nova_ns) and math.isfinite(c.peer_ns)
        assert c.factor.endswith(("faster", "the time"))


def test_plot_units_and_peers() -> None:
    assert plot.to_ns(2.0, "us") == 2000.0 and plot.to_ns(4.0, "M ev/s") == 250.0
    assert plot.to_ns(299.0, "B/event") is None
    assert plot.peer_of("pyee.EventEmitter.emit") == "pyee"
    assert plot.peer_of("target") is None and plot.peer_of("emit, metrics=None") is None
    c = plot.Comparison("emitter", "emit", "pyee", 100.0, 432.0)
    assert c.factor == "4.32x faster"
    assert plot.Comparison("store", "w", "numpy", 2.0, 1.0).factor == "2x the time"
    assert plot.Comparison("store", "w", "sqlite3", 1.0, 5890.0).factor == "5,890x faster"


def test_performance_page_shows_the_plot_and_the_command_that_makes_it() -> None:
    page = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert "![nova vs peers, time per operation, log scale](img/perf-vs-peers.svg)" in page
    assert (DOCS / "img" / "perf-vs-peers.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert "python asv_benchmarks/ratios.py --json docs/img/ratios.json" in page
    assert "python asv_benchmarks/plot_ratios.py docs/img/ratios.json --out docs/img" in page


class _FakeArea(types.ModuleType):
    @staticmethod
    def run(quick: bool) -> list[Any]:
        Row = sys.modules["_timing"].Row
        return [Row("op", 2.0, "ns", "peer", 8.0, 4.0, ">= 2x", True),
                Row("op vs missing", 2.0, "ns", "peer missing", float("nan"), float("nan"), ">= 2x", None)]


def test_ratios_json_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ratios, "areas", lambda: ["fake"])
    monkeypatch.setitem(sys.modules, "ratio_fake", _FakeArea("ratio_fake"))
    out = tmp_path / "r.json"
    assert ratios.main(["fake", "--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["quick"] is True and doc["areas"] == ["fake"] and doc["compiled"] == nova.USING_EXTENSIONS
    assert doc["rows"] == [
        {"area": "fake", "name": "op", "value": 2.0, "unit": "ns", "baseline_name": "peer", "baseline": 8.0,
         "ratio": 4.0, "target": ">= 2x", "met": True},
        {"area": "fake", "name": "op vs missing", "value": 2.0, "unit": "ns", "baseline_name": "peer missing",
         "baseline": None, "ratio": None, "target": ">= 2x", "met": None},
    ]
    assert "2 ratios, 2 met, 0 missed" in capsys.readouterr().out
    # '-': the JSON alone on stdout, the table on stderr
    assert ratios.main(["fake", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"][0]["name"] == "op" and "== fake ==" in captured.err


def test_ratios_rejects_an_unknown_area(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ratios.main(["no_such_area"])
    assert exc.value.code == 2
    assert "Expected areas among" in capsys.readouterr().err
