from .fastpath import ConnectionCorePy, WaiterPy

RECV_BUFFER_SIZE: int
JOIN_LIMIT: int

class ConnectionCore(ConnectionCorePy): ...
class Waiter(WaiterPy): ...
