"""Sans-I/O WebSocket protocol core (RFC 6455, RFC 7692).

Nothing in this package performs I/O or imports asyncio: bytes go in, events and bytes come out.
"""
