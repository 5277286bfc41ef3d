// Operational transformation for plain text: the browser twin of wsend/apps/collab_ot.py.
//
// An operation is an array of components walking over the whole document:
//   n > 0     retain (skip) n characters
//   n < 0     delete the next -n characters
//   "text"    insert "text" here
// Operations are normalized exactly like the Python side (no empty components, neighbours of
// the same kind merged, inserts before deletes), so both produce identical arrays.
// Lengths are JavaScript string lengths (UTF-16 code units); the server counts the same way.

function isRetain(c) {
  return typeof c === "number" && c > 0;
}

function isDelete(c) {
  return typeof c === "number" && c < 0;
}

function size(c) {
  return typeof c === "string" ? c.length : Math.abs(c);
}

/** Append component c to the normalized op, keeping it normalized. */
export function push(op, c) {
  if (c === 0 || c === "") return op;
  if (op.length === 0) {
    op.push(c);
    return op;
  }
  const last = op[op.length - 1];
  if (typeof c === "string") {
    if (typeof last === "string") op[op.length - 1] = last + c;
    else if (isDelete(last)) {
      if (op.length >= 2 && typeof op[op.length - 2] === "string") op[op.length - 2] += c;
      else op.splice(op.length - 1, 0, c);
    } else op.push(c);
  } else if (typeof last === "number" && last > 0 === c > 0) {
    op[op.length - 1] = last + c;
  } else {
    op.push(c);
  }
  return op;
}

export function normalize(components) {
  const op = [];
  for (const c of components) push(op, c);
  return op;
}

export function baseLength(op) {
  let n = 0;
  for (const c of op) if (typeof c === "number") n += Math.abs(c);
  return n;
}

export function targetLength(op) {
  let n = 0;
  for (const c of op) n += typeof c === "string" ? c.length : c > 0 ? c : 0;
  return n;
}

export function apply(doc, op) {
  if (baseLength(op) !== doc.length) {
    throw new Error(`operation for length ${baseLength(op)} applied to length ${doc.length}`);
  }
  const parts = [];
  let pos = 0;
  for (const c of op) {
    if (typeof c === "string") parts.push(c);
    else if (c > 0) {
      parts.push(doc.slice(pos, pos + c));
      pos += c;
    } else pos -= c;
  }
  return parts.join("");
}

// Reads an operation component by component, splitting them on demand.
class Reader {
  constructor(op) {
    this.op = op;
    this.i = 0;
    this.rest = op.length ? op[0] : null;
  }

  peek() {
    return this.rest;
  }

  take(n) {
    const c = this.rest;
    if (n === undefined || n >= size(c)) {
      this.i += 1;
      this.rest = this.i < this.op.length ? this.op[this.i] : null;
      return c;
    }
    if (typeof c === "string") {
      this.rest = c.slice(n);
      return c.slice(0, n);
    }
    const sign = c > 0 ? 1 : -1;
    this.rest = c - sign * n;
    return sign * n;
  }
}

/** One operation doing a then b. */
export function compose(a, b) {
  if (targetLength(a) !== baseLength(b)) throw new Error("compose: b doesn't follow a");
  const out = [];
  const ra = new Reader(a);
  const rb = new Reader(b);
  for (;;) {
    const ca = ra.peek();
    const cb = rb.peek();
    if (ca === null && cb === null) return out;
    if (ca !== null && isDelete(ca)) push(out, ra.take());
    else if (cb !== null && typeof cb === "string") push(out, rb.take());
    else {
      const n = Math.min(size(ca), size(cb));
      const xa = ra.take(n);
      const xb = rb.take(n);
      if (typeof xa === "string") {
        if (isRetain(xb)) push(out, xa);
      } else if (isRetain(xb)) push(out, xa);
      else push(out, xb);
    }
  }
}

/** Transform concurrent a and b: returns [a2, b2]; on equal positions a's insert goes first. */
export function transform(a, b) {
  if (baseLength(a) !== baseLength(b)) throw new Error("transform: different lengths");
  const a2 = [];
  const b2 = [];
  const ra = new Reader(a);
  const rb = new Reader(b);
  for (;;) {
    const ca = ra.peek();
    const cb = rb.peek();
    if (ca === null && cb === null) return [a2, b2];
    if (ca !== null && typeof ca === "string") {
      const text = ra.take();
      push(a2, text);
      push(b2, text.length);
    } else if (cb !== null && typeof cb === "string") {
      const text = rb.take();
      push(a2, text.length);
      push(b2, text);
    } else {
      const n = Math.min(size(ca), size(cb));
      const xa = ra.take(n);
      const xb = rb.take(n);
      if (xa > 0 && xb > 0) {
        push(a2, n);
        push(b2, n);
      } else if (xa < 0 && xb > 0) push(a2, -n);
      else if (xa > 0 && xb < 0) push(b2, -n);
    }
  }
}

/** Where position index moves when op runs (text inserted at index pushes it right). */
export function transformIndex(op, index) {
  let moved = index;
  let pos = 0;
  for (const c of op) {
    if (pos > index) break;
    if (typeof c === "string") moved += c.length;
    else if (c > 0) pos += c;
    else {
      moved -= Math.min(index - pos, -c);
      pos -= c;
    }
  }
  return moved;
}

function isHigh(code) {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLow(code) {
  return code >= 0xdc00 && code <= 0xdfff;
}

/**
 * The operation turning oldText into newText: one replaced stretch between the common prefix
 * and the common suffix (what a keystroke, a paste or a cut does). `cursor`, the caret after
 * the change, disambiguates repeated text ("aa" -> "aaa": which "a" is new?). Never splits a
 * surrogate pair (an emoji is two code units that must stay together).
 */
export function diff(oldText, newText, cursor = null) {
  let start = 0;
  const maxStart = Math.min(oldText.length, newText.length);
  while (start < maxStart && oldText.charCodeAt(start) === newText.charCodeAt(start)) start++;
  if (cursor !== null) {
    // The change ends at the caret: don't let the common prefix run past the edit.
    const insertedLength = newText.length - oldText.length;
    start = Math.min(start, Math.max(0, cursor - Math.max(0, insertedLength)));
  }
  let endOld = oldText.length;
  let endNew = newText.length;
  while (
    endOld > start &&
    endNew > start &&
    oldText.charCodeAt(endOld - 1) === newText.charCodeAt(endNew - 1)
  ) {
    endOld--;
    endNew--;
  }
  // Keep surrogate pairs whole on both edges.
  if (start > 0 && isHigh(oldText.charCodeAt(start - 1)) && isLow(oldText.charCodeAt(start))) start--;
  else if (start > 0 && isHigh(newText.charCodeAt(start - 1)) && isLow(newText.charCodeAt(start))) start--;
  if (endOld < oldText.length && isLow(oldText.charCodeAt(endOld)) && isHigh(oldText.charCodeAt(endOld - 1))) {
    endOld++;
    endNew++;
  } else if (endNew < newText.length && isLow(newText.charCodeAt(endNew)) && isHigh(newText.charCodeAt(endNew - 1))) {
    endOld++;
    endNew++;
  }
  const op = [];
  push(op, start);
  push(op, newText.slice(start, endNew));
  push(op, -(endOld - start));
  push(op, oldText.length - endOld);
  return op;
}
