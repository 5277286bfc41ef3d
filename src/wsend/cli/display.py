"""How messages and close frames are shown: text as is, binary as hex or base64 (or saved to
files), JSON pretty-printed on request, close codes with their meaning."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.frames import CloseCode

__all__ = ["BINARY_FORMATS", "Display", "close_meaning", "describe_close", "is_ok_close"]

#: The choices of ``--binary-format``.
BINARY_FORMATS = ("hex", "base64")

# Codes meaning the peer ended the connection on purpose and without error; 1005 is a close
# frame without a code (RFC 6455 section 7.1.5).
_OK_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})


def close_meaning(code: int) -> str:
    """Name a close code: its :class:`~wsend.CloseCode` name, or the range it belongs to.

    3000-3999 are registered with IANA for libraries and frameworks, 4000-4999 are for
    applications (RFC 6455 section 7.4.2).
    """
    try:
        return CloseCode(code).name
    except ValueError:
        pass
    if 4000 <= code <= 4999:
        return "application-defined"
    if 3000 <= code <= 3999:
        return "registered (library or framework)"
    return "unknown"


def describe_close(code: int | None, reason: str | None) -> str:
    """Return ``"1000 (NORMAL_CLOSURE)"``, with ``, reason: '...'`` when there is one."""
    if code is None:
        return "still open"
    text = f"{code} ({close_meaning(code)})"
    if reason:
        text += f", reason: {reason!r}"
    return text


def is_ok_close(code: int | None) -> bool:
    """Tell whether a received close code means a normal end (1000, 1001 or no code)."""
    return code in _OK_CODES


@dataclass
class Display:
    """Renders received messages as text.

    Attributes:
        binary_format: ``"hex"`` or ``"base64"`` for binary messages (``"raw"`` shows the
            bytes decoded as UTF-8 with replacement characters).
        pretty_json: indent text messages that parse as JSON.
        save_dir: if set, binary messages are saved there instead of shown.
    """

    binary_format: str = "hex"
    pretty_json: bool = False
    save_dir: Path | None = None
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def text(self, message: str) -> str:
        """Render a text message (pretty-printed if it is JSON and ``pretty_json`` is on)."""
        if not self.pretty_json:
            return message
        try:
            return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            return message

    def binary(self, data: bytes) -> str:
        """Render a binary message in ``binary_format``, after a ``[binary N bytes]`` label."""
        if self.binary_format == "raw":
            return data.decode("utf-8", "replace")
        label = f"[binary {len(data)} bytes]"
        if not data:
            return label
        if self.binary_format == "base64":
            return f"{label} {base64.b64encode(data).decode()}"
        return f"{label} {data.hex()}"

    def save(self, data: bytes) -> str:
        """Write a binary message to the next ``message-NNNN.bin`` of ``save_dir``.

        Returns:
            A line saying where the message went.

        Raises:
            OSError: the file could not be written.
        """
        assert self.save_dir is not None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"message-{next(self._numbers):04d}.bin"
        path.write_bytes(data)
        return f"[binary {len(data)} bytes saved to {path}]"
