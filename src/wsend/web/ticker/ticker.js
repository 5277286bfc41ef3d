// The ticker page. The server (src/wsend/apps/ticker.py) publishes every trade on the symbol's
// own channel "ticker:<SYMBOL>" and, once a second, the whole board on "ticker-board:all", both
// conflated. This page subscribes only to its watchlist's symbols, keeps the latest quote of
// each in memory, and repaints the rows that changed once per animation frame: however fast
// quotes come, the DOM is touched at most 60 times a second, and a hidden tab does no work.

import { Client } from "/wsend.js";
import { clientOptions, explainRefusals } from "/demo.js";

const $ = (id) => document.getElementById(id);
const MAX_WATCH = 40;
const SPARK_POINTS = 120;
const STORE = "wsend-ticker-watchlist";

let meta = new Map(); // symbol -> {n: name, x: sector}
let watch = loadWatchlist(); // symbols, in display order
const quotes = new Map(); // symbol -> latest quote {s, p, c, pc, b, a, v, t}
const shown = new Map(); // symbol -> price on screen (to flash up/down)
const sparks = new Map(); // symbol -> prices, one a second
const rows = new Map(); // symbol -> {tr, cells...}
const dirty = new Set();
const subs = new Map(); // symbol -> Subscription
let board = []; // [[symbol, price, pct], ...]
let updates = 0;

const client = new Client(clientOptions());
explainRefusals(client);

client.subscribe("ticker-board:all", {
  recoverGaps: false,
  delta: "fossil", // the board changes in part from one second to the next
  publication: (pub) => onBoard(pub.data.board),
});

client.on("connected", async () => {
  try {
    if (!meta.size) {
      const listing = await client.rpc("ticker.listing");
      meta = new Map(listing.symbols.map((m) => [m.s, m]));
      fillDatalist();
      if (!watch.length) watch = listing.symbols.slice(0, 12).map((m) => m.s);
      watch = watch.filter((s) => meta.has(s));
      onBoard(listing.board);
      renderTable();
      for (const symbol of watch) watchSymbol(symbol);
    }
    await loadDetails(watch);
  } catch (err) {
    console.warn("ticker: loading failed", err);
  }
});

function watchSymbol(symbol) {
  if (subs.has(symbol)) return;
  const sub = client.subscribe(`ticker:${symbol}`, {
    recoverGaps: false, // conflated: offsets skip on purpose
    publication: (pub) => {
      updates += 1;
      quotes.set(symbol, pub.data);
      dirty.add(symbol);
      schedule();
    },
  });
  subs.set(symbol, sub);
}

// Quotes, day ranges and two minutes of prices for the sparklines.
async function loadDetails(symbols) {
  if (!symbols.length) return;
  const details = await client.rpc("ticker.details", { symbols });
  for (const [symbol, d] of Object.entries(details)) {
    sparks.set(symbol, d.spark.slice(-SPARK_POINTS));
    if (!quotes.has(symbol) || quotes.get(symbol).t < d.t) quotes.set(symbol, d);
    dirty.add(symbol);
    drawSpark(symbol);
  }
  schedule();
}

// -- the watchlist -----------------------------------------------------------------------------

function loadWatchlist() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) ?? "[]");
    return Array.isArray(saved) ? saved.filter((s) => typeof s === "string") : [];
  } catch {
    return [];
  }
}

function saveWatchlist() {
  localStorage.setItem(STORE, JSON.stringify(watch));
}

// Add a symbol to the watchlist; false if it isn't on the market or the list is full.
function add(symbol) {
  symbol = symbol.toUpperCase();
  if (!meta.has(symbol)) return false;
  if (watch.includes(symbol)) {
    flashRow(symbol);
    return true;
  }
  if (watch.length >= MAX_WATCH) {
    complain(`At most ${MAX_WATCH} symbols: remove one first.`);
    return false;
  }
  watch.unshift(symbol);
  saveWatchlist();
  renderTable(symbol);
  watchSymbol(symbol);
  loadDetails([symbol]).catch(() => {});
  markWatched();
  return true;
}

// Say what's wrong next to the input (the browser's own validation bubble).
function complain(text) {
  const input = $("add-input");
  input.setCustomValidity(text);
  input.reportValidity();
}

function remove(symbol) {
  watch = watch.filter((s) => s !== symbol);
  saveWatchlist();
  subs.get(symbol)?.unsubscribe();
  subs.delete(symbol);
  quotes.delete(symbol);
  rows.get(symbol)?.tr.remove();
  rows.delete(symbol);
  $("watch-count").textContent = String(watch.length);
  if (!watch.length) renderTable();
  markWatched();
}

