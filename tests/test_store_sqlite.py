"""SQLiteStore: the conformance suite on both kernel twins (file in tmp_path), plus
what is specific to the durable store: durability levels, codecs, schema checks,
reopening, backups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nova.store.sqlite import SQLiteStore

from store_conformance import StoreConformance, stateful_test_case


class TestSQLiteStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _kernel(self, core: Any, tmp_path: Path) -> None:
        self.kernel = core.ColumnLog
        self.dir = tmp_path
        self.n = 0

    def make_store(self, **options: Any) -> SQLiteStore:
        self.n += 1
        # pickle: the suite stores tuples and arbitrary objects, as MemoryStore keeps them
        return SQLiteStore(self.dir / f"store{self.n}.db", kernel=self.kernel, codec="pickle", **options)

    def wait_until_blocked(self, store: Any, n: int, timeout: float = 10.0) -> bool:
        with store._cond:
            return bool(store._cond.wait_for(lambda: store._blocked >= n, timeout=timeout))


def _stateful_factory(pure: bool) -> Any:
    import tempfile

    from nova import _core

    kernel = _core.implementation("py" if pure else "c").ColumnLog
    root = Path(tempfile.mkdtemp(prefix="nova-sqlite-model-"))
    count = [0]

    def make(**options: Any) -> SQLiteStore:
        count[0] += 1
        return SQLiteStore(root / f"m{count[0]}.db", kernel=kernel, **options)

    return make


def _compiled() -> bool:
    from nova import _core

    return not _core.NO_EXTENSIONS and _core.compiled_available()


TestSQLiteModelPy = stateful_test_case(_stateful_factory(True), max_examples=15)
if _compiled():
    TestSQLiteModelC = stateful_test_case(_stateful_factory(False), max_examples=15)
