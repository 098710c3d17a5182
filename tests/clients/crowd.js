// N stock clients with default transports (polling, then the upgrade), for
// the `serve --workers` and load balancer tests.  argv[2]: JSON {url, count,
// timeoutMs?, localAddresses?}: client i connects from localAddresses[i % n]
// (loopback addresses such as 127.0.1.1, so a proxy that hashes the client's
// address spreads them).
// Every 100 ms prints {type: "state", ...}: sockets connected now, upgraded
// now, by worker (the prefix of their Engine.IO sid, "w<index>."), connects,
// disconnects and their reasons, connect errors, and how many sockets got
// each round of the "news" broadcast ({round}).
const http = require("http");
const { io } = require("socket.io-client");
const { print, deadline } = require("./lib");

const opts = JSON.parse(process.argv[2]);
const clients = [];
const received = {};
const reasons = {};
const errors = {};
let connects = 0;
let disconnects = 0;

function worker(sid) {
  const match = /^w(\d+)\./.exec(sid || "");
  return match ? match[1] : "?";
}

for (let i = 0; i < opts.count; i++) {
  const from = opts.localAddresses ? { localAddress: opts.localAddresses[i % opts.localAddresses.length] } : {};
  // The polling requests go through the agent, the WebSocket takes localAddress.
  const agent = opts.localAddresses ? { agent: new http.Agent(from), ...from } : {};
  const socket = io(opts.url, { forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, ...agent });
  const client = { socket, connected: false, upgraded: false, sid: null };
  clients.push(client);
  socket.io.on("open", () => {
    client.sid = socket.io.engine.id;
    client.upgraded = socket.io.engine.transport.name === "websocket";
    socket.io.engine.on("upgrade", (transport) => { client.upgraded = transport.name === "websocket"; });
  });
  socket.on("connect", () => { client.connected = true; connects++; });
  socket.on("disconnect", (reason) => {
    client.connected = false;
    client.upgraded = false;
    disconnects++;
    reasons[reason] = (reasons[reason] || 0) + 1;
  });
  socket.on("connect_error", (err) => { errors[err.message] = (errors[err.message] || 0) + 1; });
  socket.on("news", (data) => { received[data.round] = (received[data.round] || 0) + 1; });
}

function state() {
  const byWorker = {};
  let connected = 0;
  let upgraded = 0;
  for (const c of clients) {
    if (!c.connected) continue;
    connected++;
    if (c.upgraded) upgraded++;
    const w = worker(c.sid);
    byWorker[w] = (byWorker[w] || 0) + 1;
  }
  return { type: "state", connected, upgraded, byWorker, connects, disconnects, reasons, errors, received };
}

setInterval(() => print(state()), 100);
process.stdin.on("end", () => { clients.forEach((c) => c.socket.close()); process.exit(0); });
process.stdin.resume();
deadline(opts.timeoutMs || 120000, state);
