// The NestJS chat document's (seed 003) client code, as written (only the URL
// and token filled in), reporting as JSON lines for tests/test_feature_chat.py.
//
//   node chat.js '<config json>'
//
// config:
//   url        "ws://127.0.0.1:PORT", as the document writes its URLs
//   token      the JWT
//   placement  "auth" | "header" | "query": the document's three ways to pass it
//   example    "browser" (JavaScript/TypeScript (Browser) example) or "node"
//              (Node.js Client example): what runs at start and on connect
//   steps      then run in order after the first connect (as in scripted.js):
//              {"emit": [event, ...args], "ack"?: true}, {"wait": event, "count"?: n},
//              {"waitConnect": n}, {"waitDisconnect": n}, {"sleep": ms}
//   timeoutMs  whole-script deadline (default 20000)
//
// Output lines: log {text} (the document's console.log/console.error calls),
// event {event, args}, ack {event, args}, connect, connect_error, disconnect,
// done, timeout.  A connect_error after which the client gives up ends the
// script (exit 0).

const util = require("util");
const { io } = require("socket.io-client");
const { print, toJson, deadline, waiter, eventRecorder, stepRunner } = require("./lib");

const config = JSON.parse(process.argv[2]);
const steps = config.steps || [];

// The document logs with console.log / console.error: keep what it prints.
console.log = (...args) => print({ type: "log", text: util.format(...args) });
console.error = (...args) => print({ type: "log", level: "error", text: util.format(...args) });

const URL = config.url;
const TOKEN = config.token;
let socket;

// ---- Authentication Methods (the document's three ways) -------------------
if (config.placement === "header") {
  // 1. Authorization Header
  socket = io(URL, {
    extraHeaders: {
      Authorization: `Bearer ${TOKEN}`
    }
  });
} else if (config.placement === "query") {
  // 2. Query Parameter
  socket = io(`${URL}?token=${TOKEN}`);
} else {
  // 3. Auth Object (Recommended)
  socket = io(URL, {
    auth: {
      token: TOKEN
    }
  });
}

// ---- Reporting --------------------------------------------------------------
const counts = { connect: 0, disconnect: 0 };
const eventCounts = {};
const { changed, until } = waiter();
const runner = stepRunner(socket, steps, { counts, eventCounts, until });
deadline(config.timeoutMs || 20000, runner.current);

socket.on("connect", () => {
  counts.connect += 1;
  print({ type: "connect", id: socket.id });
  if (counts.connect === 1) runner.run();
  changed();
});
socket.on("connect_error", (err) => {
  print({ type: "connect_error", message: err.message, data: toJson(err.data) });
  if (!socket.active) {
    print({ type: "done" });
    process.exit(0);
  }
});
socket.on("disconnect", (reason) => {
  counts.disconnect += 1;
  print({ type: "disconnect", reason, active: socket.active });
  changed();
});
const record = eventRecorder({}, eventCounts, changed);
socket.onAny((event, ...args) => record(event, args, null));

// ---- The document's examples ----------------------------------------------
if (config.example === "node") {
  // Node.js Client
  socket.on('connect', () => {
    console.log('Connected:', socket.id);

    // Get online users
    socket.emit('get_online_users');

    // Join room
    socket.emit('join_room', { room: 'developers' });
  });

  socket.on('new_message', (data) => {
    console.log(`Message from ${data.from.email}: ${data.message}`);
  });
} else {
  // JavaScript/TypeScript (Browser)

  // Listen for connection
  socket.on('connect', () => {
    console.log('Connected:', socket.id);
  });

  // Join a room
  socket.emit('join_room', { room: 'general' });

  // Send message
  socket.emit('send_message', {
    room: 'general',
    message: 'Hello everyone!'
  });

  // Listen for messages
  socket.on('new_message', (data) => {
    console.log('New message:', data);
  });

  // Listen for user events
  socket.on('user_joined', (data) => {
    console.log('User joined:', data);
  });

  socket.on('user_online', (data) => {
    console.log('User online:', data);
  });

  // Handle errors
  socket.on('exception', (error) => {
    console.error('WebSocket error:', error);
  });
}
