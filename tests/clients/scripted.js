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
const { print, toJson, fromJson, deadline, waiter } = require("./lib");

const url = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const steps = config.steps || [];
const answers = config.answers || {};

let stepIndex = -1;
deadline(config.timeoutMs || 15000, () => ({ step: stepIndex, detail: steps[stepIndex] }));

const socket = io(url, config.options || {});
const counts = { connect: 0, disconnect: 0 };
const eventCounts = {};
const { changed, until } = waiter();

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
  if (counts.connect === 1) run();
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

socket.onAny((event, ...args) => {
  const last = args[args.length - 1];
  const ack = typeof last === "function" ? args.pop() : null;
  print({ type: "event", event, args: toJson(args), acked: ack !== null && event in answers });
  eventCounts[event] = (eventCounts[event] || 0) + 1;
  if (ack && event in answers) {
    const reply = answers[event] === "$echo" ? args : fromJson(answers[event]);
    ack(...reply);
  }
  changed();
});

async function step(s) {
  if (s.emit) {
    const [event, ...raw] = s.emit;
    const args = fromJson(raw);
    if (!s.ack) {
      socket.emit(event, ...args);
      return;
    }
    await new Promise((resolve) => {
      if (s.timeoutMs) {
        socket.timeout(s.timeoutMs).emit(event, ...args, (err, ...reply) => {
          if (err) print({ type: "ack_error", event, message: err.message });
          else print({ type: "ack", event, args: toJson(reply) });
          resolve();
        });
      } else {
        socket.emit(event, ...args, (...reply) => {
          print({ type: "ack", event, args: toJson(reply) });
          resolve();
        });
      }
    });
  } else if (s.wait) {
    await until(() => (eventCounts[s.wait] || 0) >= (s.count || 1));
  } else if (s.waitConnect) {
    await until(() => counts.connect >= s.waitConnect);
  } else if (s.waitDisconnect) {
    await until(() => counts.disconnect >= s.waitDisconnect);
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
  for (stepIndex = 0; stepIndex < steps.length; stepIndex++) {
    await step(steps[stepIndex]);
  }
  socket.close();
  print({ type: "done" });
  // Let the close reach the server before exiting.
  setTimeout(() => process.exit(0), 100);
}
