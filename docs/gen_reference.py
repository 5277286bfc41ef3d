#!/usr/bin/env python
"""Generate docs/reference.md from the code: signatures, defaults and docstrings.

Run it from the repository root after changing the public API:

    .venv/bin/python docs/gen_reference.py

Every name in ``wsend.__all__`` must appear in one of the groups below; the script fails
otherwise, so the reference can't silently fall behind the package.
"""

from __future__ import annotations

import enum
import inspect
import json
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import wsend
import wsend.sync
from wsend import asgi, exceptions, reconnect
from wsend.asyncio import connection as connection_module
from wsend.asyncio import fastpath
from wsend.asyncio.connection import ConnectionOptions
from wsend.asyncio.server import Server
from wsend.protocol import connection as protocol_connection
from wsend.protocol import deflate, frames
from wsend.protocol.hosts import AllowedHosts
from wsend.protocol.http import HTTPLimits
from wsend.protocol.proxy import Proxy
from wsend.sync import server as sync_server

OUTPUT = Path(__file__).with_name("reference.md")

# asyncio protocol callbacks and handshake plumbing: public in Python terms, not for users.
#: Compiled classes and the pure-Python twins that document them.
TWINS: dict[type, type] = {fastpath.ConnectionCore: fastpath.ConnectionCorePy}

INTERNAL = {
    "buffer_updated",
    "connection_lost",
    "connection_made",
    "data_received",
    "eof_received",
    "get_buffer",
    "handshake",
    "handshake_data",
    "pause_writing",
    "resume_writing",
    "run_handler",
    "shutdown",
    "start",
}

# (title, intro, names from wsend.__all__)
GROUPS: list[tuple[str, str, list[str]]] = [
    (
        "Opening connections",
        "`connect` and `serve` are classes so that they can be both awaited and used with "
        "`async with`; treat them as functions.",
        ["connect", "serve"],
    ),
    (
        "Connections",
        "`connect()` returns a `ClientConnection` and `serve()` passes a `ServerConnection` to "
        "its handler. Both are `Connection`s, which you never create yourself: everything "
        "documented on `Connection` applies to both sides. A `ServerConnection` also has a "
        "`server` attribute, the `Server` it belongs to.",
        ["Connection", "ClientConnection", "ServerConnection", "State"],
    ),
    (
        "Server and HTTP routes",
        "`serve()` returns a `Server`; plain HTTP requests are answered by its `Router`.",
        ["Server", "Router"],
    ),
    (
        "Reconnecting",
        "`async for ws in wsend.connect(uri)` (and `for ws in wsend.sync.connect(uri)`) opens a "
        "connection per iteration and reconnects with backoff; `connect(backoff=...)` takes a "
        "`Backoff` and `connect(process_exception=...)` a hook like "
        "[`wsend.reconnect.process_exception`](#wsendreconnectprocess_exception). Guide: "
        "[Reconnecting automatically](howto/reconnect.md).",
        ["Backoff"],
    ),
    ("Broadcasting", "", ["broadcast"]),
    ("Memory", "", ["tune_allocator"]),
    ("Authentication", "", ["basic_auth", "token_auth"]),
    ("HTTP messages", "", ["Request", "Response", "Headers", "HTTPLimits"]),
    ("Compression settings", "", ["ClientDeflate", "ServerDeflate"]),
    ("Close frames", "", ["Close", "CloseCode"]),
]

# Classes not exported by ``wsend`` but needed to use its parameters.
EXTRA: list[tuple[str, Any]] = [
    ("wsend.asyncio.ConnectionOptions", ConnectionOptions),
    ("wsend.protocol.proxy.Proxy", Proxy),
    ("wsend.protocol.hosts.AllowedHosts", AllowedHosts),
]

# Pointers to the guides, for classes whose docstrings don't describe each parameter.
NOTES = {
    "wsend.asyncio.ConnectionOptions": "Pass these as keyword arguments to `connect()` or "
    "`serve()`. Each one, its default and what happens when it is exceeded are explained in "
    "[Limits](howto/limits.md); see also [backpressure](howto/backpressure.md) and "
    "[keepalive](howto/keepalive.md).",
    "ServerDeflate": "Memory figures and guidance: [Compression](howto/compression.md).",
    "wsend.protocol.proxy.Proxy": "`connect(proxy=...)` takes a URL or a `Proxy` "
    "(`wsend.protocol.proxy.parse_proxy(url)` makes one). How the environment is read, "
    "`no_proxy`, HTTPS and SOCKS proxies and their errors: [Proxies](howto/proxies.md).",
    "wsend.protocol.hosts.AllowedHosts": "`serve(allowed_hosts=[...])` builds one from its "
    "entries. Why and when to set it: [Host header validation](howto/host-header.md).",
}

