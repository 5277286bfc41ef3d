// The collab page: a shared text document kept in sync with operational transformation.
//
// Server side: src/wsend/apps/collab.py (the protocol is in its docstring). This page:
//   - turns each change of the textarea into an operation (ot.diff) and sends it with RPC
//     collab.edit, at most one at a time; keystrokes typed meanwhile are composed into one;
//   - applies the edits the server publishes on collab:<doc>, transformed against its own
//     unconfirmed ones; its own edit coming back is the acknowledgement;
//   - catches up after a reconnect with RPC collab.since, then resends what wasn't confirmed;
//     if the server restarted and lost the document, gives it this page's copy (collab.restore);
//   - publishes its cursor on collab-cursors:<doc> and draws the others' over the textarea.

import { Client } from "/wsend.js";
import { clientOptions, explainRefusals } from "/demo.js";
import * as ot from "/collab/ot.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DOC = (params.get("doc") || "pad").replace(/[^A-Za-z0-9_-]/g, "").slice(0, 32) || "pad";
const LOG_KEEP = 500; // server edits remembered, to move cursors sent at older revisions
const ADJECTIVES = ["Swift", "Quiet", "Brave", "Clever", "Sunny", "Lucky", "Witty", "Calm"];
const ANIMALS = ["Otter", "Falcon", "Panda", "Lynx", "Koala", "Heron", "Fox", "Whale"];

