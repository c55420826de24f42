"""Run pyee's and blinker's own test suites against nova's compat facades.

    python tests/compat/run_upstream.py              # against nova.compat.*
    python tests/compat/run_upstream.py --original   # the same files against pyee/blinker

Steps: find the sdists (``pyee-13.0.1.tar.gz``, ``blinker-1.9.0.tar.gz``) in the cache
folder (``$NOVA_COMPAT_SDISTS``, default ``<tmp>/nova-compat-sdists``), else download them
with ``python -m pip download --no-deps --no-binary :all:``; check their sha256; extract
the chosen test files into a temporary folder; rewrite their ``pyee`` / ``blinker``
imports to ``nova.compat.pyee`` / ``nova.compat.blinker``; run each project's files with
pytest in a child interpreter (hard timeout, killed on expiry), with the project's own
pytest settings; read the JUnit XML report.  The child also records which modules it
imported, so a run that reached the real pyee or blinker fails.

Trio, Twisted and ``uplift`` tests are out of scope (issue 18).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Project:
    name: str           # the import name
    version: str
    sha256: str
    tests: tuple[str, ...]
    ini: str            # the project's pytest settings (from its pyproject.toml)

    @property
    def sdist(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"


PROJECTS = (
    Project(
        "pyee", "13.0.1", "0b931f7c14535667ed4c7e0d531716368715e860b988770fc7eb8578d1f67fc8",
        ("test_sync.py", "test_asyncio.py", "test_executor.py", "test_cls.py"),
        # pyee's addopts are "--verbose -s"; its async tests carry @pytest.mark.asyncio
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n",
    ),
    Project(
        "blinker", "1.9.0", "b4ce2265a7abece45e7cc896e98dbebe6cead56bcf805a3d23136d145f5445bf",
        ("test_signals.py", "test_context.py"),
        "[pytest]\nfilterwarnings =\n    error\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
    ),
)

# Imports the rewrite understands; any other mention of the package in an import fails.
_FROM = re.compile(r"^(\s*)from (pyee|blinker)((?:\.\w+)*) import ", re.M)
_IMPORT = re.compile(r"^(\s*)import (pyee|blinker)\s*$", re.M)
_LEFT = re.compile(r"^\s*(?:from|import)\s+(?:pyee|blinker)\b", re.M)

_CONFTEST = '''
import json, os, sys

def pytest_sessionfinish(session, exitstatus):
    mods = sorted(m for m in sys.modules if m.split(".")[0] in ("pyee", "blinker"))
    with open(os.environ["NOVA_COMPAT_MODULES"], "w") as f:
        json.dump(mods, f)
'''


@dataclass
class Outcome:
    """One project's run: test ids by result."""

    project: str
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)   # id -> message
    skipped: dict[str, str] = field(default_factory=dict)
    upstream_modules: list[str] = field(default_factory=list)
    returncode: int = 0
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and self.returncode == 0 and bool(self.passed)


def cache_dir() -> Path:
    return Path(os.environ.get("NOVA_COMPAT_SDISTS") or Path(tempfile.gettempdir()) / "nova-compat-sdists")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdists(where: Path | None = None, timeout: float = 240) -> dict[str, Path]:
    """The sdist of every project, downloaded into *where* when missing or corrupt.

    Raises:
        RuntimeError: pip failed, or a file's sha256 is not the pinned one.
    """
    where = where or cache_dir()
    where.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PROJECTS if not (where / p.sdist).is_file() or _sha256(where / p.sdist) != p.sha256]
    if missing:
        # download into a private folder, then move each file in whole: runs sharing the
        # cache never read a half-written file
        with tempfile.TemporaryDirectory(dir=where, prefix=".download-") as private:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "-q", "-d", private]
            cmd += [f"{p.name}=={p.version}" for p in missing]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"Expected pip download to succeed, got exit {done.returncode}: {done.stderr[-2000:]}")
            for p in missing:
                os.replace(Path(private) / p.sdist, where / p.sdist)
    out = {}
    for p in PROJECTS:
        path = where / p.sdist
        digest = _sha256(path)
        if digest != p.sha256:
            raise RuntimeError(f"Expected {p.sdist} with sha256 {p.sha256}, got {digest}")
        out[p.name] = path
    return out


