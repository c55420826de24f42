"""The ``nova`` command: look into an event store from a shell.

``nova replay``, ``nova streams``, ``nova tail``, ``nova stats``, ``nova deadletters``,
``nova audit``, ``nova demo`` and ``nova bench``; ``nova COMMAND --help`` shows each one with an example.  Stores are
named by the URLs :func:`nova.open_store` takes (``sqlite:///audit.db``,
``redis://host:6379/0?prefix=p``, ``memory://``).

Exit codes: 0 done, 1 a runtime failure (bad store, unknown stream, unreadable file),
2 a usage error (bad option or time), 130 interrupted (Ctrl-C).  Every expected error
is one line on stderr, never a traceback (``NOVA_DEBUG=1`` shows it).

Needs the ``cli`` extra (click and rich): ``pip install "nova-events[cli]"``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ("main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nova`` command with *argv* (default ``sys.argv[1:]``); return its exit
    code (the console script and ``python -m nova`` exit with it)."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError as exc:
        print(
            f"nova: error: the nova command needs click and rich (missing {exc.name!r}); "
            "install them with: pip install 'nova-events[cli]'",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    from nova.cli.run import run

    return run(list(sys.argv[1:] if argv is None else argv))
