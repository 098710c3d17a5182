// N stock clients that must find their way back after the server restarts.
// argv[2]: JSON {url, count, timeoutMs?, ca?}: prints "ready" once all are
// connected, then "back" once every one has disconnected and reconnected.
const { io } = require("socket.io-client");
const opts = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const sockets = [];
const state = [];
let ready = false;
let finished = false;
const check = () => {
  if (finished) return;
  if (!ready && state.every((s) => s.connects >= 1)) {
    ready = true;
    out({ type: "ready" });
  }
  if (ready && state.every((s) => s.disconnects >= 1 && s.connects >= 2)) {
    finished = true;
    out({ type: "back", reasons: [...new Set(state.map((s) => s.reason))] });
    sockets.forEach((s) => s.close());
    process.exit(0);
  }
};
for (let i = 0; i < opts.count; i++) {
  const s = io(opts.url, { transports: opts.transports || ["websocket"], forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, ca: opts.ca });
  const st = { connects: 0, disconnects: 0, reason: null };
  state.push(st);
  s.on("connect", () => { st.connects++; check(); });
  s.on("disconnect", (reason) => { st.disconnects++; st.reason = reason; check(); });
  s.on("connect_error", (e) => { if (opts.verbose) out({ type: "connect_error", message: e.message }); });
  sockets.push(s);
}
setTimeout(() => {
  out({ type: "timeout", state: state.filter((s) => !(s.disconnects >= 1 && s.connects >= 2)).slice(0, 5) });
  process.exit(2);
}, opts.timeoutMs || 30000);
