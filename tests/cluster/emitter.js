// A back end publishing through @socket.io/redis-emitter 5 (no server of its
// own), as existing socket.io deployments do.
//
//   node emitter.js <redis url> [key prefix]
//
// Prints {"type":"ready"} once connected; stdin commands (lib.js
// interactive): an expression, which may await, with `emitter` (an Emitter
// for "/") in scope.

const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");
const { print, deadline, interactive } = require("../clients/lib");

const [url, key] = [process.argv[2], process.argv[3] || "socket.io"];
deadline(120000, () => "emitter");

async function main() {
  const client = createClient({ url });
  client.on("error", (err) => print({ type: "redis_error", message: String(err) }));
  await client.connect();
  const emitter = new Emitter(client, { key });
  print({ type: "ready" });
  interactive((js) => eval(`(async () => (${js}))()`), async () => {
    await client.quit();
    process.exit(0);
  });
}
main().catch((err) => {
  print({ type: "fatal", error: String(err.stack || err) });
  process.exit(1);
});
