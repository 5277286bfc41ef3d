// wsend.js: the browser client of the wsend hub (docs/protocol.md), and a small WebSocket
// wrapper. An ES module with no dependencies and no build step:
//
//   import { Client } from "/wsend.js";
//   const client = new Client({ data: { name: "Ada" } });     // ws(s)://<this host>/ws
//   const room = client.subscribe("chat:lobby", {
//     publication: (pub) => console.log(pub.data),
//     join: (info) => console.log(info.client, "joined"),
//   });
//   client.connect();
//   await room.publish({ text: "hello" });
//
// Reconnection: when the connection drops (or the hub closes it with a code from 4000 to
// 4499, or 1001) the client reconnects after an exponential backoff with jitter, connects
// again and resubscribes every channel with recovery from the last offset seen; publications
// missed meanwhile arrive first, in order, without duplicates. A subscription's "subscribed"
// event says whether it recovered (ctx.recovered); when it couldn't (history too short, epoch
// changed), reload the state, e.g. with sub.history().
//
// Delta compression: subscribe(channel, { delta: "fossil" }) asks the hub to send each
// publication as a Fossil delta against the previous one where the namespace allows it; the
// client rebuilds the data, so "publication" listeners see whole values either way.
//
// Full reference: docs/web.md.

export const VERSION = "0.1.0";
export const SUBPROTOCOL = "wsend.v1.json";

// Close codes after which the client doesn't reconnect (docs/protocol.md section 7): 1000
// normal, 1009 message too big, and 4500-4999 (terminal application codes).
function shouldReconnect(code) {
  if (code === 1000 || code === 1009) return false;
  return !(code >= 4500 && code <= 4999);
}

/** An error reply of the hub: `code` and `temporary` as in docs/protocol.md section 8. */
export class WsendError extends Error {
  constructor(code, message, temporary = false) {
    super(message);
    this.name = "WsendError";
    this.code = code;
    this.temporary = temporary;
  }
}

/** A minimal event emitter: on(name, fn) returns a function that removes the listener. */
class Emitter {
  #listeners = new Map();

