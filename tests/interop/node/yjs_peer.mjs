// A Yjs client for wsend's tests: unmodified yjs + y-websocket, driven line by line.
//
// usage: node yjs_peer.mjs SERVER_URL ROOM [PARAMS_JSON]
//   e.g. node yjs_peer.mjs ws://127.0.0.1:8765/yjs notes '{"token": "..."}'
//
// Prints one JSON object per line: {"event": "status", "status": ...}, {"event": "synced"},
// {"event": "closed", "code": ...}, and one answer per command. Commands, one per line on stdin:
//   {"cmd": "edit", "count": N, "seed": S}   N random inserts and deletes in the shared text
//                                            "text", with pauses of 0-2 ms; answers {"edited"}
//   {"cmd": "insert", "index": I, "text": T} one insert; answers {"ok"}
//   {"cmd": "text"}                          answers {"text": ...}
//   {"cmd": "user", "user": {...}}           sets the awareness field "user"; answers {"ok"}
//   {"cmd": "states"}                        answers {"states": {clientID: state}, "me": id}
//   {"cmd": "quit"}                          destroys the provider and exits
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import WebSocket from "ws";
import readline from "node:readline";

const [serverUrl, room, paramsJson] = process.argv.slice(2);
const doc = new Y.Doc();
const text = doc.getText("text");
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: paramsJson ? JSON.parse(paramsJson) : {},
  disableBc: true,
  maxBackoffTime: 300,
});

const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");

provider.on("status", ({ status }) => out({ event: "status", status }));
provider.on("sync", (synced) => synced && out({ event: "synced" }));
provider.on("connection-close", (event) => {
  if (event) out({ event: "closed", code: event.code, reason: event.reason });
});
provider.on("closed", ({ code }) => out({ event: "terminal", code }));
provider.awareness.on("change", () => out({ event: "awareness" }));

function random(seed) {
  let s = seed >>> 0 || 1;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

async function edit(count, seed) {
  const rand = random(seed);
  const words = ["a", "b", "xyz", " ", "\n", "é", "🙂", "hello"];
  for (let i = 0; i < count; i++) {
    const current = text.toString();
    const length = current.length;
    // Never between the two halves of an emoji (UTF-16 surrogates).
    const whole = (index) => (/[\udc00-\udfff]/.test(current[index] ?? "") ? index - 1 : index);
    if (length > 0 && rand(4) === 0) {
      const index = whole(rand(length));
      const end = whole(Math.min(index + 1 + rand(3), length));
      if (end > index) text.delete(index, end - index);
    } else {
      text.insert(whole(rand(length + 1)), words[rand(words.length)]);
    }
    await new Promise((resolve) => setTimeout(resolve, rand(3)));
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  switch (command.cmd) {
    case "edit":
      await edit(command.count, command.seed);
      out({ edited: true });
      break;
    case "insert":
      text.insert(command.index, command.text);
      out({ ok: true });
      break;
    case "text":
      out({ text: text.toString() });
      break;
    case "user":
      provider.awareness.setLocalStateField("user", command.user);
      out({ ok: true });
      break;
    case "states":
      out({
        states: Object.fromEntries(provider.awareness.getStates()),
        me: doc.clientID,
      });
      break;
    case "quit":
      provider.destroy();
      out({ bye: true });
      setTimeout(() => process.exit(0), 50);
      break;
    default:
      out({ error: `unknown command ${command.cmd}` });
  }
});
lines.on("close", () => {
  provider.destroy();
  process.exit(0);
});