function renderTable(fresh = null) {
  const body = $("rows");
  if (!meta.size) {
    body.innerHTML = '<tr class="empty-row"><td colspan="8">Loading the market…</td></tr>';
    return;
  }
  const trs = watch.map((symbol) => {
    let row = rows.get(symbol);
    if (!row) {
      row = makeRow(symbol);
      rows.set(symbol, row);
      dirty.add(symbol);
    }
    row.tr.classList.toggle("new", symbol === fresh);
    return row.tr;
  });
  if (!trs.length) {
    const tr = document.createElement("tr");
    tr.className = "empty-row";
    tr.innerHTML = '<td colspan="8">Your watchlist is empty: add a symbol above, or click a tile of the market map.</td>';
    trs.push(tr);
  }
  body.replaceChildren(...trs);
  $("watch-count").textContent = String(watch.length);
  schedule();
}

function makeRow(symbol) {
  const tr = document.createElement("tr");
  tr.dataset.symbol = symbol;
  const td = (cls) => {
    const cell = document.createElement("td");
    cell.className = cls;
    tr.append(cell);
    return cell;
  };
  const sym = td("l sym");
  const strong = document.createElement("strong");
  strong.textContent = symbol;
  const small = document.createElement("small");
  small.textContent = meta.get(symbol)?.n ?? "";
  sym.append(strong, small);
  const last = td("last").appendChild(document.createElement("span"));
  const change = td("chg");
  const pct = td("pct").appendChild(document.createElement("span"));
  const ba = td("ba hide-s");
  const vol = td("vol hide-s hide-m");
  const canvas = td("c").appendChild(document.createElement("canvas")); // sized by CSS
  const button = td("c").appendChild(document.createElement("button"));
  button.className = "remove";
  button.title = `Remove ${symbol}`;
  button.textContent = "×";
  button.addEventListener("click", () => remove(symbol));
  return { tr, last, change, pct, ba, vol, canvas };
}

function flashRow(symbol) {
  const row = rows.get(symbol);
  if (!row) return;
  row.tr.classList.remove("new");
  void row.tr.offsetWidth;
  row.tr.classList.add("new");
  row.tr.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// -- painting ------------------------------------------------------------------------------------

let queued = false;

function schedule() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(paint);
}

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

function paint() {
  queued = false;
  for (const symbol of dirty) {
    const q = quotes.get(symbol);
    const row = rows.get(symbol);
    if (!q || !row) continue;
    const before = shown.get(symbol);
    row.last.textContent = money.format(q.p);
    if (before !== undefined && before !== q.p) {
      const cls = q.p > before ? "flash-up" : "flash-down";
      row.last.classList.remove("flash-up", "flash-down");
      void row.last.offsetWidth; // restart the animation
      row.last.classList.add(cls);
    }
    shown.set(symbol, q.p);
    const dir = q.c > 0 ? "up" : q.c < 0 ? "down" : "";
    row.change.className = `chg ${dir}`;
    row.change.textContent = `${q.c > 0 ? "+" : ""}${money.format(q.c)}`;
    row.pct.className = dir;
    row.pct.textContent = `${q.pc > 0 ? "▲ +" : q.pc < 0 ? "▼ " : ""}${q.pc.toFixed(2)}%`;
    row.ba.textContent = `${money.format(q.b)} / ${money.format(q.a)}`;
    row.vol.textContent = compact.format(q.v);
  }
  dirty.clear();
}

// Once a second: each sparkline takes the latest price as its newest point.
setInterval(() => {
  for (const symbol of watch) {
    const q = quotes.get(symbol);
    const spark = sparks.get(symbol);
    if (!q || !spark) continue;
    spark.push(q.p);
    if (spark.length > SPARK_POINTS) spark.shift();
    if (!document.hidden) drawSpark(symbol);
  }
  $("rate").textContent = `${updates} updates/s`;
  updates = 0;
}, 1000);

function drawSpark(symbol) {
  const row = rows.get(symbol);
  const data = sparks.get(symbol);
  if (!row || !data || data.length < 2) return;
  const canvas = row.canvas;
  if (!canvas.clientWidth) return; // not laid out yet (or hidden)
  // Draw at the size CSS gives the canvas (narrower on phones), in device pixels.
  const w = Math.round(canvas.clientWidth * devicePixelRatio);
  const h = Math.round(canvas.clientHeight * devicePixelRatio);
  if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
  const g = canvas.getContext("2d");
  const pad = 3 * devicePixelRatio;
  const lo = Math.min(...data);
  const hi = Math.max(...data);
  const span = hi - lo || 1;
  const x = (i) => (i / (SPARK_POINTS - 1)) * w;
  const y = (v) => h - pad - ((v - lo) / span) * (h - 2 * pad);
  const offset = SPARK_POINTS - data.length;
  const up = data[data.length - 1] >= data[0];
  const color = up ? "22, 163, 74" : "220, 38, 38";
  g.clearRect(0, 0, w, h);
  g.beginPath();
  data.forEach((v, i) => (i ? g.lineTo(x(i + offset), y(v)) : g.moveTo(x(i + offset), y(v))));
  g.lineWidth = 1.5 * devicePixelRatio;
  g.strokeStyle = `rgb(${color})`;
  g.lineJoin = "round";
  g.stroke();
  g.lineTo(x(data.length - 1 + offset), h);
  g.lineTo(x(offset), h);
  g.closePath();
  const fill = g.createLinearGradient(0, 0, 0, h);
  fill.addColorStop(0, `rgba(${color}, 0.22)`);
  fill.addColorStop(1, `rgba(${color}, 0)`);
  g.fillStyle = fill;
  g.fill();
  const lx = x(data.length - 1 + offset);
  const ly = y(data[data.length - 1]);
  g.beginPath();
  g.arc(Math.min(lx, w - 2.5 * devicePixelRatio), ly, 2.5 * devicePixelRatio, 0, Math.PI * 2);
  g.fillStyle = `rgb(${color})`;
  g.fill();
}

