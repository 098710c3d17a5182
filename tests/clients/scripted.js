// One socket.io-client socket that runs a list of steps and reports as JSON lines.
//
//   node scripted.js <url-with-namespace> '<config json>'
//
// config:
//   options      io() options (transports, auth, reconnection, ...)
//   steps        run in order once the socket first connects (see below)
//   answers      {event: [args...]} ack replies for server calls; "$echo" echoes
//                the call's arguments; an event not listed is never acked
//   dropPongs    never answer the server's Engine.IO pings (a silent client)
//   timeoutMs    whole-script deadline (default 15000)
//
// steps:
//   {"emit": [event, ...args]}                       fire and forget
//   {"emit": [event, ...args], "ack": true}          prints {"type":"ack","event","args"}
//   {"emit": [...], "ack": true, "timeoutMs": n}     ack with client timeout; an
//                                                    expiry prints {"type":"ack_error"}
//   {"wait": event, "count": n}                      until n such events arrived
//   {"waitConnect": n} / {"waitDisconnect": n}       until n connects / disconnects
//   {"waitTransport": name}                          until the engine uses that transport
//   {"sleep": ms}
//   {"report": "transport"}                          prints {"type":"transport","name"}
//
// After the last step the socket is closed and the process exits 0.  Output
// lines: open {transport} (Engine.IO handshake), connect {id, transport}, connect_error {message, data}, disconnect
// {reason, active}, event {event, args, acked}, ack, ack_error, transport,
// upgrade {transport}, reconnect_attempt {attempt}, done, timeout.

const { io } = require("socket.io-client");
const { print, toJson, deadline, waiter, eventRecorder, stepRunner } = require("./lib");

const url = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const steps = config.steps || [];
const answers = config.answers || {};

const socket = io(url, config.options || {});
const counts = { connect: 0, disconnect: 0 };
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
  if (config.dropPongs && !engine.__pongsDropped) {
    engine.__pongsDropped = true;
    const original = engine._sendPacket.bind(engine);
    engine._sendPacket = (type, ...rest) => {
      if (type === "pong") {
        print({ type: "pong_dropped" });
        return;
      }
      return original(type, ...rest);
    };
  }
}

socket.io.on("open", hookEngine);
socket.io.on("reconnect_attempt", (attempt) => print({ type: "reconnect_attempt", attempt }));

socket.on("connect", () => {
  counts.connect += 1;
  print({ type: "connect", id: socket.id, transport: socket.io.engine.transport.name });
  if (counts.connect === 1) runner.run();
  changed();
});

socket.on("connect_error", (err) => {
  print({ type: "connect_error", message: err.message, data: toJson(err.data) });
  if (!socket.active) {
    // Refused by the server: no retry will follow.
    print({ type: "done" });
    process.exit(0);
  }
});

socket.on("disconnect", (reason) => {
  counts.disconnect += 1;
  print({ type: "disconnect", reason, active: socket.active });
  changed();
});

const record = eventRecorder(answers, eventCounts, changed);
socket.onAny((event, ...args) => {
  const last = args[args.length - 1];
  const ack = typeof last === "function" ? args.pop() : null;
  record(event, args, ack);
});
