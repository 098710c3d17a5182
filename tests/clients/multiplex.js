// Several namespaces multiplexed over one Engine.IO connection (one Manager).
//
//   node multiplex.js <base-url> '<namespaces json>' '<manager options json>'
//
// Each namespace socket emits "where" with an ack once connected, then the
// sockets leave one by one (the connection stays up until the last one).
// Output lines: connect {namespace, id, engine}, connect_error {namespace,
// message}, ack {namespace, args}, done, timeout.

const { Manager } = require("socket.io-client");
const { print, toJson, deadline } = require("./lib");

const url = process.argv[2];
const namespaces = JSON.parse(process.argv[3]);
const options = JSON.parse(process.argv[4] || "{}");
let pending = namespaces.length;
deadline(15000, () => ({ pending }));

const manager = new Manager(url, { ...options, reconnection: false });
function settle() {
  pending -= 1;
  if (pending === 0) {
    for (const ns of namespaces) manager.socket(ns).disconnect();
    print({ type: "done" });
    setTimeout(() => process.exit(0), 100);
  }
}
for (const namespace of namespaces) {
  const socket = manager.socket(namespace);
  socket.on("connect", () => {
    print({ type: "connect", namespace, id: socket.id, engine: manager.engine.id });
    socket.emit("where", (...args) => {
      print({ type: "ack", namespace, args: toJson(args) });
      settle();
    });
  });
  socket.on("connect_error", (err) => {
    print({ type: "connect_error", namespace, message: err.message });
    settle();
  });
}
