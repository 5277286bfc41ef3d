"""permessage-deflate (RFC 7692), sans-I/O, on top of the standard library's :mod:`zlib`.

Three classes:

* :class:`ClientDeflate` builds the client's offer and checks the server's response
  (RFC 7692 section 7.1); :meth:`ClientDeflate.accept` returns the connection's extension object.
* :class:`ServerDeflate` picks a response to one of the client's offers, or declines it.
* :class:`PerMessageDeflate` is the negotiated extension of one connection: it compresses outgoing
  messages (section 7.2.1) and decompresses incoming ones (section 7.2.2), frame by frame.

Extension parameters are ``list[tuple[str, str | None]]``: lowercase names, unquoted values,
``None`` for a parameter without a value, the shape the Sec-WebSocket-Extensions parser produces
and the header builder consumes.

Vocabulary: *local* is what this endpoint uses to compress, *remote* what the peer uses to compress
(so it sizes our decompressor). For a server, local = ``server_*`` and remote = ``client_*``
parameters; for a client, the reverse.

Memory per connection
---------------------
The zlib objects are created lazily, on the first message that needs them, and dropped after each
message when the matching ``*_no_context_takeover`` parameter is in force, so an idle connection
holds no zlib memory in those cases. zlib's own figures:

* compressor: ``(1 << (wbits + 2)) + (1 << (mem_level + 9))`` plus a ~6 KiB state;
* decompressor: ``1 << wbits`` window plus a ~7 KiB state.

With the server defaults (window bits 12, mem_level 5) that is 32 KiB + 6 KiB for the compressor
and 4 KiB + 7 KiB for the decompressor (when the client offered ``client_max_window_bits``; a
client that did not may use 32 KiB windows, and our decompressor must follow): about 49 KiB per
connection that has exchanged compressed messages with context takeover, 0 before. The test suite
measures these numbers with :mod:`tracemalloc`.

Decompression bombs
-------------------
:meth:`PerMessageDeflate.decompress` inflates with ``max_length`` set to the caller's remaining
budget plus one byte, so a message that expands beyond its limit allocates at most that limit
before :class:`~wsend.exceptions.PayloadTooBig` is raised.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass

from ..exceptions import NegotiationError, PayloadTooBig, ProtocolError

__all__ = [
    "DEFAULT_CLIENT_MAX_WINDOW_BITS",
    "DEFAULT_COMPRESS_LEVEL",
    "DEFAULT_MEM_LEVEL",
    "DEFAULT_SERVER_MAX_WINDOW_BITS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER",
    "EXTENSION_NAME",
    "ClientDeflate",
    "ExtensionParams",
    "PerMessageDeflate",
    "ServerDeflate",
]

EXTENSION_NAME = "permessage-deflate"

ExtensionParams = list[tuple[str, str | None]]

# RFC 7692 section 7.1.2: window bits are decimal integers 8..15 without leading zeroes.
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(MIN_WINDOW_BITS, MAX_WINDOW_BITS + 1)}

# Defaults. Precedents are in /work/shared/design/anchors/websocket-libraries.md.
#
# Window bits 12 and memLevel 5 are websockets' server defaults: its measurements
# (docs/topics/compression.rst) give 64 KiB per connection instead of 316 KiB for zlib's 15/8,
# for messages 10% larger and compression 10% faster. The server applies 12 to both directions
# (to the client's window only when the client offered ``client_max_window_bits``).
DEFAULT_SERVER_MAX_WINDOW_BITS = 12
DEFAULT_CLIENT_MAX_WINDOW_BITS = 12
DEFAULT_MEM_LEVEL = 5
# zlib's own default (Z_DEFAULT_COMPRESSION), kept by websockets, aiohttp and ws alike.
DEFAULT_COMPRESS_LEVEL = 6
# Messages shorter than the threshold are sent uncompressed. ws uses 1024 B for every connection;
# we split on context takeover, after measuring 200 JSON chat messages at 12/5:
# * with context takeover, 77 B messages shrink to 11% of their size and 113 B ones to 18%
#   (repeated keys are found in the previous messages), for 2 to 4 us per message: worth it from
#   a few dozen bytes, hence 64 B;
# * without context takeover, every message pays a fresh compressor and 77-175 B messages only
#   shrink to 85-66%; at 1 KiB they reach 33%, hence ws's 1024 B.
DEFAULT_THRESHOLD = 64
DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER = 1024

# RFC 7692 section 7.2.1: a flushed message ends with an empty stored block, 00 00 ff ff, which the
# sender strips and the receiver appends (section 7.2.2).
_TAIL = b"\x00\x00\xff\xff"
# RFC 7692 section 7.2.3.6: the payload of an empty message, an unfinished stored block that the
# receiver's tail completes.
_EMPTY_MESSAGE = b"\x00"


def _check_window_bits(name: str, bits: int) -> None:
    if isinstance(bits, bool) or not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
        raise ValueError(f"{name} must be an int between 8 and 15, got {bits!r}")


def _check_zlib_settings(compress_level: int, mem_level: int, threshold: int | None) -> None:
    if not -1 <= compress_level <= 9:
        raise ValueError(f"compress_level must be between -1 and 9, got {compress_level!r}")
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be between 1 and 9, got {mem_level!r}")
    if threshold is not None and threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")


class PerMessageDeflate:
    """The permessage-deflate extension of one connection, after negotiation (RFC 7692 section 7).

    Create it with :meth:`ClientDeflate.accept` or :meth:`ServerDeflate.negotiate` rather than
    directly. It is not thread-safe; the connection calls it from one task.

    Args:
        local_no_context_takeover: reset our compressor after each message.
        remote_no_context_takeover: the peer resets its compressor after each message, so we
            drop our decompressor after each message.
        local_max_window_bits: agreed LZ77 window of our compressor, 8..15. zlib cannot compress
            raw deflate with 8; we use 9, whose largest match distance (250 bytes, window minus
            262) still fits a 256-byte window.
        remote_max_window_bits: agreed window of the peer's compressor, 8..15; our decompressor
            uses it (9 for 8, which costs 256 bytes and decodes everything 8 does).
        compress_level: zlib level, -1..9.
        mem_level: zlib memLevel, 1..9.
        threshold: messages shorter than this are sent uncompressed (see :meth:`should_compress`).
            ``None`` picks :data:`DEFAULT_THRESHOLD`, or
            :data:`DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER` when ``local_no_context_takeover``.
        is_client: whether this endpoint is the client; only names the parameters in
            :meth:`params` and ``repr``.

    Raises:
        ValueError: a setting is out of range.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_trailer",
        "compress_level",
        "is_client",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "remote_max_window_bits",
        "remote_no_context_takeover",
        "threshold",
    )

    threshold: int

    def __init__(
        self,
        *,
        local_no_context_takeover: bool,
        remote_no_context_takeover: bool,
        local_max_window_bits: int,
        remote_max_window_bits: int,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int | None = None,
        is_client: bool = False,
    ) -> None:
        _check_window_bits("local_max_window_bits", local_max_window_bits)
        _check_window_bits("remote_max_window_bits", remote_max_window_bits)
        _check_zlib_settings(compress_level, mem_level, threshold)
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        if threshold is None:
            threshold = (
                DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER
                if local_no_context_takeover
                else DEFAULT_THRESHOLD
            )
        self.threshold = threshold
        self.is_client = is_client
        # Created on first use, dropped after each message without context takeover.
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # Bytes received after the peer ended its deflate stream (BFINAL) in the current
        # message, or None while the stream goes on.
        self._trailer: bytes | None = None

    def __repr__(self) -> str:
        params = "; ".join(
            name if value is None else f"{name}={value}" for name, value in self.params()
        )
        return f"<PerMessageDeflate {params or '(defaults)'}>"

    def params(self) -> ExtensionParams:
        """Return the negotiated parameters, named from the server's response point of view.

        Window bits are always listed, as agreed (8 stays 8 even though the compressor uses 9).

        Returns:
            e.g. ``[("server_max_window_bits", "12"), ("client_max_window_bits", "12")]``.
        """
        local, remote = ("client", "server") if self.is_client else ("server", "client")
        nct = {local: self.local_no_context_takeover, remote: self.remote_no_context_takeover}
        bits = {local: self.local_max_window_bits, remote: self.remote_max_window_bits}
        params: ExtensionParams = [
            (f"{side}_no_context_takeover", None) for side in ("server", "client") if nct[side]
        ]
        params += [(f"{side}_max_window_bits", str(bits[side])) for side in ("server", "client")]
        return params

    def should_compress(self, size: int) -> bool:
        """Tell whether a message of ``size`` bytes is worth compressing.

        Args:
            size: the length of the whole message, when known (for a streamed message, of its
                first fragment).

        Returns:
            ``size >= threshold``. When false, send the message without RSV1 and do not call
            :meth:`compress` for it; uncompressed messages do not touch either side's context.
        """
        return size >= self.threshold

    # Sending (RFC 7692 section 7.2.1).

    def compress(self, data: bytes | bytearray | memoryview, *, fin: bool) -> bytes:
        """Compress one frame of an outgoing message.

        Call once per frame, in order; a single-frame message is ``compress(data, fin=True)``.
        Every frame is sync-flushed, so the peer can decode each one as it arrives (streaming);
        the last one has its trailing ``00 00 ff ff`` stripped (section 7.2.1). Set RSV1 on the
        first frame of the message only (section 6).

        Args:
            data: the frame's uncompressed payload; may be empty.
            fin: whether this is the last frame of the message.

        Returns:
            The frame's payload. For an empty message, a valid non-empty payload (``00``,
            section 7.2.3.6).
        """
        compressor = self._compressor
        if compressor is None:
            # zlib refuses raw deflate with 8; 9 is safe for an 8-bit window (see class doc).
            wbits = max(self.local_max_window_bits, 9)
            compressor = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, -wbits, self.mem_level
            )
            self._compressor = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if not fin:
            return out
        if self.local_no_context_takeover:
            self._compressor = None
        if out.endswith(_TAIL):
            out = out[:-4]
        return out or _EMPTY_MESSAGE

    # Receiving (RFC 7692 section 7.2.2).

    def decompress(
        self,
        data: bytes | bytearray | memoryview,
        *,
        fin: bool,
        max_length: int | None,
    ) -> bytes:
        """Decompress one frame of an incoming message whose first frame had RSV1 set.

        Call once per data frame of the message, in order. On the last frame the empty stored
        block ``00 00 ff ff`` is appended (section 7.2.2) and, when the peer has no context
        takeover, the decompressor is dropped.

        Args:
            data: the frame's payload, as received (unmasked).
            fin: whether this is the last frame of the message.
            max_length: how many more decompressed bytes this message may still produce, or
                ``None`` for no limit. Inflating stops one byte past it, so memory stays bounded.

        Returns:
            The decompressed bytes of this frame (possibly empty: deflate may hold output back
            until later frames).

        Raises:
            PayloadTooBig: the output would exceed ``max_length``; fail the connection (1009).
            ProtocolError: the data is not valid deflate, refers further back than the agreed
                window, or continues after a final deflate block; fail the connection (1002;
                section 7.2.2 says to _Fail the WebSocket Connection_).

        After an exception the decompressor is dropped; the connection must not call again.
        """
        try:
            out = self._inflate(data, max_length)
            if fin:
                out += self._finish(None if max_length is None else max_length - len(out))
            return out
        except Exception:
            self._decompressor = None
            self._trailer = None
            raise

    def _finish(self, max_length: int | None) -> bytes:
        out = b""
        if self._trailer is None:
            # Usually yields nothing, but count it against the limit all the same.
            out = self._inflate(_TAIL, max_length)
            if self._trailer:  # a final block ended inside the tail
                raise ProtocolError("compressed data after the final deflate block")
        if self._trailer is not None or self.remote_no_context_takeover:
            # After a final block the peer starts a new deflate stream for the next message.
            self._decompressor = None
        self._trailer = None
        return out

    def _inflate(self, data: bytes | bytearray | memoryview, max_length: int | None) -> bytes:
        if self._trailer is not None:
            # Section 7.2.3.3: after a BFINAL block, a message may hold the 0x00 that starts
            # the empty stored block the tail completes; nothing else.
            self._trailer += data
            if self._trailer not in (b"", _EMPTY_MESSAGE):
                raise ProtocolError("compressed data after the final deflate block")
            return b""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(-max(self.remote_max_window_bits, 9))
            self._decompressor = decompressor
        try:
            if max_length is None or max_length >= sys.maxsize:  # no bound zlib can take
                out = decompressor.decompress(data)
            else:
                # zlib reads max_length=0 as "no limit"; ours is never below 1.
                out = decompressor.decompress(data, max(max_length, 0) + 1)
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}") from exc
        if max_length is not None and (len(out) > max_length or decompressor.unconsumed_tail):
            raise PayloadTooBig(f"decompressed message exceeds its limit ({max_length} bytes left)")
        if decompressor.eof:
            # Section 7.2.3.3 allows ending a message with a BFINAL block.
            self._trailer = b""
            self._inflate(decompressor.unused_data, None)
        return out


