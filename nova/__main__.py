"""``python -m nova``: the ``nova`` command (see :mod:`nova.cli`)."""

from __future__ import annotations

from nova.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