SECTION_RE = re.compile(r"^(Args|Arguments|Returns|Raises|Attributes|Yields):\s*$")


# -- docstring conversion (the docstrings use Google style with a little reST) -----------------


def inline(text: str) -> str:
    """Convert reST inline markup to Markdown."""

    def role(match: re.Match[str]) -> str:
        kind, target = match.group(1), match.group(2)
        name = target.lstrip("~").split(".")[-1] if target.startswith("~") else target
        if name.startswith("wsend."):
            name = name[len("wsend.") :]
        return f"`{name}()`" if kind in ("meth", "func") else f"`{name}`"

    text = re.sub(r":(class|meth|func|attr|data|mod|exc):`([^`]+)`", role, text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def render_docstring(doc: str | None) -> str:
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    section: str | None = None
    in_code = False
    for line in lines:
        if line.strip().startswith(".. code-block::"):
            lang = line.split("::", 1)[1].strip()
            out.append(f"```{lang}")
            in_code = True
            continue
        if in_code and not line.strip() and out[-1].startswith("```"):
            continue  # the blank line that opens the block
        if in_code:
            if line.strip() and not line.startswith("    "):
                while not out[-1].strip():
                    out.pop()  # the blank lines that close the block
                out.append("```")
                out.append("")
                in_code = False
            else:
                out.append(line[4:])
                continue
        match = SECTION_RE.match(line)
        if match:
            section = match.group(1)
            out.extend(["", f"**{section}**", ""])
            continue
        if section is not None:
            if not line.strip():
                section = None
                out.append("")
            elif line.startswith("    ") and not line.startswith("        "):
                item = line.strip()
                name, sep, desc = item.partition(":")
                if sep and section != "Returns" and " " not in name.replace(", ", ","):
                    out.append(f"- `{name}`:{inline(desc)}")
                else:
                    out.append(f"- {inline(item)}" if section != "Returns" else inline(item))
            else:
                out[-1] += " " + inline(line.strip())
            continue
        out.append(inline(line))
    if in_code:
        while out and not out[-1].strip():
            out.pop()
        out.append("```")
    return "\n".join(out).strip() + "\n"


# -- signatures --------------------------------------------------------------------------------


def format_signature(name: str, func: Callable[..., Any], *, drop_self: bool = False) -> str:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    parts: list[str] = []
    seen_kw_only = False
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not seen_kw_only:
            parts.append("*")
            seen_kw_only = True
        if p.kind is p.VAR_POSITIONAL:
            seen_kw_only = True
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + text
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + text
        if p.annotation is not p.empty:
            text += f": {annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {default_repr(p.default)}"
        parts.append(text)
    ret = ""
    if sig.return_annotation not in (sig.empty, "None", None):
        ret = f" -> {annotation(sig.return_annotation)}"
    one_line = f"{name}({', '.join(parts)}){ret}"
    if len(one_line) <= 92:
        return one_line
    body = "".join(f"    {part},\n" for part in parts)
    return f"{name}(\n{body}){ret}"


def annotation(value: Any) -> str:
    text = value if isinstance(value, str) else inspect.formatannotation(value)
    return text.replace("ssl_module.", "ssl.").replace("asyncio.base_events.", "asyncio.")


def default_repr(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, HTTPLimits):
        return "HTTPLimits()"
    if repr(value) == "<factory>":
        return "Headers()"
    if value is json.dumps:
        return "json.dumps"
    if value is json.loads:
        return "json.loads"
    if value is random.random:
        return "random.random"
    if value is reconnect.process_exception:
        return "process_exception"
    return repr(value)


# -- members -----------------------------------------------------------------------------------


def public_members(cls: type, *, own_only: bool = False) -> Iterator[tuple[str, Any]]:
    """Methods and properties defined by wsend on ``cls`` or its wsend bases, in source order."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        # The compiled connection core documents itself through its pure-Python twin.
        klass = TWINS.get(klass, klass)
        if not klass.__module__.startswith("wsend") or (own_only and klass is not cls):
            continue
        for name, member in vars(klass).items():
            if name in seen or name.startswith("_") or name in INTERNAL:
                continue
            seen.add(name)
            if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(
                member
            ):
                yield name, member


def render_member(owner: str, name: str, member: Any) -> str:
    if isinstance(member, property):
        ann = member.fget.__annotations__.get("return") if member.fget else None
        head = f"{owner}.{name}" + (f": {annotation(ann)}" if ann else "")
        kind = "property"
        doc = member.fget.__doc__ if member.fget else None
    else:
        func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
        is_async = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
        prefix = "async " if is_async and not inspect.isasyncgenfunction(func) else ""
        head = prefix + format_signature(f"{owner}.{name}", func, drop_self=True)
        kind = "async iterator" if inspect.isasyncgenfunction(func) else "method"
        if isinstance(member, classmethod):
            kind = "class method"
        doc = func.__doc__
    text = f"#### `{owner}.{name}`\n\n*{kind}*\n\n```python\n{head}\n```\n\n"
    return text + (render_docstring(doc) or "*No docstring.*\n")


def render_attributes(cls: type) -> str:
    """Instance attributes documented with ``#:`` comments in ``__init__``."""
    try:
        source = inspect.getsource(cls.__init__)  # type: ignore[misc]
    except (OSError, TypeError):
        return ""
    rows = []
    comment: list[str] = []
    after_assignment = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            if after_assignment:
                comment, after_assignment = [], False
            comment.append(stripped[2:].strip())
            continue
        match = re.match(r"self\.(\w+)(?::\s*([^=]+))?\s*=\s*(.*)", stripped)
        if match and comment and not match.group(1).startswith("_"):
            ann = (match.group(2) or "").strip()
            if not ann:
                literal = match.group(3).strip()
                ann = {"0.0": "float", "None": "Any"}.get(
                    literal, "float" if "." in literal else ""
                )
            rows.append(
                f"| `{match.group(1)}` | `{cell(ann)}` | {cell(inline(' '.join(comment)))} |"
            )
            after_assignment = True
            continue  # the comment also covers the next assignment
        comment, after_assignment = [], False
    if not rows:
        return ""
    header = "| attribute | type | meaning |\n|---|---|---|\n"
    return "**Attributes**\n\n" + header + "\n".join(rows) + "\n"


def cell(text: str) -> str:
    """Escape a table cell (a ``|`` inside code would end the cell)."""
    return text.replace("|", "\\|")


def render_class(title: str, cls: type, *, as_function: bool = False) -> str:
    out = [f"### `{title}`\n"]
    init = cls.__init__  # type: ignore[misc]
    created_by_wsend = issubclass(cls, wsend.Connection | wsend.sync.Connection) or cls in (
        Server,
        wsend.sync.Server,
    )
    if created_by_wsend:
        pass
    elif as_function or ("__init__" in vars(cls) and not issubclass(cls, Exception)):
        display = title.split(".")[-1]
        out.append(f"```python\n{format_signature(display, init, drop_self=True)}\n```\n")
    elif issubclass(cls, enum.Enum):
        pass
    elif hasattr(cls, "__dataclass_fields__"):
        out.append(f"```python\n{format_signature(title.split('.')[-1], cls)}\n```\n")
    out.append(render_docstring(cls.__doc__))
    bases = (wsend.Connection, wsend.sync.Connection)
    base = next((b for b in bases if cls is not b and issubclass(cls, b)), None)
    subclass = base is not None
    attributes = render_attributes(cls) if "__init__" in vars(cls) or not subclass else ""
    if attributes:
        out.append(attributes)
    if base is wsend.Connection:
        out.append("All the attributes and methods of [`Connection`](#connection).\n")
    elif base is not None:
        out.append(
            "All the attributes and methods of [`wsend.sync.Connection`](#wsendsyncconnection).\n"
        )
    if not as_function:
        for name, member in public_members(cls, own_only=subclass):
            out.append(render_member(title.split(".")[-1], name, member))
    return "\n".join(out)


def render_function(name: str, func: Callable[..., Any]) -> str:
    return f"### `{name}`\n\n```python\n{format_signature(name, func)}\n```\n\n" + render_docstring(
        func.__doc__
    )


def keyword_table(rows: list[tuple[str, inspect.Parameter, str]]) -> str:
    out = ["| keyword | default | defined by |", "|---|---|---|"]
    for name, param, source in rows:
        default = "required" if param.default is param.empty else default_repr(param.default)
        out.append(f"| `{name}` | `{cell(default)}` | {source} |")
    return "\n".join(out) + "\n"


def options_params() -> list[tuple[str, inspect.Parameter, str]]:
    sig = inspect.signature(ConnectionOptions.__init__)
    return [
        (n, p, "[`ConnectionOptions`](#wsendasyncioconnectionoptions)")
        for n, p in sig.parameters.items()
        if n != "self"
    ]


def serve_extra_keywords() -> str:
    explicit = set(inspect.signature(wsend.serve.__init__).parameters)
    rows = [
        (n, p, "[`Server`](#server)")
        for n, p in inspect.signature(Server.__init__).parameters.items()
        if n not in explicit and n not in ("self", "handler", "options")
    ]
    return "**Keyword arguments passed through `**kwargs`**\n\n" + keyword_table(
        rows + options_params()
    )


def connect_extra_keywords() -> str:
    return "**Keyword arguments passed through `**kwargs`**\n\n" + keyword_table(options_params())


def sync_serve_extra_keywords() -> str:
    explicit = set(inspect.signature(wsend.sync.serve).parameters)
    rows = [
        (n, p, "[`wsend.sync.Server`](#wsendsyncserver)")
        for n, p in inspect.signature(sync_server.Server.__init__).parameters.items()
        if n not in explicit and n not in ("self", "handler", "sock", "options", "ssl")
    ]
    return "**Keyword arguments passed through `**kwargs`**\n\n" + keyword_table(
        rows + options_params()
    )


def render_sync() -> str:
    """The threading client and server, ``wsend.sync``."""
    out = [
        "## Threads: `wsend.sync`\n",
        inline(inspect.cleandoc(wsend.sync.__doc__ or "").split("\n\n")[0]) + " Guide: "
        "[Threads, without asyncio](howto/threads.md).\n",
        render_class("wsend.sync.connect", wsend.sync.connect, as_function=True),
        connect_extra_keywords(),
        "Methods: `open()` returns the connection (the caller closes it); `with` opens and "
        "closes it; `for ws in ...` reconnects (see [Reconnecting](#reconnecting)).\n",
        render_function("wsend.sync.serve", wsend.sync.serve),
        sync_serve_extra_keywords(),
    ]
    for name in ("Connection", "ClientConnection", "ServerConnection", "Server"):
        out.append(render_class(f"wsend.sync.{name}", getattr(wsend.sync, name)))
    return "\n".join(out)


def render_state(cls: type[enum.Enum]) -> str:
    rows = "\n".join(f"| `{m.name}` | {m.value} |" for m in cls)
    return (
        f"### `{cls.__name__}`\n\n{render_docstring(cls.__doc__)}\n"
        f"| member | value |\n|---|---|\n{rows}\n"
    )


CLOSE_MEANINGS = {
    1000: "the purpose of the connection is fulfilled",
    1001: "an endpoint is going away (server shutdown, browser leaving the page)",
    1002: "the peer broke the protocol (`ProtocolError`)",
    1003: "the endpoint can't accept this type of data",
    1005: "the close frame carried no code",
    1006: "the connection dropped without a close frame",
    1007: "invalid UTF-8 in a text message or close reason (`InvalidPayload`)",
    1008: "a policy was violated (generic refusal)",
    1009: "a frame or message exceeded a size limit (`PayloadTooBig`)",
    1010: "the client needed an extension the server didn't accept",
    1011: "unexpected condition: a handler raised, a keepalive ping timed out, "
    "a streamed message was interrupted",
    1012: "the service is restarting",
    1013: "try again later (overload; also used for slow consumers)",
    1014: "a gateway got an invalid response upstream",
    1015: "the TLS handshake failed",
}


def render_close_codes() -> str:
    never = {c for c in frames.CloseCode if not frames.is_valid_close_code(c)}
    out = [
        f"### `CloseCode`\n\n{render_docstring(frames.CloseCode.__doc__)}",
        "| member | code | sent on the wire | meaning |",
        "|---|---|---|---|",
    ]
    for code in frames.CloseCode:
        wire = "no (reported locally only)" if code in never else "yes"
        out.append(f"| `{code.name}` | {code.value} | {wire} | {CLOSE_MEANINGS[code.value]} |")
    out.append(
        "\nApplications may also send 3000-3999 (registered with IANA) and 4000-4999 "
        "(private use). `close()` raises `ValueError` for any other code.\n"
    )
    mapping = [
        (exceptions.PayloadTooBig, "PayloadTooBig"),
        (exceptions.InvalidPayload, "InvalidPayload"),
        (exceptions.ProtocolError, "ProtocolError"),
    ]
    out.append(
        "Errors detected in the peer's frames map to close codes in one place, "
        "`wsend.protocol.frames.close_code_for`:\n"
    )
    out.append("| error | close code sent |\n|---|---|")
    for exc_type, label in mapping:
        out.append(f"| `{label}` | {frames.close_code_for(exc_type('x'))} |")
    out.append(f"| anything else | {frames.close_code_for(RuntimeError())} |\n")
    return "\n".join(out)


def render_exceptions() -> str:
    doc = exceptions.__doc__ or ""
    tree = doc.split(".. code-block:: text", 1)[1]
    tree = inspect.cleandoc(tree)
    intro = inspect.cleandoc(doc.split(".. code-block:: text", 1)[0])
    out = ["## Exceptions\n", inline(intro) + "\n", f"```text\n{tree}\n```\n"]
    order = [n for n in re.findall(r"^[│├└─ ]*([A-Z]\w+)", tree, re.M) if n in exceptions.__all__]
    order += [n for n in exceptions.__all__ if n not in order]
    for name in order:
        cls = getattr(exceptions, name)
        bases = ", ".join(b.__name__ for b in cls.__bases__)
        out.append(f"### `{name}`\n\n*bases: {bases}*\n")
        if "__init__" in vars(cls):
            out.append(f"```python\n{format_signature(name, cls.__init__, drop_self=True)}\n```\n")
        status = vars(cls).get("status")
        if isinstance(status, int):
            out.append(f"A server answers this error with HTTP **{status}**.\n")
        out.append(render_docstring(cls.__doc__))
        for member_name, member in vars(cls).items():
            if isinstance(member, property) and not member_name.startswith("_"):
                out.append(f"- `{name}.{member_name}` (property): {inline(member.__doc__ or '')}")
        out.append("")
    return "\n".join(out)


def render_defaults() -> str:
    rows = [
        ("max_message_size", protocol_connection.DEFAULT_MAX_MESSAGE_SIZE, "bytes"),
        ("max_queue", connection_module.DEFAULT_MAX_QUEUE, "fragments"),
        ("write_limit", connection_module.DEFAULT_WRITE_LIMIT, "bytes (low-water mark: 1/4)"),
        ("ping_interval", connection_module.DEFAULT_PING_INTERVAL, "seconds"),
        ("ping_timeout", connection_module.DEFAULT_PING_TIMEOUT, "seconds"),
        ("open_timeout", connection_module.DEFAULT_OPEN_TIMEOUT, "seconds"),
        ("close_timeout", connection_module.DEFAULT_CLOSE_TIMEOUT, "seconds"),
        ("file / iterable chunk size", connection_module.STREAM_CHUNK_SIZE, "bytes per frame"),
        ("deflate window bits (server)", deflate.DEFAULT_SERVER_MAX_WINDOW_BITS, ""),
        ("deflate memLevel", deflate.DEFAULT_MEM_LEVEL, ""),
        ("deflate compression level", deflate.DEFAULT_COMPRESS_LEVEL, ""),
        ("deflate threshold", deflate.DEFAULT_THRESHOLD, "bytes"),
        (
            "deflate threshold without context takeover",
            deflate.DEFAULT_THRESHOLD_NO_CONTEXT_TAKEOVER,
            "bytes",
        ),
    ]
    limits = HTTPLimits()
    for field in limits.__dataclass_fields__:
        rows.append((f"HTTPLimits.{field}", getattr(limits, field), "bytes or fields"))
    out = ["| setting | default | unit |", "|---|---|---|"]
    out += [f"| `{n}` | {v} | {u} |" for n, v, u in rows]
    return "## Defaults at a glance\n\n" + "\n".join(out) + "\n"


def render_asgi() -> str:
    """The ASGI server layer: ``wsend.asgi.WSendProtocol`` (uvicorn creates it) and its launcher."""
    cls = asgi.WSendProtocol
    out = [
        "## ASGI server layer\n",
        "`wsend.asgi` (needs uvicorn: `pip install 'wsend[asgi]'`) runs the WebSocket endpoints of "
        "any ASGI application on wsend: `uvicorn.run(app, ws=WSendProtocol)`, "
        "`uvicorn.Config(app, ws=WSendProtocol)`, `uvicorn app:app --ws wsend.asgi:WSendProtocol` "
        "(uvicorn 0.36 and later), or `python -m wsend.asgi app:app [uvicorn options]`. "
        "How-to: [wsend as uvicorn's WebSocket layer](howto/asgi-server.md).\n",
        "### `wsend.asgi.WSendProtocol`\n",
        f"```python\n{format_signature('WSendProtocol', cls.__init__, drop_self=True)}\n```\n",
        render_docstring(cls.__doc__),
        "All the attributes and methods of [`Connection`](#connection) too.\n",
    ]
    for name, member in public_members(cls, own_only=True):
        out.append(render_member("WSendProtocol", name, member))
    return "\n".join(out)


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9_\- ]", "", title.lower()).replace(" ", "-")


