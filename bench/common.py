"""Helpers shared by the harness and the worker processes: loops, CPU pinning, TLS, /proc."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import resource
import ssl
import sys
from pathlib import Path
from typing import Any

SERVER_CORE = 0
CLIENT_CORE = 1
HOST = "127.0.0.1"
# Every server listens with the same backlog, so connection storms (handshakes, 10,000 idle
# connections) are not decided by a listen queue default.
BACKLOG = 4096


def pin(core: int | None) -> None:
    """Pin this process to one CPU core (ignored where affinity is unsupported)."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    available = os.sched_getaffinity(0)
    if core in available:
        os.sched_setaffinity(0, {core})


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """Create (and set as current) an event loop: ``asyncio`` or ``uvloop``."""
    if kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    elif kind == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        raise ValueError(f"unknown loop: {kind}")
    asyncio.set_event_loop(loop)
    return loop


def server_ssl_context(certdir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
    return ctx


def client_ssl_context() -> ssl.SSLContext:
    """A client context that does not verify the server (the certificate is self-signed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_certificate(certdir: str) -> None:
    """Write a self-signed certificate for 127.0.0.1/localhost into ``certdir``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    Path(certdir, "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(certdir, "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def cpu_ns(pid: int) -> int:
    """CPU time used so far by all threads of ``pid``, in nanoseconds (from schedstat)."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def emit(obj: Any) -> None:
    """Write one JSON line on stdout: how workers answer the harness."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def uri_for(lib: str, port: int, tls: bool) -> str:
    if lib == "raw":
        return f"{'tls' if tls else 'tcp'}://{HOST}:{port}"
    return f"{'wss' if tls else 'ws'}://{HOST}:{port}/"


class Framer:
    """Finds message ends in a stream of 4-byte big-endian length-prefixed messages.

    The raw TCP ceiling uses it: the server echoes the bytes as they arrive (no reassembly,
    nothing a WebSocket library could do with less work), the client counts whole messages.
    """

    __slots__ = ("header", "remaining")

    def __init__(self) -> None:
        self.remaining = 0
        self.header = b""

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many messages ended in it."""
        ended, pos, end = 0, 0, len(data)
        while pos < end:
            if self.remaining:
                take = min(self.remaining, end - pos)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    ended += 1
                continue
            need = 4 - len(self.header)
            self.header += data[pos : pos + need]
            pos += need
            if len(self.header) == 4:
                self.remaining = int.from_bytes(self.header, "big")
                self.header = b""
                if not self.remaining:
                    ended += 1
        return ended
