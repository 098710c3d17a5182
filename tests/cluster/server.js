// A Node.js socket.io 4.8 server with @socket.io/redis-adapter 8 (the
// classic pub/sub adapter) on the redis 4 client: the reference cluster
// member rtserver nodes must work with.
//
//   node server.js <port> <redis url> [key prefix]
//
// Prints {"type":"listening", port} once serving.  Sockets: "join" (room, ack)
// joins a room.
// Server-side events from other nodes are printed as {"type":"server_side",
// event, args}; "ask-nodes" is answered with {node: "node", args}.
// stdin commands (lib.js interactive): an expression, which may await, with
// `io` in scope.

const http = require("http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-adapter");
const { print, toJson, deadline, interactive } = require("../clients/lib");

const [port, url, key] = [Number(process.argv[2]), process.argv[3], process.argv[4] || "socket.io"];
deadline(120000, () => "node server");

async function main() {
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) client.on("error", (err) => print({ type: "redis_error", message: String(err) }));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pubClient, subClient, { key, requestsTimeout: 3000 }) });
  const setup = (nsp) => {
    nsp.on("connection", (socket) => {
      socket.on("join", (room, ack) => {
        socket.join(room);
        if (typeof ack === "function") ack("ok");
      });
    });
    nsp.on("ask-nodes", (...args) => {
      const ack = args.pop();
      ack({ node: "node", args: toJson(args) });
    });
    nsp.on("tell-nodes", (...args) => print({ type: "server_side", namespace: nsp.name, event: "tell-nodes", args: toJson(args) }));
  };
  setup(io.of("/"));
  setup(io.of("/chat"));
  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  print({ type: "listening", port });
  interactive((js) => eval(`(async () => (${js}))()`), async () => {
    io.close();
    await Promise.all([pubClient.quit(), subClient.quit()]);
    process.exit(0);
  });
}
main().catch((err) => {
  print({ type: "fatal", error: String(err.stack || err) });
  process.exit(1);
});
