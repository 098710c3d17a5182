// CreatiWall's websocket service (src/services/websocket.ts), minimal and
// faithful to its documented behaviour, plus a step runner for the tests.
//
//   node signage.js '<config json>'
//
// config: base (http://127.0.0.1:port), token (put in localStorage as the app
// does), fast (short reconnection delays), timeoutMs, steps:
//   {"call": "connect"|"disconnect"|"send"|"sendLayoutUpdate"|"sendContentSync"|"getStatus", "args": [...]}
//        prints {"type":"result","call",value} or {"type":"error","call",message,code,status}
//   {"monitor": [devices]}    DeviceMonitor from the document (prints "devices" on each change)
//   {"player": deviceId}      LayoutPlayer from the document (prints "layout" on each fetch)
//   {"on": event} / {"off": event}   print {"type":"event",event,data} for each event
//   {"wait": event, "count": n}      until n such events arrived (monitor/player/on)
//   {"waitConnected": true}          until the socket is connected
//   {"waitUpgrade": true}            until its transport is WebSocket
//   {"sleep": ms}
//   {"exit": true}                   stop at once, like a power cut (no disconnect)
// After the last step prints "done" and exits (sockets dropped with the process).

const { io } = require("socket.io-client");
const { print, deadline } = require("./lib");

const config = JSON.parse(process.argv[2] || "{}");
const BASE = config.base;
let stepIndex = -1;
deadline(config.timeoutMs || 15000, () => ({ step: stepIndex, detail: (config.steps || [])[stepIndex] }));

// The browser's localStorage, where the app keeps its token.
const store = new Map(config.token ? [["token", config.token]] : []);
globalThis.localStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, String(v)) };

class WebSocketService {
  constructor() {
    this.socket = null;
    this.connectionId = null;
    this.deviceId = null;
    this.listeners = new Map(); // event -> Set(handler), kept across sockets
  }

  token() {
    const token = localStorage.getItem("token");
    if (!token) throw new Error("No auth token available for WebSocket connection");
    return token;
  }

  async api(path, body, method = "POST") {
    const token = this.token();
    const response = await fetch(`${BASE}/api/websocket/${path}`, {
      method,
      headers: method === "GET" ? { Authorization: `Bearer ${token}` } : {
        "Content-Type": "application/json",
        Authorization: `Bearer ${token}`,
      },
      body: method === "GET" ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!json.success) {
      const err = new Error(json.error.message);
      err.code = json.error.code;
      err.status = response.status;
      throw err;
    }
    return json.data;
  }

  async connect(deviceId, channels) {
    const token = this.token();
    // POST /api/websocket/connect, as the document shows it.
    const response = await fetch(`${BASE}/api/websocket/connect`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({
        deviceId: deviceId, // Optional
        channels: channels, // Optional additional channels
      }),
    });
    const json = await response.json();
    if (!json.success) {
      const err = new Error(json.error.message);
      err.code = json.error.code;
      err.status = response.status;
      throw err;
    }
    const { connectionId, channels: subscribed } = json.data;
    this.connectionId = connectionId;
    this.deviceId = deviceId || null;
    // Auto-reconnection: 1 s, 2 s, 3 s ... at most 5 attempts.
    this.socket = io(BASE, {
      auth: { token, connectionId },
      reconnectionAttempts: 5,
      reconnectionDelay: config.fast ? 100 : 1000,
      reconnectionDelayMax: config.fast ? 300 : 3000,
    });
    for (const [event, handlers] of this.listeners) for (const h of handlers) this.socket.on(event, h);
    this.socket.on("connect", () => print({ type: "connect", connectionId }));
    this.socket.on("connect_error", (e) => print({ type: "connect_error", message: e.message, data: e.data || null }));
    this.socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
    return { connectionId, channels: subscribed };
  }

  async disconnect() {
    if (!this.connectionId) return null;
    const data = await this.api("disconnect", { connectionId: this.connectionId, deviceId: this.deviceId || undefined });
    if (this.socket) this.socket.disconnect();
    this.socket = null;
    this.connectionId = null;
    return data;
  }

  async send(message) {
    return this.api("broadcast", message);
  }

  async sendLayoutUpdate(layoutId, deviceIds, layoutData) {
    return this.api("layout-update", { layoutId, deviceIds, layoutData });
  }

  async sendContentSync(contentType, contentId, action, data) {
    return this.api("content-sync", { contentType, contentId, action, data });
  }

