// Shared helpers for the client scripts: JSON-line output and binary mapping.
//
// Binary values travel through argv/stdout JSON as {"$bin": "<base64>"}.

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function isBinary(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

// JS value received from the server -> JSON-safe value.
function toJson(v) {
  if (isBinary(v)) {
    const buf = v instanceof ArrayBuffer ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return { $bin: buf.toString("base64") };
  }
  if (typeof v === "function") return { $fn: true };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJson(x);
    return out;
  }
  return v === undefined ? null : v;
}

// JSON value from the test -> JS value to send (Buffers where "$bin").
function fromJson(v) {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === "object") {
    if (typeof v.$bin === "string" && Object.keys(v).length === 1) return Buffer.from(v.$bin, "base64");
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = fromJson(x);
    return out;
  }
  return v;
}

// Exit with a "timeout" line if the script runs longer than ms.
function deadline(ms, what) {
  const t = setTimeout(() => {
    print({ type: "timeout", what: what() });
    process.exit(2);
  }, ms);
  t.unref();
}

// One pending wait: until(cond) resolves once cond() holds, checked now and
// on every changed() call.
function waiter() {
  let pending = null; // () => bool
  let wake = null;
  function changed() {
    if (pending && pending()) {
      const w = wake;
      pending = wake = null;
      w();
    }
  }
  function until(cond) {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      pending = cond;
      wake = resolve;
    });
  }
  return { changed, until };
}

// Take commands on stdin, one JSON line each ({"id", "js"}), as
// tests/support/interactive.py sends them: evaluate(js) runs the JavaScript in
// the calling script's scope (pass `(js) => eval(js)`), and its awaited value
// (or error) is printed as {"type": "result", id, value | error}.  onEnd runs
// when stdin closes.
function interactive(evaluate, onEnd) {
  require("readline")
    .createInterface({ input: process.stdin })
    .on("line", async (line) => {
      const cmd = JSON.parse(line);
      try {
        const value = await evaluate(cmd.js);
        print({ type: "result", id: cmd.id, value: toJson(value) });
      } catch (err) {
        print({ type: "result", id: cmd.id, error: String(err) });
      }
    });
  process.stdin.on("end", onEnd);
}

module.exports = { print, toJson, fromJson, deadline, waiter, interactive };
