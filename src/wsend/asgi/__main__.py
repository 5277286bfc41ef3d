"""``python -m wsend.asgi APP [uvicorn options]``: uvicorn with wsend as its WebSocket layer.

Every argument goes to uvicorn's own command line (``python -m wsend.asgi --help`` lists them:
``--host``, ``--port``, ``--workers``, ``--ssl-certfile``, ``--ws-max-size``,
``--ws-ping-interval``, ``--proxy-headers``, ``--root-path``...), which then runs with
``ws=WSendProtocol``. uvicorn's ``--ws`` option only takes its own names before 0.36, hence
this launcher; ``--ws`` itself is refused here, since the launcher sets it. Examples::

    python -m wsend.asgi main:app --host 0.0.0.0 --port 8000
    python -m wsend.asgi main:app --workers 4 --ws-max-size 1048576

Exit status: uvicorn's (2 for a usage error, 3 when the application can't be loaded).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

PROG = "python -m wsend.asgi"


def main(argv: Sequence[str] | None = None) -> None:
    """Run uvicorn's command line on ``argv`` (default: ``sys.argv[1:]``) with wsend's layer.

    Raises:
        SystemExit: always, with uvicorn's exit status; 2 when ``--ws`` is given.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg == "--ws" or arg.startswith("--ws=") for arg in args):
        sys.stderr.write(f"{PROG}: --ws is set by this launcher (wsend's layer); remove it\n")
        raise SystemExit(2)
    from .uvicorn import WSendProtocol

    # The module: the package's attribute "main" is the command itself.
    cli: Any = importlib.import_module("uvicorn.main")
    run = cli.run

    def run_with_wsend(*args: Any, **kwargs: Any) -> None:
        kwargs["ws"] = WSendProtocol
        run(*args, **kwargs)

    # uvicorn's command calls the module's run(); the class goes to each worker by reference.
    cli.run = run_with_wsend
    try:
        cli.main.main(args=args, prog_name=PROG)
    finally:
        cli.run = run


if __name__ == "__main__":  # pragma: no cover - run as python -m wsend.asgi
    main()