  async getStatus() {
    return this.api("status", undefined, "GET");
  }

  on(event, handler) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(handler);
    if (this.socket) this.socket.on(event, handler);
  }

  off(event, handler) {
    const handlers = this.listeners.get(event);
    if (handlers) handlers.delete(handler);
    if (this.socket) this.socket.off(event, handler);
  }

  isConnected() {
    return !!(this.socket && this.socket.connected);
  }
}

const webSocketService = new WebSocketService();

function useWebSocket() {
  const s = webSocketService;
  return {
    connect: s.connect.bind(s),
    disconnect: s.disconnect.bind(s),
    send: s.send.bind(s),
    sendLayoutUpdate: s.sendLayoutUpdate.bind(s),
    sendContentSync: s.sendContentSync.bind(s),
    getStatus: s.getStatus.bind(s),
    on: s.on.bind(s),
    off: s.off.bind(s),
    isConnected: s.isConnected.bind(s),
  };
}

// ------------------------------------------------------------ step runner
const counts = {};
let waiter = null;
function bump(event) {
  counts[event] = (counts[event] || 0) + 1;
  if (waiter && waiter()) {
    const w = waiter.wake;
    waiter = null;
    w();
  }
}
function until(cond) {
  if (cond()) return Promise.resolve();
  return new Promise((resolve) => {
    waiter = cond;
    waiter.wake = resolve;
  });
}
const printers = {};

// DeviceMonitor from the document, with React state as a plain variable.
function DeviceMonitor(initial) {
  const { connect, on, off } = useWebSocket();
  let devices = initial.map((id) => ({ id, name: id, status: "unknown" }));
  const setDevices = (fn) => {
    devices = fn(devices);
    print({ type: "devices", devices });
    bump("devices");
  };
  const handleDeviceStatus = (data) => {
    setDevices(prev => prev.map(device =>
      device.id === data.deviceId
        ? { ...device, status: data.status, lastSeen: data.timestamp }
        : device
    ));
  };
  on("device_status", handleDeviceStatus);
  return connect();
}

// LayoutPlayer from the document: fetchLayout stands in for the app's API call.
function LayoutPlayer(deviceId) {
  const { connect, on, off } = useWebSocket();
  const fetchLayout = async (layoutId) => ({ id: layoutId });
  const setCurrentLayout = (layout) => {
    print({ type: "layout", layout });
    bump("layout");
  };
  const handleLayoutUpdate = (data) => {
    print({ type: "event", event: "layout_update", data });
    if (data.layoutId) {
      // Fetch and apply new layout
      fetchLayout(data.layoutId).then(setCurrentLayout);
    }
  };
  on("layout_update", handleLayoutUpdate);
  return connect(deviceId);
}

async function main() {
  const ws = useWebSocket();
  for (const step of config.steps || []) {
    stepIndex += 1;
    if (step.call) {
      try {
        const value = await ws[step.call](...(step.args || []));
        print({ type: "result", call: step.call, value: value === undefined ? null : value });
      } catch (e) {
        print({ type: "error", call: step.call, message: e.message, code: e.code || null, status: e.status || null });
      }
    } else if (step.monitor) {
      print({ type: "result", call: "monitor", value: await DeviceMonitor(step.monitor) });
    } else if (step.player) {
      print({ type: "result", call: "player", value: await LayoutPlayer(step.player) });
    } else if (step.on) {
      printers[step.on] = (data) => {
        print({ type: "event", event: step.on, data: data === undefined ? null : data });
        bump(step.on);
      };
      ws.on(step.on, printers[step.on]);
    } else if (step.off) {
      ws.off(step.off, printers[step.off]);
    } else if (step.wait) {
      await until(() => (counts[step.wait] || 0) >= (step.count || 1));
    } else if (step.waitConnected) {
      while (!ws.isConnected()) await new Promise((r) => setTimeout(r, 20));
      print({ type: "connected" });
    } else if (step.waitUpgrade) {
      // Like a screen running for a while: the connection is on WebSocket.
      while (!(webSocketService.socket && webSocketService.socket.io.engine &&
               webSocketService.socket.io.engine.transport.name === "websocket")) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } else if (step.sleep) {
      await new Promise((r) => setTimeout(r, step.sleep));
    } else if (step.exit) {
      print({ type: "done" });
      process.exit(0);
    }
  }
  print({ type: "done" });
  process.exit(0);
}

main().catch((e) => {
  print({ type: "crash", message: String(e && e.stack) });
  process.exit(1);
});