def rewrite(source: str) -> str:
    """Point a test file's pyee/blinker imports at nova.compat.

    Raises:
        ValueError: an import of pyee/blinker the rewrite does not understand is left.
    """
    text = _FROM.sub(lambda m: f"{m[1]}from nova.compat.{m[2]}{m[3]} import ", source)
    text = _IMPORT.sub(lambda m: f"{m[1]}import nova.compat.{m[2]} as {m[2]}", text)
    left = _LEFT.findall(text)
    if left:
        raise ValueError(f"Expected only rewritable pyee/blinker imports, got {left}")
    return text


def extract(project: Project, sdist: Path, dest: Path, original: bool) -> list[Path]:
    """Write *project*'s chosen test files (rewritten unless *original*) under *dest*."""
    root = dest / project.name
    tests = root / "tests"
    tests.mkdir(parents=True)
    prefix = f"{project.name}-{project.version}/tests/"
    with tarfile.open(sdist) as tar:
        for name in project.tests:
            member = tar.extractfile(prefix + name)
            if member is None:
                raise RuntimeError(f"Expected {prefix}{name} in {sdist.name}, got nothing")
            text = member.read().decode()
            (tests / name).write_text(text if original else rewrite(text))
    (root / "pytest.ini").write_text(project.ini)
    (root / "conftest.py").write_text(_CONFTEST)
    return [tests / n for n in project.tests]


def run_project(project: Project, sdist: Path, work: Path, *, original: bool = False,
                timeout: float = 240) -> Outcome:
    """Run *project*'s tests in a child interpreter and return what happened."""
    files = extract(project, sdist, work, original)
    root = work / project.name
    report = root / "junit.xml"
    modules = root / "modules.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NOVA_COMPAT_MODULES"] = str(modules)
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-c", str(root / "pytest.ini"), "--rootdir", str(root), f"--junitxml={report}",
           *[str(f) for f in files]]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise RuntimeError(f"Expected {project.name}'s tests to finish within {timeout} s, got a hang:\n{output[-3000:]}")
    out = Outcome(project.name, returncode=proc.returncode, output=output)
    if not report.is_file():
        out.failed["<session>"] = output[-3000:]
        return out
    for case in ET.parse(report).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        skipped = next((c for c in case if c.tag == "skipped"), None)
        if problem is not None:
            out.failed[tid] = (problem.get("message") or problem.text or "")[:500]
        elif skipped is not None:
            out.skipped[tid] = skipped.get("message") or ""
        else:
            out.passed.append(tid)
    if modules.is_file():
        out.upstream_modules = json.loads(modules.read_text())
    return out


def run(*, original: bool = False, sdists: dict[str, Path] | None = None, timeout: float = 240) -> list[Outcome]:
    """Fetch, extract, rewrite and run every project; one :class:`Outcome` each."""
    sdists = sdists or fetch_sdists()
    with tempfile.TemporaryDirectory(prefix="nova-upstream-") as tmp:
        return [run_project(p, sdists[p.name], Path(tmp), original=original, timeout=timeout) for p in PROJECTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", action="store_true", help="run against the installed pyee/blinker")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output")
    args = parser.parse_args(argv)
    outcomes = run(original=args.original)
    status = 0
    for o in outcomes:
        if args.verbose:
            print(o.output)
        print(f"{o.project}: {len(o.passed)} passed, {len(o.failed)} failed, {len(o.skipped)} skipped; "
              f"upstream modules imported: {o.upstream_modules or 'none'}")
        for tid, msg in {**o.failed, **o.skipped}.items():
            print(f"  NOT PASSED {tid}: {msg}")
        if not o.ok or (o.upstream_modules and not args.original):
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
