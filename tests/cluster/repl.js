// Shared by the cluster peers: JSON lines out (lib.js of the client scripts),
// and JavaScript commands in: stdin lines {"id", "js"} hold an expression
// (which may await) evaluated in the peer's scope (evaluate), each answered
// {"type":"result", id, value | error}.
// The peer exits when stdin closes.

const readline = require("readline");
const { print, toJson, fromJson, deadline } = require("../clients/lib");

function serve(evaluate, close) {
  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    const cmd = JSON.parse(line);
    try {
      const value = await evaluate(cmd.js);
      print({ type: "result", id: cmd.id, value: toJson(value === undefined ? null : value) });
    } catch (err) {
      print({ type: "result", id: cmd.id, error: String(err && err.stack ? err.stack : err) });
    }
  });
  process.stdin.on("end", async () => {
    await close();
    process.exit(0);
  });
}

module.exports = { print, toJson, fromJson, deadline, serve };
