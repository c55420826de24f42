"""Run the click application and turn every expected error into one line on stderr
and an exit code (0 done, 1 runtime failure, 2 usage, 130 interrupted).

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
import sqlite3
import sys

import click

from nova.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from nova.cli.commands import CLIError, OutputClosed, cli
from nova.errors import NovaError

__all__ = ("run",)

#: Errors that are the user's situation (bad file, unknown stream, missing extra),
#: not a bug: reported in one line, exit 1.
EXPECTED = (CLIError, NovaError, OSError, KeyError, LookupError, ValueError, TypeError, ImportError, sqlite3.Error)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(argv: list[str]) -> int:
    """Run ``nova`` with *argv*; return the exit code."""
    try:
        try:
            result = cli.main(args=argv, prog_name="nova", standalone_mode=False)
        finally:
            sys.stdout.flush()
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message(), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "nova"
        print(f"{where}: error: {_one_line(exc.format_message())} (see '{where} --help')", file=sys.stderr)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return EXIT_INTERRUPTED
    except (BrokenPipeError, OutputClosed):
        # the reader went away (nova replay ... | head): stop quietly, and keep Python
        # from complaining when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except click.ClickException as exc:
        print(f"nova: error: {_one_line(exc.format_message())}", file=sys.stderr)
        return EXIT_FAILURE
    except EXPECTED as exc:
        if os.environ.get("NOVA_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"nova: error: {_one_line(str(message))}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("NOVA_DEBUG"):
            raise
        print(
            f"nova: error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
            "(run with NOVA_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return int(result) if isinstance(result, int) else EXIT_OK
