"""Tests of the hub's wire format: command decoding, round trips in both codecs, hostile input."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.hub import fossil
from wsend.hub.broker import ClientInfo, Publication
from wsend.hub.codes import ErrorCode, HubError
from wsend.hub.wire import (
    JSON,
    MAX_BATCH,
    MAX_DATA_DEPTH,
    MSGPACK,
    BadFrame,
    Codec,
    ConnectCommand,
    ConnectResult,
    Encoded,
    ErrorBody,
    HistoryCommand,
    InfoFrame,
    JoinPush,
    PingCommand,
    PubFrames,
    PublishCommand,
    Reply,
    RpcCommand,
    Since,
    SubscribeCommand,
    SubscribeResult,
    codec_for_subprotocol,
    publication_frame,
)

CODECS = [JSON, MSGPACK]


def encode_raw(codec: Codec, value: Any) -> str | bytes:
    if codec is JSON:
        return msgspec.json.encode(value).decode()
    return msgspec.msgpack.encode(value)


def decode_raw(codec: Codec, message: str | bytes) -> Any:
    if codec is JSON:
        return msgspec.json.decode(message)
    return msgspec.msgpack.decode(message)


@pytest.fixture(params=CODECS, ids=lambda c: c.name)
def codec(request: pytest.FixtureRequest) -> Codec:
    result: Codec = request.param
    return result


def test_subprotocol_selects_codec() -> None:
    assert codec_for_subprotocol(None) is JSON
    assert codec_for_subprotocol("wsend.v1.json") is JSON
    assert codec_for_subprotocol("wsend.v1.msgpack") is MSGPACK
    with pytest.raises(ValueError, match="unsupported"):
        codec_for_subprotocol("other")
    assert not JSON.binary
    assert MSGPACK.binary


def test_decode_single_command(codec: Codec) -> None:
    message = encode_raw(codec, {"id": 7, "method": "subscribe", "channel": "chat:lobby"})
    [command] = codec.decode_commands(message)
    assert command == SubscribeCommand(id=7, channel="chat:lobby")


def test_decode_batch_in_order(codec: Codec) -> None:
    message = encode_raw(
        codec,
        [
            {"id": 1, "method": "connect", "token": "t", "name": "wsend.js"},
            {"id": 2, "method": "ping"},
            {"id": 3, "method": "history", "channel": "c", "since": {"offset": 4, "epoch": "e"}},
        ],
    )
    commands = codec.decode_commands(message)
    assert commands == [
        ConnectCommand(id=1, token="t", name="wsend.js"),
        PingCommand(id=2),
        HistoryCommand(id=3, channel="c", since=Since(offset=4, epoch="e")),
    ]


def test_unknown_fields_ignored_and_nulls_accepted(codec: Codec) -> None:
    message = encode_raw(
        codec,
        {"id": 1, "method": "subscribe", "channel": "c", "future": [1], "recover": None},
    )
    assert codec.decode_commands(message) == [SubscribeCommand(id=1, channel="c")]


@pytest.mark.parametrize(
    ("frame", "expected_id"),
    [
        ({"id": 0, "method": "ping"}, None),
        ({"id": 2**53, "method": "ping"}, None),
        ({"id": -1, "method": "ping"}, None),
        ({"id": "1", "method": "ping"}, None),
        ({"id": 5, "method": "nope"}, 5),
        ({"id": 5}, 5),
        ({"id": 6, "method": "subscribe"}, 6),
        ({"id": 6, "method": "subscribe", "channel": 3}, 6),
        ({"id": 6, "method": "history", "channel": "c", "limit": -1}, 6),
        ([1, 2], None),
        ("text", None),
        (None, None),
    ],
)
def test_invalid_frames_become_bad_frames(
    codec: Codec, frame: Any, expected_id: int | None
) -> None:
    message = encode_raw(codec, [frame, {"id": 9, "method": "ping"}])
    bad, ping = codec.decode_commands(message)
    assert isinstance(bad, BadFrame)
    assert bad.id == expected_id
    assert ping == PingCommand(id=9)


def test_largest_id_accepted(codec: Codec) -> None:
    message = encode_raw(codec, {"id": 2**53 - 1, "method": "ping"})
    assert codec.decode_commands(message) == [PingCommand(id=2**53 - 1)]


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
def test_batch_size_limits(codec: Codec, count: int) -> None:
    message = encode_raw(codec, [{"id": i + 1, "method": "ping"} for i in range(count)])
    [bad] = codec.decode_commands(message)
    assert isinstance(bad, BadFrame)
    assert bad.id is None


def test_full_batch_accepted(codec: Codec) -> None:
    message = encode_raw(codec, [{"id": i + 1, "method": "ping"} for i in range(MAX_BATCH)])
    assert len(codec.decode_commands(message)) == MAX_BATCH


def test_garbage_is_one_bad_frame() -> None:
    assert isinstance(JSON.decode_commands("{nope")[0], BadFrame)
    assert isinstance(JSON.decode_commands("")[0], BadFrame)
    assert isinstance(JSON.decode_commands("[1,")[0], BadFrame)
    assert isinstance(MSGPACK.decode_commands("text frame")[0], BadFrame)
    assert isinstance(MSGPACK.decode_commands(b"\xc1")[0], BadFrame)
    assert isinstance(MSGPACK.decode_commands(b"")[0], BadFrame)


def test_json_accepts_binary_frames() -> None:
    assert JSON.decode_commands(b'{"id":1,"method":"ping"}') == [PingCommand(id=1)]


def test_json_binary_frame_must_be_utf8() -> None:
    # Invalid UTF-8 would otherwise reach JSON subscribers in text frames.
    message = b'{"id":3,"method":"publish","channel":"c","data":"\xff\xfe"}'
    assert JSON.decode_commands(message) == [BadFrame(3, "invalid UTF-8")]
    assert JSON.decode_commands(b"\xff")[0].id is None


HOSTILE_DATA = [
    pytest.param(JSON, b"123456789012345678901234567890", id="json-int-beyond-64-bits"),
    pytest.param(JSON, b"-9223372036854775809", id="json-int-below-int64"),
    pytest.param(JSON, b"1e400", id="json-number-out-of-range"),
    pytest.param(JSON, b"[" * 2000 + b"]" * 2000, id="json-too-deep"),
    pytest.param(MSGPACK, msgspec.msgpack.encode(msgspec.msgpack.Ext(5, b"x")), id="mp-ext"),
    pytest.param(MSGPACK, b"\xa2\xff\xfe", id="mp-invalid-utf8"),
    pytest.param(MSGPACK, b"\x81\xc0\x01", id="mp-nil-key"),
    pytest.param(MSGPACK, b"\x81\x91\x01\x01", id="mp-array-key"),
    pytest.param(MSGPACK, b"\x91" * 2000 + b"\xc0", id="mp-too-deep"),
]


@pytest.mark.parametrize(("codec", "raw"), HOSTILE_DATA)
def test_data_must_be_representable_in_both_encodings(codec: Codec, raw: bytes) -> None:
    with pytest.raises(HubError) as caught:
        codec.data(msgspec.Raw(raw))
    assert caught.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("source", CODECS, ids=lambda c: c.name)
def test_data_depth_limit_is_the_same_on_every_python(source: Codec) -> None:
    # The decoders' own limits move with the interpreter (CPython 3.13 decodes 10,000 levels,
    # 3.11 about 1,000); the hub's is MAX_DATA_DEPTH everywhere, in both directions.
    deepest: object = []
    for _ in range(MAX_DATA_DEPTH - 1):
        deepest = [deepest]
    raw = source.encode_one(deepest)
    assert source.value(msgspec.Raw(raw)) == deepest
    data = source.data(msgspec.Raw(raw))
    assert data is not None
    assert data.value() == deepest
    for too_deep in (source.encode_one([deepest]), source.encode_one({"k": deepest})):
        for decode in (source.data, source.value):
            with pytest.raises(HubError) as caught:
                decode(msgspec.Raw(too_deep))
            assert caught.value.code == ErrorCode.BAD_REQUEST
    wide = source.encode_one([{"a": [i]} for i in range(5_000)])  # many containers, shallow
    assert source.value(msgspec.Raw(wide))[4_999] == {"a": [4_999]}


@pytest.mark.parametrize(
    ("codec", "raw"),
    [(JSON, b"[" * 2000 + b"]" * 2000), (MSGPACK, b"\xa2\xff\xfe"), (MSGPACK, b"\xc1")],
)
def test_undecodable_data_value(codec: Codec, raw: bytes) -> None:
    with pytest.raises(HubError) as caught:
        codec.value(msgspec.Raw(raw))
    assert caught.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("source", CODECS, ids=lambda c: c.name)
def test_data_transcoded_once(source: Codec) -> None:
    other = MSGPACK if source is JSON else JSON
    data = source.data(msgspec.Raw(source.encode_one({"a": [1, "b"]})))
    assert data is not None
    assert data.other == other.encode_one({"a": [1, "b"]})
    frames = PubFrames("c", Publication(data=data))
    assert decode_raw(other, frames.for_codec(other))["data"] == {"a": [1, "b"]}


def test_python_data_check() -> None:
    JSON.check({"a": 1})
    with pytest.raises(HubError):
        MSGPACK.check(2**70)
    with pytest.raises(HubError):
        JSON.check(object())


def test_data_stays_encoded(codec: Codec) -> None:
    payload = {"text": "hi", "n": [1, 2.5, None], "bin": "x"}
    message = encode_raw(codec, {"id": 1, "method": "publish", "channel": "c", "data": payload})
    [command] = codec.decode_commands(message)
    assert isinstance(command, PublishCommand)
    data = codec.data(command.data)
    assert isinstance(data, Encoded)
    assert data.codec == codec.name
    assert data.value() == payload
    assert codec.value(command.data) == payload


def test_absent_and_null_data(codec: Codec) -> None:
    message = encode_raw(codec, [{"id": 1, "method": "rpc", "name": "x", "data": None}])
    [command] = codec.decode_commands(message)
    assert isinstance(command, RpcCommand)
    assert codec.data(command.data) is None
    [command] = codec.decode_commands(encode_raw(codec, {"id": 1, "method": "rpc", "name": "x"}))
    assert isinstance(command, RpcCommand)
    assert codec.data(command.data) is None
    assert codec.value(command.data) is None


def test_command_round_trip(codec: Codec) -> None:
    commands = [
        ConnectCommand(id=1, token="tok", name="py", version="1"),
        SubscribeCommand(id=2, channel="a:b", recover=True, epoch="e", offset=3),
        HistoryCommand(id=3, channel="a:b", limit=0, reverse=True),
        PingCommand(id=4),
    ]
    message = codec.encode(commands)
    assert codec.decode_commands(message) == commands


@pytest.mark.parametrize(
    "frame",
    [
        Reply(id=1, result=ConnectResult(client="c", user="u", expires=False, ping=20, node="n")),
        Reply(id=2, result={}),
        Reply(id=3, error=ErrorBody(code=103, message="permission denied")),
        Reply(id=4, result=SubscribeResult(recoverable=True, epoch="e", offset=0)),
    ],
)
def test_reply_round_trip(codec: Codec, frame: Reply) -> None:
    encoded = codec.encode_one(frame)
    decoded = decode_raw(codec, encoded)
    assert decoded["id"] == frame.id
    assert msgspec.convert(decoded, Reply) == msgspec.convert(msgspec.to_builtins(frame), Reply)


def test_publication_frame() -> None:
    info = ClientInfo(client="c1", user="u", info={"n": 1})
    frame = publication_frame(Publication(data=1, offset=2, epoch="e", key="k", info=info))
    assert msgspec.to_builtins(frame) == {
        "data": 1,
        "offset": 2,
        "key": "k",
        "info": {"client": "c1", "user": "u", "info": {"n": 1}},
    }


def test_reply_omits_absent_fields() -> None:
    frame = Reply(id=2, result=SubscribeResult(recoverable=False))
    assert JSON.encode([frame]) == '{"id":2,"result":{"recoverable":false}}'
    assert JSON.encode([Reply(id=3, result={})]) == '{"id":3,"result":{}}'


def test_push_round_trip(codec: Codec) -> None:
    push = JoinPush(channel="c", info=InfoFrame(client="c1", user="u"))
    decoded = decode_raw(codec, codec.encode_one(push))
    assert decoded == {"push": "join", "channel": "c", "info": {"client": "c1", "user": "u"}}


def test_join_batches(codec: Codec) -> None:
    frames = [Reply(id=i, result={}) for i in range(1, 20)]
    message = codec.encode(frames)
    assert decode_raw(codec, message) == [{"id": i, "result": {}} for i in range(1, 20)]
    single = codec.encode(frames[:1])
    assert decode_raw(codec, single) == {"id": 1, "result": {}}
    assert isinstance(message, bytes if codec.binary else str)


def test_msgpack_join_large_batch() -> None:
    frames = [MSGPACK.encode_one(i) for i in range(70000)]
    assert msgspec.msgpack.decode(MSGPACK.join(frames)) == list(range(70000))


@pytest.mark.parametrize("source", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("target", CODECS, ids=lambda c: c.name)
def test_pub_push_passes_data_through_or_transcodes(source: Codec, target: Codec) -> None:
    payload = {"text": "hello", "list": [1, 2, {"x": None}]}
    raw = msgspec.Raw(source.encode_one(payload))
    data = source.data(raw)
    info = ClientInfo(client="c1", user="alice")
    frames = PubFrames("chat:x", Publication(data=data, offset=13, key="k", info=info))
    encoded = frames.for_codec(target)
    assert frames.for_codec(target) is encoded  # cached
    assert decode_raw(target, encoded) == {
        "push": "pub",
        "channel": "chat:x",
        "data": payload,
        "offset": 13,
        "key": "k",
        "info": {"client": "c1", "user": "alice"},
    }
    if source is target:
        assert source.encode_one(payload) in encoded


def test_pub_push_with_python_data_and_no_offset(codec: Codec) -> None:
    frames = PubFrames("c", Publication(data=[1, "two"]))
    assert decode_raw(codec, frames.for_codec(codec)) == {
        "push": "pub",
        "channel": "c",
        "data": [1, "two"],
    }


def test_encoded_equality() -> None:
    assert Encoded("json", b"1") == Encoded("json", b"1")
    assert Encoded("json", b"1") != Encoded("msgpack", b"1")
    assert len({Encoded("json", b"1"), Encoded("json", b"1")}) == 1
    assert repr(Encoded("json", b"1")) == "Encoded('json', b'1')"
    assert Encoded("json", b"1") != 1


def test_unencodable_object() -> None:
    with pytest.raises(TypeError):
        JSON.encode_one(object())


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_input_never_raises(message: str | bytes) -> None:
    for codec in CODECS:
        frames = codec.decode_commands(message)
        assert 1 <= len(frames) <= MAX_BATCH


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "method", "channel", "data", "x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(json_values, st.lists(json_values, max_size=5)))
def test_arbitrary_structures_never_raise(value: Any) -> None:
    for codec in CODECS:
        frames = codec.decode_commands(encode_raw(codec, value))
        assert frames
        for frame in frames:
            if isinstance(frame, BadFrame):
                assert frame.id is None or 1 <= frame.id < 2**53


# -- payloads and deltas (docs/protocol.md section 5) -------------------------------------------


def test_payloads_are_the_data_encoded_alone() -> None:
    raw = b'{"b": 1,  "a": [1.50]}'
    data = JSON.data(msgspec.Raw(raw))
    assert JSON.payload(data) == raw  # the publisher's text, byte for byte
    assert MSGPACK.payload(data) == msgspec.msgpack.encode({"b": 1, "a": [1.5]})
    assert JSON.payload({"x": None}) == b'{"x":null}'
    assert JSON.wrap(b'{"x":1}') == '{"x":1}'
    assert MSGPACK.wrap(b"\x81") == b"\x81"
    frames = PubFrames("c", Publication(data=data, offset=3))
    full = msgspec.json.decode(frames.full_for(JSON))
    assert full == {"push": "pub", "channel": "c", "data": raw.decode(), "offset": 3}
    full = msgspec.msgpack.decode(frames.full_for(MSGPACK))
    assert full["data"] == MSGPACK.payload(data)
    assert frames.full_for(JSON) is frames.full_for(JSON)  # encoded once per codec


def test_deltas_from_the_previous_publication() -> None:
    first = PubFrames("c", Publication(data={"rows": list(range(100)), "n": 1}))
    assert first.delta_for(JSON) is None  # no previous publication
    second = PubFrames("c", Publication(data={"rows": list(range(100)), "n": 2}), first)
    assert second.serial > first.serial
    delta = second.delta_for(JSON)
    assert delta is not None
    assert second.delta_for(JSON) is delta  # computed once per codec
    push = msgspec.json.decode(delta)
    assert push["delta"] is True
    assert len(delta) < len(second.full_for(JSON))
    rebuilt = fossil.apply(first.payload(JSON), push["data"].encode())
    assert msgspec.json.decode(rebuilt) == {"rows": list(range(100)), "n": 2}
    push = msgspec.msgpack.decode(second.delta_for(MSGPACK) or b"")
    rebuilt = fossil.apply(first.payload(MSGPACK), push["data"])
    assert msgspec.msgpack.decode(rebuilt) == {"rows": list(range(100)), "n": 2}
    unrelated = PubFrames("c", Publication(data="no resemblance at all"), second)
    assert unrelated.delta_for(JSON) is None  # not smaller than the full push


def test_no_delta_from_a_previous_publication_this_codec_cannot_carry() -> None:
    huge = Encoded("json", b"[18446744073709551616]")  # 2**64: beyond MessagePack
    first = PubFrames("c", Publication(data=huge))
    second = PubFrames("c", Publication(data=[1]), first)
    assert second.delta_for(MSGPACK) is None
