"""The ``wsend`` command line (``pip install 'wsend[cli]'``).

The commands are in :mod:`wsend.cli.app` and need the ``cli`` extra (click and
prompt_toolkit), which the library itself does not: :func:`main` imports them only when the
command runs, and says how to install them when they are missing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["CLI_PACKAGES", "main"]

#: The packages that the ``cli`` extra installs, by import name.
CLI_PACKAGES = frozenset({"click", "prompt_toolkit"})


def main(args: Sequence[str] | None = None) -> None:
    """Run the ``wsend`` command line and exit with its exit code.

    Without the ``cli`` extra, prints which package is missing and how to install it, and exits
    with status 1.
    """
    try:
        import click  # noqa: F401  (both are needed: connect's prompt imports the other late)
        import prompt_toolkit  # noqa: F401

        from .app import main as run
    except ModuleNotFoundError as exc:
        if exc.name not in CLI_PACKAGES:
            raise
        print(
            f"error: the wsend command needs {exc.name}, which is not installed;"
            " install the command line with: pip install 'wsend[cli]'",
            file=sys.stderr,
        )
        sys.exit(1)
    run(args)
