"""A griffe extension for the API reference: every docstring griffe loads goes through
``rest_markdown.rest_to_markdown`` (reST inline markup -> Markdown; see that module).

Wired in mkdocs.yml (``extensions: [docs/scripts/griffe_rest.py:RestToMarkdown]``); the
docstrings themselves are not changed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import griffe

_spec = importlib.util.spec_from_file_location("nova_docs_rest_markdown", Path(__file__).with_name("rest_markdown.py"))
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
rest_to_markdown = _module.rest_to_markdown


class RestToMarkdown(griffe.Extension):
    """Convert every loaded object's docstring (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)