  on(name, fn) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    this.#listeners.get(name)?.delete(fn);
  }

  once(name, fn) {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  emit(name, ...args) {
    for (const fn of [...(this.#listeners.get(name) ?? [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`wsend: a "${name}" listener failed`, err);
      }
    }
  }
}

// Exponential backoff with "equal jitter": half the delay fixed, half random, so a crowd of
// clients cut off together doesn't come back all at the same instant. In ms.
function backoffDelay({ minDelay, maxDelay }, attempt) {
  const ceiling = Math.min(maxDelay, minDelay * 2 ** attempt);
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

// The hub's address: ws(s)://this-host/ws by default; a path ("/hub") is on this page's
// server, and http(s):// addresses become ws(s)://.
function resolveUrl(url = "/ws") {
  if (typeof location !== "undefined") url = new URL(url, location.href).href;
  return url.replace(/^http(s?):/i, "ws$1:");
}

// ---------------------------------------------------------------------------------------------
// Client: the hub protocol
// ---------------------------------------------------------------------------------------------

/**
 * A connection to the hub that survives disconnections.
 *
 * new Client(url?, options?) or new Client(options?). Options:
 *   token       a connection JWT (omit for anonymous access where the hub allows it)
 *   getToken    async () => token: called to get a fresh token when the current one expired
 *   data        sent with connect; `wsend serve` takes a display name from {name}
 *   timeout     ms to wait for a reply (default 10000)
 *   minDelay    first reconnect delay in ms (default 500); doubles on each attempt...
 *   maxDelay    ...up to this (default 20000); each delay is randomised (jitter)
 *   debug       log frames to the console
 *
 * Events (client.on(name, fn)): "connecting" ({attempt, delay}), "connected" (connect result),
 * "disconnected" ({code, reason, reconnect}), "message" (data of a message push), "error".
 * State: client.state is "disconnected", "connecting", "connected" or "closed".
 */
export class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    if (typeof url === "object" && url !== null) [url, options] = [undefined, url];
    this.url = resolveUrl(url ?? "/ws");
    this.options = { timeout: 10000, minDelay: 500, maxDelay: 20000, ...options };
    this.token = options.token ?? null;
    this.state = "disconnected";
    this.clientId = null;
    this.user = null;
    this.subscriptions = new Map();
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._attempt = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._refreshTimer = null;
    this._waiters = [];
    if (typeof window !== "undefined") {
      // Back online, or back to the tab (a laptop waking up): don't wait out the backoff.
      window.addEventListener("online", () => this._reconnectSoon());
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") this._reconnectSoon();
      });
    }
  }

  /** Open the connection (and keep it open until disconnect()). */
  connect() {
    if (this.state === "connected" || this.state === "connecting") return;
    this._closedByUser = false;
    this._setState("connecting");
    this._reconnect(); // fetches a token first with getToken
  }

  /** Close the connection for good; subscriptions stay registered for a later connect(). */
  disconnect() {
    this._closedByUser = true;
    clearTimeout(this._reconnectTimer);
    this._teardown(1000, "client disconnect");
    this._setState("closed");
    this.emit("disconnected", { code: 1000, reason: "client disconnect", reconnect: false });
  }

  /** A promise resolved once connected (at once if connected now). */
  ready(timeout = this.options.timeout) {
    if (this.state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      waiter.timer = setTimeout(() => {
        this._waiters = this._waiters.filter((w) => w !== waiter);
        reject(new WsendError(0, "not connected", true));
      }, timeout);
      this._waiters.push(waiter);
    });
  }

  /**
   * Subscribe to a channel; returns its Subscription (the same one if already subscribed).
   * `handlers` may hold listeners by event name (publication, join, leave, subscribed,
   * unsubscribed, error) and options: recover (default true), recoverGaps (default true;
   * false for conflated channels whose offsets skip on purpose), data, token, delta ("fossil"
   * for delta compression where the namespace offers it).
   */
  subscribe(channel, handlers = {}) {
    let sub = this.subscriptions.get(channel);
    if (!sub) {
      sub = new Subscription(this, channel, handlers);
      this.subscriptions.set(channel, sub);
    } else {
      sub._addHandlers(handlers);
    }
    if (this.state === "connected" && sub.state === "unsubscribed") sub._subscribe();
    return sub;
  }

  /** Stop receiving a channel's publications. */
  async unsubscribe(channel) {
    const sub = this.subscriptions.get(channel);
    if (sub) await sub.unsubscribe();
  }

  /** Publish to a channel (no need to be subscribed); resolves to {offset, epoch}. */
  publish(channel, data, { key } = {}) {
    return this.command("publish", { channel, data, key });
  }

  /** Call the application's RPC `name`; resolves to what the handler returned. */
  async rpc(name, data) {
    return (await this.command("rpc", { name, data })).data;
  }

  /** The clients in a channel: {clientId: {user, info}}. */
  async presence(channel) {
    return (await this.command("presence", { channel })).clients;
  }

  presenceStats(channel) {
    return this.command("presence_stats", { channel });
  }

  /** A channel's history: {publications, epoch, offset}. Options: limit, since, reverse. */
  history(channel, { limit, since, reverse } = {}) {
    return this.command("history", { channel, limit, since, reverse });
  }

  /** Measure the round trip to the hub, in milliseconds. */
  async ping() {
    const started = performance.now();
    await this.command("ping");
    return performance.now() - started;
  }

  /** Send a command once connected; resolves to its result or rejects with a WsendError. */
  async command(method, params = {}) {
    await this.ready();
    return this._send(method, params);
  }

  // -- internals ------------------------------------------------------------------------------

  _log(...args) {
    if (this.options.debug) console.debug("wsend", ...args);
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }

  _open() {
    this._setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      this.emit("error", err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen();
    ws.onmessage = (event) => this._onMessage(event.data);
    ws.onclose = (event) => this._onClose(event.code, event.reason);
    ws.onerror = () => {}; // a close event follows
  }

  async _onOpen() {
    try {
      const result = await this._send("connect", {
        token: this.token ?? undefined,
        name: "wsend.js",
        version: VERSION,
        data: this.options.data,
      });
      this._attempt = 0;
      this.clientId = result.client;
      this.user = result.user;
      this._setState("connected");
      this._startPing(result.ping);
      this._scheduleRefresh(result);
      for (const waiter of this._waiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.resolve();
      }
      this.emit("connected", result);
      for (const sub of this.subscriptions.values()) sub._subscribe();
    } catch (err) {
      if (err.code === 109 && this.options.getToken) this.token = null; // fetch a new one
      this.emit("error", err);
      // The hub closes the connection after a refused connect; onclose decides what next.
    }
  }

  _onMessage(raw) {
    this._lastSeen = Date.now();
    let frames;
    try {
      frames = JSON.parse(raw);
    } catch (err) {
      this.emit("error", new WsendError(107, "undecodable frame from the hub"));
      return;
    }
    for (const frame of Array.isArray(frames) ? frames : [frames]) {
      this._log("<", frame);
      if (frame.id) this._onReply(frame);
      else if (frame.push) this._onPush(frame);
    }
  }

  _onReply(frame) {
    const pending = this._pending.get(frame.id);
    if (!pending) return;
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    if (frame.error) {
      const { code, message, temporary } = frame.error;
      pending.reject(new WsendError(code, message, temporary));
    } else {
      pending.resolve(frame.result ?? {});
    }
  }

  _onPush(frame) {
    if (frame.push === "message") {
      this.emit("message", frame.data);
      return;
    }
    const sub = this.subscriptions.get(frame.channel);
    if (sub) sub._onPush(frame);
  }

  _onClose(code, reason) {
    this._log("closed", code, reason);
    const wasConnected = this.state === "connected";
    this._teardown();
    if (this._closedByUser) return;
    const reconnect = shouldReconnect(code);
    if (code === 4004 && this.options.getToken) this.token = null;
    this._setState(reconnect ? "connecting" : "disconnected");
    if (wasConnected || !reconnect) this.emit("disconnected", { code, reason, reconnect });
    if (reconnect) this._scheduleReconnect();
  }

  // Forget the socket: reject commands in flight, stop timers, mark subscriptions as needing
  // a resubscribe (their positions are kept for recovery).
  _teardown(code, reason) {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN) ws.close(code ?? 1000, reason ?? "");
      // Closing a socket still connecting makes the browser log an error: close once open.
      else if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
    }
    clearInterval(this._pingTimer);
    clearTimeout(this._refreshTimer);
    for (const pending of this._pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new WsendError(0, "connection closed", true));
    }
    this._pending.clear();
    for (const sub of this.subscriptions.values()) sub._connectionLost();
  }

  _scheduleReconnect() {
    const delay = backoffDelay(this.options, this._attempt);
    this._attempt += 1;
    this.emit("connecting", { attempt: this._attempt, delay });
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => this._reconnect(), delay);
  }

  async _reconnect() {
    if (this._closedByUser || this._ws) return;
    if (!this.token && this.options.getToken) {
      try {
        this.token = await this.options.getToken();
      } catch (err) {
        this.emit("error", err);
        this._scheduleReconnect();
        return;
      }
    }
    this._open();
  }

  // When the browser comes back online, don't wait for the rest of the backoff.
  _reconnectSoon() {
    if (this.state === "connecting" && !this._ws && !this._closedByUser) {
      clearTimeout(this._reconnectTimer);
      this._reconnect();
    }
  }

  // Browsers answer the hub's WebSocket pings but can't see them, so a dead connection is
  // detected with the protocol's ping command, sent every `ping` seconds.
  _startPing(seconds) {
    clearInterval(this._pingTimer);
    if (!seconds) return;
    this._pingTimer = setInterval(() => {
      this._send("ping", {}, Math.max(5000, seconds * 500)).catch(() => {
        if (this.state === "connected") this._drop();
      });
    }, seconds * 1000);
  }

  // Give up on a connection that stopped answering; reconnect.
  _drop() {
    this._log("connection unresponsive: reconnecting");
    const ws = this._ws;
    if (ws?.readyState === WebSocket.OPEN) ws.close(4000, "no pong");
    this._onClose(4006, "no pong");
  }

  _scheduleRefresh(result) {
    clearTimeout(this._refreshTimer);
    if (!result.expires || !result.ttl || !this.options.getToken) return;
    const inMs = Math.max(1000, (result.ttl - 10) * 1000);
    this._refreshTimer = setTimeout(async () => {
      try {
        this.token = await this.options.getToken();
        this._scheduleRefresh(await this._send("refresh", { token: this.token }));
      } catch (err) {
        this.emit("error", err);
      }
    }, inMs);
  }

  _send(method, params = {}, timeout = this.options.timeout) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new WsendError(0, "not connected", true));
    }
    const id = this._nextId++;
    const frame = { id, method };
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined) frame[key] = value;
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        const err = new WsendError(0, `${method}: no reply within ${timeout} ms`, true);
        err.timedOut = true; // the connection is kept; the hub may still answer (ignored)
        reject(err);
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      this._log(">", frame);
      ws.send(JSON.stringify(frame));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Subscription: one channel
