"""``python -m wsend.cli``: the same as the ``wsend`` command."""

from . import main

if __name__ == "__main__":
    main()
