// One socket.io-client 2.x socket (Engine.IO v3, Socket.IO protocol v4) that
// runs a list of steps and reports as JSON lines: scripted.js for the old
// client.
//
//   node v2.js <url-with-namespace> '<config json>'
//
// config:
//   options      io() options of the 2.x client (transports, query,
//                transportOptions, forceBase64, reconnection, ...)
//   steps        run in order once the socket first connects (see below)
//   answers      {event: [args...]} ack replies for server calls; "$echo" echoes
//                the call's arguments; an event not listed is never acked
//   silent       send no Engine.IO pings and never time the server out
//                (a client gone quiet: the server must drop it)
//   timeoutMs    whole-script deadline (default 15000)
//
// steps: as in scripted.js (an emit's ack without timeoutMs: 2.x has no
// ack timeouts), and {"waitPong": n}: until n Engine.IO pongs arrived.
//
// A refused connection (the server's ERROR packet: the 2.x client emits
// "error" with its data) prints {"type":"error","data"} then "done" and
// exits 0.  After the last step the socket is closed and the process exits
// 0.  Output lines: open {transport} (Engine.IO handshake), connect {id,
// transport}, error, connect_error {message}, disconnect {reason}, event
// {event, args, acked}, ack, pong, transport, upgrade {transport},
// reconnect_attempt {attempt}, done, timeout.

const io = require("socket.io-client-v2");
const { print, toJson, deadline, waiter, eventRecorder, stepRunner } = require("./lib");

const url = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const steps = config.steps || [];
const answers = config.answers || {};

const socket = io(url, config.options || {});
const counts = { connect: 0, disconnect: 0, pong: 0 };
const eventCounts = {};
const { changed, until } = waiter();
const runner = stepRunner(socket, steps, { counts, eventCounts, until });
deadline(config.timeoutMs || 15000, runner.current);

function hookEngine() {
  const engine = socket.io.engine;
  print({ type: "open", transport: engine.transport.name });
  engine.on("upgrade", (transport) => {
    print({ type: "upgrade", transport: transport.name });
    changed();
  });
  if (config.silent) {
    // No pings, and no timer of its own that would close the connection first.
    engine.setPing = () => print({ type: "ping_skipped" });
    engine.onHeartbeat = () => {};
  }
}

socket.io.on("open", hookEngine);
socket.io.on("reconnect_attempt", (attempt) => print({ type: "reconnect_attempt", attempt }));
socket.io.on("pong", () => {
  counts.pong += 1;
  print({ type: "pong" });
  changed();
});

socket.on("connect", () => {
  counts.connect += 1;
  print({ type: "connect", id: socket.id, transport: socket.io.engine.transport.name });
  if (counts.connect === 1) runner.run();
  changed();
});

socket.on("error", (data) => {
  // The server refused the connection (or the namespace): no CONNECT follows.
  print({ type: "error", data: toJson(data) });
  print({ type: "done" });
  process.exit(0);
});

socket.on("connect_error", (err) => print({ type: "connect_error", message: String(err && err.message) }));

socket.on("disconnect", (reason) => {
  counts.disconnect += 1;
  print({ type: "disconnect", reason });
  changed();
});

// The 2.x client has no onAny: every server event arrives through onevent.
const record = eventRecorder(answers, eventCounts, changed);
socket.onevent = function (packet) {
  const [event, ...args] = packet.data || [];
  record(event, args, packet.id != null ? this.ack(packet.id) : null);
};