// ---------------------------------------------------------------------------------------------

/**
 * A channel subscription; created by client.subscribe(). Events:
 *   "publication" (pub: {data, offset?, key?, info?, channel})
 *   "join" / "leave" (info: {client, user, info?})
 *   "subscribed" ({recoverable, epoch, offset, recovered, wasRecovering}): after every
 *       (re)subscribe; with wasRecovering and recovered === false some publications were lost
 *   "unsubscribed" ({code, reason}), "error" (WsendError)
 * Positions: sub.epoch and sub.offset are the last publication seen.
 */
export class Subscription extends Emitter {
  constructor(client, channel, handlers = {}) {
    super();
    this.client = client;
    this.channel = channel;
    this.state = "unsubscribed";
    this.epoch = null;
    this.offset = null;
    this.recoverable = false;
    this.deltaOn = false; // the hub granted delta compression at the last subscribe
    this.deltas = 0; // publications received as deltas (and rebuilt)
    this._base = null; // the payload (bytes) of the last publication push, with deltas on
    this.options = { recover: true, recoverGaps: true };
    this._wanted = true;
    this._attempt = 0; // subscribe attempts failed in a row (temporary errors, timeouts)
    this._retryTimer = null;
    this._addHandlers(handlers);
  }

  _addHandlers(handlers) {
    for (const [name, value] of Object.entries(handlers)) {
      if (typeof value === "function") this.on(name, value);
      else this.options[name] = value;
    }
  }

