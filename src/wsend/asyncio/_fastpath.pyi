from .fastpath import ConnectionCorePy

RECV_BUFFER_SIZE: int
JOIN_LIMIT: int

class ConnectionCore(ConnectionCorePy): ...
