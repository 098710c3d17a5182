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

// A server event as the scripts report it: printed, counted, and (for a call
// the server awaits) answered as `answers` says: {event: [args...]}, or
// "$echo" for the call's own arguments; an event not listed is never acked.
function eventRecorder(answers, eventCounts, changed) {
  return (event, args, ack) => {
    print({ type: "event", event, args: toJson(args), acked: ack !== null && event in answers });
    eventCounts[event] = (eventCounts[event] || 0) + 1;
    if (ack && event in answers) {
      const reply = answers[event] === "$echo" ? args : fromJson(answers[event]);
      ack(...reply);
    }
    changed();
  };
}

// The step language of scripted.js (documented there), for a socket of
// either client generation: `state` is {counts, eventCounts, until} as the
// script keeps them.  run() takes the steps in order, then closes the socket
// and exits 0; current() says where it is (for deadline()).
function stepRunner(socket, steps, { counts, eventCounts, until }) {
  let index = -1;

  function emitWithAck(event, args, timeoutMs) {
    return new Promise((resolve) => {
      if (!timeoutMs) {
        socket.emit(event, ...args, (...reply) => {
          print({ type: "ack", event, args: toJson(reply) });
          resolve();
        });
        return;
      }
      socket.timeout(timeoutMs).emit(event, ...args, (err, ...reply) => {
        if (err) print({ type: "ack_error", event, message: err.message });
        else print({ type: "ack", event, args: toJson(reply) });
        resolve();
      });
    });
  }

  async function step(s) {
    if (s.emit) {
      const [event, ...raw] = s.emit;
      const args = fromJson(raw);
      if (s.ack) await emitWithAck(event, args, s.timeoutMs);
      else socket.emit(event, ...args);
    } else if (s.wait) {
      await until(() => (eventCounts[s.wait] || 0) >= (s.count || 1));
    } else if (s.waitConnect) {
      await until(() => counts.connect >= s.waitConnect);
    } else if (s.waitDisconnect) {
      await until(() => counts.disconnect >= s.waitDisconnect);
    } else if (s.waitPong) {
      await until(() => (counts.pong || 0) >= s.waitPong);
    } else if (s.waitTransport) {
      await until(() => socket.io.engine && socket.io.engine.transport.name === s.waitTransport);
    } else if (s.sleep) {
      await new Promise((resolve) => setTimeout(resolve, s.sleep));
    } else if (s.report === "transport") {
      print({ type: "transport", name: socket.io.engine.transport.name });
    } else {
      throw new Error("unknown step " + JSON.stringify(s));
    }
  }

  async function run() {
    for (index = 0; index < steps.length; index++) {
      await step(steps[index]);
    }
    socket.close();
    print({ type: "done" });
    // Let the close reach the server before exiting.
    setTimeout(() => process.exit(0), 100);
  }

  return { run, current: () => ({ step: index, detail: steps[index] }) };
}

module.exports = { print, toJson, fromJson, deadline, waiter, interactive, eventRecorder, stepRunner };
