#!/usr/bin/env node
// Echo server on Node's `ws` library, a peer for wsend's interoperability tests.
//
// usage: node echo_server.js PORT [--deflate | --no-deflate]
//
// Listens on 127.0.0.1:PORT (0 picks a free port) and prints "listening PORT" on stdout once it
// accepts connections, with the port actually bound. Every message is echoed back with its type
// (text stays text, binary stays binary). permessage-deflate is offered with --deflate (the
// default) and refused with --no-deflate.
//
// After the "listening" line, each event is printed as one JSON line on stdout:
//   {"event": "open", "path": "/x", "extensions": ["permessage-deflate"],
//    "request_extensions": "...", "protocol": ""}
//   {"event": "close", "path": "/x", "code": 1000, "reason": "..."}
//   {"event": "error", "path": "/x", "message": "..."}
//
// A connection may ask the server to start the closing handshake itself: with the query string
// "?close_after=N&code=C&reason=R" the server echoes N messages, then closes with code C (1000 if
// omitted) and reason R. N may be 0, to close right after the opening handshake.
//
// SIGTERM or SIGINT: open connections are closed with 1001 and the process exits with status 0.
"use strict";

const { WebSocketServer } = require("ws");

function parseArgs(argv) {
  const opts = { port: null, deflate: true };
  for (const arg of argv) {
    if (arg === "--deflate") opts.deflate = true;
    else if (arg === "--no-deflate") opts.deflate = false;
    else if (/^\d+$/.test(arg) && opts.port === null) opts.port = Number(arg);
    else {
      process.stderr.write(`echo_server.js: unexpected argument ${JSON.stringify(arg)}\n`);
      process.exit(2);
    }
  }
  if (opts.port === null) {
    process.stderr.write("usage: node echo_server.js PORT [--deflate | --no-deflate]\n");
    process.exit(2);
  }
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const opts = parseArgs(process.argv.slice(2));
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: opts.port,
  perMessageDeflate: opts.deflate,
  maxPayload: 64 * 1024 * 1024,
});

wss.on("listening", () => {
  process.stdout.write(`listening ${wss.address().port}\n`);
});

wss.on("error", (err) => {
  process.stderr.write(`echo_server.js: ${err.message}\n`);
  process.exit(1);
});

wss.on("connection", (ws, req) => {
  const url = new URL(req.url, "ws://127.0.0.1");
  const path = url.pathname;
  const closeAfter = url.searchParams.has("close_after")
    ? Number(url.searchParams.get("close_after"))
    : null;
  const closeCode = Number(url.searchParams.get("code") || 1000);
  const closeReason = url.searchParams.get("reason") || "";
  let echoed = 0;

  emit({
    event: "open",
    path,
    extensions: ws.extensions ? ws.extensions.split(",") : [],
    request_extensions: req.headers["sec-websocket-extensions"] || "",
    protocol: ws.protocol,
  });

  ws.on("message", (data, isBinary) => {
    if (closeAfter !== null && echoed >= closeAfter) return;
    ws.send(data, { binary: isBinary });
    echoed += 1;
    if (closeAfter !== null && echoed >= closeAfter) ws.close(closeCode, closeReason);
  });
  ws.on("close", (code, reason) => {
    emit({ event: "close", path, code, reason: reason.toString("utf8") });
    if (shuttingDown && wss.clients.size === 0) exit();
  });
  ws.on("error", (err) => {
    emit({ event: "error", path, message: err.message });
  });
  if (closeAfter === 0) ws.close(closeCode, closeReason);
});

let shuttingDown = false;

// Exits once stdout is flushed, so that the last events reach the reader.
function exit() {
  process.stdout.write("", () => process.exit(0));
}

function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  wss.close();
  if (wss.clients.size === 0) return exit();
  for (const ws of wss.clients) ws.close(1001, "server shutting down");
  // Peers that do not finish the closing handshake must not hold the process.
  setTimeout(exit, 1000).unref();
}

process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
