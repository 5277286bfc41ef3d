// The chat page: rooms are channels "chat:<room>", typing events go to "chat-typing:<room>"
// (no history). Everything else (presence, join/leave, history, recovery after a reconnect)
// comes from the hub through wsend.js. See src/wsend/apps/chat.py for the namespaces.

import { Client } from "/wsend.js";
import { clientOptions, explainRefusals } from "/demo.js";

const ROOMS = ["lobby", "python", "random"];
const HISTORY = 50; // messages shown when entering a room
const TYPING_EVERY = 2000; // ms between two typing events while typing
const TYPING_SHOWN = 3500; // ms a typing indicator stays without a new event

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let name = params.get("name") || localStorage.getItem("wsend-chat-name");
// Who wrote a message, across reloads of this tab: a random id sent with each message (the
// client id changes at each connection; sessionStorage is per tab and survives a reload).
const me = sessionStorage.getItem("wsend-chat-me") || Math.random().toString(36).slice(2, 10);
sessionStorage.setItem("wsend-chat-me", me);
const GROUP_WITHIN = 3 * 60 * 1000; // ms: consecutive messages of one author share a header
let room = cleanRoom(location.hash.slice(1)) || "lobby";
let client = null;
let roomSub = null;
let roomEpoch = null; // the epoch of the room's offsets on screen
let typingSub = null;
let people = new Map(); // client id -> name
let typists = new Map(); // client id -> {name, timer}
let lastTypingSent = 0;
let quietUntil = 0; // no join notices until then: people reconnecting along with us

// -- helpers -----------------------------------------------------------------------------------

function cleanRoom(value) {
  return (value || "").toLowerCase().replace(/[^a-z0-9_-]/g, "").slice(0, 40);
}

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function initials(text) {
  const parts = text.trim().split(/\s+/);
  return ((parts[0]?.[0] ?? "?") + (parts[1]?.[0] ?? "")).toUpperCase();
}

function avatar(text) {
  const el = document.createElement("span");
  el.className = "avatar";
  el.style.setProperty("--hue", hue(text));
  el.textContent = initials(text);
  return el;
}

function timeOf(ts) {
  const date = ts ? new Date(ts) : new Date();
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function nameOf(info) {
  return info?.info?.name || info?.user || "guest";
}

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

// -- rendering ---------------------------------------------------------------------------------

// What a publication says: {text, name} from the page; anything else a backend or another
// client published (a string, a number, an object) is shown as it is.
function textOf(data) {
  if (data !== null && typeof data === "object" && "text" in data) return String(data.text);
  return typeof data === "string" ? data : JSON.stringify(data);
}

function messageNode(pub) {
  const raw = pub.data ?? null;
  const data = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? raw : {};
  const who = String(data.name || (pub.info ? nameOf(pub.info) : "server"));
  const mine =
    (pub.info?.client && pub.info.client === client.clientId) || (pub.info && data.from === me);
  const li = document.createElement("li");
  li.className = "message" + (mine ? " mine" : "") + (pub.info ? "" : " server");
  if (typeof pub.offset === "number") li.dataset.offset = pub.offset;
  li.dataset.author = `${pub.info ? "c" : "s"}:${data.from ?? ""}:${who}`;
  li.dataset.ts = String(Number(data.ts) || 0);
  const body = document.createElement("div");
  body.className = "bubble-wrap";
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("strong");
  author.textContent = mine ? "You" : who;
  const time = document.createElement("time");
  time.textContent = timeOf(data.ts);
  meta.append(author, time);
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = textOf(raw);
  body.append(meta, bubble);
  li.append(avatar(who), body);
  return li;
}

// Consecutive messages of one author within a few minutes form a group: the name and time on
// the first, the avatar beside the last.
function regroup() {
  let prev = null;
  for (const li of $("messages").children) {
    const message = li.classList.contains("message");
    const cont =
      message &&
      prev?.classList.contains("message") &&
      prev.dataset.author === li.dataset.author &&
      Math.abs(Number(li.dataset.ts) - Number(prev.dataset.ts)) < GROUP_WITHIN;
    if (message) {
      li.classList.toggle("cont", cont);
      li.classList.remove("has-next");
    }
    if (cont) prev.classList.add("has-next");
    prev = li;
  }
}

function updateEmpty() {
  $("empty").hidden = $("messages").querySelector(".message") !== null;
}

function showMessage(pub) {
  $("empty").hidden = true;
  const list = $("messages");
  const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(messageNode(pub));
  regroup();
  if (nearEnd || pub.info?.client === client.clientId) scrollToEnd();
}

function notice(text, kind = "") {
  const li = document.createElement("li");
  li.className = "notice " + kind;
  li.textContent = text;
  $("messages").append(li);
  scrollToEnd();
}

function renderPeople() {
  const list = $("people");
  list.replaceChildren();
  const entries = [...people.entries()].sort((a, b) => a[1].localeCompare(b[1]));
  for (const [id, who] of entries) {
    const li = document.createElement("li");
    li.dataset.client = id;
    const label = document.createElement("span");
    label.textContent = who + (id === client.clientId ? " (you)" : "");
    li.append(avatar(who), label);
    list.append(li);
  }
  $("people-count").textContent = people.size;
  $("room-info").textContent =
    people.size === 1 ? "Just you here" : `${people.size} people here`;
}

function renderTyping() {
  const names = [...typists.values()].map((t) => t.name);
  const el = $("typing");
  if (!names.length) {
    el.textContent = "";
    el.classList.remove("on");
    return;
  }
  const who =
    names.length === 1
      ? names[0]
      : names.length === 2
        ? `${names[0]} and ${names[1]}`
        : `${names.length} people`;
  el.textContent = `${who} ${names.length === 1 ? "is" : "are"} typing`;
  el.classList.add("on");
}

function renderRooms(counts = {}) {
  const list = $("room-list");
  list.replaceChildren();
  const names = [...new Set([...ROOMS, room])];
  const select = $("room-select");
  select.replaceChildren(
    ...names.map((r) => new Option(`# ${r}${counts[r] ? ` (${counts[r]})` : ""}`, r, false, r === room)),
  );
  for (const r of names) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#${r}`;
    a.className = r === room ? "active" : "";
    a.innerHTML = `<span># <span class="room-label"></span></span>`;
    a.querySelector(".room-label").textContent = r;
    if (counts[r]) {
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = counts[r];
      a.append(count);
    }
    li.append(a);
    list.append(li);
  }
}

