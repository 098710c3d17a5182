// `make soak`'s traffic: stock socket.io-clients and HTTP calls at a steady rate.
//
//   NODE_PATH=tests/clients/node_modules node bench/soak.js '<options json>'
//
// options: url, secret (HS256), apiKey, seconds, residents (default 200),
// churnPerSecond (default 4), publishesPerSecond (default 20).
//
// - residents: screens and dashboards that stay (a third WebSocket only, a
//   third long-polling then upgraded, a third long-polling only); every 5 s
//   one of them loses its transport and comes back with connection state
//   recovery; they set a presence status now and then;
// - churn: new clients every second with any of the three transports, who
//   subscribe to a channel, ask for presence with an ack, stay 5-60 s and leave;
// - HTTP: emits to tenants, channels and users; a signage layout push to a
//   screen every 2 s; every 30 s a churn user's token is revoked (their
//   sockets are ended);
// Prints one JSON line per 10 s ({type: "stats", ...}) and a final one; exits
// after `seconds` with every client closed.

const crypto = require("crypto");
const http = require("http");
const { io } = require("socket.io-client");

const o = JSON.parse(process.argv[2]);
const residentsWanted = o.residents ?? 200;
const churnPerSecond = o.churnPerSecond ?? 4;
const publishesPerSecond = o.publishesPerSecond ?? 20;
const TENANTS = ["t1", "t2", "t3", "t4"];
const TRANSPORTS = [["websocket"], ["polling", "websocket"], ["polling"]];

const stats = {
  connects: 0, recovered: 0, drops: 0, acks: 0, ackErrors: 0, received: 0, publishes: 0,
  publishErrors: 0, revoked: 0, kicked: 0, layouts: 0, connectErrors: 0,
};
const b64url = (value) => Buffer.from(value).toString("base64url");
function token(sub, tenant, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." +
    b64url(JSON.stringify({ sub, tenantId: tenant, iat: now, exp: now + 7200, ...extra }));
  return body + "." + crypto.createHmac("sha256", o.secret).update(body).digest("base64url");
}
const pick = (items) => items[Math.floor(Math.random() * items.length)];

function api(path, body) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const request = http.request(`${o.url}${path}`, {
      method: "POST", agent: false, timeout: 10000,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), "X-API-Key": o.apiKey },
    }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode));
    });
    request.on("timeout", () => request.destroy(new Error("timeout")));
    request.on("error", () => resolve(0));
    request.end(data);
  });
}

function client(user, tenant, transports, extraAuth = {}, extraClaims = {}) {
  const socket = io(o.url, {
    auth: { token: token(user, tenant, extraClaims), ...extraAuth },
    transports, forceNew: true, reconnectionDelay: 500, reconnectionDelayMax: 3000,
  });
  socket.on("connect", () => {
    stats.connects += 1;
    if (socket.recovered) stats.recovered += 1;
  });
  socket.on("connect_error", () => (stats.connectErrors += 1));
  socket.on("error", () => (stats.kicked += 1));
  socket.onAny(() => (stats.received += 1));
  return socket;
}

// ------------------------------------------------------------ residents
const residents = [];
for (let i = 0; i < residentsWanted; i++) {
  const tenant = TENANTS[i % TENANTS.length];
  const screen = i % 4 === 0;
  const device = `screen-${i}`;
  const socket = screen
    ? client(`owner-${i}`, tenant, TRANSPORTS[i % 3], { deviceId: device }, { devices: [device] })
    : client(`resident-${i}`, tenant, TRANSPORTS[i % 3], { channels: ["news"] });
  residents.push({ socket, tenant, device: screen ? device : null });
}

const timers = [];
const every = (ms, fn) => timers.push(setInterval(fn, ms));

every(5000, () => {
  // A network drop: the transport closes under the client, who comes back (recovery).
  const { socket } = pick(residents);
  if (socket.connected) {
    stats.drops += 1;
    socket.io.engine.close();
  }
});
every(1000, () => {
  const { socket } = pick(residents);
  if (socket.connected) socket.emit("presence:status", pick(["busy", "away", "in a meeting", ""]));
});

// ---------------------------------------------------------------- churn
let churned = 0;
const churning = new Set();
every(1000 / churnPerSecond, () => {
  const n = churned++;
  const tenant = pick(TENANTS);
  const socket = client(`user-${n}`, tenant, pick(TRANSPORTS), { channels: [pick(["news", "ops", "alerts"])] });
  churning.add(socket);
  socket.on("connect", () => {
    socket.timeout(10000).emit("subscribe", pick(["ops", "alerts", "lobby"]), (err) => (err ? stats.ackErrors++ : stats.acks++));
    socket.timeout(10000).emit("presence", {}, (err) => (err ? stats.ackErrors++ : stats.acks++));
  });
  setTimeout(() => {
    socket.close();
    churning.delete(socket);
  }, 5000 + Math.random() * 55000);
});

// ----------------------------------------------------------------- HTTP
async function publish(path, body) {
  const status = await api(path, body);
  if (status === 200) stats.publishes += 1;
  else stats.publishErrors += 1;
  return status;
}
every(1000 / publishesPerSecond, () => {
  const roll = Math.random();
  const data = { at: Date.now(), text: "x".repeat(100) };
  if (roll < 0.4) publish("/api/v1/emit", { tenant: pick(TENANTS), event: "news", data });
  else if (roll < 0.8) publish("/api/v1/emit", { room: `tenant:${pick(TENANTS)}:news`, event: "headline", data });
  else publish("/api/v1/emit", { user: `resident-${Math.floor(Math.random() * residentsWanted)}`, event: "dm", data });
});
every(2000, async () => {
  const screens = residents.filter((r) => r.device);
  const { tenant, device } = pick(screens);
  if ((await api("/api/websocket/layout-update", { tenantId: tenant, layoutId: `L${Date.now()}`, deviceIds: [device] })) === 200) {
    stats.layouts += 1;
  }
});
every(30000, async () => {
  const user = `user-${Math.max(0, churned - 1 - Math.floor(Math.random() * 20))}`;
  if ((await api("/api/v1/admin/revoke", { user })) === 200) stats.revoked += 1;
});

const report = () => console.log(JSON.stringify({
  type: "stats", residents: residents.filter((r) => r.socket.connected).length, churning: churning.size, ...stats,
}));
every(10000, report);
setTimeout(() => {
  for (const timer of timers) clearInterval(timer);
  for (const { socket } of residents) socket.close();
  for (const socket of churning) socket.close();
  report();
  setTimeout(() => process.exit(0), 500);
}, o.seconds * 1000);
