// The official admin UI's connection (@socket.io/admin-ui 0.5, ui/src/App.vue):
// the same io() options, the same auth payloads, the same operations.
//
//   node admin_ui.js <server-url> '<config json>'
//
// config: namespace ("/admin"), path ("/socket.io"), wsOnly (false), and auth:
// {username, password} as the login form sends it, or {sessionId} as the UI
// sends it when it reconnects on a page load.
//
// Prints JSON lines: connect {id, transport}, connect_error {message, data},
// disconnect {reason}, upgrade {transport}, and event {event, args} for every
// message of the admin protocol.  Takes JavaScript on stdin
// (tests/support/interactive.py), with `socket` in scope: operations are sent
// as the UI sends them, `socket.emit("join", nsp, room, socketId)`; with
// `socket.timeout(5000).emitWithAck(...)` a test learns a refusal, and
// `attempt(auth)` makes one more login as the form does and tells how it went.
const { io } = require("socket.io-client");
const { print, toJson, interactive } = require("./lib");

const serverUrl = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const namespace = config.namespace || "/admin";
const wsOnly = Boolean(config.wsOnly);

// App.vue's tryConnect().
function connect(auth) {
  return io(serverUrl + namespace, {
    forceNew: true,
    reconnection: false,
    withCredentials: true,
    transports: wsOnly ? ["websocket"] : ["polling", "websocket"],
    path: config.path || "/socket.io",
    parser: null,
    auth,
  });
}

// One login on a connection of its own: "connected" or the connect_error's message.
function attempt(auth) {
  const other = connect(auth);
  return new Promise((resolve) => {
    other.on("connect", () => resolve("connected"));
    other.on("connect_error", (err) => resolve(err.message));
  }).finally(() => other.close());
}

const socket = connect(config.auth || {});

socket.once("connect", () => {
  // What the UI does once logged in: reconnect by itself from now on.
  socket.io.reconnection(true);
  socket.io.engine.on("upgrade", (transport) => print({ type: "upgrade", transport: transport.name }));
});
socket.on("connect", () => print({ type: "connect", id: socket.id, transport: socket.io.engine.transport.name }));
socket.on("connect_error", (err) => print({ type: "connect_error", message: err.message, data: toJson(err.data) }));
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
socket.onAny((event, ...args) => print({ type: "event", event, args: toJson(args) }));

interactive(
  (js) => eval(js),
  () => {
    socket.close();
    setTimeout(() => process.exit(0), 100);
  },
);