// -- the board: index, breadth, movers, map ------------------------------------------------------------

const tiles = new Map(); // symbol -> button

function onBoard(next) {
  board = next;
  if (!tiles.size) buildMap();
  let sum = 0;
  let adv = 0;
  let dec = 0;
  for (const [symbol, price, pct] of board) {
    sum += pct;
    if (pct > 0) adv++;
    else if (pct < 0) dec++;
    const tile = tiles.get(symbol);
    if (tile) {
      tile.style.background = heat(pct);
      tile.title = `${symbol} · ${meta.get(symbol)?.n ?? ""}\n${money.format(price)}  ${pct > 0 ? "+" : ""}${pct.toFixed(2)}%`;
    }
  }
  const avg = board.length ? sum / board.length : 0;
  const index = 1000 * (1 + avg / 100);
  $("index-value").textContent = money.format(index);
  const ic = $("index-change");
  ic.className = `chg ${avg >= 0 ? "up" : "down"}`;
  ic.textContent = `${avg >= 0 ? "▲ +" : "▼ "}${avg.toFixed(2)}% today`;
  $("adv").textContent = String(adv);
  $("dec").textContent = String(dec);
  $("adv-bar").style.width = `${(100 * adv) / Math.max(1, adv + dec)}%`;
  const sorted = [...board].sort((a, b) => b[2] - a[2]);
  moverList($("gainers"), sorted.slice(0, 4));
  moverList($("losers"), sorted.slice(-4).reverse());
}

function moverList(list, items) {
  list.replaceChildren(
    ...items.map(([symbol, , pct]) => {
      const li = document.createElement("li");
      li.className = pct >= 0 ? "up" : "down";
      li.textContent = `${symbol} ${pct > 0 ? "+" : ""}${pct.toFixed(2)}%`;
      li.title = `Watch ${symbol}`;
      li.addEventListener("click", () => add(symbol));
      return li;
    }),
  );
}

function buildMap() {
  const map = $("heatmap");
  const symbols = [...board].map(([s]) => s);
  symbols.sort((a, b) => (meta.get(a)?.x ?? "").localeCompare(meta.get(b)?.x ?? "") || a.localeCompare(b));
  for (const symbol of symbols) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.textContent = symbol;
    tile.addEventListener("click", () => add(symbol));
    tiles.set(symbol, tile);
    map.append(tile);
  }
  markWatched();
}

function markWatched() {
  for (const [symbol, tile] of tiles) tile.classList.toggle("watched", watch.includes(symbol));
}

// Red (-2 % or worse) through grey (0) to green (+2 % or better).
function heat(pct) {
  const k = Math.max(-1, Math.min(1, pct / 2));
  const a = Math.abs(k);
  const [r, g, b] = k >= 0 ? [22, 163, 74] : [220, 38, 38];
  const mix = (c, base) => Math.round(base + (c - base) * (0.15 + 0.85 * a));
  return `rgb(${mix(r, 229)}, ${mix(g, 231)}, ${mix(b, 235)})`;
}

function fillDatalist() {
  const list = $("symbols");
  list.replaceChildren(
    ...[...meta.values()].map((m) => {
      const option = document.createElement("option");
      option.value = m.s;
      option.label = `${m.n} · ${m.x}`;
      return option;
    }),
  );
}

$("add-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("add-input");
  const text = input.value.trim();
  if (!text) return;
  // A symbol, or the start of a company name.
  let symbol = text.toUpperCase().split(/\s/)[0];
  if (!meta.has(symbol)) {
    const needle = text.toLowerCase();
    symbol = [...meta.values()].find((m) => m.n.toLowerCase().startsWith(needle))?.s ?? symbol;
  }
  if (add(symbol)) input.value = "";
  else if (!meta.has(symbol)) complain(`No symbol or company “${text}” on this market.`);
});
$("add-input").addEventListener("input", () => $("add-input").setCustomValidity(""));

client.on("state", (s) => {
  const el = $("status");
  el.dataset.state = s;
  el.textContent = { connected: "live", connecting: "connecting…" }[s] ?? "offline";
});

renderTable();
client.connect();

// For tests and the curious: what this page holds.
window.ticker = { client, quotes, watch: () => [...watch], add, remove, updates: () => updates };