let roomsTimer = null;
function refreshRoomsSoon() {
  clearTimeout(roomsTimer);
  roomsTimer = setTimeout(refreshRooms, 300);
}

async function refreshRooms() {
  try {
    const { rooms } = await client.rpc("chat.rooms");
    renderRooms(rooms);
  } catch {
    renderRooms();
  }
}

function showPeople(on) {
  document.body.classList.toggle("show-people", on);
  $("room-info").setAttribute("aria-expanded", String(on));
}

function banner(text) {
  const el = $("banner");
  el.hidden = !text;
  el.textContent = text || "";
}

// -- the room ----------------------------------------------------------------------------------

// Entering a room: the latest messages go above whatever arrived meanwhile.
async function loadHistory() {
  const list = $("messages");
  const { publications } = await roomSub.history({ limit: HISTORY, reverse: true });
  const shown = new Set([...list.querySelectorAll("[data-offset]")].map((n) => n.dataset.offset));
  const older = publications.reverse().filter((p) => !shown.has(String(p.offset)));
  const nodes = older.map((pub) => messageNode(pub));
  if (nodes.length) {
    const divider = document.createElement("li");
    divider.className = "notice history";
    divider.textContent = `Earlier messages`;
    list.prepend(divider, ...nodes);
    regroup();
  }
  updateEmpty();
  scrollToEnd();
}

// Back after a gap recovery couldn't fill: keep what is on screen, say so, and add the
// messages of the history newer than those shown. If the room's epoch changed (the server
// restarted and lost its memory), offsets start again: the old ones mean nothing anymore.
async function catchUp(epochChanged) {
  const list = $("messages");
  if (epochChanged) for (const li of list.querySelectorAll("[data-offset]")) delete li.dataset.offset;
  notice(
    epochChanged
      ? "Reconnected · the server restarted: messages sent meanwhile may be missing"
      : "Reconnected · some messages were missed, showing the latest",
    "warn",
  );
  const { publications } = await roomSub.history({ limit: HISTORY, reverse: true });
  const offsets = [...list.querySelectorAll("[data-offset]")].map((n) => Number(n.dataset.offset));
  const last = Math.max(0, ...offsets);
  const newer = publications.reverse().filter((p) => p.offset > last);
  list.append(...newer.map((pub) => messageNode(pub)));
  regroup();
  updateEmpty();
  scrollToEnd();
}

async function loadPresence() {
  const clients = await roomSub.presence();
  people = new Map(Object.entries(clients).map(([id, c]) => [id, nameOf(c)]));
  renderPeople();
}

function enterRoom(next) {
  if (roomSub) roomSub.unsubscribe();
  if (typingSub) typingSub.unsubscribe();
  room = next;
  roomEpoch = null;
  people.clear();
  typists.clear();
  renderTyping();
  $("messages").replaceChildren();
  $("empty").hidden = true;
  $("room-name").textContent = room;
  $("text").placeholder = `Message #${room}`;
  document.title = `#${room} · Chat · wsend`;
  renderRooms();

  roomSub = client.subscribe(`chat:${room}`, {
    publication: (pub) => showMessage(pub),
    join: (info) => {
      people.set(info.client, nameOf(info));
      renderPeople();
      if (Date.now() > quietUntil) notice(`${nameOf(info)} joined`, "join");
      refreshRoomsSoon();
    },
    leave: (info) => {
      people.delete(info.client);
      renderPeople();
      stopTyping(info.client);
      notice(`${nameOf(info)} left`, "leave");
      refreshRoomsSoon();
    },
    subscribed: async (ctx) => {
      const epochChanged = roomEpoch !== null && ctx.epoch !== roomEpoch;
      roomEpoch = ctx.epoch ?? null;
      if (ctx.wasRecovering) quietUntil = Date.now() + 3000;
      if (ctx.wasRecovering && ctx.recovered) {
        const missed = ctx.publications?.length ?? 0;
        banner("");
        if (missed) notice(`Reconnected · caught up on ${missed} missed message${missed > 1 ? "s" : ""}`, "ok");
        else notice("Reconnected", "ok");
      } else if (ctx.wasRecovering) {
        banner("");
        await catchUp(epochChanged);
      } else {
        await loadHistory();
      }
      await loadPresence();
      refreshRooms();
    },
    error: (err) => notice(`Could not join #${room}: ${err.message}`, "warn"),
  });

  typingSub = client.subscribe(`chat-typing:${room}`, {
    publication: (pub) => {
      const id = pub.info?.client;
      if (!id || id === client.clientId) return;
      if (pub.data?.typing === false) stopTyping(id);
      else startTyping(id, String(pub.data?.name || nameOf(pub.info)));
    },
  });
}

