// The collab page: a shared text document edited with Yjs, live cursors through awareness.
//
// The document is a Y.Text ("text") synchronized with unmodified yjs + y-websocket (bundled in
// /collab/yjs.js by scripts/build-yjs) through the hub's y-websocket endpoint, /yjs/<room>:
// the server keeps the document (pycrdt, stored on disk), relays updates to the other pages
// (on every node) and sends late joiners the whole document. Concurrent edits converge
// because Yjs is a CRDT; nothing here resolves conflicts.
//
// This page:
//   - turns each change of the textarea into a delete + insert on the Y.Text;
//   - applies the others' changes to the textarea, moving the local selection through them;
//   - shares its name, color and selection (as Yjs relative positions) in its awareness
//     state, and draws the others' carets and selections over the textarea.

import * as Y from "/collab/yjs.js";
import { WebsocketProvider } from "/collab/yjs.js";
import { pageToken, showRefusal } from "/demo.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DOC = (params.get("doc") || "pad").replace(/[^A-Za-z0-9_-]/g, "").slice(0, 32) || "pad";
const ROOM = `collab.${DOC}`; // the hub channel yjs:collab.<doc>
const ADJECTIVES = ["Swift", "Quiet", "Brave", "Clever", "Sunny", "Lucky", "Witty", "Calm"];
const ANIMALS = ["Otter", "Falcon", "Panda", "Lynx", "Koala", "Heron", "Fox", "Whale"];
const LOCAL = Symbol("local textarea");

let name = (
  params.get("name") ||
  localStorage.getItem("wsend-name") ||
  `${pick(ADJECTIVES)} ${pick(ANIMALS)}`
).slice(0, 32);

const textarea = $("text");
const overlay = $("overlay");

const doc = new Y.Doc();
const ytext = doc.getText("text");
const token = pageToken();
const scheme = location.protocol === "https:" ? "wss" : "ws";
const provider = new WebsocketProvider(`${scheme}://${location.host}/yjs`, ROOM, doc, {
  params: token ? { token } : {},
  disableBc: true, // every page talks to the server, as pages in other browsers do
});
const awareness = provider.awareness;
let shown = ""; // what the textarea shows: always ytext's text
let updates = 0;

// -- the text --------------------------------------------------------------------------------

// A local change of the textarea: replace the changed stretch (between the common prefix and
// suffix) in the Y.Text. Never cuts an emoji in two (UTF-16 surrogate pairs).
function onInput() {
  const value = textarea.value;
  if (value === shown) return;
  let start = 0;
  const max = Math.min(value.length, shown.length);
  while (start < max && value.charCodeAt(start) === shown.charCodeAt(start)) start++;
  let end = 0;
  while (
    end < max - start &&
    value.charCodeAt(value.length - 1 - end) === shown.charCodeAt(shown.length - 1 - end)
  ) {
    end++;
  }
  if (start > 0 && isLowSurrogate(shown.charCodeAt(start))) start--;
  if (end > 0 && isLowSurrogate(shown.charCodeAt(shown.length - end))) end--;
  const removed = shown.length - start - end;
  const inserted = value.slice(start, value.length - end);
  doc.transact(() => {
    if (removed) ytext.delete(start, removed);
    if (inserted) ytext.insert(start, inserted);
  }, LOCAL);
  shown = value;
  publishCursor();
  updateInfo();
}

function isLowSurrogate(code) {
  return code >= 0xdc00 && code <= 0xdfff;
}

// A change of the Y.Text made elsewhere: show it, moving the local selection through it.
ytext.observe((event, transaction) => {
  updates += 1;
  if (transaction.origin === LOCAL) return;
  const { selectionStart, selectionEnd, selectionDirection, scrollTop } = textarea;
  const focused = document.activeElement === textarea;
  const move = (index) => {
    let pos = 0;
    let moved = index;
    for (const op of event.delta) {
      if (op.retain !== undefined) pos += op.retain;
      else if (op.insert !== undefined) {
        if (pos <= index) moved += op.insert.length;
        pos += op.insert.length;
      } else if (op.delete !== undefined) {
        if (pos < index) moved -= Math.min(op.delete, index - pos);
      }
      if (pos > index) break;
    }
    return Math.max(0, moved);
  };
  shown = ytext.toString();
  textarea.value = shown;
  if (focused) textarea.setSelectionRange(move(selectionStart), move(selectionEnd), selectionDirection);
  textarea.scrollTop = scrollTop;
  updateInfo();
  render();
});

// -- awareness: who's here and their cursors ----------------------------------------------------

let cursorTimer = null;

function publishCursor() {
  if (cursorTimer) return;
  cursorTimer = setTimeout(() => {
    cursorTimer = null;
    const focused = document.activeElement === textarea;
    const at = (index) => Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, index));
    awareness.setLocalStateField(
      "cursor",
      focused ? { anchor: at(textarea.selectionStart), head: at(textarea.selectionEnd) } : null,
    );
    renderPeople();
  }, 40);
}

