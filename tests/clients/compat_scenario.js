// The compatibility scenario: one script, run unchanged by every client
// version in Node (compat.js) and in Chromium (tests/test_compat_clients.py
// loads it after that version's dist/socket.io.min.js).  It drives the server
// app of tests/test_compat_clients.py and returns what it saw, as plain JSON;
// the test holds each version to what it really does.
//
//   compatScenario(io, url, token) -> Promise<report>
//
// Steps: a default connection (long-polling, then the upgrade) with a JWT in
// `auth`; an emit with an ack; the server calling the client and reading its
// ack; binary both ways; a second connection over WebSocket only; rooms and a
// broadcast between the two (binary in it); a third over long-polling only,
// binary both ways there too; a namespace on the first connection's manager;
// the server closing the transport, the client reconnecting by itself, and
// what connection state recovery gave back (4.6 and later).

(function (root) {
  const WAIT = 8000;

  // Buffer, ArrayBuffer or typed array -> [numbers]; anything else -> null.
  function bytes(value) {
    if (value instanceof ArrayBuffer) return Array.from(new Uint8Array(value));
    if (ArrayBuffer.isView(value)) {
      return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    }
    return null;
  }

  function within(promise, what) {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT} ms`)), WAIT);
    });
    return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
  }

  // The arguments of the next `event` on `emitter`.
  function next(emitter, event) {
    return within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))), event);
  }

  // Emit with an ack; resolves with the ack's arguments.
  function call(socket, event, ...args) {
    return within(new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply))), `ack of ${event}`);
  }

  async function connected(socket) {
    if (!socket.connected) await next(socket, "connect");
    return socket;
  }

  async function scenario(io, url, token) {
    const report = {};
    // A fresh options object for each io() call: 3.x's Manager writes
    // `path` into the one it is given, and a second io() with that object
    // then gets a Manager of its own instead of sharing the first.
    const options = () => ({ auth: { token }, reconnectionDelay: 100, reconnectionDelayMax: 200 });
    const sockets = [];
    try {
      // A default connection: long-polling first, then the upgrade.
      const main = io(url, options());
      sockets.push(main);
      report.firstTransport = main.io.engine.transport.name;
      const upgraded = next(main.io.engine, "upgrade");
      const welcome = next(main, "welcome");
      main.on("question", (value, ...rest) => {
        const ack = rest.find((arg) => typeof arg === "function");
        ack({ doubled: value * 2 }, new Uint8Array([9, 8, 7]));
      });
      await connected(main);
      const welcomeArgs = await welcome;
      report.welcome = welcomeArgs[0];
      // With recovery on, every event carries its offset as an extra last argument.
      report.welcomeArgCount = welcomeArgs.length;
      report.upgradedTo = (await upgraded)[0].name;

      // Emit with an ack; binary both ways.
      report.echo = await call(main, "echo", { hello: "compat" }, 42);
      const [binary, label] = await call(main, "echo", new Uint8Array([1, 2, 3]), "bin");
      report.binaryEcho = { bytes: bytes(binary), label };

      // The server emits to the client and waits for its ack (binary in it).
      const [asked] = await call(main, "ask-me", 21);
      report.asked = asked;

      // A second connection over WebSocket only; rooms and a broadcast.
      const other = io(url, { ...options(), transports: ["websocket"], forceNew: true });
      sockets.push(other);
      await connected(other);
      report.otherTransport = other.io.engine.transport.name;
      report.joined = [await call(main, "join", "lobby"), await call(other, "join", "lobby")];
      const heard = next(other, "shout");
      report.delivered = (await call(main, "shout", "lobby", "hi all"))[0];
      const [text, blob] = await heard;
      report.heard = { text, bytes: bytes(blob) };

      // Long-polling only: binary travels base64 in the bodies, both ways.
      const poller = io(url, { ...options(), transports: ["polling"], forceNew: true });
      sockets.push(poller);
      await connected(poller);
      const [polled] = await call(poller, "echo", new Uint8Array([4, 5, 6]));
      report.polling = { transport: poller.io.engine.transport.name, bytes: bytes(polled) };

      // A namespace on the same connection (multiplexed on one manager).
      const inNamespace = io(url.replace(/\/?$/, "/compat"), options());
      sockets.push(inNamespace);
      await connected(inNamespace);
      report.multiplexed = inNamespace.io === main.io;
      report.namespaceEcho = await call(inNamespace, "echo", "in a namespace");

      // The server drops the transport: the client comes back by itself.
      const firstId = main.id;
      const missed = [];
      main.on("missed", (text) => missed.push(text));
      const dropped = next(main, "disconnect");
      main.emit("drop-me", "lobby");
      report.disconnectReason = (await dropped)[0];
      await next(main, "connect");
      report.recovered = main.recovered === undefined ? null : main.recovered;
      report.sameId = main.id === firstId;
      report.echoAfterReconnect = await call(main, "echo", "back");
      report.missed = missed;
    } catch (err) {
      report.error = String((err && err.message) || err);
    } finally {
      for (const socket of sockets) socket.disconnect();
    }
    return report;
  }

  if (typeof module !== "undefined" && module.exports) {
    module.exports = scenario;
  } else {
    root.compatScenario = scenario;
  }
})(typeof self !== "undefined" ? self : this);
