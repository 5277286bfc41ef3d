from typing import Any

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, /) -> bytes: ...
def parse_messages(
    buf: bytes | bytearray | memoryview,
    pos: int,
    expect_mask: bool,
    limit: int,
    count: int,
    events: list[Any],
    /,
) -> tuple[int, int]: ...
def serialize_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> list[bytes | bytearray | memoryview]: ...

class PayloadBuffer:
    def __init__(self, size: int) -> None: ...
    def view(self) -> memoryview: ...
    def finish(self, mask: bytes | None, /) -> bytes: ...