function absolute(json) {
  if (!json) return null;
  const position = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc);
  return position && position.type === ytext ? Math.min(position.index, shown.length) : null;
}

function others() {
  const result = [];
  for (const [id, state] of awareness.getStates()) {
    if (id !== doc.clientID && state.user) result.push([id, state]);
  }
  return result;
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
  const text = shown;
  const marks = []; // {pos, kind: "start"|"end"|"caret", hue, name}
  for (const [, state] of others()) {
    const a = absolute(state.cursor?.anchor);
    const h = absolute(state.cursor?.head);
    if (a === null || h === null) continue;
    const hue = state.user.hue ?? hueOf(state.user.name ?? "");
    if (a !== h) {
      marks.push({ pos: Math.min(a, h), kind: "start", hue });
      marks.push({ pos: Math.max(a, h), kind: "end", hue });
    }
    marks.push({ pos: h, kind: "caret", hue, name: state.user.name ?? "guest" });
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
      caret.className = "caret";
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

function renderPeople() {
  const me = [doc.clientID, awareness.getLocalState() ?? {}];
  const items = [me, ...others()];
  $("people").replaceChildren(
    ...items.map(([id, state]) => {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.setProperty("--hue", state.user?.hue ?? hueOf(state.user?.name ?? ""));
      const label = document.createElement("span");
      label.className = "who";
      const who = state.user?.name ?? "guest";
      label.textContent = id === doc.clientID ? `${who} (you)` : who;
      const where = document.createElement("span");
      where.className = "where";
      const pos =
        id === doc.clientID
          ? document.activeElement === textarea
            ? textarea.selectionEnd
            : null
          : absolute(state.cursor?.head);
      if (pos !== null) where.textContent = `line ${lineOf(pos)}`;
      li.append(dot, label, where);
      return li;
    }),
  );
  $("people-count").textContent = String(items.length);
}

awareness.on("change", () => {
  renderPeople();
  render();
});

// -- page chrome -------------------------------------------------------------------------------

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

function lineOf(index) {
  let line = 1;
  for (let i = 0; i < index && i < shown.length; i++) if (shown.charCodeAt(i) === 10) line++;
  return line;
}

function showMe() {
  $("me-name").textContent = name;
  $("me-avatar").textContent = initials(name);
  $("me-avatar").style.setProperty("--hue", hueOf(name));
  awareness.setLocalStateField("user", { name, hue: hueOf(name) });
}

function updateInfo() {
  $("doc-name").textContent = DOC;
  $("stat-updates").textContent = String(updates);
  $("stat-chars").textContent = shown.length.toLocaleString();
  $("stat-lines").textContent = String(shown.split("\n").length);
  $("doc-info").textContent = `${shown.split("\n").length} lines · shared with everyone on this page`;
  syncBadge();
}

function syncBadge() {
  const el = $("sync");
  const state = !provider.wsconnected ? "offline" : provider.synced ? "synced" : "saving";
  el.dataset.state = state;
  el.textContent = { offline: "offline", saving: "syncing…", synced: "synced" }[state];
}

provider.on("status", ({ status }) => {
  const el = $("status");
  el.dataset.state = status;
  el.textContent = { connected: "live", connecting: "connecting…" }[status] ?? "offline";
  syncBadge();
});

provider.on("sync", (synced) => {
  if (synced) {
    shown = ytext.toString();
    if (textarea.value !== shown) textarea.value = shown;
    textarea.disabled = false;
    publishCursor();
  }
  updateInfo();
  render();
});

// The server refused this page: a missing, invalid or expired token (?token=JWT).
provider.on("connection-close", (event) => {
  if (event && [4401, 4403, 4004].includes(event.code)) {
    showRefusal(event.code === 4004, event.reason);
  }
});

textarea.addEventListener("input", onInput);
textarea.addEventListener("scroll", () => {
  overlay.scrollTop = textarea.scrollTop;
});
for (const event of ["keyup", "mouseup", "focus", "blur", "select"]) {
  textarea.addEventListener(event, publishCursor);
}
document.addEventListener("selectionchange", () => {
  if (document.activeElement === textarea) publishCursor();
});
new ResizeObserver(() => render()).observe(textarea);

$("rename").addEventListener("click", () => {
  const next = prompt("Your name, as others see it:", name)?.trim();
  if (!next) return;
  name = next.slice(0, 32);
  localStorage.setItem("wsend-name", name);
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

// For tests and the curious (open the console): the page's Yjs objects.
window.collab = {
  doc,
  provider,
  text: () => ytext.toString(),
  synced: () => provider.wsconnected && provider.synced && textarea.value === ytext.toString(),
};
