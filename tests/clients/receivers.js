// Many stock sockets, one per token, that keep reconnecting and remember
// what they received.
//
//   node receivers.js '<config json>'
//
// config: url, tokensFile (a JSON list of tokens), channels (joined at
// connect, auth.channels), websocketShare (fraction of sockets on WebSocket
// only; the others start with long-polling and upgrade), reconnectionDelay,
// reconnectionDelayMax, events (names to record: each event's first argument
// must carry a numeric "seq").
//
// stdin lines: "status" prints {type: "status", connected, connects} (of the
// sockets not closed); "close N" closes the sockets from index N on;
// "report" prints {type: "report", sockets: [{index, connects, seen: {event:
// [seq, ...]}}]}.  The script ends when stdin closes.

const fs = require("fs");
const readline = require("readline");
const { io } = require("socket.io-client");
const { print } = require("./lib");

const config = JSON.parse(process.argv[2]);
const tokens = JSON.parse(fs.readFileSync(config.tokensFile, "utf8"));
const events = config.events || [];

const sockets = tokens.map((token, index) => {
  const websocketOnly = index < Math.round(tokens.length * (config.websocketShare ?? 1));
  const socket = io(config.url, {
    auth: { token, channels: config.channels || [] },
    transports: websocketOnly ? ["websocket"] : ["polling", "websocket"],
    forceNew: true,
    reconnectionDelay: config.reconnectionDelay ?? 100,
    reconnectionDelayMax: config.reconnectionDelayMax ?? 1000,
  });
  const state = { index, connects: 0, seen: {}, closed: false };
  for (const event of events) {
    state.seen[event] = new Set();
    socket.on(event, (data) => state.seen[event].add(data && data.seq));
  }
  socket.on("connect", () => {
    state.connects += 1;
  });
  socket.on("connect_error", () => {
    // The server is restarting: socket.io-client retries by itself.
  });
  return { socket, state };
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "status") {
    const open = sockets.filter(({ state }) => !state.closed);
    const connected = open.filter(({ socket }) => socket.connected).length;
    const connects = open.reduce((sum, { state }) => sum + state.connects, 0);
    print({ type: "status", connected, connects });
  } else if (line.startsWith("close ")) {
    for (const { socket, state } of sockets.slice(parseInt(line.slice(6), 10))) {
      state.closed = true;
      socket.close();
    }
  } else if (line === "report") {
    print({
      type: "report",
      sockets: sockets.map(({ state }) => ({
        index: state.index,
        connects: state.connects,
        seen: Object.fromEntries(Object.entries(state.seen).map(([event, seqs]) => [event, [...seqs]])),
      })),
    });
  }
});
process.stdin.on("end", () => {
  for (const { socket } of sockets) socket.close();
  process.exit(0);
});
