// A fleet of stock socket.io-clients in one process, each with its own auth
// (users' browsers, signage screens with a deviceId), driven over stdin.
//
//   node fleet.js <url> '<[{auth: {...}}, ...] json>'
//
// Prints JSON lines: connect {index, id, transport}, connect_error {index,
// message, code}, disconnect {index, reason}, event {index, event, args},
// ready {count} once every socket has connected, and result {id, value |
// error} for each command.  Commands arrive on stdin as JSON lines {"id",
// "js"}: the JavaScript is evaluated here with `sockets` in scope.  The
// script exits when stdin closes.

const { io } = require("socket.io-client");
const { print, toJson, deadline, interactive } = require("./lib");

const url = process.argv[2];
const members = JSON.parse(process.argv[3] || "[]");
deadline(120000, () => "fleet");

let connected = 0;
const sockets = members.map((member, index) => {
  const socket = io(url, { forceNew: true, reconnection: false, ...member });
  let seen = false;
  socket.on("connect", () => {
    print({ type: "connect", index, id: socket.id, transport: socket.io.engine.transport.name });
    if (!seen) {
      seen = true;
      connected += 1;
      if (connected === members.length) print({ type: "ready", count: connected });
    }
  });
  socket.on("connect_error", (err) => print({ type: "connect_error", index, message: err.message, code: err.data && err.data.code }));
  socket.on("disconnect", (reason) => print({ type: "disconnect", index, reason }));
  socket.onAny((event, ...args) => print({ type: "event", index, event, args: toJson(args) }));
  return socket;
});

interactive((js) => eval(js), () => {
  for (const socket of sockets) socket.close();
  process.exit(0);
});
