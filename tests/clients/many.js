// N sockets in one process; each reports its events and ends on a "done" event.
//
//   node many.js <url-with-namespace> <count> '<io options json>'
//
// Socket i connects with auth {index: i} (merged into options.auth) over its
// own connection.  Output lines: connect {index, id, transport}, connect_error
// {index, message}, event {index, id, event, args}, ready {count} once every
// socket is connected, done {count} once every socket got "done", timeout.

const { io } = require("socket.io-client");
const { print, toJson, deadline } = require("./lib");

const url = process.argv[2];
const count = parseInt(process.argv[3], 10);
const options = JSON.parse(process.argv[4] || "{}");
const timeoutMs = parseInt(process.env.CLIENT_TIMEOUT_MS || "20000", 10);

let connected = 0;
let finished = 0;
deadline(timeoutMs, () => ({ connected, finished, count }));

const sockets = [];
for (let index = 0; index < count; index++) {
  const socket = io(url, {
    ...options,
    forceNew: true,
    reconnection: false,
    auth: { ...(options.auth || {}), index },
  });
  sockets.push(socket);
  let seen = false;
  socket.on("connect", () => {
    print({ type: "connect", index, id: socket.id, transport: socket.io.engine.transport.name });
    if (!seen) {
      seen = true;
      connected += 1;
      if (connected === count) print({ type: "ready", count });
    }
  });
  socket.on("connect_error", (err) => print({ type: "connect_error", index, message: err.message }));
  socket.on("disconnect", (reason) => print({ type: "disconnect", index, reason }));
  socket.onAny((event, ...args) => {
    print({ type: "event", index, id: socket.id, event, args: toJson(args) });
    if (event === "done") {
      socket.close();
      finished += 1;
      if (finished === count) {
        print({ type: "done", count });
        setTimeout(() => process.exit(0), 100);
      }
    }
  });
}
