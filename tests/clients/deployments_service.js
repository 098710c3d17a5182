// The PaaS document's "Complete Frontend Example" (WebSocketService) and its
// error handling, driven from a test.
//
//   node deployments_service.js <url> <jwt>
//
// Prints JSON lines: console {text} (the document's console.log output),
// console_error {text, args}, event {event, args} (every server event),
// result {id, value | error} for each command.  Commands arrive on stdin as
// JSON lines {"id", "js"}: the JavaScript is evaluated here (wsService is the
// document's service; ack(event, ...args) emits with an acknowledgement).
// The script exits when stdin closes.

const { io } = require("socket.io-client");
const { print, toJson, deadline, interactive } = require("./lib");

const [URL, TOKEN] = process.argv.slice(2);
deadline(45000, () => "deployments_service");

function text(args) {
  return args.map((a) => (typeof a === "string" ? a : JSON.stringify(toJson(a)))).join(" ");
}
console.log = (...args) => print({ type: "console", text: text(args) });
console.error = (...args) => print({ type: "console_error", text: text(args), args: toJson(args.map((a) => (a instanceof Error ? { message: a.message, data: a.data } : a))) });

// ---- the document's code, as written (only the URL filled in) ----
class WebSocketService {
  constructor() {
    this.socket = null;
  }

  connect(jwtToken) {
    this.socket = io(URL, {
      auth: {
        token: jwtToken
      }
    });

    // Event listeners
    this.socket.on('connect', () => {
      console.log('Connected to WebSocket server');
    });

    this.socket.on('disconnect', () => {
      console.log('Disconnected from WebSocket server');
    });

    this.socket.on('user:online', (data) => {
      console.log(`User ${data.userId} is now online`);
    });

    this.socket.on('user:offline', (data) => {
      console.log(`User ${data.userId} is now offline`);
    });

    this.socket.on('deployment:status', (data) => {
      console.log(`Deployment ${data.deploymentId} status: ${data.status}`);
      // Update UI based on deployment status
    });

    this.socket.on('deployment:log', (data) => {
      console.log(`Deployment ${data.deploymentId} log: ${data.log}`);
      // Display deployment logs in UI
    });
  }

  // Subscribe to deployment updates
  subscribeToDeployment(deploymentId) {
    if (this.socket) {
      this.socket.emit('deployment:subscribe', deploymentId);
    }
  }

  // Unsubscribe from deployment updates
  unsubscribeFromDeployment(deploymentId) {
    if (this.socket) {
      this.socket.emit('deployment:unsubscribe', deploymentId);
    }
  }

  disconnect() {
    if (this.socket) {
      this.socket.disconnect();
    }
  }
}

// Usage:
const wsService = new WebSocketService();
wsService.connect(TOKEN);

const socket = wsService.socket;
socket.on('connect_error', (error) => {
  console.error('Connection error:', error);
});

socket.on('error', (error) => {
  console.error('WebSocket error:', error);
});
// ---- end of the document's code ----

socket.onAny((event, ...args) => print({ type: "event", event, args: toJson(args) }));
socket.on("connect", () => print({ type: "connect", id: socket.id }));

function ack(event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args);
}

interactive(
  (js) => eval(js),
  () => {
    wsService.disconnect();
    process.exit(0);
  },
);