  /** Publish to this channel; resolves to {offset, epoch}. */
  publish(data, options) {
    return this.client.publish(this.channel, data, options);
  }

  presence() {
    return this.client.presence(this.channel);
  }

  presenceStats() {
    return this.client.presenceStats(this.channel);
  }

  /** The channel's history: {publications, epoch, offset} (options: limit, since, reverse). */
  history(options) {
    return this.client.history(this.channel, options);
  }

  /** Stop the subscription; the client forgets it. */
  async unsubscribe() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    this.client.subscriptions.delete(this.channel);
    const was = this.state;
    this.state = "unsubscribed";
    if (was === "subscribed" && this.client.state === "connected") {
      await this.client._send("unsubscribe", { channel: this.channel }).catch(() => {});
    }
    this.emit("unsubscribed", { code: 0, reason: "unsubscribe called" });
  }

  async _subscribe() {
    if (!this._wanted || this.state === "subscribing") return;
    const recovering = this.options.recover && this.epoch !== null && this.offset !== null;
    this.state = "subscribing";
    this._buffer = [];
    const params = { channel: this.channel, data: this.options.data, token: this.options.token };
    if (recovering) Object.assign(params, { recover: true, epoch: this.epoch, offset: this.offset });
    if (this.options.delta) params.delta = this.options.delta;
    let result;
    try {
      result = await this.client._send("subscribe", params);
    } catch (err) {
      this.state = "unsubscribed";
      if (err.code === 105) return this._resubscribe(); // the hub still had us: start over
      // Code 0 without a timeout: the connection dropped; resubscribed once connected again.
      if (err.code === 0 && !err.timedOut) return;
      this.emit("error", err);
      if (err.temporary) this._retryLater(!!err.timedOut);
      return;
    }
    this._attempt = 0;
    if (!this._wanted) return;
    this.state = "subscribed";
    this.recoverable = !!result.recoverable;
    this.deltaOn = !!result.delta;
    this._base = null; // the first publication after a subscribe is whole
    let recovered = recovering ? !!result.recovered : false;
    let missed = result.publications ?? [];
    if (recovered && this.deltaOn) {
      try {
        missed = missed.map((pub) => ({ ...pub, data: decodePayload(textBytes(pub.data)) }));
      } catch (err) {
        this.emit("error", err);
        recovered = false; // never show what can't be decoded: reload instead
      }
    }
    if (recovered) {
      for (const pub of missed) this._deliver({ ...pub, channel: this.channel });
    }
    if (this.recoverable && (!recovering || !recovered || result.epoch !== this.epoch)) {
      // A fresh start (or a lost stretch): continue from the channel's current position.
      this.epoch = result.epoch ?? null;
      this.offset = result.offset ?? 0;
    }
    this.emit("subscribed", { ...result, recovered, wasRecovering: recovering });
    // Pushes that arrived with the reply (same batch) come after it.
    for (const frame of this._buffer.splice(0)) this._onPush(frame);
  }

  // Subscribe again after a temporary failure, with backoff. After a timed-out attempt,
  // unsubscribe first: the hub may still complete that attempt, and would answer the next
  // one "already subscribed".
  _retryLater(unsubscribeFirst) {
    const delay = backoffDelay(this.client.options, this._attempt);
    this._attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this._wanted && this.state === "unsubscribed" && this.client.state === "connected") {
        if (unsubscribeFirst) this._resubscribe();
        else this._subscribe();
      }
    }, delay);
  }

  // Start over with recovery: after a gap in offsets, or an "unsubscribe" push asking for it.
  async _resubscribe() {
    if (this.client.state !== "connected") return;
    this.state = "resubscribing";
    await this.client._send("unsubscribe", { channel: this.channel }).catch(() => {});
    this.state = "unsubscribed";
    await this._subscribe();
  }

  _connectionLost() {
    this.state = "unsubscribed"; // resubscribed, with recovery, once connected again
  }

  _onPush(frame) {
    if (this.state === "subscribing") {
      this._buffer.push(frame);
      return;
    }
    if (this.state !== "subscribed") return;
    switch (frame.push) {
      case "pub":
        this._onPublication(frame);
        break;
      case "join":
      case "leave":
        this.emit(frame.push, frame.info);
        break;
      case "unsubscribe":
        this.state = "unsubscribed";
        if (frame.code >= 2500 && frame.code < 3000) this._resubscribe();
        else this.emit("unsubscribed", { code: frame.code, reason: frame.reason });
        break;
    }
  }

  _onPublication(pub) {
    if (this.deltaOn) {
      try {
        pub = this._rebuild(pub);
      } catch (err) {
        // Lost track of the channel's payloads: deliver nothing, start over (recovering what
        // this publication carried where the channel keeps history).
        this.emit("error", err);
        this._resubscribe();
        return;
      }
    }
    const offset = pub.offset;
    if (typeof offset === "number" && this.offset !== null) {
      if (offset <= this.offset) return; // a duplicate (already delivered by recovery)
      if (offset > this.offset + 1 && this.options.recoverGaps && this.options.recover) {
        this._resubscribe(); // missed some: the recovery replay includes this one
        return;
      }
    }
    this._deliver(pub);
  }

  // A publication push of a delta subscription, with its data rebuilt and decoded; its payload
  // becomes the base of the next delta (docs/protocol.md section 5).
  _rebuild(pub) {
    let payload = textBytes(pub.data);
    if (pub.delta) {
      if (!this._base) throw new DeltaError("a delta before any whole publication");
      payload = applyDelta(this._base, payload);
      this.deltas += 1;
    }
    const data = decodePayload(payload);
    this._base = payload;
    return { ...pub, data, delta: undefined };
  }

  _deliver(pub) {
    if (typeof pub.offset === "number") {
      if (this.offset !== null && pub.offset <= this.offset) return;
      this.offset = pub.offset;
    }
    this.emit("publication", pub);
  }
}

