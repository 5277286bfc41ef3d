"""The hub's wire format (``docs/protocol.md`` sections 1, 2, 4 and 5): frames and codecs.

Commands are msgspec Structs forming a tagged union on ``method``, with their parameters as
fields of the same object. Decoding validates them (types, ``1 <= id < 2**53``) and ignores
unknown fields; an element that can't be decoded becomes a :class:`BadFrame` instead of an
exception, so hostile input never raises out of :func:`Codec.decode_commands`.

Application ``data`` is decoded as :class:`msgspec.Raw` and kept in its wire encoding as an
:class:`Encoded` value, so a publication is forwarded to subscribers using the same codec
without being parsed and re-encoded (for a 177-byte JSON payload, decoding a ``publish`` and
encoding the ``pub`` push takes 2.5 us with ``Raw`` against 5.7 us with ``Any``; 2.1 against
3.1 us in MessagePack). A subscriber using the other codec gets it transcoded once per
publication.

Outgoing frames are encoded one at a time into ``bytes`` (:meth:`Codec.encode_one`), queued, and
joined into one WebSocket message per batch (:meth:`Codec.join`): a ``str`` for JSON text frames,
``bytes`` for MessagePack binary frames.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Final

import msgspec

from ..protocol.frames import Opcode, serialize_frame
from . import fossil, scan
from .broker import ClientInfo, Publication
from .codes import ErrorCode, HubError

__all__ = [
    "DATA_ERRORS",
    "JSON",
    "MAX_BATCH",
    "MAX_DATA_DEPTH",
    "MSGPACK",
    "SUBPROTOCOLS",
    "BadFrame",
    "Codec",
    "Command",
    "ConnectCommand",
    "ConnectResult",
    "Encoded",
    "ErrorBody",
    "HistoryCommand",
    "HistoryResult",
    "InfoFrame",
    "JoinPush",
    "LeavePush",
    "MessagePush",
    "Payload",
    "PingCommand",
    "PresenceCommand",
    "PresenceEntry",
    "PresenceResult",
    "PresenceStatsCommand",
    "PresenceStatsResult",
    "PubFrames",
    "PubPush",
    "PublicationFrame",
    "PublishCommand",
    "PublishResult",
    "RefreshCommand",
    "RefreshResult",
    "Reply",
    "RpcCommand",
    "RpcResult",
    "Since",
    "SubscribeCommand",
    "SubscribeResult",
    "UnsubscribeCommand",
    "UnsubscribePush",
    "check_both",
    "codec_for_subprotocol",
    "info_frame",
    "publication_frame",
]

#: Most frames in one batch (``docs/protocol.md`` section 1).
MAX_BATCH: Final = 100

Id = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_NO_DATA: Final = msgspec.Raw()
#: How deeply application data may nest arrays and maps (objects) in one another, the same on
#: every Python version (``docs/protocol.md`` section 2.4): the decoders recurse, and their own
#: limits move with the interpreter (about 1,000 levels on CPython 3.11, 1,500 on 3.12, 10,000
#: on 3.13), and so does what the other nodes and clients can decode.
MAX_DATA_DEPTH: Final = 512
#: What decoding or encoding hostile (or unsupported) application data may raise.
DATA_ERRORS: Final = (msgspec.MsgspecError, ValueError, TypeError, OverflowError, RecursionError)


class Encoded:
    """Application data kept in the encoding it arrived in, forwarded without re-encoding.

    Codecs embed it verbatim when they are the codec named by ``codec``, and transcode it
    otherwise (once: the other encoding is kept in ``other``). Code that needs the Python value
    calls :meth:`value`. Engines that serialize publications must preserve it (``codec`` and
    ``raw``; ``other`` is only a cache) or store :meth:`value` instead.
    """

    __slots__ = ("codec", "other", "raw")

    def __init__(self, codec: str, raw: bytes, other: bytes | None = None) -> None:
        self.codec = codec
        self.raw = raw
        #: ``raw`` in the other codec's encoding, when already computed.
        self.other = other

    def value(self) -> Any:
        """The data decoded into Python values."""
        if self.codec == "json":
            return msgspec.json.decode(self.raw)
        return msgspec.msgpack.decode(self.raw)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Encoded):
            return self.codec == other.codec and self.raw == other.raw
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.codec, self.raw))

    def __repr__(self) -> str:
        return f"Encoded({self.codec!r}, {self.raw!r})"


# -- commands (client -> hub) ------------------------------------------------------------------


class _Command(msgspec.Struct, tag_field="method", kw_only=True, omit_defaults=True):
    id: Id


class ConnectCommand(_Command, tag="connect"):
    token: str | None = None
    name: str | None = None
    version: str | None = None
    data: msgspec.Raw = _NO_DATA


class SubscribeCommand(_Command, tag="subscribe"):
    channel: str
    token: str | None = None
    recover: bool | None = None
    epoch: str | None = None
    offset: Offset | None = None
    data: msgspec.Raw = _NO_DATA
    delta: str | None = None


class UnsubscribeCommand(_Command, tag="unsubscribe"):
    channel: str


class PublishCommand(_Command, tag="publish"):
    channel: str
    data: msgspec.Raw = _NO_DATA
    key: str | None = None


class PresenceCommand(_Command, tag="presence"):
    channel: str


class PresenceStatsCommand(_Command, tag="presence_stats"):
    channel: str


class Since(msgspec.Struct, omit_defaults=True):
    offset: Offset
    epoch: str


class HistoryCommand(_Command, tag="history"):
    channel: str
    limit: Offset | None = None
    since: Since | None = None
    reverse: bool | None = None


class RpcCommand(_Command, tag="rpc"):
    """An RPC; the handler's name is in ``name`` (``method`` is taken by the frame's tag)."""

    name: str
    data: msgspec.Raw = _NO_DATA


class PingCommand(_Command, tag="ping"):
    pass


class RefreshCommand(_Command, tag="refresh"):
    token: str


Command = (
    ConnectCommand
    | SubscribeCommand
    | UnsubscribeCommand
    | PublishCommand
    | PresenceCommand
    | PresenceStatsCommand
    | HistoryCommand
    | RpcCommand
    | PingCommand
    | RefreshCommand
)


class BadFrame(msgspec.Struct, frozen=True):
    """An element of a message that isn't a valid command.

    Attributes:
        id: the element's ``id`` when it could be read (then the hub answers error 107).
        reason: why it was rejected (for logs; not sent to the client).
    """

    id: int | None
    reason: str


class _IdProbe(msgspec.Struct):
    id: Any = None


# -- replies and pushes (hub -> client) ---------------------------------------------------------


class _Frame(msgspec.Struct, omit_defaults=True):
    pass


class ErrorBody(msgspec.Struct):
    """An error; ``temporary`` is always sent (``false`` too), as ``docs/protocol.md`` shows."""

    code: int
    message: str
    temporary: bool = False


class Reply(_Frame):
    """A reply: ``result`` (an object, possibly empty) or ``error``."""

    id: int
    result: Any = None
    error: ErrorBody | None = None


class InfoFrame(_Frame):
    client: str
    user: str
    info: Any = None


class PublicationFrame(_Frame):
    data: Any  # always sent, null included (as in pushes)
    offset: int | None = None
    key: str | None = None
    info: InfoFrame | None = None


class ConnectResult(_Frame):
    client: str
    user: str
    expires: bool
    ping: int
    node: str
    ttl: int | None = None
    data: Any = None


class SubscribeResult(_Frame):
    recoverable: bool
    epoch: str | None = None
    offset: int | None = None
    recovered: bool | None = None
    publications: list[PublicationFrame] | None = None
    delta: bool | None = None


class PublishResult(_Frame):
    offset: int | None = None
    epoch: str | None = None


class PresenceEntry(_Frame):
    user: str
    info: Any = None


class PresenceResult(_Frame):
    clients: dict[str, PresenceEntry]


class PresenceStatsResult(_Frame):
    num_clients: int
    num_users: int


class HistoryResult(_Frame):
    publications: list[PublicationFrame]
    epoch: str
    offset: int


class RpcResult(_Frame):
    data: Any = None


class RefreshResult(_Frame):
    expires: bool
    ttl: int | None = None


class _Push(_Frame, tag_field="push"):
    pass


class PubPush(_Push, tag="pub"):
    channel: str
    data: Any  # always sent, null included: clients may read it without a default
    offset: int | None = None
    key: str | None = None
    info: InfoFrame | None = None
    delta: bool | None = None  # ``data`` is a Fossil delta (delta subscriptions only)


class JoinPush(_Push, tag="join"):
    channel: str
    info: InfoFrame


class LeavePush(_Push, tag="leave"):
    channel: str
    info: InfoFrame


class UnsubscribePush(_Push, tag="unsubscribe"):
    channel: str
    code: int
    reason: str


class MessagePush(_Push, tag="message"):
    data: Any


def info_frame(info: ClientInfo | None) -> InfoFrame | None:
    """The wire form of a client's info (``None`` stays ``None``)."""
    if info is None:
        return None
    return InfoFrame(client=info.client, user=info.user, info=info.info)


