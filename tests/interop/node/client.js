#!/usr/bin/env node
// Client on Node's `ws` library, a peer for wsend's interoperability tests.
//
// usage: node client.js URL [--deflate | --no-deflate] [--expect N]
//                           [--close-code C] [--close-reason R]
//
// Reads the messages to send from stdin, one JSON object a line:
//   {"text": "..."}            sent as a text message
//   {"binary_b64": "..."}      sent as a binary message (base64 of the payload)
// and sends them in order once the connection is open. Every message received is printed on
// stdout as one JSON line of the same form. Before any message, the outcome of the opening
// handshake is printed:
//   {"open": {"extensions": ["permessage-deflate"], "protocol": ""}}
//
// The client starts the closing handshake (code C, 1000 by default, and reason R) after it has
// received N messages (--expect N), or, without --expect, once stdin has reached EOF and as many
// messages came back as were sent (--expect 0: right at stdin EOF). When the connection is closed,
// by either side, it prints {"close": CODE, "reason": "..."} and exits with status 0; on an error
// it prints {"error": "..."} and exits with status 1.
//
// permessage-deflate is offered unless --no-deflate is given (--deflate is the default).
"use strict";

const readline = require("readline");
const WebSocket = require("ws");

function usage(msg) {
  if (msg) process.stderr.write(`client.js: ${msg}\n`);
  process.stderr.write(
    "usage: node client.js URL [--deflate | --no-deflate] [--expect N] " +
      "[--close-code C] [--close-reason R]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { url: null, deflate: true, expect: null, closeCode: 1000, closeReason: "" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--deflate") opts.deflate = true;
    else if (arg === "--no-deflate") opts.deflate = false;
    else if (arg === "--expect") opts.expect = Number(value());
    else if (arg === "--close-code") opts.closeCode = Number(value());
    else if (arg === "--close-reason") opts.closeReason = value();
    else if (opts.url === null && !arg.startsWith("--")) opts.url = arg;
    else usage(`unexpected argument ${JSON.stringify(arg)}`);
  }
  if (opts.url === null) usage("missing URL");
  return opts;
}

function emit(obj, callback) {
  process.stdout.write(JSON.stringify(obj) + "\n", callback);
}

// Exits once everything written to stdout has been flushed: a pipe may still hold a large message.
function finish(obj, status) {
  emit(obj, () => process.exit(status));
}

const opts = parseArgs(process.argv.slice(2));
const ws = new WebSocket(opts.url, { perMessageDeflate: opts.deflate, maxPayload: 64 * 1024 * 1024 });
const pending = []; // messages read before the connection was open
let isOpen = false;
let stdinDone = false;
let sent = 0;
let received = 0;
let closing = false;

function send(msg) {
  if (typeof msg.text === "string") ws.send(msg.text, { binary: false });
  else if (typeof msg.binary_b64 === "string") {
    ws.send(Buffer.from(msg.binary_b64, "base64"), { binary: true });
  } else throw new Error(`bad input line: ${JSON.stringify(msg)}`);
  sent += 1;
}

function maybeClose() {
  if (closing || !isOpen) return;
  const target = opts.expect !== null ? opts.expect : stdinDone ? sent : null;
  if (target === null || received < target) return;
  closing = true;
  ws.close(opts.closeCode, opts.closeReason);
}

function fail(err) {
  finish({ error: err.message || String(err) }, 1);
}

ws.on("open", () => {
  isOpen = true;
  emit({ open: { extensions: ws.extensions ? ws.extensions.split(",") : [], protocol: ws.protocol } });
  try {
    for (const msg of pending.splice(0)) send(msg);
  } catch (err) {
    fail(err);
  }
  maybeClose();
});

ws.on("message", (data, isBinary) => {
  if (isBinary) emit({ binary_b64: Buffer.from(data).toString("base64") });
  else emit({ text: data.toString("utf8") });
  received += 1;
  maybeClose();
});

ws.on("close", (code, reason) => {
  finish({ close: code, reason: reason.toString("utf8") }, 0);
});

ws.on("error", fail);

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
    if (isOpen) send(msg);
    else pending.push(msg);
  } catch (err) {
    fail(err);
  }
});
rl.on("close", () => {
  stdinDone = true;
  maybeClose();
});