@dataclass(frozen=True, slots=True)
class _Params:
    """Parsed and validated permessage-deflate parameters (RFC 7692 section 7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    # Whether client_max_window_bits is present, and its value (an offer may omit the value).
    client_max_window_bits_present: bool = False
    client_max_window_bits: int | None = None


def _parse_params(params: ExtensionParams, *, response: bool) -> _Params:
    """Validate an offer's or a response's parameters.

    Raises:
        NegotiationError: unknown or duplicate parameter, or invalid value (section 7.1).
    """
    flags: dict[str, bool] = {}
    bits: dict[str, int | None] = {}
    for name, value in params:
        if name in flags or name in bits:
            raise NegotiationError(f"duplicate {name} parameter")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError(f"{name} takes no value, got {value!r}")
            flags[name] = True
        elif name == "client_max_window_bits" and value is None and not response:
            bits[name] = None
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None or value not in _WINDOW_BITS_VALUES:
                raise NegotiationError(f"invalid {name} value: {value!r}")
            bits[name] = _WINDOW_BITS_VALUES[value]
        else:
            raise NegotiationError(f"unknown permessage-deflate parameter: {name!r}")
    return _Params(
        server_no_context_takeover=flags.get("server_no_context_takeover", False),
        client_no_context_takeover=flags.get("client_no_context_takeover", False),
        server_max_window_bits=bits.get("server_max_window_bits"),
        client_max_window_bits_present="client_max_window_bits" in bits,
        client_max_window_bits=bits.get("client_max_window_bits"),
    )


def _build_params(
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: int | None,
    client_max_window_bits: int | bool | None,
) -> ExtensionParams:
    params: ExtensionParams = []
    if server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(server_max_window_bits)))
    if client_max_window_bits is True:
        params.append(("client_max_window_bits", None))
    elif client_max_window_bits:
        params.append(("client_max_window_bits", str(client_max_window_bits)))
    return params


class ClientDeflate:
    """The client side of permessage-deflate negotiation (RFC 7692 section 7.1).

    Args:
        server_no_context_takeover: require the server to reset its compressor after each
            message (lets us drop our decompressor between messages; costs compression ratio).
        client_no_context_takeover: reset our compressor after each message, and tell the
            server so it can drop its decompressor.
        server_max_window_bits: ask the server to use at most this window, 8..15; ``None``
            (default) leaves it to the server, as websockets' client does.
        client_max_window_bits: ``True`` (default) offers the parameter without a value, so the
            server may limit our window (websockets does the same); an int 8..15 also caps our
            window; ``None`` or ``False`` does not offer it and we use 15.
        compress_level, mem_level, threshold: see :class:`PerMessageDeflate`.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int | None = None,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        # Whether we offer client_max_window_bits, and with which value.
        self._offer_client_bits = not (
            client_max_window_bits is None or client_max_window_bits is False
        )
        self._client_bits: int | None = None
        if self._offer_client_bits and client_max_window_bits is not True:
            assert client_max_window_bits is not None
            _check_window_bits("client_max_window_bits", client_max_window_bits)
            self._client_bits = client_max_window_bits
        _check_zlib_settings(compress_level, mem_level, threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold

    def offer(self) -> ExtensionParams:
        """Return the parameters of our permessage-deflate offer (section 7.1).

        Returns:
            e.g. ``[("client_max_window_bits", None)]`` with the defaults.
        """
        return _build_params(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self._client_bits if self._client_bits is not None else self._offer_client_bits,
        )

    def accept(self, params: ExtensionParams) -> PerMessageDeflate:
        """Check the server's response to our offer and build the connection's extension.

        Args:
            params: the parameters of the ``permessage-deflate`` element of the response's
                Sec-WebSocket-Extensions header.

        Returns:
            The extension object for the connection.

        Raises:
            NegotiationError: the response is invalid (unknown or duplicate parameter, bad
                value) or not allowed for our offer (section 7.1): it lacks
                ``server_no_context_takeover`` we required, answers ``server_max_window_bits``
                above or without the value we asked, or ``client_max_window_bits`` we did not
                offer or above the value we offered. Fail the handshake.
        """
        answer = _parse_params(params, response=True)
        if self.server_no_context_takeover and not answer.server_no_context_takeover:
            raise NegotiationError("server did not accept server_no_context_takeover")
        asked = self.server_max_window_bits
        server_bits = answer.server_max_window_bits
        if asked is not None and (server_bits is None or server_bits > asked):
            raise NegotiationError(f"server_max_window_bits={server_bits} answers {asked}")
        offered = self._client_bits
        client_bits = answer.client_max_window_bits
        if client_bits is None:
            client_bits = MAX_WINDOW_BITS if offered is None else offered
        elif not self._offer_client_bits:
            raise NegotiationError("client_max_window_bits in response but not offered")
        elif offered is not None and client_bits > offered:
            raise NegotiationError(f"client_max_window_bits={client_bits} above {offered}")
        return PerMessageDeflate(
            local_no_context_takeover=(
                self.client_no_context_takeover or answer.client_no_context_takeover
            ),
            remote_no_context_takeover=answer.server_no_context_takeover,
            local_max_window_bits=client_bits,
            remote_max_window_bits=MAX_WINDOW_BITS if server_bits is None else server_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            threshold=self.threshold,
            is_client=True,
        )


class ServerDeflate:
    """The server side of permessage-deflate negotiation (RFC 7692 section 7.1).

    Args:
        server_no_context_takeover: reset our compressor after each message (always done when
            the client asks for it).
        client_no_context_takeover: require the client to reset its compressor after each
            message, so we can drop our decompressor between messages. Also answered whenever
            the client offers it.
        server_max_window_bits: the largest window we compress with, 8..15 (default 12, see
            :data:`DEFAULT_SERVER_MAX_WINDOW_BITS`); the client may ask for less. ``None`` uses
            what the client asks, or 15.
        client_max_window_bits: the largest window we let the client use, 8..15 (default 12),
            applied when the client offers ``client_max_window_bits``; ``None`` accepts the
            client's value, or 15.
        require_client_max_window_bits: decline offers without ``client_max_window_bits``
            (a client that cannot be limited may use a 32 KiB window).
        compress_level, mem_level, threshold: see :class:`PerMessageDeflate`.

    Raises:
        ValueError: a setting is out of range.
    """

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = DEFAULT_SERVER_MAX_WINDOW_BITS,
        client_max_window_bits: int | None = DEFAULT_CLIENT_MAX_WINDOW_BITS,
        require_client_max_window_bits: bool = False,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        threshold: int | None = None,
    ) -> None:
        if server_max_window_bits is not None:
            _check_window_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is not None:
            _check_window_bits("client_max_window_bits", client_max_window_bits)
        _check_zlib_settings(compress_level, mem_level, threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold

    def negotiate(
        self, params: ExtensionParams
    ) -> tuple[ExtensionParams, PerMessageDeflate] | None:
        """Answer one permessage-deflate offer of the client.

        Call it for each offer in the client's order; use the first that is not declined. When
        every offer is declined, proceed without compression.

        Args:
            params: the parameters of one ``permessage-deflate`` offer.

        Returns:
            The response parameters and the connection's extension object, or ``None`` when the
            offer is declined: its parameters are invalid (unknown, duplicate, bad value; section
            7.1 requires declining such an offer rather than failing the handshake), or it lacks
            ``client_max_window_bits`` while ``require_client_max_window_bits`` is set.
        """
        try:
            offer = _parse_params(params, response=False)
        except NegotiationError:
            return None
        if self.require_client_max_window_bits and not offer.client_max_window_bits_present:
            return None
        server_nct = self.server_no_context_takeover or offer.server_no_context_takeover
        # Answering the client's hint makes it binding, so we may drop our decompressor.
        client_nct = self.client_no_context_takeover or offer.client_no_context_takeover
        server_bits = offer.server_max_window_bits
        if self.server_max_window_bits is not None:
            server_bits = min(server_bits or MAX_WINDOW_BITS, self.server_max_window_bits)
        # Only an offer with client_max_window_bits lets us answer it (section 7.1.2.2).
        client_bits: int | None = None
        if offer.client_max_window_bits_present:
            candidates = (offer.client_max_window_bits, self.client_max_window_bits)
            client_bits = min((bits for bits in candidates if bits is not None), default=None)
        response = _build_params(server_nct, client_nct, server_bits, client_bits)
        extension = PerMessageDeflate(
            local_no_context_takeover=server_nct,
            remote_no_context_takeover=client_nct,
            local_max_window_bits=server_bits or MAX_WINDOW_BITS,
            remote_max_window_bits=client_bits or MAX_WINDOW_BITS,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            threshold=self.threshold,
        )
        return response, extension
