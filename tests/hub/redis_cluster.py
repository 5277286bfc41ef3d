"""A real Redis Cluster for tests: 3 masters and 3 replicas on loopback, in temporary dirs.

Started with ``redis-server --cluster-enabled yes`` (one process and directory per node, free
ports) and ``redis-cli --cluster create ... --cluster-replicas 1``; skipped when Redis is not
installed, failed under CI (see :func:`.redis_server.require`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

from .redis_server import RedisServer, free_port, require

__all__ = ["Cluster", "running_cluster"]

#: Milliseconds without an answer before the cluster takes a master for failed: short, so that
#: a failover takes a few seconds; long enough for a busy test machine not to fail over by itself.
NODE_TIMEOUT_MS = 1500


class Cluster:
    """Six ``redis-server`` processes forming one cluster (3 masters, 1 replica each).

    Args:
        masters: how many masters (each gets one replica).
        extra: more arguments for every node.
    """

    def __init__(self, masters: int = 3, extra: list[str] | None = None) -> None:
        self.cli = require("redis-cli")
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--repl-diskless-sync-delay", "0"]
        args += extra or []
        # Each node's cluster bus gets a free port of its own (by default it is the node's
        # port + 10000, which may be taken or beyond 65535).
        self.nodes = [
            RedisServer(extra=[*args, "--cluster-port", str(free_port())])
            for _ in range(masters * 2)
        ]
        self.masters = masters

    @property
    def url(self) -> str:
        """The engine's URL, listing two of the nodes to start from."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])
        return f"redis+cluster://{hosts}"

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        command = [self.cli, "--cluster", "create", *addresses]
        subprocess.run(
            [*command, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- looking at the cluster

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def node_id(self, node: RedisServer) -> str:
        return node.cli("CLUSTER", "MYID").strip()

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave``."""
        return node.cli("ROLE").split()[0]

    def layout(self) -> list[tuple[int, str, str, list[tuple[int, int]]]]:
        """``(port, flags, master id or "-", slot ranges)`` of every node, as a running node
        sees it."""
        rows = []
        for line in self.running()[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rpartition(":")[2])
            ranges = []
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit():
                    ranges.append((int(low), int(high or low)))
            rows.append((port, fields[2], fields[3], ranges))
        return rows

    def by_port(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def master_of(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot, as the cluster sees it now."""
        slot = int(self.running()[0].cli("CLUSTER", "KEYSLOT", key))
        for port, flags, _, ranges in self.layout():
            if "master" in flags and any(low <= slot <= high for low, high in ranges):
                return self.by_port(port)
        raise LookupError(f"no master serves {key!r}")

    def other_master(self, master: RedisServer) -> RedisServer:
        """A master other than ``master``."""
        return next(
            node for node in self.running() if node is not master and self.role(node) == "master"
        )

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A replica of ``master`` that is not failing."""
        master_id = self.node_id(master)
        for port, flags, parent, _ in self.layout():
            if parent == master_id and "fail" not in flags:
                return self.by_port(port)
        raise LookupError(f"no replica of the master on port {master.port}")

    def healthy(self) -> bool:
        """Every running node sees the cluster ``ok``, with as many masters as at the start,
        each with a replica in sync."""
        try:
            for node in self.running():
                if "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
                    return False
                lines = node.cli("CLUSTER", "NODES").splitlines()
                flags = [line.split()[2] for line in lines]
                if any("fail" in f or "handshake" in f or "noaddr" in f for f in flags):
                    return False
                up = [line for line in lines if "disconnected" not in line]
                if sum("master" in line.split()[2] for line in up) != self.masters:
                    return False
            replicas = [node for node in self.running() if self.role(node) == "slave"]
            synced = all("master_link_status:up" in n.cli("INFO", "replication") for n in replicas)
            return synced and len(replicas) == len(self.running()) - self.masters
        except subprocess.CalledProcessError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become healthy")
            time.sleep(0.1)

    # -- failures

    def kill(self, node: RedisServer) -> None:
        """SIGKILL ``node``; its replica takes over after the node timeout."""
        node.kill()

    def revive(self, node: RedisServer) -> None:
        """Start a killed node again on its port: it rejoins as a replica of its successor."""
        node.start()

    def move_slot(self, key: str, target: RedisServer) -> None:
        """Migrate ``key``'s slot, with its keys, to the master ``target`` (as ``redis-cli
        --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE)."""
        source = self.master_of(key)
        slot = source.cli("CLUSTER", "KEYSLOT", key).strip()
        source_id, target_id = self.node_id(source), self.node_id(target)
        target.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.cli("CLUSTER", "GETKEYSINSLOT", slot, "100").split():
            address = ["127.0.0.1", str(target.port), "", "0", "5000"]
            source.cli("MIGRATE", *address, "KEYS", *keys)
        for node in (target, source):
            node.cli("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for node in self.running():
            if self.role(node) == "master" and node not in (source, target):
                node.cli("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def manual_failover(self, replica: RedisServer) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it catches up with its master, then swaps."""
        replica.cli("CLUSTER", "FAILOVER")


def running_cluster() -> Iterator[Cluster]:
    """A generator for fixtures: a started cluster, stopped afterwards."""
    with Cluster() as cluster:
        yield cluster
