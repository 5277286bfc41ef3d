// The arena page. The server (src/wsend/apps/game.py) runs the world and publishes it 30 times
// a second on "game:arena" (conflated: a slow tab only gets the newest state). This page:
//   - joins with RPC game.join and sends its direction with RPC game.input when a key changes;
//   - measures its round trip with the hub's ping command and reports it (shown to everyone);
//   - draws the world 100 ms in the past, interpolating between the two states around that
//     moment, so dots glide smoothly even when states arrive unevenly.

import { Client } from "/wsend.js";
import { clientOptions, explainRefusals } from "/demo.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const RENDER_DELAY = 100; // ms behind the newest state: room for jitter
const ADJECTIVES = ["Swift", "Quiet", "Brave", "Clever", "Sunny", "Lucky", "Witty", "Calm"];
const ANIMALS = ["Otter", "Falcon", "Panda", "Lynx", "Koala", "Heron", "Fox", "Whale"];

let name =
  params.get("name") ||
  localStorage.getItem("wsend-name") ||
  localStorage.getItem("wsend-chat-name") ||
  `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
let world = { width: 1200, height: 720, radius: 16, winningScore: 50, tickRate: 30 };
let me = null; // my player id (= my client id) once joined
let rtt = null;

// -- receiving the world -------------------------------------------------------------------------

const states = []; // recent states, oldest first: {t, round, winner, players: Map, coins}
let clockOffset = null; // local ms - server ms, from the fastest arrival seen
let latest = null;
let received = 0;
let receivedRate = 0;
let lastSize = 0;
const effects = []; // floating "+1"s: {x, y, text, color, born}

const client = new Client(clientOptions({ data: { name } }));
explainRefusals(client);
client.subscribe("game:arena", {
  recoverGaps: false, // conflated: offsets skip on purpose
  publication: (pub) => onState(pub.data),
  subscribed: () => join(),
});

function onState(data) {
  const now = performance.now();
  received += 1;
  const players = new Map();
  for (const [id, pname, color, x, y, score, prtt] of data.players) {
    players.set(id, { id, name: pname, color, x, y, score, rtt: prtt });
  }
  const state = { t: data.t, round: data.round, winner: data.winner, players, coins: data.coins };
  // The offset between our clock and the server's: the smallest (local - server) seen is the
  // least delayed state. Let it creep up slowly so a clock drift or a path change is followed.
  const offset = now - data.t;
  clockOffset = clockOffset === null ? offset : Math.min(offset, clockOffset + 0.05);
  if (latest && data.t < latest.t) states.length = 0; // the server restarted
  states.push(state);
  while (states.length > 2 && states[1].t < now - clockOffset - RENDER_DELAY - 1000) states.shift();
  latest = state;
  for (const event of data.events ?? []) {
    if (event.type === "coin") {
      effects.push({
        x: event.x,
        y: event.y,
        text: `+${event.value}`,
        color: event.value > 1 ? "#ffd43b" : "#ffffff",
        born: now + RENDER_DELAY,
      });
      if (event.player === me && event.value > 1) buzz();
    }
  }
  lastSize = JSON.stringify(data).length;
  scheduleBoard();
}

async function join() {
  try {
    const info = await client.rpc("game.join", { name });
    world = { ...world, ...info };
    me = info.id;
    sendInput(true);
    measure();
  } catch (err) {
    showBanner("Can't join", err.message);
  }
}

// The world as it was RENDER_DELAY ms ago: players interpolated between two states.
function sample(now) {
  if (!states.length) return null;
  const t = now - clockOffset - RENDER_DELAY;
  let i = states.length - 1;
  while (i > 0 && states[i].t > t) i--;
  const a = states[i];
  const b = states[i + 1];
  if (!b || b.t <= a.t) return { ...a, players: [...a.players.values()] };
  const k = Math.max(0, Math.min(1, (t - a.t) / (b.t - a.t)));
  const players = [];
  for (const pb of b.players.values()) {
    const pa = a.players.get(pb.id);
    if (!pa || Math.hypot(pb.x - pa.x, pb.y - pa.y) > 200) {
      players.push(pb); // new, or respawned: no sliding across the map
    } else {
      players.push({ ...pb, x: pa.x + (pb.x - pa.x) * k, y: pa.y + (pb.y - pa.y) * k });
    }
  }
  return { ...b, t, players, coins: k < 0.5 ? a.coins : b.coins };
}

// -- input ---------------------------------------------------------------------------------------

const keys = new Set();
const KEYMAP = {
  ArrowLeft: "left", KeyA: "left", ArrowRight: "right", KeyD: "right",
  ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down",
}; // prettier-ignore
let pointer = null; // {x, y} in world units while touching/dragging
let lastSent = "";

function direction() {
  if (pointer && latest && latest.players.get(me)) {
    const p = latest.players.get(me);
    const dx = pointer.x - p.x;
    const dy = pointer.y - p.y;
    const d = Math.hypot(dx, dy);
    return d < 12 ? [0, 0] : [dx / d, dy / d];
  }
  const dx = (keys.has("right") ? 1 : 0) - (keys.has("left") ? 1 : 0);
  const dy = (keys.has("down") ? 1 : 0) - (keys.has("up") ? 1 : 0);
  return [dx, dy];
}

function sendInput(force = false) {
  if (!me || client.state !== "connected") return;
  const [dx, dy] = direction().map((v) => Math.round(v * 100) / 100);
  const key = `${dx},${dy}`;
  if (!force && key === lastSent) return;
  lastSent = key;
  client.rpc("game.input", { dx, dy, rtt: rtt === null ? undefined : Math.round(rtt) }).catch(() => {});
}

addEventListener("keydown", (e) => {
  const k = KEYMAP[e.code];
  if (!k || e.target.tagName === "INPUT") return;
  e.preventDefault();
  keys.add(k);
  sendInput();
});
addEventListener("keyup", (e) => {
  const k = KEYMAP[e.code];
  if (!k) return;
  keys.delete(k);
  sendInput();
});
addEventListener("blur", () => {
  keys.clear();
  pointer = null;
  sendInput();
});

function toWorld(e) {
  const r = canvas.getBoundingClientRect();
  return {
    x: ((e.clientX - r.left) / r.width) * world.width,
    y: ((e.clientY - r.top) / r.height) * world.height,
  };
}

canvas.addEventListener("pointerdown", (e) => {
  canvas.setPointerCapture(e.pointerId);
  pointer = toWorld(e);
  sendInput();
});
canvas.addEventListener("pointermove", (e) => {
  if (!pointer) return;
  pointer = toWorld(e);
  sendInput();
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    pointer = null;
    sendInput();
  });
}
// While steering by pointer, the direction changes as our dot moves: re-aim a few times a second.
setInterval(() => pointer && sendInput(), 150);

// Latency: the hub's ping command, every 2 s; reported to the server with the next input.
async function measure() {
  if (client.state !== "connected") return;
  try {
    const ms = await client.ping();
    rtt = rtt === null ? ms : rtt * 0.7 + ms * 0.3;
    $("ping").textContent = `ping ${Math.round(rtt)} ms`;
    sendInput(true);
  } catch {
    /* reconnecting */
  }
}
setInterval(measure, 2000);

setInterval(() => {
  receivedRate = received;
  received = 0;
  $("fact-states").textContent = `${receivedRate}/s`;
  $("fact-size").textContent = lastSize ? `${(lastSize / 1024).toFixed(1)} KB` : "–";
  $("fact-rate").textContent = `${world.tickRate} Hz`;
}, 1000);

// -- drawing -------------------------------------------------------------------------------------

let ui = 1; // text scale: labels stay readable when the arena is drawn small (phones)

function resize() {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  ui = r.width ? Math.min(2.6, Math.max(1, (0.75 * world.width) / r.width)) : 1;
}
new ResizeObserver(resize).observe(canvas);

function frame() {
  const now = performance.now();
  draw(now);
  requestAnimationFrame(frame);
}

function draw(now) {
  const scale = canvas.width / world.width;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  drawGrid();
  const view = clockOffset === null ? null : sample(now);
  if (!view) {
    drawText("connecting to the arena…", world.width / 2, world.height / 2, 28 * ui, "#8c93b8");
    return;
  }
  for (const [, x, y, value] of view.coins) drawCoin(x, y, value, now);
  const players = [...view.players].sort((a, b) => (a.id === me) - (b.id === me));
  for (const p of players) drawPlayer(p, now);
  drawEffects(now);
  drawText(`Round ${view.round}`, 24, 16 + 20 * ui, 20 * ui, "rgba(255,255,255,0.55)", "left");
}

function drawGrid() {
  ctx.fillStyle = "#10142a";
  ctx.fillRect(0, 0, world.width, world.height);
  ctx.strokeStyle = "rgba(255,255,255,0.045)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let x = 60; x < world.width; x += 60) {
    ctx.moveTo(x, 0);
    ctx.lineTo(x, world.height);
  }
  for (let y = 60; y < world.height; y += 60) {
    ctx.moveTo(0, y);
    ctx.lineTo(world.width, y);
  }
  ctx.stroke();
  ctx.strokeStyle = "rgba(124,58,237,0.5)";
  ctx.lineWidth = 4;
  ctx.strokeRect(2, 2, world.width - 4, world.height - 4);
}

function drawCoin(x, y, value, now) {
  const gold = value > 1;
  const r = gold ? 13 : 9;
  const bob = Math.sin(now / 300 + x) * 2;
  ctx.save();
  ctx.shadowColor = gold ? "rgba(255,200,0,0.9)" : "rgba(255,220,120,0.6)";
  ctx.shadowBlur = gold ? 22 : 12;
  const g = ctx.createRadialGradient(x - r / 3, y + bob - r / 3, 1, x, y + bob, r);
  g.addColorStop(0, "#fff7c2");
  g.addColorStop(0.5, gold ? "#ffc400" : "#ffd666");
  g.addColorStop(1, gold ? "#e08e00" : "#d9a400");
  ctx.fillStyle = g;
  ctx.beginPath();
  ctx.arc(x, y + bob, r, 0, Math.PI * 2);
  ctx.fill();
  ctx.restore();
  if (gold) drawText("5", x, y + bob + 5, 14, "#7a4a00");
}

const trails = new Map(); // player id -> recent positions

function drawPlayer(p, now) {
  const r = world.radius;
  // A short fading tail: the positions of the last 160 ms, reset on a jump (a respawn).
  let trail = trails.get(p.id) ?? [];
  const last = trail[trail.length - 1];
  if (last && Math.hypot(p.x - last.x, p.y - last.y) > 150) trail = [];
  trail.push({ x: p.x, y: p.y, t: now });
  trail = trail.filter((q) => now - q.t < 160);
  trails.set(p.id, trail);
  ctx.lineCap = "round";
  ctx.strokeStyle = p.color;
  for (let i = 1; i < trail.length; i++) {
    const k = i / trail.length;
    ctx.globalAlpha = 0.3 * k;
    ctx.lineWidth = r * 1.6 * k;
    ctx.beginPath();
    ctx.moveTo(trail[i - 1].x, trail[i - 1].y);
    ctx.lineTo(trail[i].x, trail[i].y);
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  ctx.save();
  ctx.shadowColor = p.color;
  ctx.shadowBlur = 18;
  ctx.fillStyle = p.color;
  ctx.beginPath();
  ctx.arc(p.x, p.y, r, 0, Math.PI * 2);
  ctx.fill();
  ctx.restore();
  if (p.id === me) {
    ctx.strokeStyle = "white";
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(p.x, p.y, r + 4 + Math.sin(now / 250), 0, Math.PI * 2);
    ctx.stroke();
  }
  const labelX = Math.max(50 * ui, Math.min(world.width - 50 * ui, p.x));
  const labelY = p.y - r < 26 + 14 * ui ? p.y + r + 8 + 14 * ui : p.y - r - 10;
  drawText(p.name, labelX, labelY, 14 * ui, p.id === me ? "#ffffff" : "rgba(255,255,255,0.8)");
  if (ui < 1.5) drawText(String(p.score), p.x, p.y + 5, 13, "rgba(0,0,0,0.7)");
}

function drawEffects(now) {
  for (let i = effects.length - 1; i >= 0; i--) {
    const e = effects[i];
    const age = (now - e.born) / 900;
    if (age > 1) {
      effects.splice(i, 1);
      continue;
    }
    if (age < 0) continue;
    ctx.globalAlpha = 1 - age;
    drawText(e.text, e.x, e.y - 20 - age * 40, (18 + age * 6) * ui, e.color);
  }
  ctx.globalAlpha = 1;
}

function drawText(text, x, y, size, color, align = "center") {
  ctx.font = `700 ${size}px Inter, system-ui, sans-serif`;
  ctx.textAlign = align;
  ctx.fillStyle = color;
  ctx.fillText(text, x, y);
}

// -- the leaderboard and banners -------------------------------------------------------------------

let boardQueued = false;
let shownWinner = null;

function scheduleBoard() {
  if (boardQueued) return;
  boardQueued = true;
  setTimeout(() => {
    boardQueued = false;
    renderBoard();
  }, 200);
}

function renderBoard() {
  if (!latest) return;
  const players = [...latest.players.values()].sort((a, b) => b.score - a.score);
  $("player-count").textContent = String(players.length);
  $("round-info").textContent = `Round ${latest.round} · first to ${world.winningScore} wins`;
  const mine = latest.players.get(me);
  $("my-score").textContent = mine ? String(mine.score) : "0";
  const items = players.map((p, i) => {
    const li = document.createElement("li");
    if (p.id === me) li.className = "me";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = String(i + 1);
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = p.color;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = p.id === me ? `${p.name} (you)` : p.name;
    const small = document.createElement("small");
    small.textContent = p.rtt === null || p.rtt === undefined ? "" : `${p.rtt} ms`;
    label.append(small);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = String(p.score);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.min(100, (100 * p.score) / world.winningScore)}%`;
    fill.style.background = p.color;
    bar.append(fill);
    li.append(rank, dot, label, score, bar);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.innerHTML = '<span class="empty">Nobody is playing yet.</span>';
    items.push(li);
  }
  $("board").replaceChildren(...items);
  if (latest.winner !== shownWinner) {
    shownWinner = latest.winner;
    if (shownWinner) showBanner(`${shownWinner} wins!`, "Next round in a few seconds…");
    else hideBanner();
  }
}

