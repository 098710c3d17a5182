// A stock socket.io-client that joins a room and counts "msg" events, across
// disconnections; the server's connection state recovery must fill the gaps.
// argv[2]: JSON {url, room, expect, transports?, timeoutMs?}
const { io } = require("socket.io-client");
const opts = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const socket = io(opts.url, {
  transports: opts.transports || ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 200,
  auth: opts.auth || {},
});
const received = [];
let joined = false;
socket.on("connect", () => {
  out({ type: "connect", id: socket.id, recovered: socket.recovered });
  if (!joined) {
    joined = true;
    socket.emit("join", opts.room, () => out({ type: "joined" }));
  }
});
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.on("msg", (n) => {
  received.push(n);
  if (received.length >= opts.expect) {
    out({ type: "done", received });
    socket.close();
    process.exit(0);
  }
});
setTimeout(() => {
  out({ type: "timeout", received });
  process.exit(2);
}, opts.timeoutMs || 20000);
