"""The ``wsend`` command's click group: ``connect``, ``send``, ``echo``, ``serve`` and ``bench``.

Each command lives in its own module and exposes a click command named ``command``;
:data:`COMMANDS` lists the modules in the order ``wsend --help`` shows them. To add a
command, write ``wsend/cli/NAME.py`` with a ``command`` and add ``"NAME"`` to
:data:`COMMANDS`; it gets ``--help``, error reporting and the exit codes of
:mod:`wsend.cli.errors` for free.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click
from click.exceptions import NoArgsIsHelpError

from .. import __version__, tune_allocator
from .errors import EXIT_CODES_HELP, CliError, ExitCode

__all__ = ["COMMANDS", "cli", "main", "usage_error"]

#: The modules of ``wsend.cli`` that define a command. Add new commands here.
COMMANDS: tuple[str, ...] = ("connect", "send", "echo", "serve", "bench")

EPILOG = f"""\b
Examples:
  wsend echo --port 8765                       # an echo server to play with
  wsend serve                                  # the hub with demo apps: http://127.0.0.1:8765/
  wsend connect ws://127.0.0.1:8765            # interactive session
  wsend send ws://127.0.0.1:8765 hello --wait 1
  wsend bench ws://127.0.0.1:8765 -c 8 -d 5

Run 'wsend COMMAND --help' for the options and examples of a command.

{EXIT_CODES_HELP}
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="wsend")
def cli() -> None:
    """wsend: WebSocket client and server tools."""
    # An application, not a library: keep freed memory for reuse, so that large messages
    # don't pay page faults on every allocation (see wsend.allocator).
    tune_allocator()


def _register() -> None:
    for name in COMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        cli.add_command(module.command, name)


_register()


def usage_error(exc: click.UsageError) -> CliError:
    """Click's usage error (bad option, missing argument...) as one ``error:`` line that
    says where to find help, instead of click's usage block."""
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    command = exc.ctx.command_path if exc.ctx is not None else "wsend"
    return CliError(f"{message} (see '{command} --help')", ExitCode.USAGE)


def main(args: Sequence[str] | None = None) -> None:
    """Run the ``wsend`` command line and exit with its exit code.

    Errors are printed as one ``error: ...`` line on stderr; Ctrl-C exits with 130 and no
    traceback.
    """
    try:
        code = cli.main(args=args, prog_name="wsend", standalone_mode=False)
    except click.UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):
            exc.show()  # `wsend` alone: the help
        else:
            usage_error(exc).show()
        code = ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # nobody reads what we would say
        code = ExitCode.FAILURE
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