// ---------------------------------------------------------------------------------------------
// Fossil deltas (https://fossil-scm.org/home/doc/tip/www/delta_format.wiki)
// ---------------------------------------------------------------------------------------------

/** A delta that can't be applied: malformed, made for another base, or corrupt. */
export class DeltaError extends Error {
  constructor(message) {
    super(message);
    this.name = "DeltaError";
  }
}

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
const DIGIT_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) DIGIT_VALUES[DIGITS.charCodeAt(i)] = i;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function textBytes(data) {
  if (typeof data !== "string") throw new DeltaError("a payload must be a string");
  return utf8.encode(data);
}

function decodePayload(bytes) {
  try {
    return JSON.parse(strictUtf8.decode(bytes));
  } catch (err) {
    throw new DeltaError(`undecodable payload: ${err.message}`);
  }
}

// Fossil's checksum: the sum of the big-endian 32-bit words (the last padded with zeros).
function checksum(data) {
  const whole = data.length & ~3;
  let sum = 0;
  for (let i = 0; i < whole; i += 4) {
    sum = (sum + ((data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3])) >>> 0;
  }
  let tail = 0;
  for (let i = whole; i < data.length; i++) tail |= data[i] << (24 - 8 * (i - whole));
  return (sum + tail) >>> 0;
}

/**
 * Apply a Fossil delta to `source` (both Uint8Array); returns the target (Uint8Array). Every
 * command is checked against the source, the delta and the declared size (at most `maxSize`),
 * and the result against the checksum; anything wrong throws a DeltaError.
 */