function startTyping(id, who) {
  clearTimeout(typists.get(id)?.timer);
  typists.set(id, { name: who, timer: setTimeout(() => stopTyping(id), TYPING_SHOWN) });
  renderTyping();
}

function stopTyping(id) {
  const typist = typists.get(id);
  if (!typist) return;
  clearTimeout(typist.timer);
  typists.delete(id);
  renderTyping();
}

// -- sending -----------------------------------------------------------------------------------

async function send() {
  const input = $("text");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  autosize();
  lastTypingSent = 0;
  // While reconnecting, the message waits (wsend.js sends it once connected): show it greyed.
  const waiting = client.state === "connected" ? null : pendingNode(text);
  if (client.state === "connected") typingSub.publish({ name, typing: false }).catch(() => {});
  try {
    await roomSub.publish({ text, name, ts: Date.now(), from: me });
  } catch (err) {
    if (!input.value) input.value = text; // keep it, to retry
    notice(`Not sent: ${err.message}`, "warn");
  } finally {
    waiting?.remove();
    regroup();
  }
  input.focus();
}

function pendingNode(text) {
  const li = messageNode({ data: { text, name, from: me }, info: { client: client.clientId } });
  li.classList.add("pending");
  li.querySelector("time").textContent = "waiting for the connection…";
  $("messages").append(li);
  $("empty").hidden = true;
  regroup();
  scrollToEnd();
  return li;
}

function typing() {
  const now = Date.now();
  if (client.state !== "connected" || now - lastTypingSent < TYPING_EVERY) return;
  lastTypingSent = now;
  typingSub.publish({ name, typing: true }).catch(() => {});
}

function autosize() {
  const input = $("text");
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 160) + "px";
}

// -- start -------------------------------------------------------------------------------------

function start() {
  $("me-name").textContent = name;
  $("me-avatar").replaceWith(Object.assign(avatar(name), { id: "me-avatar" }));

  client = new Client(clientOptions({ data: { name } }));
  explainRefusals(client);
  client.on("state", (state) => {
    document.body.classList.toggle("offline", state !== "connected");
    const status = $("status");
    status.dataset.state = state;
    status.textContent =
      state === "connected" ? "connected" : state === "connecting" ? "reconnecting…" : state;
  });
  client.on("disconnected", ({ reconnect }) => {
    banner(reconnect ? "Connection lost — reconnecting…" : "Disconnected");
  });
  client.connect();
  enterRoom(room);
  setInterval(() => client.state === "connected" && refreshRooms(), 15000);

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("text").addEventListener("input", () => {
    autosize();
    typing();
  });
  $("room-select").addEventListener("change", (e) => {
    location.hash = e.target.value;
  });
  $("room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const next = cleanRoom($("room-input").value);
    $("room-input").value = "";
    if (next) location.hash = next;
  });
  window.addEventListener("hashchange", () => {
    const next = cleanRoom(location.hash.slice(1)) || "lobby";
    if (next !== room) enterRoom(next);
  });
  const rename = () => {
    localStorage.removeItem("wsend-chat-name");
    const url = new URL(location.href);
    url.searchParams.delete("name");
    location.href = url.toString();
  };
  $("rename").addEventListener("click", rename);
  $("rename-narrow").addEventListener("click", rename);
  // On small screens the people list is a panel opened from the room's header.
  $("room-info").addEventListener("click", (e) => {
    e.stopPropagation();
    showPeople(!document.body.classList.contains("show-people"));
  });
  document.addEventListener("click", (e) => {
    if (!$("people-panel").contains(e.target)) showPeople(false);
  });
  document.addEventListener("keydown", (e) => e.key === "Escape" && showPeople(false));
  $("text").focus();
}

if (name) {
  start();
} else {
  const dialog = $("name-dialog");
  dialog.showModal();
  $("name-form").addEventListener("submit", () => {
    name = $("name-input").value.trim().slice(0, 32) || "guest";
    localStorage.setItem("wsend-chat-name", name);
    start();
  });
}
