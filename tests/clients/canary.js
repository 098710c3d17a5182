// Well-behaved clients that watch a server while others abuse it.
//
//   node canary.js '<config json>'
//
// config: url, auth (io auth option), intervalMs (default 500), ackTimeoutMs
// (default 5000), healthTimeoutMs (default 1000), channel (default "canary").
//
// Two stock socket.io-clients stay connected, one with the default transports
// (long-polling, then the upgrade to WebSocket) and one on long-polling only.
// Every intervalMs each emits the built-in "subscribe" with an ack and
// GET /healthz is asked on a fresh connection.  Output lines:
//   ready {sockets}                 both sockets connected (once)
//   problem {what, detail}          a disconnect, a connect error, an ack late
//                                   or wrong, /healthz slow or not 200
//   stats {acks, health, maxAckMs, maxHealthMs}   every 5 s, and at the end
// The script ends when stdin closes.

const http = require("http");
const { io } = require("socket.io-client");
const { print } = require("./lib");

const config = JSON.parse(process.argv[2]);
const interval = config.intervalMs || 500;
const ackTimeout = config.ackTimeoutMs || 5000;
const healthTimeout = config.healthTimeoutMs || 1000;
const channel = config.channel || "canary";

const stats = { acks: 0, health: 0, maxAckMs: 0, maxHealthMs: 0 };
const problem = (what, detail) => print({ type: "problem", what, detail, at: Date.now() / 1000 });

function watch(name, transports) {
  const socket = io(config.url, { auth: config.auth, transports, reconnection: false, forceNew: true });
  let connected = false;
  socket.on("connect", () => {
    connected = true;
    ready();
  });
  socket.on("connect_error", (err) => problem(`${name} connect_error`, err.message));
  socket.on("disconnect", (reason) => {
    connected = false;
    problem(`${name} disconnected`, reason);
  });
  setInterval(() => {
    if (!connected) return;
    const sent = Date.now();
    socket.timeout(ackTimeout).emit("subscribe", channel, (err, answer) => {
      const took = Date.now() - sent;
      if (err) return problem(`${name} ack`, `no ack within ${ackTimeout} ms`);
      if (!answer || !Array.isArray(answer.rooms)) return problem(`${name} ack`, JSON.stringify(answer));
      stats.acks += 1;
      stats.maxAckMs = Math.max(stats.maxAckMs, took);
    });
  }, interval);
  return () => connected;
}

let announced = false;
const watchers = [watch("websocket canary", ["polling", "websocket"]), watch("polling canary", ["polling"])];
function ready() {
  if (!announced && watchers.length === 2 && watchers.every((connected) => connected())) {
    announced = true;
    print({ type: "ready", sockets: watchers.length });
  }
}

setInterval(() => {
  const sent = Date.now();
  let done = false;
  const finish = (what) => {
    if (done) return;
    done = true;
    const took = Date.now() - sent;
    if (what) return problem("healthz", what);
    stats.health += 1;
    stats.maxHealthMs = Math.max(stats.maxHealthMs, took);
  };
  const request = http.get(`${config.url}/healthz`, { agent: false, timeout: healthTimeout }, (response) => {
    response.resume();
    response.on("end", () => finish(response.statusCode === 200 ? null : `status ${response.statusCode}`));
  });
  request.on("timeout", () => {
    finish(`no answer within ${healthTimeout} ms`);
    request.destroy();
  });
  request.on("error", (err) => finish(err.message));
}, interval);

setInterval(() => print({ type: "stats", ...stats }), 5000);
process.stdin.resume();
process.stdin.on("end", () => {
  print({ type: "stats", ...stats });
  process.exit(0);
});