let name =
  params.get("name") ||
  localStorage.getItem("wsend-name") ||
  localStorage.getItem("wsend-chat-name") ||
  `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;

const textarea = $("text");
const overlay = $("overlay");

// -- the OT client state (see ClientState in src/wsend/apps/collab_ot.py) -------------------------

const author = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
const state = {
  loaded: false,
  syncing: false, // catching up: incoming edits wait in `early`
  revision: 0, // the last server revision applied
  epoch: null, // the server document's epoch (a new one after a server restart)
  doc: "", // what the textarea shows: server revision + sent + buffer
  server: "", // the server's text at `revision` (what our unconfirmed edits apply to)
  sent: null, // our edit in flight (based on `revision`)
  sentSeq: 0,
  resend: false, // `sent` must be sent again (after a reconnect)
  buffer: null, // our edits since, composed
  seq: 0,
  early: new Map(), // revision -> edit, received ahead of time
  log: [], // recent server edits [{revision, op}], for cursors
  editsSeen: 0,
};

const client = new Client(clientOptions({ data: { name } }));
explainRefusals(client);
const docSub = client.subscribe(`collab:${DOC}`, {
  publication: (pub) => receive(pub.data),
  subscribed: () => catchUp(),
  join: (info) => addPerson(info),
  leave: (info) => removePerson(info.client),
});
const cursorSub = client.subscribe(`collab-cursors:${DOC}`, {
  recover: false,
  publication: (pub) => remoteCursor(pub),
});

let catchingUp = null;

// Bring the document up to date (first load, reconnect, gap); one run at a time.
function catchUp() {
  if (!catchingUp) {
    catchingUp = doCatchUp().finally(() => {
      catchingUp = null;
    });
  }
  return catchingUp;
}

async function doCatchUp() {
  refreshPeople();
  state.syncing = true;
  try {
    if (!state.loaded) {
      const snap = await client.rpc("collab.open", { doc: DOC });
      reset(snap);
    } else {
      const since = { doc: DOC, revision: state.revision, epoch: state.epoch };
      const result = await client.rpc("collab.since", since);
      if (result.edits) for (const edit of result.edits) apply(edit);
      else if (result.epoch !== state.epoch) await restore(result);
      else reset(result, true); // the log didn't reach back: start over from the snapshot
    }
  } catch (err) {
    console.warn("collab: catching up failed", err);
    state.syncing = false;
    if (client.state === "connected") setTimeout(catchUp, 1000);
    return;
  }
  state.syncing = false;
  drainEarly();
  if (state.early.size) setTimeout(catchUp, 50); // still a gap: go again
  if (state.sent) state.resend = true;
  flush();
  publishCursor();
}

// Start over from a snapshot {text, revision, epoch}; unconfirmed local edits are lost.
function reset(snap, lost = false) {
  if (lost && snap.text !== state.doc) {
    toast("The document was reloaded from the server: your latest changes couldn't be kept.");
  }
  state.loaded = true;
  state.revision = snap.revision;
  state.server = snap.text;
  newEpoch(snap.epoch);
  state.sent = state.buffer = null;
  state.resend = false;
  state.log = [];
  setText(snap.text, null);
  textarea.disabled = false;
  updateInfo();
}

// The server restarted and lost the document (it has a new epoch). If nobody has edited the
// new one yet, give it this page's copy of the server's text; if another page was first with
// the same text (the usual case), carry on. Unconfirmed edits are then sent as usual, on top
// of that text. If the new document is something else, reload it.
async function restore(fresh) {
  const { sent, buffer } = state;
  const pending = sent && buffer ? ot.compose(sent, buffer) : sent || buffer;
  const confirmed = state.server;
  let result = fresh;
  let restored = false;
  if (fresh.text !== confirmed && fresh.revision === 0) {
    state.seq += 1;
    const request = { doc: DOC, epoch: state.epoch, text: confirmed, author, seq: state.seq };
    result = await client.rpc("collab.restore", request);
    restored = result.text === undefined;
    if (restored) result = { ...result, text: confirmed };
  }
  if (result.text !== confirmed) return reset(result, true); // someone edited the new one
  state.revision = result.revision; // our restore (revision 1) is skipped as already applied
  newEpoch(result.epoch);
  state.log = [];
  state.sent = pending;
  state.buffer = null;
  if (pending) {
    state.seq += 1; // the new document knows nothing of our earlier edits
    state.sentSeq = state.seq;
    state.resend = true; // sent once the catch-up ends
  }
  if (restored) toast("The server restarted: it got the document back from this page.");
  updateInfo();
}

function newEpoch(epoch) {
  if (state.epoch !== null && epoch !== state.epoch) cursors.clear(); // old revisions
  state.epoch = epoch ?? null;
}

let toastTimer = null;

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 6000);
}

function receive(edit) {
  if (!state.loaded || state.syncing) {
    state.early.set(edit.revision, edit);
    return;
  }
  if (edit.revision <= state.revision) return; // seen already
  if (edit.revision > state.revision + 1) {
    state.early.set(edit.revision, edit); // a gap: fetch what's missing
    catchUp();
    return;
  }
  apply(edit);
  drainEarly();
}

function drainEarly() {
  for (;;) {
    const next = state.early.get(state.revision + 1);
    for (const r of state.early.keys()) if (r <= state.revision) state.early.delete(r);
    if (!next) return;
    state.early.delete(next.revision);
    apply(next);
  }
}

// Apply one server edit (revision === state.revision + 1).
function apply(edit) {
  if (edit.revision !== state.revision + 1) return;
  state.revision = edit.revision;
  state.server = ot.apply(state.server, edit.op);
  state.editsSeen += 1;
  state.log.push({ revision: edit.revision, op: edit.op });
  if (state.log.length > LOG_KEEP) state.log.shift();
  if (state.sent && edit.author === author && edit.seq === state.sentSeq) {
    // Our own edit, sequenced: the acknowledgement. Send what we typed meanwhile.
    state.sent = state.buffer;
    state.buffer = null;
    state.resend = false;
    if (state.sent) send();
    else publishCursor();
  } else {
    let op = edit.op;
    if (state.sent) [state.sent, op] = ot.transform(state.sent, op);
    if (state.buffer) [state.buffer, op] = ot.transform(state.buffer, op);
    setText(ot.apply(state.doc, op), op);
  }
  updateInfo();
  render();
}

// A local change of the textarea.
function onInput() {
  if (!state.loaded) return;
  let value = textarea.value;
  if (value.isWellFormed && !value.isWellFormed()) {
    // Half an emoji (a lone surrogate) can't be sent as JSON: replace it, like the server would.
    const { selectionStart, selectionEnd } = textarea;
    value = value.toWellFormed();
    textarea.value = value;
    textarea.setSelectionRange(selectionStart, selectionEnd);
  }
  if (value === state.doc) return;
  const op = ot.diff(state.doc, value, textarea.selectionEnd);
  state.doc = value;
  if (!state.sent) {
    state.sent = op;
    send();
  } else {
    state.buffer = state.buffer ? ot.compose(state.buffer, op) : op;
  }
  updateInfo();
  render();
}

function send() {
  state.seq += 1;
  state.sentSeq = state.seq;
  state.resend = false;
  transmit();
}

function transmit() {
  if (state.syncing || client.state !== "connected") {
    state.resend = true; // after the reconnect's catch-up
    return;
  }
  const edit = {
    doc: DOC,
    revision: state.revision,
    op: state.sent,
    author,
    seq: state.sentSeq,
  };
  client.rpc("collab.edit", edit).catch((err) => {
    if (err.code === 0) {
      // No answer: the connection dropped (we resend after the reconnect's catch-up) or the
      // reply timed out (catch up now: it tells whether the edit went through).
      state.resend = true;
      if (client.state === "connected") catchUp();
    } else {
      console.warn("collab: edit refused, reloading", err);
      state.loaded = false;
      catchUp();
    }
  });
  syncBadge();
}

function flush() {
  if (state.sent && state.resend) transmit();
  syncBadge();
}

// Replace the textarea's text, keeping the local selection (moved through `op`).
function setText(text, op) {
  const { selectionStart, selectionEnd, selectionDirection, scrollTop } = textarea;
  const focused = document.activeElement === textarea;
  state.doc = text;
  textarea.value = text;
  if (op && focused) {
    textarea.setSelectionRange(
      ot.transformIndex(op, selectionStart),
      ot.transformIndex(op, selectionEnd),
      selectionDirection,
    );
  }
  textarea.scrollTop = scrollTop;
}

// -- cursors -----------------------------------------------------------------------------------

const cursors = new Map(); // client id -> {name, revision, anchor, head, at}
let cursorTimer = null;
let lastCursor = "";

// Publish our selection, relative to a server revision: only when nothing is unconfirmed
// (others can't see our pending edits, so positions in our text would mislead them).
function publishCursor() {
  if (cursorTimer) return;
  cursorTimer = setTimeout(() => {
    cursorTimer = null;
    if (!state.loaded || state.sent || state.buffer || client.state !== "connected") return;
    const focused = document.activeElement === textarea;
    const data = focused
      ? { revision: state.revision, anchor: textarea.selectionStart, head: textarea.selectionEnd }
      : { revision: state.revision, anchor: null, head: null };
    const key = JSON.stringify(data);
    if (key === lastCursor) return;
    lastCursor = key;
    cursorSub.publish(data, { key: client.clientId }).catch(() => {});
  }, 40);
}

function remoteCursor(pub) {
  const who = pub.info?.client;
  if (!who || who === client.clientId) return;
  const { revision, anchor, head } = pub.data ?? {};
  if (anchor === null || anchor === undefined) {
    cursors.delete(who);
  } else {
    cursors.set(who, {
      name: pub.info?.info?.name || "guest",
      revision,
      anchor,
      head,
      at: performance.now(),
    });
  }
  render();
  renderPeople();
}

// Move a position from server revision `revision` to our textarea's text, or null if unknown.
function localPosition(revision, index) {
  if (revision > state.revision) return null; // their edit hasn't reached us yet
  if (revision < state.revision) {
    const first = state.log.length ? state.log[0].revision : state.revision + 1;
    if (revision + 1 < first) return null;
    for (const { revision: r, op } of state.log) if (r > revision) index = ot.transformIndex(op, index);
  }
  if (state.sent) index = ot.transformIndex(state.sent, index);
  if (state.buffer) index = ot.transformIndex(state.buffer, index);
  return Math.max(0, Math.min(index, state.doc.length));
}

let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    drawOverlay();
  });
}

// Rebuild the mirror: the text (transparent) cut at every caret and selection edge.
function drawOverlay() {
  const text = state.doc;
  const marks = []; // {pos, kind: "start"|"end"|"caret", hue, name, idle}
  const now = performance.now();
  for (const [id, c] of cursors) {
    const a = localPosition(c.revision, c.anchor);
    const h = localPosition(c.revision, c.head);
    if (a === null || h === null) continue;
    const hue = hueOf(id);
    const idle = now - c.at > 4000;
    if (a !== h) {
      marks.push({ pos: Math.min(a, h), kind: "start", hue });
      marks.push({ pos: Math.max(a, h), kind: "end", hue });
    }
    marks.push({ pos: h, kind: "caret", hue, name: c.name, idle });
  }
  marks.sort((x, y) => x.pos - y.pos || (x.kind === "end" ? -1 : 1));
  const frag = document.createDocumentFragment();
  const open = []; // hues of the selections covering the current stretch
  let pos = 0;
  const emit = (until) => {
    if (until <= pos) return;
    const chunk = text.slice(pos, until);
    if (open.length) {
      const span = document.createElement("span");
      span.className = "sel";
      span.style.setProperty("--hue", open[open.length - 1]);
      span.textContent = chunk;
      frag.append(span);
    } else {
      frag.append(chunk);
    }
    pos = until;
  };
  for (const m of marks) {
    emit(m.pos);
    if (m.kind === "start") open.push(m.hue);
    else if (m.kind === "end") open.splice(open.lastIndexOf(m.hue), 1);
    else {
      const caret = document.createElement("span");
      caret.className = m.idle ? "caret idle" : "caret";
      caret.style.setProperty("--hue", m.hue);
      const flag = document.createElement("span");
      flag.className = "flag";
      flag.textContent = m.name;
      caret.append(flag);
      frag.append(caret);
    }
  }
  emit(text.length);
  frag.append("\u200b"); // keeps a caret after a final newline on its own line
  overlay.replaceChildren(frag);
  overlay.style.width = `${textarea.clientWidth}px`;
  overlay.scrollTop = textarea.scrollTop;
}

// -- people --------------------------------------------------------------------------------------

const people = new Map(); // client id -> name

async function refreshPeople() {
  try {
    const clients = await docSub.presence();
    people.clear();
    for (const [id, c] of Object.entries(clients)) people.set(id, c.info?.name || "guest");
    for (const id of cursors.keys()) if (!people.has(id)) cursors.delete(id);
  } catch (err) {
    console.warn("collab: presence failed", err);
  }
  renderPeople();
  render();
}

function addPerson(info) {
  people.set(info.client, info.info?.name || "guest");
  renderPeople();
}

function removePerson(id) {
  people.delete(id);
  cursors.delete(id);
  renderPeople();
  render();
}

function renderPeople() {
  const list = $("people");
  const items = [...people].sort(([a], [b]) =>
    a === client.clientId ? -1 : b === client.clientId ? 1 : 0,
  );
  list.replaceChildren(
    ...items.map(([id, who]) => {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.setProperty("--hue", hueOf(id));
      const label = document.createElement("span");
      label.className = "who";
      label.textContent = id === client.clientId ? `${who} (you)` : who;
      const where = document.createElement("span");
      where.className = "where";
      const c = cursors.get(id);
      const pos = c ? localPosition(c.revision, c.head) : null;
      if (id === client.clientId && document.activeElement === textarea) {
        where.textContent = `line ${lineOf(textarea.selectionEnd)}`;
      } else if (pos !== null) {
        where.textContent = `line ${lineOf(pos)}`;
      }
      li.append(dot, label, where);
      return li;
    }),
  );
  $("people-count").textContent = String(people.size);
}

function lineOf(index) {
  let line = 1;
  for (let i = 0; i < index && i < state.doc.length; i++) if (state.doc.charCodeAt(i) === 10) line++;
  return line;
}

// -- page chrome -----------------------------------------------------------------------------

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function hueOf(text) {
  let h = 7;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function initials(text) {
  const parts = text.trim().split(/\s+/);
  return ((parts[0]?.[0] ?? "?") + (parts[1]?.[0] ?? "")).toUpperCase();
}

function showMe() {
  $("me-name").textContent = name;
  $("me-avatar").textContent = initials(name);
  $("me-avatar").style.setProperty("--hue", hueOf(name));
}

function updateInfo() {
  $("doc-name").textContent = DOC;
  $("stat-rev").textContent = String(state.revision);
  $("stat-chars").textContent = state.doc.length.toLocaleString();
  $("stat-ops").textContent = String(state.editsSeen);
  const lines = state.doc.split("\n").length;
  $("doc-info").textContent = `${lines} lines · revision ${state.revision} · shared with everyone on this page`;
  syncBadge();
}

function syncBadge() {
  const el = $("sync");
  const stateName =
    client.state !== "connected" ? "offline" : state.sent || state.buffer ? "saving" : "synced";
  el.dataset.state = stateName;
  el.textContent = { offline: "offline", saving: "saving…", synced: "saved" }[stateName];
}

client.on("state", (s) => {
  const el = $("status");
  el.dataset.state = s;
  el.textContent = { connected: "live", connecting: "connecting…" }[s] ?? "offline";
  syncBadge();
});
client.on("connected", () => {
  showMe();
  renderPeople();
});

textarea.addEventListener("input", onInput);
textarea.addEventListener("scroll", () => {
  overlay.scrollTop = textarea.scrollTop;
});
for (const event of ["keyup", "mouseup", "focus", "blur", "select"]) {
  textarea.addEventListener(event, () => {
    publishCursor();
    renderPeople();
  });
}
document.addEventListener("selectionchange", () => {
  if (document.activeElement === textarea) publishCursor();
});
new ResizeObserver(() => render()).observe(textarea);
setInterval(render, 1000); // fade idle flags

$("rename").addEventListener("click", () => {
  const next = prompt("Your name, as others see it:", name)?.trim();
  if (!next) return;
  name = next.slice(0, 32);
  localStorage.setItem("wsend-name", name);
  client.options.data = { name };
  client.disconnect();
  client.connect(); // presence and cursors carry the new name after reconnecting
  showMe();
});

$("copy-link").addEventListener("click", async () => {
  const url = `${location.origin}${location.pathname}?doc=${encodeURIComponent(DOC)}`;
  try {
    await navigator.clipboard.writeText(url);
    $("copy-link").textContent = "Copied!";
  } catch {
    prompt("Share this link:", url);
  }
  setTimeout(() => ($("copy-link").textContent = "Copy link"), 1500);
});

localStorage.setItem("wsend-name", name);
showMe();
updateInfo();
client.connect();

// For tests and the curious (open the console): the state of this page.
window.collab = {
  client,
  state,
  text: () => state.doc,
  synced: () => state.loaded && !state.syncing && !state.sent && !state.buffer,
};