class Payload:
    """Application data to send as its payload: encoded alone, then carried as a JSON string
    or a MessagePack ``bin`` (the data of delta subscriptions, ``docs/protocol.md`` section 5).

    Encoded when the frame holding it is, so that data the codec can't carry fails there.
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


def publication_frame(publication: Publication, *, payload: bool = False) -> PublicationFrame:
    """The wire form of a publication in ``subscribe`` recovery and ``history`` results;
    with ``payload``, its data as a :class:`Payload` (for a delta subscription)."""
    return PublicationFrame(
        data=Payload(publication.data) if payload else publication.data,
        offset=publication.offset or None,
        key=publication.key,
        info=info_frame(publication.info),
    )


# -- codecs -------------------------------------------------------------------------------------


class Codec:
    """Encodes and decodes frames for one subprotocol; stateless, shared by every connection.

    Attributes:
        name: ``"json"`` or ``"msgpack"``, as in :attr:`Encoded.codec`.
        subprotocol: the WebSocket subprotocol selecting it.
        binary: whether messages go in binary frames (``join`` returns ``bytes``) or text frames
            (``str``).
    """

    name: str
    subprotocol: str
    binary: ClassVar[bool]

    def __init__(self) -> None:
        self._encoder = self._make_encoder()
        self._commands = self._make_decoder(Command)
        self._probe = self._make_decoder(_IdProbe)
        self._batch = self._make_decoder(list[msgspec.Raw])

    # Subclasses provide these five, and the two scanners of scan.py for their format
    # (splitting a batch, finding a frame's id) where elements are too deep to decode.
    _scan_elements: staticmethod[[bytes], list[bytes] | None]
    _scan_id: staticmethod[[bytes], object]

    def _make_encoder(self) -> msgspec.json.Encoder | msgspec.msgpack.Encoder:
        raise NotImplementedError

    def _make_decoder(self, type_: Any) -> Any:
        raise NotImplementedError

    def _is_array(self, message: bytes | str) -> bool:
        raise NotImplementedError

    def join(self, items: Sequence[bytes]) -> str | bytes:
        """Join frames encoded by :meth:`encode_one` into one message (an array if several)."""
        raise NotImplementedError

    def decode_data(self, raw: bytes) -> Any:
        """Decode application data encoded with this codec.

        Raises:
            ValueError: it nests arrays and maps deeper than :data:`MAX_DATA_DEPTH`.
            msgspec.DecodeError, RecursionError: it is invalid, or too deep for the decoder.
        """
        value = self._decode_data(raw)
        if self._containers_at_most(raw) > MAX_DATA_DEPTH:  # else it can't be that deep
            scan.check_depth(value, MAX_DATA_DEPTH)
        return value

    def _decode_data(self, raw: bytes) -> Any:
        raise NotImplementedError

    def _containers_at_most(self, raw: bytes) -> int:
        """An upper bound of the arrays and maps in ``raw``, counted at C speed."""
        raise NotImplementedError

    def wrap(self, payload: bytes) -> str | bytes:
        """How a payload (or a delta) travels as ``data``: a JSON string holding its UTF-8
        text, or a MessagePack ``bin``.

        Raises:
            UnicodeDecodeError: (JSON) ``payload`` isn't valid UTF-8.
        """
        raise NotImplementedError

    def payload(self, data: Any) -> bytes:
        """Application data encoded alone with this codec (no re-encoding of
        :class:`Encoded` data in this encoding).

        Raises:
            Any of :data:`DATA_ERRORS`: the data can't be encoded in this encoding.
        """
        if isinstance(data, Encoded):
            if data.codec == self.name:
                return data.raw
            if data.other is None:
                data.other = self._encoder.encode(data.value())
            return data.other
        return self._encoder.encode(data)

    def _enc_hook(self, obj: Any) -> Any:
        if isinstance(obj, Encoded):
            return msgspec.Raw(self.payload(obj))
        if isinstance(obj, Payload):
            return self.wrap(self.payload(obj.data))
        raise TypeError(f"can't encode {type(obj).__name__}")

    def data(self, raw: msgspec.Raw) -> Encoded | None:
        """Wrap a command's ``data`` field: ``None`` when absent or null.

        The data must be representable in both encodings, since subscribers may use either
        (``docs/protocol.md`` section 1): it is transcoded once here, and the result kept for
        them.

        Raises:
            HubError: ``BAD_REQUEST`` (107) for data that is invalid in this encoding (invalid
                UTF-8, nesting deeper than :data:`MAX_DATA_DEPTH`, numbers out of range) or that
                the other encoding can't represent (MessagePack extension types and
                non-string, non-number map keys in JSON; integers beyond 64 bits in
                MessagePack).
        """
        if not raw or bytes(raw) in (b"null", b"\xc0"):
            return None
        data = Encoded(self.name, bytes(raw))
        other = MSGPACK if self is JSON else JSON
        try:
            data.other = other.encode_one(self.decode_data(data.raw))
        except DATA_ERRORS as exc:
            raise HubError(ErrorCode.BAD_REQUEST, "invalid data") from exc
        return data

    def value(self, raw: msgspec.Raw) -> Any:
        """Decode a command's ``data`` field into Python values (``None`` when absent).

        Raises:
            HubError: ``BAD_REQUEST`` (107) when it can't be decoded.
        """
        if not raw:
            return None
        try:
            return self.decode_data(bytes(raw))
        except DATA_ERRORS as exc:
            raise HubError(ErrorCode.BAD_REQUEST, "invalid data") from exc

    def check(self, value: Any) -> None:
        """Check that application data given as Python values can be sent in this encoding.

        Raises:
            HubError: ``BAD_REQUEST`` (107) when it can't.
        """
        try:
            self.encode_one(value)
        except DATA_ERRORS as exc:
            raise HubError(ErrorCode.BAD_REQUEST, f"data can't be encoded in {self.name}") from exc

    def encode_one(self, frame: Any) -> bytes:
        """Encode one frame (a :class:`Reply`, a push, or any encodable object)."""
        return self._encoder.encode(frame)

    def encode(self, frames: Sequence[Any]) -> str | bytes:
        """Encode frames into one message: a single object, or an array when several."""
        return self.join([self.encode_one(frame) for frame in frames])

    def decode_commands(self, message: str | bytes) -> list[Command | BadFrame]:
        """Decode one message of the client into commands, in order.

        A message holds one frame object or an array of at most :data:`MAX_BATCH`. Never
        raises: each invalid element becomes a :class:`BadFrame`; a message that isn't an
        object or an array of objects, or a batch that is too large or empty, becomes one
        :class:`BadFrame` with ``id=None``.
        """
        if isinstance(message, bytes) and not self.binary:
            try:  # JSON in a binary frame: accepted, if it is UTF-8 as a text frame must be
                message = message.decode()
            except UnicodeDecodeError:
                return [BadFrame(self._probe_id(msgspec.Raw(message)), "invalid UTF-8")]
        try:
            if self._is_array(message):
                elements: list[msgspec.Raw] = self._batch.decode(message)
            else:
                elements = [msgspec.Raw(message.encode() if isinstance(message, str) else message)]
        except RecursionError as exc:  # an element too deep for the decoder: split by scanning
            found = self._scan_elements(message.encode() if isinstance(message, str) else message)
            if found is None:
                return [BadFrame(None, f"undecodable message: {exc}")]
            elements = [msgspec.Raw(element) for element in found]
        except (msgspec.MsgspecError, ValueError, TypeError) as exc:
            return [BadFrame(None, f"undecodable message: {exc}")]
        if not elements or len(elements) > MAX_BATCH:
            return [BadFrame(None, f"batch of {len(elements)} frames")]
        return [self._decode_one(element) for element in elements]

    def _decode_one(self, element: msgspec.Raw) -> Command | BadFrame:
        try:
            command: Command = self._commands.decode(element)
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError) as exc:
            return BadFrame(self._probe_id(element), str(exc))
        return command

    def _probe_id(self, element: msgspec.Raw) -> int | None:
        found: object
        try:
            found = self._probe.decode(element).id
        except RecursionError:  # too deep to skip over by recursion: scan for the id instead
            found = self._scan_id(bytes(memoryview(element)))
        except (msgspec.MsgspecError, ValueError, TypeError):
            return None
        if type(found) is int and 1 <= found < 2**53:
            return found
        return None


class _JsonCodec(Codec):
    name = "json"
    subprotocol = "wsend.v1.json"
    binary = False

    def _make_encoder(self) -> msgspec.json.Encoder:
        return msgspec.json.Encoder(enc_hook=self._enc_hook)

    def _make_decoder(self, type_: Any) -> Any:
        return msgspec.json.Decoder(type_)

    def _is_array(self, message: bytes | str) -> bool:
        return message.lstrip()[:1] in ("[", b"[")

    def join(self, items: Sequence[bytes]) -> str:
        if len(items) == 1:
            return items[0].decode()
        return (b"[" + b",".join(items) + b"]").decode()

    def _decode_data(self, raw: bytes) -> Any:
        return msgspec.json.decode(raw)

    def _containers_at_most(self, raw: bytes) -> int:
        return raw.count(b"[") + raw.count(b"{")

    def wrap(self, payload: bytes) -> str:
        return payload.decode()

    _scan_elements = staticmethod(scan.json_elements)
    _scan_id = staticmethod(scan.json_id)


_MSGPACK_ARRAY_BYTES = frozenset({*range(0x90, 0xA0), 0xDC, 0xDD})
# The first bytes of MessagePack arrays and maps (fixmap, fixarray, array 16/32, map 16/32).
_MSGPACK_CONTAINER_BYTES = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])


class _MsgpackCodec(Codec):
    name = "msgpack"
    subprotocol = "wsend.v1.msgpack"
    binary = True

    def _make_encoder(self) -> msgspec.msgpack.Encoder:
        return msgspec.msgpack.Encoder(enc_hook=self._enc_hook)

    def _make_decoder(self, type_: Any) -> Any:
        return msgspec.msgpack.Decoder(type_)

    def _is_array(self, message: bytes | str) -> bool:
        if isinstance(message, str):
            raise TypeError("MessagePack messages come in binary frames")
        return bool(message) and message[0] in _MSGPACK_ARRAY_BYTES

    def join(self, items: Sequence[bytes]) -> bytes:
        count = len(items)
        if count == 1:
            return items[0]
        if count < 16:
            header = bytes((0x90 | count,))
        elif count < 2**16:
            header = b"\xdc" + count.to_bytes(2, "big")
        else:
            header = b"\xdd" + count.to_bytes(4, "big")
        return header + b"".join(items)

    def _decode_data(self, raw: bytes) -> Any:
        return msgspec.msgpack.decode(raw)

    def _containers_at_most(self, raw: bytes) -> int:
        return len(raw) - len(raw.translate(None, _MSGPACK_CONTAINER_BYTES))

    def wrap(self, payload: bytes) -> bytes:
        return payload

    _scan_elements = staticmethod(scan.msgpack_elements)
    _scan_id = staticmethod(scan.msgpack_id)


#: The JSON codec (``wsend.v1.json``, text frames): the default.
JSON: Final[Codec] = _JsonCodec()
#: The MessagePack codec (``wsend.v1.msgpack``, binary frames).
MSGPACK: Final[Codec] = _MsgpackCodec()
#: Subprotocols the hub offers, in order of preference.
SUBPROTOCOLS: Final = (JSON.subprotocol, MSGPACK.subprotocol)


def check_both(value: Any) -> None:
    """Check that application values can be sent in both encodings (``None`` always can).

    Raises:
        HubError: ``BAD_REQUEST`` (107) when one of them can't carry ``value``.
    """
    if value is not None and not isinstance(value, Encoded):
        JSON.check(value)
        MSGPACK.check(value)


def codec_for_subprotocol(subprotocol: str | None) -> Codec:
    """The codec for the negotiated subprotocol; JSON when there is none (plain browsers).

    Raises:
        ValueError: for a subprotocol the hub doesn't speak (the handshake shouldn't select it).
    """
    if subprotocol is None or subprotocol == JSON.subprotocol:
        return JSON
    if subprotocol == MSGPACK.subprotocol:
        return MSGPACK
    raise ValueError(f"unsupported subprotocol: {subprotocol}")


_serials = itertools.count(1)
_NOT_SMALLER: Final = b""


class PubFrames:
    """A publication's ``pub`` push, encoded at most once per codec and shared by subscribers.

    The node makes one per live publication and passes it to every subscribed session's
    :meth:`~wsend.hub.session.Session.deliver_publication`. For delta subscriptions it also
    holds the push with the payload (:meth:`full_for`) and, when the node gives it the
    channel's ``previous`` publication, the push with the Fossil delta from that one's payload
    (:meth:`delta_for`): each is computed once per codec, for every subscriber whose client
    holds the previous payload. A session that needs them sets ``keep``: the node then keeps
    this publication as the channel's previous one.

    Attributes:
        serial: unique among the node's publications: what a session records as the payload
            its client holds.
        previous: the publication of the same channel delivered just before (or ``None``).
        keep: whether a delta subscriber received this publication.
    """

    __slots__ = (
        "_cache",
        "_deltas",
        "_full",
        "_messages",
        "_payloads",
        "channel",
        "keep",
        "previous",
        "publication",
        "serial",
    )

    def __init__(
        self, channel: str, publication: Publication, previous: PubFrames | None = None
    ) -> None:
        self.channel = channel
        self.publication = publication
        self.previous = previous
        self.serial = next(_serials)
        self.keep = False
        self._cache: dict[str, bytes] = {}
        self._payloads: dict[str, bytes] = {}
        self._full: dict[str, bytes] = {}
        self._deltas: dict[str, bytes] = {}
        self._messages: dict[str, bytes] = {}

    def for_codec(self, codec: Codec) -> bytes:
        """The encoded push for ``codec`` (encoded on first use)."""
        frame = self._cache.get(codec.name)
        if frame is None:
            frame = self._cache[codec.name] = codec.encode_one(self.push())
        return frame

    def payload(self, codec: Codec) -> bytes:
        """The publication's data encoded alone with ``codec`` (its payload)."""
        payload = self._payloads.get(codec.name)
        if payload is None:
            payload = self._payloads[codec.name] = codec.payload(self.publication.data)
        return payload

    def full_for(self, codec: Codec) -> bytes:
        """The push for a delta subscription, with the full payload as ``data``."""
        frame = self._full.get(codec.name)
        if frame is None:
            push = self.push(codec.wrap(self.payload(codec)))
            frame = self._full[codec.name] = codec.encode_one(push)
        return frame

    def delta_for(self, codec: Codec) -> bytes | None:
        """The push with a delta from :attr:`previous`'s payload, or ``None`` when there is
        no previous publication or the delta isn't smaller than :meth:`full_for`."""
        frame = self._deltas.get(codec.name)
        if frame is None:
            frame = self._deltas[codec.name] = self._delta(codec)
        return frame or None

    def _delta(self, codec: Codec) -> bytes:
        full = self.full_for(codec)
        if self.previous is None:
            return _NOT_SMALLER
        try:
            source = self.previous.payload(codec)
        except DATA_ERRORS:
            return _NOT_SMALLER
        delta = fossil.create(source, self.payload(codec), text=not codec.binary)
        try:
            frame = codec.encode_one(self.push(codec.wrap(delta), delta=True))
        except UnicodeDecodeError:  # pragma: no cover - text deltas of UTF-8 are UTF-8
            return _NOT_SMALLER
        return frame if len(frame) < len(full) else _NOT_SMALLER

    def message_for(self, codec: Codec) -> bytes:
        """The push as a whole WebSocket message on the wire, for ``codec``: one unmasked,
        uncompressed frame (text for JSON, binary for MessagePack; RFC 6455 section 5.2),
        built on first use and shared by every server connection that can take it as is."""
        message = self._messages.get(codec.name)
        if message is None:
            opcode = Opcode.BINARY if codec.binary else Opcode.TEXT
            message = b"".join(serialize_frame(opcode, self.for_codec(codec)))
            self._messages[codec.name] = message
        return message

    def push(self, data: Any = _NO_DATA, delta: bool | None = None) -> PubPush:
        """The push as a frame object; ``data`` replaces the publication's own."""
        pub = self.publication
        return PubPush(
            channel=self.channel,
            data=pub.data if data is _NO_DATA else data,
            offset=pub.offset or None,
            key=pub.key,
            info=info_frame(pub.info),
            delta=delta,
        )