export function applyDelta(source, delta, maxSize = 64 * 1024 * 1024) {
  let pos = 0;
  const number = () => {
    let value = 0;
    const start = pos;
    while (pos < delta.length && delta[pos] < 128 && DIGIT_VALUES[delta[pos]] >= 0) {
      if (pos - start === 6) throw new DeltaError(`number too large at byte ${start}`);
      value = value * 64 + DIGIT_VALUES[delta[pos++]];
    }
    return value;
  };
  const size = number();
  if (delta[pos++] !== 0x0a) throw new DeltaError("the size is not followed by a newline");
  if (size > maxSize) throw new DeltaError(`the target would be ${size} bytes, over ${maxSize}`);
  const out = new Uint8Array(size);
  let total = 0;
  while (pos < delta.length) {
    const count = number();
    const command = delta[pos++];
    if (command === 0x40 /* @ */) {
      const offset = number();
      if (delta[pos++] !== 0x2c) throw new DeltaError("copy command not ended by ','");
      if (offset + count > source.length) throw new DeltaError("a copy reaches past the source");
      if (total + count > size) throw new DeltaError("more bytes than declared");
      out.set(source.subarray(offset, offset + count), total);
      total += count;
    } else if (command === 0x3a /* : */) {
      if (pos + count > delta.length) throw new DeltaError("an insert reaches past the delta");
      if (total + count > size) throw new DeltaError("more bytes than declared");
      out.set(delta.subarray(pos, pos + count), total);
      total += count;
      pos += count;
    } else if (command === 0x3b /* ; */) {
      if (pos !== delta.length) throw new DeltaError("bytes after the checksum");
      if (total !== size) throw new DeltaError(`${total} bytes produced, ${size} declared`);
      if (count !== checksum(out)) throw new DeltaError("checksum mismatch");
      return out;
    } else {
      throw new DeltaError(`unknown command at byte ${pos - 1}`);
    }
  }
  throw new DeltaError("the delta ends without a checksum");
}

// ---------------------------------------------------------------------------------------------
// WsendSocket: a plain WebSocket with a friendlier send()
// ---------------------------------------------------------------------------------------------

/**
 * A thin wrapper over the browser's WebSocket for any server (no hub protocol).
 *
 *   const ws = new WsendSocket("ws://127.0.0.1:8765/");
 *   await ws.opened;
 *   ws.send("text");                   // a text message
 *   ws.send(new Uint8Array([1, 2]));   // binary: ArrayBuffer, typed arrays, DataView, Blob
 *   ws.send({ hello: "world" });       // anything else: JSON, as text
 *   ws.on("message", (msg) => msg.text ?? msg.bytes);   // msg.json() parses text
 *
 * Events: "open", "message" ({data, text, bytes, json()}), "close" ({code, reason}), "error".
 * Binary messages arrive as Uint8Array (`bytes`); text as string (`text`).
 */
export class WsendSocket extends Emitter {
  constructor(url, { protocols } = {}) {
    super();
    this.ws = new WebSocket(resolveUrl(url), protocols);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(this), { once: true });
      this.ws.addEventListener("close", (e) => reject(new Error(`closed: ${e.code}`)), {
        once: true,
      });
    });
    this.opened.catch(() => {}); // rejections are also reported as "close"
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (e) => {
        const info = { code: e.code, reason: e.reason, wasClean: e.wasClean };
        this.emit("close", info);
        resolve(info);
      });
    });
    this.ws.addEventListener("open", () => this.emit("open"));
    this.ws.addEventListener("error", (e) => this.emit("error", e));
    this.ws.addEventListener("message", (e) => this.emit("message", wrapMessage(e.data)));
  }

  get readyState() {
    return this.ws.readyState;
  }

  get protocol() {
    return this.ws.protocol;
  }

  /** Bytes queued but not yet sent (for flow control). */
  get bufferedAmount() {
    return this.ws.bufferedAmount;
  }

  /** Send a string as text; binary data as binary; any other value as JSON text. */
  send(data) {
    this.ws.send(encodeOutgoing(data));
  }

  /** Send a value as JSON text, even a string. */
  sendJSON(value) {
    this.ws.send(JSON.stringify(value));
  }

  close(code = 1000, reason = "") {
    this.ws.close(code, reason);
    return this.closed;
  }
}

function encodeOutgoing(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data;
  if (typeof Blob !== "undefined" && data instanceof Blob) return data;
  return JSON.stringify(data);
}

function wrapMessage(data) {
  if (typeof data === "string") {
    return { data, text: data, bytes: null, json: () => JSON.parse(data) };
  }
  const bytes = new Uint8Array(data);
  return {
    data,
    text: null,
    bytes,
    json: () => JSON.parse(new TextDecoder().decode(bytes)),
  };
}