def main() -> int:
    documented = {name for _, _, names in GROUPS for name in names}
    documented |= set(exceptions.__all__) | {"__version__"}
    missing = set(wsend.__all__) - documented
    if missing:
        print(f"not documented: {sorted(missing)}", file=sys.stderr)
        return 1

    parts = [
        "# API reference\n",
        "<!-- Generated by docs/gen_reference.py from the code. Do not edit by hand. -->\n",
        f"This page covers wsend {wsend.__version__}: every name exported by `wsend` "
        "(`wsend.__all__`), plus the few classes from submodules that its parameters use. "
        "Signatures, defaults and descriptions are read from the code itself. For a guided "
        "tour, start with the [quickstart](quickstart.md).\n",
        "## Contents\n",
    ]
    for title, _, names in GROUPS:
        links = ", ".join(f"[`{n}`](#{anchor(n)})" for n in names)
        parts.append(f"- [{title}](#{anchor(title)}): {links}")
    parts.append("- [ASGI server layer](#asgi-server-layer): `wsend.asgi.WSendProtocol`")
    parts.append("- [Threads: `wsend.sync`](#threads-wsendsync)")
    parts.append("- [Exceptions](#exceptions)")
    parts.append("- [Classes used by parameters](#classes-used-by-parameters)")
    parts.append("- [Defaults at a glance](#defaults-at-a-glance)\n")

    for title, intro, names in GROUPS:
        parts.append(f"## {title}\n")
        if intro:
            parts.append(intro + "\n")
        for name in names:
            obj = getattr(wsend, name)
            if name == "State":
                parts.append(render_state(obj))
            elif name == "CloseCode":
                parts.append(render_close_codes())
            elif name in ("connect", "serve"):
                parts.append(render_class(name, obj, as_function=True))
                parts.append(
                    serve_extra_keywords() if name == "serve" else connect_extra_keywords()
                )
            elif inspect.isclass(obj):
                parts.append(render_class(name, obj))
                if name == "Backoff":
                    parts.append(
                        render_function(
                            "wsend.reconnect.process_exception", reconnect.process_exception
                        )
                    )
            else:
                parts.append(render_function(name, obj))
    parts.append(render_asgi())
    parts.append(render_sync())
    parts.append(render_exceptions())
    parts.append("## Classes used by parameters\n")
    parts.append("These are not exported by `wsend` itself; import them from the modules named.\n")
    for title, cls in EXTRA:
        parts.append(render_class(title, cls))
        if title in NOTES:
            parts.append(NOTES[title] + "\n")
    parts.append(render_defaults())
    text = "\n".join(parts)
    text = re.sub(r"\n{3,}", "\n\n", text)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
