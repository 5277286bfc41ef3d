"""Where an interactive session writes: received and sent messages, notices and errors.

:class:`StreamConsole` writes received messages to stdout and everything else to stderr, so
that ``wsend connect URL < input > output`` collects only what the server sent.
:class:`PromptConsole` prints above a prompt_toolkit prompt without garbling the line being
typed.
"""

from __future__ import annotations

from typing import Protocol

import click

__all__ = ["Console", "PromptConsole", "StreamConsole", "prefixed"]


def prefixed(prefix: str, text: str) -> str:
    """Put ``prefix`` before the first line of ``text`` and align the following lines."""
    pad = " " * len(prefix)
    lines = text.split("\n")
    return "\n".join([prefix + lines[0], *(pad + line for line in lines[1:])])


class Console(Protocol):
    """The output of a session."""

    def received(self, text: str) -> None:
        """Show a message received from the server."""

    def sent(self, text: str) -> None:
        """Show a message sent to the server."""

    def info(self, text: str) -> None:
        """Show a notice (connected, pong, closed)."""

    def error(self, text: str) -> None:
        """Show an error that doesn't end the session (a bad command)."""


class StreamConsole:
    """A console on stdout (received messages) and stderr (the rest).

    Args:
        prefix: put ``< `` before received messages.
        echo_sent: show sent messages (``> ...``) on stderr.
    """

    def __init__(self, *, prefix: bool = True, echo_sent: bool = True) -> None:
        self.prefix = prefix
        self.echo_sent = echo_sent

    def received(self, text: str) -> None:
        click.echo(prefixed("< ", text) if self.prefix else text)

    def sent(self, text: str) -> None:
        if self.echo_sent:
            click.echo(click.style(prefixed("> ", text), fg="cyan"), err=True)

    def info(self, text: str) -> None:
        click.echo(click.style(text, fg="yellow"), err=True)

    def error(self, text: str) -> None:
        click.echo(f"{click.style('error:', fg='red', bold=True)} {text}", err=True)


class PromptConsole:
    """A console printing above a running prompt_toolkit application.

    Lines go to the current prompt_toolkit output (the terminal, or the output of the app
    session a test creates); while a prompt is shown they are printed above it.
    """

    def received(self, text: str) -> None:
        self._print(prefixed("< ", text), "")

    def sent(self, text: str) -> None:
        """Nothing to do: the prompt line (``> text``) stays on the screen."""

    def info(self, text: str) -> None:
        self._print(text, "ansiyellow")

    def error(self, text: str) -> None:
        self._print(f"error: {text}", "ansired")

    def _print(self, text: str, style: str) -> None:
        from prompt_toolkit import print_formatted_text
        from prompt_toolkit.formatted_text import FormattedText

        print_formatted_text(FormattedText([(style, text)]))