function showBanner(title, text) {
  const el = $("banner");
  el.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  el.append(strong, text);
  el.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// -- page chrome -----------------------------------------------------------------------------------

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function hueOf(text) {
  let h = 7;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function showMe() {
  $("me-name").textContent = name;
  const parts = name.trim().split(/\s+/);
  $("me-avatar").textContent = ((parts[0]?.[0] ?? "?") + (parts[1]?.[0] ?? "")).toUpperCase();
  $("me-avatar").style.setProperty("--hue", hueOf(name));
}

$("rename").addEventListener("click", () => {
  const next = prompt("Your name, as others see it:", name)?.trim();
  if (!next) return;
  name = next.slice(0, 20);
  localStorage.setItem("wsend-name", name);
  showMe();
  client.rpc("game.join", { name }).catch(() => {});
});

client.on("state", (s) => {
  const el = $("status");
  el.dataset.state = s;
  el.textContent = { connected: "live", connecting: "connecting…" }[s] ?? "offline";
  if (s !== "connected") me = null;
});

localStorage.setItem("wsend-name", name);
showMe();
resize();
client.connect();
canvas.focus();
requestAnimationFrame(frame);

// For tests and the curious: the game as this page sees it.
window.game = {
  client,
  get me() {
    return me;
  },
  get latest() {
    return latest;
  },
  player: (id = me) => latest?.players.get(id) ?? null,
};

// A short vibration on phones for a big score. Browsers refuse (and log) it until the player
// has touched or clicked the page, so it waits for that: keyboard-only play stays silent.
function buzz() {
  const active = navigator.userActivation ? navigator.userActivation.hasBeenActive : false;
  if (active && typeof navigator.vibrate === "function") navigator.vibrate(30);
}
