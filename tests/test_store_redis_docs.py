"""docs/backends.md runs as written (the store examples and the Bus on Redis), against the session's valkey-server (its URL
replaces the page's ``redis://localhost:6379/0``)."""

from __future__ import annotations

import re
from pathlib import Path

from valkey_server import ValkeyServer

PAGE = Path(__file__).resolve().parent.parent / "docs" / "backends.md"


def test_backends_page_examples_run(nova_valkey: ValkeyServer, redis_prefix: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3  # the RedisStore examples and the Bus on Redis (RedisTransport)
    for block in blocks:
        code = block.replace("redis://localhost:6379/0", nova_valkey.url).replace("docs-example", redis_prefix)
        exec(compile(code, str(PAGE), "exec"), {"__name__": "__doc_example__"})
