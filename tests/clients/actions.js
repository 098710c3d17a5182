// The action-framework client (seed 001) exactly as its document writes it,
// driven by a list of steps and reporting JSON lines.
//
//   node actions.js '<config json>'
//
// config: url, token, sessionId, artifactId   filled into the document's code
//         steps                                run in order right away
//         useCases   also attach the document's "Example Use Cases" listeners,
//                    which JSON.parse every message unconditionally
//         timeoutMs  whole-script deadline (default 15000)
//
// steps:
//   {"send": [action, data]}            the document's sendAction()
//   {"request": {requestId, action, data}, "asObject": bool}
//                                       a REQUEST envelope (JSON string unless asObject)
//   {"emit": [...args]}                 socket.emit("message", ...args) as given (bad input)
//   {"emitAck": [...args]}              the same with an ack callback; prints {"type": "ack"}
//   {"wait": {type, action, requestId}, "count": n}
//                                       until n received messages match
//   {"sleep": ms}
//
// Output lines: log {level, text, value} (the document's console calls),
// message {form, value}, connect, connect_error {message, data}, disconnect,
// usecase {what, value}, ack, done, timeout.

const { print, toJson, deadline } = require("./lib");

const config = JSON.parse(process.argv[2] || "{}");
const steps = config.steps || [];
let stepIndex = -1;
deadline(config.timeoutMs || 15000, () => ({ step: stepIndex, detail: steps[stepIndex] }));

function jsonable(value) {
  if (value instanceof Error) return { message: value.message, data: toJson(value.data) };
  return toJson(value);
}
console.log = (text, value) => print({ type: "log", level: "log", text, value: jsonable(value) });
console.error = (text, value) => print({ type: "log", level: "error", text, value: jsonable(value) });

// ---------------------------------------------------------------- document
// The only change: `import { io } from 'socket.io-client'` becomes require()
// (this package is CommonJS), and the URL, token and ids are filled in.
const { io } = require('socket.io-client');

const connectWebSocket = (token, sessionId, artifactId) => {
  const socket = io(config.url, {
    path: '/realtime',
    auth: { token },
    query: { 
      sessionId,
      ...(artifactId && { artifactId })
    }
  });

  // Connection events
  socket.on('connect', () => {
    console.log('Connected to WebSocket server');
  });

  socket.on('disconnect', () => {
    console.log('Disconnected from WebSocket server');
  });

  // Message handling
  socket.on('message', (message) => {
    const parsed = typeof message === 'string' ? JSON.parse(message) : message;
    
    switch (parsed.type) {
      case 'RESPONSE':
        console.log('Received response:', parsed);
        break;
      case 'UPDATE':
        console.log('Received update:', parsed);
        break;
      case 'ERROR':
        console.error('Received error:', parsed);
        break;
    }
  });

  // Error handling
  socket.on('connect_error', (error) => {
    console.error('Connection error:', error);
  });

  return socket;
};

// Example: Sending an action request
const sendAction = (socket, action, data) => {
  const message = {
    type: 'REQUEST',
    requestId: Date.now().toString(),
    action,
    data
  };
  
  socket.emit('message', JSON.stringify(message));
};

// Usage example
const socket = connectWebSocket(
  config.token,
  config.sessionId,
  config.artifactId
);

sendAction(socket, 'someAction', { key: 'value' });

if (config.useCases) {
  const updateUI = (data) => print({ type: "usecase", what: "updateUI", value: data });
  const handleResponse = (parsed) => print({ type: "usecase", what: "handleResponse", value: parsed });

  // 1. Real-time Updates
  // Client subscribes to updates
  socket.on('message', (message) => {
    const parsed = JSON.parse(message);
    if (parsed.type === 'UPDATE' && parsed.action === 'statusChange') {
      updateUI(parsed.data);
    }
  });

  // 2. Action Execution
  // Client executes action
  socket.emit('message', JSON.stringify({
    type: 'REQUEST',
    requestId: 'req-1',
    action: 'processData',
    data: { input: 'value' }
  }));

  // Client handles response
  socket.on('message', (message) => {
    const parsed = JSON.parse(message);
    if (parsed.requestId === 'req-1') {
      handleResponse(parsed);
    }
  });
}

// ---------------------------------------------------------------- harness
const received = [];
let waiter = null;

socket.on("connect", () => print({ type: "connect", id: socket.id }));
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
socket.on("connect_error", (err) => {
  print({ type: "connect_error", message: err.message, data: toJson(err.data) });
  if (!socket.active) {
    print({ type: "done" });
    process.exit(0);
  }
});
socket.on("message", (message) => {
  const value = typeof message === "string" ? JSON.parse(message) : message;
  received.push(value);
  print({ type: "message", form: typeof message, value: toJson(value) });
  if (waiter && waiter.check()) {
    const w = waiter;
    waiter = null;
    w.resolve();
  }
});

function matches(value, want) {
  return Object.entries(want).every(([k, v]) => value[k] === v);
}

function until(want, count) {
  const check = () => received.filter((m) => matches(m, want)).length >= count;
  if (check()) return Promise.resolve();
  return new Promise((resolve) => { waiter = { check, resolve }; });
}

async function step(s) {
  if (s.send) {
    sendAction(socket, s.send[0], s.send[1]);
  } else if (s.request) {
    const message = { type: "REQUEST", ...s.request };
    socket.emit("message", s.asObject ? message : JSON.stringify(message));
  } else if (s.emit) {
    socket.emit("message", ...s.emit);
  } else if (s.emitAck) {
    await new Promise((resolve) => socket.emit("message", ...s.emitAck, (...args) => {
      print({ type: "ack", args: toJson(args) });
      resolve();
    }));
  } else if (s.wait) {
    await until(s.wait, s.count || 1);
  } else if (s.sleep) {
    await new Promise((resolve) => setTimeout(resolve, s.sleep));
  } else {
    throw new Error("unknown step " + JSON.stringify(s));
  }
}

(async () => {
  for (stepIndex = 0; stepIndex < steps.length; stepIndex++) await step(steps[stepIndex]);
  socket.close();
  print({ type: "done" });
  setTimeout(() => process.exit(0), 100);
})();
